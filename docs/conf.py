"""Sphinx configuration for the fungrad documentation."""

from __future__ import annotations

import doctest
import importlib.util
import os
import sys
from importlib import metadata

from sphinx_gallery.sorting import ExplicitOrder

# Build from the source tree even when fungrad is not installed in the
# environment that runs sphinx.
sys.path.insert(0, os.path.abspath(".."))
# The docs' own extensions: the generated API pages and the graph drawings.
sys.path.insert(0, os.path.abspath("_ext"))

project = "fungrad"
author = "the fungrad developers"
copyright = "2025, the fungrad developers"
try:
    release = metadata.version("fungrad")
except metadata.PackageNotFoundError:
    release = "0.2.0"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
    "fungrad_api",  # docs/_ext: api/*.rst from the package, PRIMITIVES from its table
    "fungrad_graphs",  # docs/_ext: Graphviz drawings as SVG, each a link to its full size
    "fungrad_notebooks",  # docs/_ext: each tutorial chapter as a notebook, linked under its title
]
# No intersphinx: CI has no network.

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# examples/ holds the gallery's sources; sphinx-gallery turns them into
# auto_examples/, which is what the toctree points at.
exclude_patterns = ["_build", "examples", "_ext", "Thumbs.db", ".DS_Store"]

# Every reference must resolve (CI builds with -n -W). Only names outside
# fungrad that no offline inventory can resolve are let through: the standard
# library's and other packages' types in signatures (no intersphinx: CI has no
# network), and the two matplotlib types that viz's hints name unqualified.
nitpicky = True
nitpick_ignore = [("py:class", "Figure"), ("py:class", "Axes")]
nitpick_ignore_regex = [
    (r"py:(class|obj|exc|func|data)", r"(os|pathlib|random|argparse|collections|typing|types|io|json|numbers|contextvars)\..*"),
    (r"py:(class|obj|exc|func|data)", r"(networkx|graphviz|matplotlib|numpy|torch|jax|tqdm|attrs?)\..*"),
]

# -- autodoc ------------------------------------------------------------------
autodoc_typehints = "description"
autodoc_member_order = "bysource"
# The docstrings are plain reST (no Google or NumPy sections), so no napoleon:
# it would read "The activation of the first layer: ..." on a property as a
# type followed by a description.

# -- doctest ------------------------------------------------------------------
# the same setup runs in the notebooks made from the chapters
from fungrad_notebooks import DEFAULT_SETUP as doctest_global_setup  # noqa: E402
# Sphinx's default includes IGNORE_EXCEPTION_DETAIL, which would let an error
# message drift away from what the pages show; the errors page checks them.
doctest_default_flags = doctest.ELLIPSIS | doctest.DONT_ACCEPT_TRUE_FOR_1

# -- MyST -----------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# -- maths ------------------------------------------------------------------------
# MathJax ships with the docs, so that the maths renders from disk without a
# network: the PyPI package sphinx-mathjax-offline (the docs extra) holds
# MathJax 3 in its static/mathjax, which html_static_path copies to
# _static/mathjax. Its SVG output draws every glyph as a path, so no web font
# has to load (a page opened from file:// may not load fonts).
_mathjax = importlib.util.find_spec("sphinx-mathjax-offline")
if _mathjax is None or not _mathjax.submodule_search_locations:
    raise RuntimeError('the docs need MathJax from PyPI: pip install -e ".[docs]" (sphinx-mathjax-offline)')
_MATHJAX_STATIC = os.path.join(list(_mathjax.submodule_search_locations)[0], "static")
mathjax_path = "mathjax/tex-svg.js"
# no right-click menu: its accessibility tools would load further components
mathjax3_config = {"options": {"enableMenu": False}}

# -- copy button ------------------------------------------------------------------
# Copy only the code: the >>> and ... prompts (and shell's $) are dropped, and
# so are the output lines of a doctest, which have no prompt.
# ("..." alone, with no space after it, is the blank line that ends a block)
copybutton_prompt_text = r">>> |\.\.\.(?: |$)|\$ |In \[\d*\]: | {2,5}\.\.\.: "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True
copybutton_remove_prompts = True
copybutton_exclude = ".linenos"

# -- sphinx-gallery -------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py",  # execute every example, not only plot_*
    "abort_on_example_error": True,
    "matplotlib_animations": False,
    "download_all_examples": False,
    # graphviz drawings (a block that ends with one) become SVG files
    "image_scrapers": ("matplotlib", "fungrad_graphs.graphviz_scraper"),
    # ... and their repr is not printed as the block's output
    "ignore_repr_types": r"graphviz\.",
    "remove_config_comments": True,
    "show_memory": False,
    # its page of execution times loads jQuery and DataTables from CDNs
    "write_computation_times": False,
    # the gallery in the order of the tutorial chapters that use it
    "within_subsection_order": ExplicitOrder(
        [
            "plot_derivative.py",
            "plot_graph.py",
            "plot_toposort.py",
            "plot_train_tiny.py",
            "plot_moons.py",
            "plot_higher_order.py",
            "plot_hessian.py",
            "plot_jit_speed.py",
            "*",
        ]
    ),
}

# -- HTML -------------------------------------------------------------------------
html_theme = "furo"
# fungrad.css (and the figures the pages name), and MathJax (see above)
html_static_path = ["_static", _MATHJAX_STATIC]
html_title = f"fungrad {release}"
# The search results stay without text snippets: those are fetched from each
# page, which a browser refuses for pages opened from disk (file://).
html_show_search_summary = False
