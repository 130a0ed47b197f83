"""Sphinx configuration of the madspatial documentation (sphinx + myst-nb, furo theme).

Notebooks (the MyST markdown tutorials in ``tutorials/``, linked here as
``docs/tutorials``) are rendered without executing them: ``make docs`` stays fast and
needs no kernel. ``tests/test_tutorials.py`` executes them instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
os.environ.setdefault("MADSPATIAL_NO_PROGRESS", "1")

import madspatial  # noqa: E402

project = "madspatial"
author = "madspatial developers"
copyright = "madspatial developers"
release = madspatial.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_nb",  # MyST markdown pages and MyST notebooks (brings myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}  # .rst first: autosummary writes its stubs in that format
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/.ipynb_checkpoints", "**/README.md"]
root_doc = "index"

# --- MyST / myst-nb ---------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist", "substitution"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # tutorials are executed by tests/test_tutorials.py, not here
nb_merge_streams = True

# --- API reference ------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_typehints_format = "short"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes" as fields: no duplicate object descriptions
napoleon_use_param = True
# Our "Returns" sections are prose (what is returned and every key written), as in scanpy;
# napoleon's numpy parser would split them into "type : description" items. Rendered as a
# generic section they stay the reST they are written in.
napoleon_custom_sections = ["Returns", ("Raises", "params_style")]

# --- HTML ---------------------------------------------------------------------------
html_theme = "furo"
html_title = f"madspatial {release}"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": True}
