"""Sphinx configuration for leaderelect's API reference (`make docs`)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import leaderelect  # noqa: E402

project = "leaderelect"
author = "the leaderelect authors"
release = leaderelect.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
exclude_patterns = ["_build", "chaos-results.md", "reliability.md", "facts.md"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
html_theme = "alabaster"
