"""The publish stage: bring each mirror to a new version, never showing a broken copy.

- :mod:`.base`      the small storage interface every mirror backend implements
- :mod:`.local`     a directory mirror
- :mod:`.s3`        one backend for every S3-compatible store; vendors in ``providers.toml``
- :mod:`.providers` those vendor presets as typed values
- :mod:`.registry`  the built-in backends by config ``type``
- :mod:`.stage`     the two-stage publish (new files, then changed ones and the signed root)

The names below are loaded when first used, so that a command that only reads the
provider presets (``doctor``, loading a config) does not import boto3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mirrorkit.publish.base import Backend, ObjectInfo
    from mirrorkit.publish.registry import open_backend
    from mirrorkit.publish.stage import PublishResult, publish_all, publish_tree

_WHERE = {
    "Backend": "base", "ObjectInfo": "base", "open_backend": "registry",
    "PublishResult": "stage", "publish_all": "stage", "publish_tree": "stage",
}

__all__ = [
    "Backend",
    "ObjectInfo",
    "PublishResult",
    "open_backend",
    "publish_all",
    "publish_tree",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
