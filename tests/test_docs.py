"""The documentation's sources: every page has a title and a place in a toctree, fragments are not
pages, the install page lists every extra of pyproject.toml, the README says how to build the docs.

These read the sources (a full build runs the gallery, minutes); CI builds the docs with -W.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _exclude_patterns():
    text = (DOCS / "conf.py").read_text(encoding="utf-8")
    block = re.search(r"^exclude_patterns = \[(.*?)\]", text, re.S | re.M)[1]
    return set(re.findall(r'"([^"]+)"', block))


def _pages():
    excluded = _exclude_patterns()
    return sorted(path.name for path in DOCS.glob("*.rst") if path.name not in excluded)


def test_included_fragments_are_not_pages():
    """A fragment a page includes would otherwise be built a second time as a page of its own,
    titled "<no title>" and in no toctree."""
    included = set()
    for path in DOCS.glob("*.rst"):
        included |= set(re.findall(r"^\.\. include-if-exists:: (\S+)", path.read_text(), re.M))
    assert {"benchmarks_pairs.rst", "benchmarks_threads.rst"} <= included
    assert included <= _exclude_patterns()


@pytest.mark.parametrize("page", _pages())
def test_every_page_has_a_title_and_a_toctree_entry(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    for fragment in re.findall(r"^\.\. include-if-exists:: (\S+)", text, re.M):
        text += "\n" + (DOCS / fragment).read_text(encoding="utf-8")
    lines = text.splitlines()
    titles = [
        line
        for line, below in zip(lines, lines[1:])
        if line.strip() and re.fullmatch(r"([=\-~^\"'`#*+])\1+", below) and len(below) >= len(line)
    ]
    assert titles, f"{page} has no title"
    if page == "index.rst" or re.match(r"\s*:orphan:", text):  # in no toctree by declaration
        return
    entries = set()
    for path in DOCS.glob("*.rst"):
        for block in re.findall(r"^\.\. toctree::\n((?:[ \t]+.*\n|\n)+)", path.read_text(), re.M):
            entries |= {line.strip() for line in block.splitlines()}
    assert page[: -len(".rst")] in entries


def test_install_page_lists_every_extra_and_its_packages():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 or newer
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    text = (DOCS / "install.rst").read_text(encoding="utf-8")
    table = re.search(r"Optional extras:\n\n(=+ +=+\n.*?\n=+ +=+\n)", text, re.S)[1]
    rows = {}
    for line in table.splitlines()[1:-1]:
        name = re.match(r"``\[(\w+)\]``", line)
        if name:
            rows[name[1]] = line
        else:
            rows[list(rows)[-1]] += " " + line.strip()
    assert sorted(rows) == sorted(extras)
    for extra, requirements in extras.items():
        for requirement in requirements:
            package = re.match(r"[A-Za-z0-9_.\-]+", requirement)[0].lower()
            assert package in rows[extra].lower(), f"[{extra}] does not mention {package}"


def test_readme_says_how_to_build_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'pip install -e ".[docs]"' in readme
    assert "sphinx-build -W -b html docs docs/_build/html" in readme
