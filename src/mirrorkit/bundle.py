"""Where a publish reads a version from: a built version in the store, or a site tree.

A :class:`SiteSource` gives one mirror's signed root and signature, and the bytes of any
file or part that root names (checked against the hash that names it).  The build's
output is a :class:`StoreSource`: roots under ``builds/<version>/<mirror>/`` and every
other file a blob in the store, shared by all mirrors and versions that hold the same
bytes.  A :class:`TreeSource` is a plain directory holding a whole site with its
manifest and parts (a copy, a test fixture).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mirrorkit.errors import BuildError, MirrorkitError, StoreError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    PART_DIR,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    bin_of,
    decode_part,
    sha256_hex,
)
from mirrorkit.store import Store

# Files that can change at their path and carry no cache lifetime of their own.
DEFAULT_MAX_AGE = 300


class SiteSource(Protocol):
    label: str

    def root(self) -> bytes: ...

    def signature(self) -> bytes: ...

    def read(self, entry: FileEntry) -> bytes:
        """The file's bytes; raises :class:`MirrorkitError` if absent or not as listed."""
        ...

    def cached(self, entry: FileEntry) -> bytes | None:
        """The bytes if this source holds them with the listed hash, else None."""
        ...

    def max_age(self, entry: FileEntry) -> int | None:
        """Cache lifetime in seconds for a mutable file; None for immutable ones."""
        ...

    def lookup(self, path: str) -> bytes | None:
        """What a reader gets at ``path`` (for previews), or None."""
        ...


class StoreSource:
    """One mirror of a version built into the store."""

    def __init__(self, store: Store, root_dir: Path, mirror: str):
        self.store = store
        self.dir = root_dir
        self.mirror = mirror
        self.label = str(root_dir)

    def root(self) -> bytes:
        return _read_file(self.dir / MANIFEST_NAME)

    def signature(self) -> bytes:
        return _read_file(self.dir / SIGNATURE_NAME)

    def read(self, entry: FileEntry) -> bytes:
        return self.store.read_blob(entry.sha256, entry.size)

    def cached(self, entry: FileEntry) -> bytes | None:
        if not self.store.has_blob(entry.sha256):
            return None
        try:
            return self.store.read_blob(entry.sha256, entry.size)
        except StoreError:
            return None

    def max_age(self, entry: FileEntry) -> int | None:
        if not entry.mutable:
            return None
        found = (self.store.site_file(self.mirror, entry.path)
                 or self.store.site_file("", entry.path))
        return found.max_age if found else DEFAULT_MAX_AGE

    def lookup(self, path: str) -> bytes | None:
        if path in (MANIFEST_NAME, SIGNATURE_NAME):
            return self.root() if path == MANIFEST_NAME else self.signature()
        if path.startswith(PART_DIR + "/"):
            sha = path.removeprefix(PART_DIR + "/").removesuffix(".json")
            if self.store.has_blob(sha):
                return self.store.blob_path(sha).read_bytes()
            return None
        # The files table's groups this mirror serves (build: shared, its style's
        # outlet paths, its own), recorded by the build.
        groups = json.loads(self.store.meta(f"groups:{self.mirror}") or "null")
        found = next(filter(None, (self.store.site_file(g, path)
                                   for g in reversed(groups or ["", self.mirror]))), None)
        if found is None or found.retired is not None:
            return None
        return self.store.read_blob(found.sha256, found.size)


class TreeSource:
    """A directory holding a whole site: files at their paths, the manifest, its parts."""

    def __init__(self, tree: Path):
        self.tree = tree
        self.label = str(tree)

    def root(self) -> bytes:
        return _read_file(self.tree / MANIFEST_NAME)

    def signature(self) -> bytes:
        return _read_file(self.tree / SIGNATURE_NAME)

    def read(self, entry: FileEntry) -> bytes:
        data = _read_file(self.tree / entry.path)
        if len(data) != entry.size or sha256_hex(data) != entry.sha256:
            raise BuildError(f"{entry.path} does not match its manifest entry",
                             where=str(self.tree), hint="rebuild with 'mirrorkit build'")
        return data

    def cached(self, entry: FileEntry) -> bytes | None:
        try:
            return self.read(entry)
        except MirrorkitError:
            return None

    def max_age(self, entry: FileEntry) -> int | None:
        return DEFAULT_MAX_AGE if entry.mutable else None

    def lookup(self, path: str) -> bytes | None:
        try:
            return (self.tree / path).read_bytes()
        except OSError:
            return None


@dataclass(frozen=True)
class Bundle:
    """A built version: each mirror's signed root, and the store holding the files."""

    version: int
    path: Path
    mirrors: tuple[str, ...]
    store: Store

    @classmethod
    def open(cls, store: Store, path: Path, version: int) -> Bundle:
        mirrors = tuple(p.name for p in sorted(path.iterdir())
                        if (p / MANIFEST_NAME).is_file())
        return cls(version=version, path=path, mirrors=mirrors, store=store)

    def source(self, mirror: str) -> StoreSource:
        return StoreSource(self.store, self.path / mirror, mirror)

    def manifest(self, mirror: str) -> Manifest:
        return Manifest.from_bytes(self.source(mirror).root())


def bundle_entries(source: SiteSource, paths: Iterable[str], *,
                   retired: bool = False) -> list[FileEntry]:
    """The entries the source's root names at ``paths`` (files and parts, and with
    ``retired`` its retired files and previous parts; others are left out), each bin's
    part read once."""
    root = Manifest.from_bytes(source.root())
    wanted = set(paths)
    parts = root.parts + (root.previous_parts if retired else ())
    found = [p.entry() for p in parts if p.path in wanted]
    for index in sorted({bin_of(p, root.bins) for p in wanted}):
        ref = root.parts[index]
        found += [e for e in decode_part(source.read(ref.entry()), ref, index, root.bins)
                  if e.path in wanted and (retired or e.retired is None)]
    return found


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise BuildError(f"cannot read the bundle: {e.strerror or e}", where=str(path),
                         hint="rebuild with 'mirrorkit build'") from e
