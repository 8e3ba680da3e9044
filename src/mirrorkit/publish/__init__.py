"""The publish stage: bring each mirror to a new version, never showing a broken copy.

- :mod:`.base`      the small storage interface every mirror backend implements
- :mod:`.local`     a directory mirror
- :mod:`.s3`        one backend for every S3-compatible store; vendors in ``providers.toml``
- :mod:`.registry`  the built-in backends by config ``type``
- :mod:`.stage`     the two-stage publish (new files, then changed ones and the signed root)
"""

from mirrorkit.publish.base import Backend, ObjectInfo
from mirrorkit.publish.registry import open_backend
from mirrorkit.publish.stage import (
    PublishResult,
    publish_all,
    publish_tree,
)

__all__ = [
    "Backend",
    "ObjectInfo",
    "PublishResult",
    "open_backend",
    "publish_all",
    "publish_tree",
]
