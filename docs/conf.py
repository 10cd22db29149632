"""Sphinx configuration for the fungrad documentation."""

from __future__ import annotations

import doctest
import os
import sys
from importlib import metadata

from sphinx_gallery.sorting import ExplicitOrder

# Build from the source tree even when fungrad is not installed in the
# environment that runs sphinx.
sys.path.insert(0, os.path.abspath(".."))

project = "fungrad"
author = "the fungrad developers"
copyright = "2025, the fungrad developers"
try:
    release = metadata.version("fungrad")
except metadata.PackageNotFoundError:
    release = "0.1.0"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
# No intersphinx: CI has no network.

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# examples/ holds the gallery's sources; sphinx-gallery turns them into
# auto_examples/, which is what the toctree points at.
exclude_patterns = ["_build", "examples", "Thumbs.db", ".DS_Store"]
nitpicky = False

# -- autodoc and napoleon ---------------------------------------------------
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# -- doctest ------------------------------------------------------------------
doctest_global_setup = """
import fungrad as fg
try:  # the PyTorch comparisons run where PyTorch is installed (as in CI)
    import torch
except ImportError:
    torch = None
"""
# Sphinx's default includes IGNORE_EXCEPTION_DETAIL, which would let an error
# message drift away from what the pages show; the errors page checks them.
doctest_default_flags = doctest.ELLIPSIS | doctest.DONT_ACCEPT_TRUE_FOR_1

# -- MyST -----------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# -- sphinx-gallery -------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py",  # execute every example, not only plot_*
    "abort_on_example_error": True,
    "matplotlib_animations": False,
    "download_all_examples": False,
    "image_scrapers": ("matplotlib",),
    "remove_config_comments": True,
    "show_memory": False,
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
html_title = f"fungrad {release}"
