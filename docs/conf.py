"""Sphinx configuration of the torch-cs231n site (``make docs``).

The site is built from the checked-out code (the repository root goes first on ``sys.path``), with
warnings as errors. Pages generated at build time (one per operator, the benchmark and coverage tables,
the tools' figure tables) come from :mod:`cs231n_docs` (``docs/_ext``); the walk-throughs in
``examples/`` are executed by sphinx-gallery.

No network is needed: links to the torch, torchvision and Lightning docs (intersphinx) are made only when
``CS231N_DOCS_INTERSPHINX=1`` says the inventories can be downloaded. ``CS231N_DOCS_GALLERY=0`` skips
running the walk-throughs (their pages then show the code without output).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

project = "torch-cs231n"
author = "torch-cs231n contributors"
copyright = "torch-cs231n contributors"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "cs231n_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated"]  # _generated: tables included by the pages, not pages
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # the pages moved from the README start at ## after their title

# autodoc: the docstrings are torch style (Args, Shape, Returns, Examples::), read by napoleon
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # torch's and Lightning's own docstrings use roles of their sites
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Shape"]
napoleon_use_rtype = False

# intersphinx: only with the network (CS231N_DOCS_INTERSPHINX=1); offline, references to torch,
# torchvision and Lightning objects render as plain names instead of failing the build
intersphinx_mapping = (
    {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "torchvision": ("https://docs.pytorch.org/vision/stable", None),
        "lightning": ("https://lightning.ai/docs/pytorch/stable", None),
    }
    if os.environ.get("CS231N_DOCS_INTERSPHINX") == "1"
    else {}
)

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "plot_gallery": os.environ.get("CS231N_DOCS_GALLERY", "1") != "0",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 1,
    "inspect_global_variables": False,
    "capture_repr": (),  # a cell's last expression is a figure to show (scraped), not text
    "image_scrapers": ("cs231n_docs.figure_scraper", "matplotlib"),  # + the Figures plotting functions return
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
}

html_theme = "pydata_sphinx_theme"
html_title = "torch-cs231n"
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "navbar_end": ["navbar-icon-links"],
}
html_static_path: list[str] = []
html_show_sourcelink = True
