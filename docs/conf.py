"""Sphinx configuration for the nfsuidspawner documentation (MyST Markdown).

Build: .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from traitlets import TraitType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nfsuidspawner.options import NFSUIDOptions

project = "nfsuidspawner"
author = "nfsuidspawner contributors"
copyright = "nfsuidspawner contributors"

extensions = ["myst_parser", "autodoc_traits"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_title = "nfsuidspawner"
html_theme_options = {"show_toc_level": 2}

autodoc_member_order = "bysource"


def own_traits_only(
    app: Any, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    """Show NFSUIDSpawner's own traits in the reference, not KubeSpawner's hundreds."""
    if isinstance(obj, TraitType) and obj.this_class is NFSUIDOptions:
        return None  # let autodoc decide, as for any documented member
    return True


def setup(app: Any) -> None:
    app.connect("autodoc-skip-member", own_traits_only)
