"""The package's imports, read from its source: no cycle, and no module imports ``__init__``.

Every import statement counts, those inside functions included (a lazy import hides a cycle, it
does not remove it).
"""

import ast
from pathlib import Path

import sklearn_triplet

PACKAGE = Path(sklearn_triplet.__file__).resolve().parent
NAME = "sklearn_triplet"


def _modules():
    """``{dotted name: path}`` of every module of the package (``__init__`` as the package)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([NAME, *parts])] = path
    return modules


def _is_package(name, modules):
    return modules[name].name == "__init__.py"


def _imports(name, modules, source=None):
    """The package's modules that module ``name`` imports, each with the line of the import."""
    tree = ast.parse(modules[name].read_text() if source is None else source)
    here = name if _is_package(name, modules) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # ``from . import _x`` imports the module ``_x``; ``from . import Name`` the package.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # ``import sklearn_triplet.a.b`` names the module a.b (its parents run first, as
            # packages, whatever the import).
            while target and target not in modules and target.startswith(NAME):
                target = target.rpartition(".")[0]
            if target in modules:
                found.append((target, node.lineno))
    return found


def _graph():
    modules = _modules()
    return {name: _imports(name, modules) for name in modules}


def test_the_graph_is_read_from_the_source():
    graph = _graph()
    assert f"{NAME}._base" in graph and f"{NAME}._loading" in graph
    # a known edge, and a lazy one would be seen too (the test below proves there is none left)
    assert f"{NAME}._format" in {target for target, _ in graph[f"{NAME}._checkpoint"]}
    assert f"{NAME}._base" in {target for target, _ in graph[NAME]}


def test_reads_lazy_and_relative_imports():
    modules = {NAME: PACKAGE / "__init__.py", f"{NAME}.a": PACKAGE / "a.py"}
    modules[f"{NAME}.probe"] = PACKAGE / "probe.py"
    source = "import os\n\ndef f():\n    from . import a, Name\n    import sklearn_triplet.a.x\n"
    found = _imports(f"{NAME}.probe", modules, source)
    assert found == [(f"{NAME}.a", 4), (NAME, 4), (f"{NAME}.a", 5)]


def test_no_module_imports_the_package_init():
    graph = _graph()
    offenders = [
        f"{name} line {line}"
        for name, imports in graph.items()
        if name != NAME
        for target, line in imports
        if target == NAME
    ]
    assert offenders == []


def test_no_import_cycle():
    graph = {name: [target for target, _ in imports] for name, imports in _graph().items()}
    # the package's __init__ imports its modules; it is on no cycle since nothing imports it
    state, cycles = {}, []

    def visit(name, stack):
        state[name] = "open"
        stack.append(name)
        for target in graph[name]:
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert cycles == []
