"""The signed manifest: every file of a mirror's site, with size, SHA-256 and media type.

The bytes are canonical JSON (sorted keys, no insignificant whitespace, UTF-8, one final
newline), so the same content always gives the same bytes and the same signature input.

``retired`` names files that an earlier version published and this one no longer needs.
They stay on the mirror for the publish grace window, so readers holding an older page
still find what it links to; being listed, they are part of what the outlet signed.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import posixpath
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mirrorkit.errors import VerifyError

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.minisig"
FORMAT = 1

# The files a publish replaces in place (stage two).  Everything else is new or unchanged.
POINTERS = frozenset({"index.html", "mirrors.html", "mirrors.json", "rss.xml", "atom.xml"})

_SAFE_PATH = re.compile(r"^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$")


def check_path(path: str) -> str:
    """A site path is relative, normalized, and never climbs out of the site root."""
    if (
        not _SAFE_PATH.match(path)
        or posixpath.normpath(path) != path
        or any(part in (".", "..") for part in path.split("/"))
    ):
        raise ValueError(f"unsafe site path: {path!r}")
    return path


def media_type(path: str) -> str:
    if path.endswith(".minisig"):
        return "text/plain; charset=utf-8"
    kind, _ = mimetypes.guess_type(path)
    kind = kind or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "application/xml"):
        kind += "; charset=utf-8"
    if path.endswith("rss.xml"):
        kind = "application/rss+xml; charset=utf-8"
    elif path.endswith("atom.xml"):
        kind = "application/atom+xml; charset=utf-8"
    return kind


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    type: str


@dataclass(frozen=True)
class RetiredEntry:
    path: str
    size: int
    sha256: str
    since: datetime


@dataclass(frozen=True)
class MirrorEntry:
    name: str
    url: str


@dataclass(frozen=True)
class Manifest:
    outlet: str
    version: int
    created: datetime
    expires: datetime
    key_id: str
    mirror: str
    mirrors: tuple[MirrorEntry, ...]
    files: tuple[FileEntry, ...]
    previous: str | None = None
    retired: tuple[RetiredEntry, ...] = field(default=())

    def __post_init__(self) -> None:
        # One order for the same content, so equal manifests are equal values and bytes.
        object.__setattr__(self, "files", tuple(sorted(self.files, key=lambda f: f.path)))
        object.__setattr__(self, "retired", tuple(sorted(self.retired, key=lambda r: r.path)))

    def file(self, path: str) -> FileEntry | None:
        return self.by_path.get(path)

    @property
    def by_path(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "outlet": self.outlet,
            "version": self.version,
            "created": _ts(self.created),
            "expires": _ts(self.expires),
            "key_id": self.key_id,
            "mirror": self.mirror,
            "mirrors": [{"name": m.name, "url": m.url} for m in self.mirrors],
            "previous": self.previous,
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256, "type": f.type}
                for f in self.files
            ],
            "retired": [
                {"path": r.path, "size": r.size, "sha256": r.sha256, "since": _ts(r.since)}
                for r in self.retired
            ],
        }
        return (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse a manifest; raises :class:`VerifyError` on anything malformed."""
        try:
            doc = json.loads(data.decode("utf-8"))
            if doc.get("format") != FORMAT:
                raise ValueError(f"unknown manifest format {doc.get('format')!r}")
            files = tuple(
                FileEntry(check_path(f["path"]), int(f["size"]), str(f["sha256"]),
                          str(f["type"]))
                for f in doc["files"]
            )
            retired = tuple(
                RetiredEntry(check_path(r["path"]), int(r["size"]), str(r["sha256"]),
                             _parse_ts(r["since"]))
                for r in doc.get("retired", [])
            )
            return cls(
                outlet=str(doc["outlet"]),
                version=int(doc["version"]),
                created=_parse_ts(doc["created"]),
                expires=_parse_ts(doc["expires"]),
                key_id=str(doc["key_id"]),
                mirror=str(doc["mirror"]),
                mirrors=tuple(MirrorEntry(str(m["name"]), str(m["url"]))
                              for m in doc["mirrors"]),
                files=files,
                previous=doc.get("previous"),
                retired=retired,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise VerifyError(f"malformed manifest: {e}", where=MANIFEST_NAME) from e


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
