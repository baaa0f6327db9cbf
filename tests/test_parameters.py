"""Every public estimator's signature, docstring and constraints agree with the parameter table."""

import ast
import inspect
import re
import textwrap

import pytest

import sklearn_triplet
from sklearn_triplet._base import BaseEmbedder
from sklearn_triplet._parameters import ESTIMATORS, TABLE, parameters

CLASSES = [getattr(sklearn_triplet, name) for name in ESTIMATORS]


def _documented(cls):
    """``{name: default}`` of the Parameters section of ``cls``'s docstring, in order."""
    doc = inspect.getdoc(cls)
    section = re.search(r"\nParameters\n-+\n(.*?)\n\n[A-Z][a-z ]+\n-+\n", doc, re.S)[1]
    entries = {}
    for line in section.splitlines():
        match = re.match(r"(\w+) : .*default=(.+)$", line)
        if match:
            entries[match[1]] = match[2]
        elif re.match(r"\w+ : ", line):
            entries[line.split(" : ")[0]] = None  # an entry without a default: wrong
    return entries


def test_the_table_covers_the_public_estimators():
    public = {
        name
        for name in sklearn_triplet.__all__
        if isinstance(getattr(sklearn_triplet, name), type)
        and issubclass(getattr(sklearn_triplet, name), BaseEmbedder)
    }
    assert public == set(ESTIMATORS)
    assert all(len(row) == 1 + len(ESTIMATORS) for row in TABLE)
    assert len({row[0] for row in TABLE}) == len(TABLE)


@pytest.mark.parametrize("cls", CLASSES, ids=ESTIMATORS)
def test_signature_matches_the_table(cls):
    expected = parameters(cls.__name__)
    signature = inspect.signature(cls.__init__).parameters
    names = list(signature)[1:]
    assert names == list(expected)
    for name in names:
        default = signature[name].default
        assert default == expected[name] and type(default) is type(expected[name]), name
    kinds = [signature[name].kind for name in names]
    assert kinds[0] == inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert set(kinds[1:]) == {inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("cls", CLASSES, ids=ESTIMATORS)
def test_init_is_written_out_and_only_assigns(cls):
    # written in the class's own module, not generated: its source is plain assignments
    assert "__init__" in vars(cls) and not hasattr(cls.__init__, "__signature__")
    source = inspect.getsource(cls.__init__)
    body = ast.parse(textwrap.dedent(source)).body[0].body
    assigned = []
    for statement in body:
        assert isinstance(statement, ast.Assign), ast.dump(statement)
        (target,) = statement.targets
        assert isinstance(target, ast.Attribute) and isinstance(statement.value, ast.Name)
        assert target.attr == statement.value.id
        assigned.append(target.attr)
    assert assigned == list(parameters(cls.__name__))


@pytest.mark.parametrize("cls", CLASSES, ids=ESTIMATORS)
def test_docstring_matches_the_table(cls):
    expected = parameters(cls.__name__)
    documented = _documented(cls)
    assert list(documented) == list(expected)
    for name, text in documented.items():
        assert text is not None, f"{name} has no default in the docstring"
        written = text.split(" ")[0] if name != "device" else text
        assert ast.literal_eval(written) == expected[name], name


@pytest.mark.parametrize("cls", CLASSES, ids=ESTIMATORS)
def test_constraints_match_the_table(cls):
    assert set(cls._parameter_constraints) == set(parameters(cls.__name__))
