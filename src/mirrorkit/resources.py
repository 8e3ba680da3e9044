"""Files shipped with mirrorkit: the default theme and the example config.

In a wheel they live inside the package (pyproject force-includes them); in a source
checkout (editable install) they are read from the repository's ``templates/`` and
``config/`` folders, so there is one copy of each.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def _find(packaged: str, in_repo: str) -> Path:
    inside = Path(str(files("mirrorkit"))) / packaged
    return inside if inside.exists() else _REPO / in_repo


def theme_dir() -> Path:
    return _find("templates", "templates")


def example_config() -> str:
    return _find("data/mirrorkit.toml", "config/mirrorkit.toml").read_text(encoding="utf-8")
