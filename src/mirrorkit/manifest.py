"""The signed manifest: a small signed root over content-addressed parts.

``manifest.json`` (signed by ``manifest.json.minisig`` beside it) is the **root**.  It
carries the outlet, the mirror it is for, the version, created and expires times, the
hash of the previous root, the mirror list, the signing key id, and ``parts``: the
SHA-256 and size of each part, one per **bin**.  A part (``parts/<sha256>.json``) lists
the files whose path hashes into its bin::

    bin(path) = first 32 bits of SHA-256(path) >> (32 - log2(len(parts)))

so checking one page needs the root and one part, and a change to a few files changes a
few parts: the root stays small (a hash per bin) at any archive size, and a sync that adds
ten articles uploads a handful of small parts.  The number of bins is a power of two that
grows with the archive (:func:`choose_bins`); when it changes, every part changes once.

Every file entry has its path (relative to the site root), size, SHA-256, media type and
``mutable``: whether its content can change at that path.  Only content-addressed names
(images, the stylesheet, the parts) are immutable.  An entry with ``retired`` set is a
file an earlier version published and this one no longer needs: it stays on the mirror
for the publish grace window, so readers holding an older page still find what it links
to; being listed, it is part of what the outlet signed.  ``previous_parts`` names the
parts of the previous root that this one replaced: they stay one more version, so a
verifier that read the old root while this one went live still finds its parts.

An *offline root* (``offline`` true) is the root inside an offline copy (a zip a mirror
serves, see :mod:`mirrorkit.build.offline`): it names what the zip holds, and verifiers
judge it by its age, since a copy passed on is older by nature.

A *transition root* (``transition`` present) is a version's root signed at publish time
while files change in place: each listed path may still hold one of the contents given
there besides the one its part names (see :mod:`mirrorkit.publish.stage`).  Every root's
signature is also kept at ``signatures/<sha256 of the root>.minisig``
(:func:`signature_path`), written before the root, so a reader of any root finds its own.

The bytes are canonical JSON (sorted keys, no insignificant whitespace, UTF-8, one final
newline), so the same content always gives the same bytes and the same signature input.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from mirrorkit.errors import VerifyError

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.minisig"
PART_DIR = "parts"
SIGNATURE_DIR = "signatures"
FORMAT = 2

# Reads of signed data are capped before parsing: a root is a hash per bin (at most
# MAX_BINS), a signature a few lines.
MAX_BINS = 1024
MAX_ROOT_SIZE = 1024 * 1024
MAX_SIGNATURE_SIZE = 4096
# Files per bin the bin count aims at: parts of about 20 KiB.
BIN_TARGET = 128

# Segments of letters and digits of any script (an outlet's own paths may be Cyrillic)
# and ``._~-``; an object store's key may end in "/" (a page at an outlet's own path).
_SAFE_PATH = re.compile(r"^[\w.~-]+(/[\w.~-]+)*/?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_path(path: str) -> str:
    """A site path is relative, normalized, and never climbs out of the site root."""
    body = path.removesuffix("/")
    if (
        not _SAFE_PATH.fullmatch(path)
        or posixpath.normpath(body) != body
        or any(part in (".", "..") for part in body.split("/"))
    ):
        raise ValueError(f"unsafe site path: {path!r}")
    return path


def media_type(path: str) -> str:
    if path.endswith(".minisig"):
        return "text/plain; charset=utf-8"
    kind, _ = mimetypes.guess_type(path)
    if kind is None and "." not in path.rpartition("/")[2]:
        kind = "text/html"  # an outlet's own path without extension: a page (build/aliases)
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


def path_key(path: str) -> int:
    """The 32-bit number a path's bin is taken from (stored beside files for range reads)."""
    return int.from_bytes(hashlib.sha256(path.encode("utf-8")).digest()[:4], "big")


def bin_of(path: str, bins: int) -> int:
    return path_key(path) >> (32 - (bins.bit_length() - 1))


def bin_range(index: int, bins: int) -> tuple[int, int]:
    """The ``[low, high)`` range of :func:`path_key` values that fall into bin ``index``."""
    shift = 32 - (bins.bit_length() - 1)
    return index << shift, (index + 1) << shift


