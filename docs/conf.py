"""Sphinx configuration of matderiv's documentation site.

Build from the repository root (warnings are errors):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

It documents the checkout it sits in: the repository root goes first on sys.path, so
the kernels must be built in place (python setup.py build_ext --inplace, or an editable
install). Nothing is fetched at build time.
"""
from __future__ import annotations

import doctest
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import matplotlib  # noqa: E402

matplotlib.use("Agg")  # the gallery's figures, drawn without a display

import matderiv  # noqa: E402  (after the path insert: the checkout's matderiv)
import matderiv.dask  # noqa: E402
from sphinx.util import logging  # noqa: E402

LOGGER = logging.getLogger("matderiv.docs")

project = "matderiv"
author = "the matderiv developers"
copyright = "the matderiv developers"
version = release = matderiv.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",  # -b doctest runs the >>> examples of the pages
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

# -b doctest: the >>> examples of the pages and of the API pages' docstrings; Sphinx's
# option flags plus NORMALIZE_WHITESPACE (printed arrays wrap, a cut string may end in a space)
doctest_default_flags = (
    doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.IGNORE_EXCEPTION_DETAIL | doctest.DONT_ACCEPT_TRUE_FOR_1
)

templates_path = ["_templates"]
exclude_patterns = ["_build"]
default_role = "code"  # `name` in prose is literal text, as in the README and the docstrings

# API pages: one generated page per public name (api.rst lists them with :toctree:).
autosummary_generate = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the signatures stay short; the docstrings say the shapes
# numpydoc: the class templates list the members themselves, with autodoc
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# The gallery: only examples/plot_*.py, each run at build time with small sizes; the
# other examples are command-line programs that the gallery scripts import.
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"^(?!plot_)",  # matched against the file name alone
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "plot_gallery": "True",
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "min_reported_time": 1000,  # no per-example timings on the pages
    "write_computation_times": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"matderiv {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "header_links_before_dropdown": 7,  # every top-level page in the header, API and changelog too
}
# the single pages have no section to navigate: no left sidebar
html_sidebars = {page: [] for page in ("index", "getting_started", "which_function", "mathematics", "changelog")}
html_static_path = ["_static"]
html_css_files = ["matderiv.css"]
html_show_sourcelink = False


def check_coverage(app) -> None:
    """A warning (an error under -W) for a matderiv other than this checkout's, and for
    every public name of matderiv or matderiv.dask that api.rst does not list."""
    if Path(matderiv.__file__).resolve().parent != ROOT / "matderiv":
        LOGGER.warning("the docs document %s, not this checkout's matderiv", matderiv.__file__)
    listed, module = set(), None
    for line in (Path(app.srcdir) / "api.rst").read_text().splitlines():
        if line.startswith(".. currentmodule::"):
            module = line.split("::")[1].strip()
        elif line.strip().isidentifier():
            listed.add(f"{module}.{line.strip()}")
    for module, names in (("matderiv", matderiv.__all__), ("matderiv.dask", matderiv.dask.__all__)):
        for name in sorted(set(names) - {"__version__"}):
            if f"{module}.{name}" not in listed:
                LOGGER.warning("api.rst does not list %s.%s", module, name)


SECTION_RULE = re.compile(r"^\s*-{3,}\s*$")  # the dashes under a numpydoc section header
RST_SPECIAL = re.compile(r"([\\*`|_])")


def plain_docstrings(app, what, name, obj, options, lines: list[str]) -> None:
    """A docstring with no numpydoc section is plain text, not reStructuredText (its
    formulas hold *, | and _): its first paragraph, the summary that autosummary's tables
    show, is escaped, and the rest is shown as written, as a block of text."""
    if not lines or any(SECTION_RULE.match(line) for line in lines):
        return
    cut = lines.index("") if "" in lines else len(lines)
    summary = [RST_SPECIAL.sub(r"\\\1", line) for line in lines[:cut]]
    rest = lines[cut:]
    while rest and not rest[-1].strip():
        rest.pop()
    lines[:] = summary + (["", ".. code-block:: text", ""] + [f"    {line}" if line else "" for line in rest] if rest else [])


def setup(app) -> None:
    app.connect("builder-inited", check_coverage)
    app.connect("autodoc-process-docstring", plain_docstrings, priority=400)  # before numpydoc's (500)
