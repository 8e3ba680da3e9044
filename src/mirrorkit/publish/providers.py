"""The S3 provider presets of ``providers.toml`` as typed values.

Kept apart from the S3 backend so that reading a config (which checks a mirror's
``provider``) or printing a provider's notes never imports boto3.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from mirrorkit.errors import ConfigError


@dataclass(frozen=True)
class Provider:
    """One entry of ``providers.toml``; see that file for what each field means."""

    key: str
    name: str
    addressing_style: Literal["path", "virtual"]
    checksums: Literal["when_supported", "when_required"]
    conditional_writes: bool
    endpoint: str
    public_url: str
    notes: str = ""


@functools.cache
def providers() -> Mapping[str, Provider]:
    """The packaged provider presets, by key."""
    text = resources.files(__package__).joinpath("providers.toml").read_text("utf-8")
    return {key: Provider(key=key, **table) for key, table in tomllib.loads(text).items()}


def provider(key: str, *, mirror: str) -> Provider:
    try:
        return providers()[key]
    except KeyError:
        raise ConfigError(
            f"unknown S3 provider {key!r}", where=f"mirror {mirror}: provider",
            hint="one of " + ", ".join(sorted(providers())),
        ) from None