def choose_bins(files: int) -> int:
    """A power of two that keeps parts near BIN_TARGET files, at most MAX_BINS."""
    bins = 1
    while bins < MAX_BINS and files > bins * BIN_TARGET:
        bins *= 2
    return bins


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    type: str
    mutable: bool = True
    retired: datetime | None = None  # since when, if an earlier version's file kept a while
    # During a declared transition: other contents (sha256, size) the path may still hold.
    also: tuple[tuple[str, int], ...] = ()

    def same_content(self, other: FileEntry | None) -> bool:
        return other is not None and other.sha256 == self.sha256 and other.size == self.size

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256,
                               "type": self.type, "mutable": self.mutable}
        if self.retired is not None:
            doc["retired"] = _ts(self.retired)
        return doc


@dataclass(frozen=True)
class PartRef:
    """A part as the root names it: by content."""

    sha256: str
    size: int

    @property
    def path(self) -> str:
        return f"{PART_DIR}/{self.sha256}.json"

    def entry(self) -> FileEntry:
        return FileEntry(self.path, self.size, self.sha256, "application/json; charset=utf-8",
                         mutable=False)


@dataclass(frozen=True)
class MirrorEntry:
    name: str
    url: str


@dataclass(frozen=True)
class Manifest:
    """The signed root.  Its files are in its parts: see :func:`read_entries`."""

    outlet: str
    version: int
    created: datetime
    expires: datetime
    key_id: str
    mirror: str
    mirrors: tuple[MirrorEntry, ...]
    parts: tuple[PartRef, ...]
    previous: str | None = None
    previous_parts: tuple[PartRef, ...] = field(default=())
    # A transition root: paths being replaced in place, each with the contents it may
    # still hold until the final root of this version replaces this one.
    transition: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = field(default=())
    # An offline copy's root (the zip a mirror serves): a copy taken at some time, which
    # verifiers judge by its age, never as a mirror's rollback.
    offline: bool = False

    @property
    def bins(self) -> int:
        return len(self.parts)

    def part_for(self, path: str) -> PartRef:
        return self.parts[bin_of(path, self.bins)]

    def part_paths(self) -> set[str]:
        return {p.path for p in self.parts} | {p.path for p in self.previous_parts}

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
            "parts": [{"sha256": p.sha256, "size": p.size} for p in self.parts],
            "previous_parts": [{"sha256": p.sha256, "size": p.size}
                               for p in self.previous_parts],
        }
        if self.offline:
            doc["offline"] = True
        if self.transition:
            doc["transition"] = [
                {"path": path, "from": [{"sha256": sha, "size": size} for sha, size in froms]}
                for path, froms in self.transition
            ]
        return _canonical(doc)

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse a root; raises :class:`VerifyError` on anything malformed."""
        if len(data) > MAX_ROOT_SIZE:
            raise VerifyError(f"manifest is larger than {MAX_ROOT_SIZE} bytes",
                              where=MANIFEST_NAME)
        try:
            doc = json.loads(data.decode("utf-8"))
            if doc.get("format") != FORMAT:
                raise ValueError(f"unknown manifest format {doc.get('format')!r}")
            parts = tuple(_part_ref(p) for p in doc["parts"])
            bins = len(parts)
            if bins < 1 or bins > MAX_BINS or bins & (bins - 1):
                raise ValueError(f"{bins} parts: not a power of two up to {MAX_BINS}")
            return cls(
                outlet=str(doc["outlet"]),
                version=int(doc["version"]),
                created=_parse_ts(doc["created"]),
                expires=_parse_ts(doc["expires"]),
                key_id=str(doc["key_id"]),
                mirror=str(doc["mirror"]),
                mirrors=tuple(MirrorEntry(str(m["name"]), str(m["url"]))
                              for m in doc["mirrors"]),
                parts=parts,
                previous=doc.get("previous"),
                previous_parts=tuple(_part_ref(p) for p in doc.get("previous_parts", [])),
                transition=tuple(
                    (check_path(str(t["path"])),
                     tuple((r.sha256, r.size) for r in map(_part_ref, t["from"])))
                    for t in doc.get("transition", [])),
                offline=doc.get("offline", False) is True,
            )
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError,
                RecursionError) as e:
            raise VerifyError(f"malformed manifest: {str(e)[:300]}", where=MANIFEST_NAME) from e


def encode_part(entries: Iterable[FileEntry]) -> bytes:
    return _canonical({"files": [e.to_json() for e in sorted(entries, key=lambda e: e.path)]})


def decode_part(data: bytes, ref: PartRef, index: int, bins: int) -> list[FileEntry]:
    """A part's entries, once its bytes match ``ref`` and every path belongs in bin
    ``index``; raises :class:`VerifyError` otherwise."""
    where = ref.path
    if len(data) != ref.size or sha256_hex(data) != ref.sha256:
        raise VerifyError("part differs from what the signed root names", where=where)
    try:
        doc = json.loads(data.decode("utf-8"))
        entries = [_file_entry(f) for f in doc["files"]]
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError,
            RecursionError) as e:
        raise VerifyError(f"malformed part: {str(e)[:300]}", where=where) from e
    for entry in entries:
        if bin_of(entry.path, bins) != index:
            raise VerifyError(f"{entry.path} is not in this part's bin", where=where)
    return entries


def make_parts(entries: Iterable[FileEntry], bins: int | None = None,
               ) -> tuple[tuple[PartRef, ...], dict[str, bytes]]:
    """Split whole-site entries into parts: their refs in bin order, and their bytes by
    path.  The build does this incrementally; this is for whole sites (tests, archives)."""
    entries = list(entries)
    bins = bins or choose_bins(len(entries))
    grouped: list[list[FileEntry]] = [[] for _ in range(bins)]
    for entry in entries:
        grouped[bin_of(entry.path, bins)].append(entry)
    refs, data = [], {}
    for group in grouped:
        raw = encode_part(group)
        ref = PartRef(sha256_hex(raw), len(raw))
        refs.append(ref)
        data[ref.path] = raw
    return tuple(refs), data


def read_entries(root: Manifest, parts: Mapping[str, bytes | None],
                 ) -> tuple[dict[str, FileEntry], list[tuple[str, str]]]:
    """Every entry the root names through ``parts`` (bytes by part path, None if
    missing), with a transition root's other allowed contents as ``also``; and the
    problems met as ``(part path, what)``."""
    entries: dict[str, FileEntry] = {}
    problems: list[tuple[str, str]] = []
    for index, ref in enumerate(root.parts):
        data = parts.get(ref.path)
        if data is None:
            problems.append((ref.path, "part named by the signed root not found"))
            continue
        try:
            for entry in decode_part(data, ref, index, root.bins):
                if entry.path in entries:  # which one a mirror serves is anyone's guess
                    problems.append((ref.path, f"{entry.path} is named twice"))
                entries[entry.path] = entry
        except VerifyError as e:
            problems.append((ref.path, e.what))
    for path, froms in root.transition:
        if path in entries:
            entries[path] = replace(entries[path], also=froms)
    return entries, problems


def signature_path(root: bytes) -> str:
    """Where a root's signature is also kept, by the root's hash: uploaded before the
    root, so whoever reads a root finds its signature (manifest.json.minisig follows the
    root a moment later, for readers of the standard name)."""
    return f"{SIGNATURE_DIR}/{sha256_hex(root)}.minisig"


def _part_ref(doc: Any) -> PartRef:
    sha = str(doc["sha256"])
    if not _HEX64.match(sha):
        raise ValueError(f"part hash {sha[:80]!r} is not a SHA-256")
    size = int(doc["size"])
    if size < 0:
        raise ValueError("negative part size")
    return PartRef(sha, size)


def _file_entry(doc: Any) -> FileEntry:
    size = int(doc["size"])
    sha = str(doc["sha256"])
    if size < 0 or not _HEX64.match(sha):
        raise ValueError(f"bad size or hash for {str(doc.get('path'))[:200]!r}")
    retired = doc.get("retired")
    return FileEntry(check_path(str(doc["path"])), size, sha, str(doc["type"]),
                     mutable=bool(doc.get("mutable", True)),
                     retired=_parse_ts(retired) if retired is not None else None)


def _canonical(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            + "\n").encode("utf-8")


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
