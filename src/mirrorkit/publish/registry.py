"""The built-in mirror backends, by the ``type`` a mirror names in the config.

This is the one place that lists them: a new kind of mirror is a :class:`Backend`
subclass plus one line here (and a run of the conformance suite).
"""

from __future__ import annotations

from collections.abc import Callable

from mirrorkit.config import MirrorConfig
from mirrorkit.errors import ConfigError
from mirrorkit.publish.base import Backend


def _local(mirror: MirrorConfig, concurrency: int) -> Backend:
    if mirror.path is None:
        raise ConfigError('required for type "local"', where=f"mirror {mirror.name}: path")
    from mirrorkit.publish.local import LocalBackend

    return LocalBackend(mirror.name, mirror.path)


def _s3(mirror: MirrorConfig, concurrency: int) -> Backend:
    from mirrorkit.publish.s3 import S3Backend  # boto3 is imported only when needed

    return S3Backend(mirror, concurrency=concurrency)


BACKENDS: dict[str, Callable[[MirrorConfig, int], Backend]] = {
    "local": _local,
    "s3": _s3,
}


def open_backend(mirror: MirrorConfig, concurrency: int = 8) -> Backend:
    """The backend for ``mirror``; close it (or use ``with``) when done."""
    try:
        factory = BACKENDS[mirror.type]
    except KeyError:
        raise ConfigError(
            f"unknown mirror type {mirror.type!r}", where=f"mirror {mirror.name}: type",
            hint="one of " + ", ".join(sorted(BACKENDS)),
        ) from None
    return factory(mirror, concurrency)
