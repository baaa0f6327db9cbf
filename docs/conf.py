"""Sphinx configuration of the sklearn-triplet documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` from the repository root (the package
is imported from this checkout). The build needs no network: intersphinx is off, formulas are plain
text, and the gallery runs on scikit-learn's bundled digits.
"""

import importlib.util
import inspect
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document this checkout, installed or not
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS))

import torch  # noqa: E402
from api_reference import API_REFERENCE  # noqa: E402

# The gallery runs inside this process: one torch thread keeps it to its budget on a shared CI
# machine.
torch.set_num_threads(1)

# -- Project -------------------------------------------------------------------------------------

project = "sklearn-triplet"
author = "The sklearn-triplet developers"
copyright = "2026, The sklearn-triplet developers"
release = re.search(
    r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.MULTILINE
).group(1)
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "include_if_exists",
]

templates_path = ["_templates"]
# Fragments that scripts write; pages include them (see include_if_exists), they are not pages.
exclude_patterns = [
    "_build",
    "benchmarks_mining.rst",
    "benchmarks_pairs.rst",
    "benchmarks_peers.rst",
    "benchmarks_sweep.rst",
    "benchmarks_tuples_recipe.rst",
    "benchmarks_real.rst",
    "benchmarks_persistence.rst",
    "benchmarks_threads.rst",
    "scaling.rst",
]
default_role = "literal"

# -- API reference -------------------------------------------------------------------------------

autodoc_typehints = "none"
# Page tables of contents list "fit()" rather than "TripletEmbedder.fit()".
toc_object_entries_show_parents = "hide"
numpydoc_show_class_members = False  # autosummary and the class template list the members
numpydoc_class_members_toctree = False


def _public_names(module):
    """``__all__`` without ``__version__``, else the public functions and classes defined there."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__
        ]
    return sorted(name for name in names if name != "__version__")


def _write_if_changed(path, text):
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def write_api_reference():
    """Write ``api/index.rst`` and one page per module from ``api_reference.API_REFERENCE``.

    Returns the pages written, relative to this folder.
    """
    out = DOCS / "api"
    out.mkdir(exist_ok=True)
    index = [
        ".. _api_reference:",
        "",
        "API reference",
        "=============",
        "",
        (
            "Every public function and class, module by module. The estimators are imported from "
            "the package itself (``from sklearn_triplet import TripletEmbedder``), everything else "
            "from its module (``from sklearn_triplet.metrics import map_at_r``)."
        ),
        "",
        ".. toctree::",
        "   :hidden:",
        "",
    ]
    sections, pages, stubs = [], ["api/index.rst"], set()
    for entry in API_REFERENCE:
        name = entry["module"]
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        objects = _public_names(module)
        stubs.update(f"{name}.{obj}.rst" for obj in objects)
        table = [".. autosummary::", "   :nosignatures:", ""]
        table += [f"   {name}.{obj}" for obj in objects] + [""]
        page = [
            entry["title"],
            "=" * len(entry["title"]),
            "",
            f".. currentmodule:: {name}",
            "",
            f"Module ``{name}``.",
            "",
            ".. autosummary::",
            "   :toctree: ../generated/",
            "   :nosignatures:",
            "",
            *[f"   {obj}" for obj in objects],
            "",
            f".. automodule:: {name}",
            "   :no-members:",
            "",
        ]
        _write_if_changed(out / f"{name}.rst", "\n".join(page))
        pages.append(f"api/{name}.rst")
        index.append(f"   {name}")
        sections += [
            entry["title"],
            "-" * len(entry["title"]),
            "",
            f":doc:`{name} <{name}>` -- {entry['summary']}",
            "",
            *table,
        ]
    _write_if_changed(out / "index.rst", "\n".join(index + [""] + sections))
    # Pages of objects or modules that are gone would be orphans, which -W turns into errors.
    for path in out.glob("*.rst"):
        if f"api/{path.name}" not in pages:
            path.unlink()
    for path in (DOCS / "generated").glob("sklearn_triplet*.rst"):
        if path.name not in stubs:
            path.unlink()
    return pages


# Named explicitly (not True, which means "the pages Sphinx knew at its last build") so that a page
# written for a newly importable module gets its stubs on an incremental build too.
autosummary_generate = write_api_reference()

# Docstring text that renders wrongly, rewritten at build time until the docstrings change (the
# patterns then simply stop matching):
DOCSTRING_FIXES = [
    # A shape such as ``(n_features_in_,)`` in a numpydoc type is parsed as rst, where a word
    # ending in "_" is a hyperlink reference: quote it as a literal.
    (re.compile(r"\(n_features_in_,\)"), "(``n_features_in_``,)"),
    # autosummary cuts the summary line at ". ", so "hidden... -> n_components" inside a literal
    # leaves the literal open in the summary tables.
    (re.compile(r"\.\.\. ->"), "\N{HORIZONTAL ELLIPSIS} ->"),
]


def fix_docstring(app, what, name, obj, options, lines):
    if what == "data" and type(obj).__module__ == "builtins":
        # A constant such as distances.METRICS would show the docstring of its type ("Built-in
        # immutable sequence."); show its value instead.
        lines[:] = [f"The value ``{obj!r}``."]
        return
    for index, line in enumerate(lines):
        for pattern, replacement in DOCSTRING_FIXES:
            line = pattern.sub(replacement, line)
        lines[index] = line


def plain_text_for_foreign_references(app, env, node, contnode):
    """Render references of docstrings inherited from scikit-learn or PyTorch as plain text.

    Methods such as ``set_output`` or ``get_metadata_routing`` come with docstrings that point at
    labels and glossary terms of scikit-learn's own documentation; without intersphinx there is
    nothing to link to. References in this project's own text still warn when they are broken.
    """
    source = node.source or ""
    if node.get("refdomain") == "std" and re.search(r"docstring of (sklearn|torch)\.", source):
        return contnode
    return None


# -- Gallery -------------------------------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("sklearn_triplet",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"sklearn_triplet": None},
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 0,
}

# -- HTML ----------------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-triplet {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 8,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# The left sidebar lists a section's pages: only the API reference and the gallery have some. Other
# pages give its width to their text, code and tables.
html_sidebars = {
    page: []
    for page in [
        "index",
        "install",
        "quick_start",
        "user_guide",
        "benchmarks",
        "scaling_out",
        "changelog",
        "auto_examples/plot_*",
    ]
}


def setup(app):
    app.connect("autodoc-process-docstring", fix_docstring, priority=400)
    app.connect("missing-reference", plain_text_for_foreign_references)
