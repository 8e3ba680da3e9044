"""A SQLite database sent to object storage in pieces that follow what changed.

The store's database grows with the archive (about 10 kB an article: text and sanitized
HTML), while a sync changes a few hundred of its pages.  So it travels as:

- a **base**: the file in chunks of 32 MiB, each gzipped and named by its hash (a chunk
  that did not change since the last base is not sent again);
- **page deltas**: the pages that differ from what was sent last (found by comparing
  each page's digest with the digests kept from the last send), gzipped, one object per
  send.  Once the deltas add up to half the base, the next send writes a new base.

Receiving writes the base, applies the deltas in order, and checks the result's SHA-256
against the one recorded at send time.

The file is read under a write lock after a WAL checkpoint, so what is sent is one
consistent state of the database.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from mirrorkit.errors import StateError

BASE_CHUNK = 32 << 20
COMPACT_AT = 0.5   # deltas larger than this share of the base: the next send is a base
_READ = 1 << 20
_DIGEST = 16       # bytes of each page's BLAKE2b digest
_HEADER = struct.Struct(">4sIQ")  # magic, page size, file size
_MAGIC = b"MKD1"
_INDEX = struct.Struct(">I")
_KEY = re.compile(r"db/[0-9a-f]{64}\.gz")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PAGE_SIZES = frozenset(1 << n for n in range(9, 17))  # SQLite's: 512 to 65536

Put = Callable[[str, bytes], None]  # store an object (content-addressed: once is enough)
Get = Callable[[str], bytes]


@dataclass(frozen=True)
class DbRef:
    """The objects that make up one sent state of the database, and its checks."""

    base: tuple[str, ...]
    deltas: tuple[str, ...]
    page_size: int
    size: int
    sha256: str
    base_bytes: int
    delta_bytes: int

    @property
    def objects(self) -> tuple[str, ...]:
        return self.base + self.deltas

    def to_json(self) -> dict[str, Any]:
        return {"base": list(self.base), "deltas": list(self.deltas),
                "page_size": self.page_size, "size": self.size, "sha256": self.sha256,
                "base_bytes": self.base_bytes, "delta_bytes": self.delta_bytes}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DbRef:
        """Raises ValueError for a ref that mirrorkit would not have written (its objects
        are deleted by name once replaced, so only db/ objects may be named)."""
        ref = cls(tuple(map(str, raw["base"])), tuple(map(str, raw["deltas"])),
                  int(raw["page_size"]), int(raw["size"]), str(raw["sha256"]),
                  int(raw["base_bytes"]), int(raw["delta_bytes"]))
        if not all(_KEY.fullmatch(k) for k in ref.objects):
            raise ValueError("a database object not named db/<sha256>.gz")
        if ref.page_size not in _PAGE_SIZES or ref.size < 0 or not _SHA256.fullmatch(ref.sha256):
            raise ValueError("a database ref with an impossible page size, size or hash")
        return ref


def send(path: Path, previous: DbRef | None, digests: bytes | None, put: Put,
         ) -> tuple[DbRef, bytes]:
    """Send the database at ``path``: only the pages changed since ``previous`` (whose
    page digests are ``digests``), or a new base.  Returns its ref and page digests."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        db.execute("BEGIN IMMEDIATE")  # no writer until it is read
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size:
            raise StateError("the database is in use by another process", where=str(path))
        with path.open("rb") as f:
            new, sha, size = _digest(f, page_size)
            ref = None
            if previous is not None and digests is not None and (
                    previous.page_size == page_size):
                if previous.sha256 == sha:
                    ref = previous
                else:
                    ref = _send_delta(f, previous, digests, new, size, sha, put)
            if ref is None:
                ref = _send_base(f, previous, page_size, size, sha, put)
        db.execute("ROLLBACK")
    except (OSError, sqlite3.Error) as e:
        raise StateError(f"cannot read the database: {e}", where=str(path)) from e
    finally:
        db.close()
    return ref, new


def receive(ref: DbRef, get: Get, target: Path) -> bytes:
    """Write the database ``ref`` names to ``target`` (replacing it and any write-ahead
    log beside it); returns its page digests."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with tmp.open("w+b") as out:
            for key in ref.base:
                out.write(gzip.decompress(get(key)))
            for key in ref.deltas:
                _apply(out, gzip.decompress(get(key)), key)
            out.truncate(ref.size)
            out.flush()
            os.fsync(out.fileno())
            digests, sha, _size = _digest(out, ref.page_size)
        if sha != ref.sha256:
            raise StateError("the database brought together does not match its SHA-256",
                             where=str(target), hint="its objects were changed or lost")
        for suffix in ("-wal", "-shm"):  # a stale log would be replayed onto the new file
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        tmp.replace(target)
    except (OSError, gzip.BadGzipFile, EOFError, struct.error) as e:
        raise StateError(f"cannot bring the database down: {e}", where=str(target)) from e
    finally:
        tmp.unlink(missing_ok=True)
    return digests


def object_key(packed: bytes) -> str:
    return f"db/{hashlib.sha256(packed).hexdigest()}.gz"


def _digest(f: IO[bytes], page_size: int) -> tuple[bytes, str, int]:
    """Each page's digest, the file's SHA-256 and its size."""
    f.seek(0)
    whole = hashlib.sha256()
    digests = bytearray()
    size = 0
    while chunk := f.read(_READ):
        whole.update(chunk)
        size += len(chunk)
        view = memoryview(chunk)
        for start in range(0, len(chunk), page_size):
            digests += hashlib.blake2b(view[start:start + page_size],
                                       digest_size=_DIGEST).digest()
    return bytes(digests), whole.hexdigest(), size


def _send_delta(f: IO[bytes], previous: DbRef, old: bytes, new: bytes, size: int,
                sha: str, put: Put) -> DbRef | None:
    page_size = previous.page_size
    changed = [i for i in range(len(new) // _DIGEST)
               if new[i * _DIGEST:(i + 1) * _DIGEST] != old[i * _DIGEST:(i + 1) * _DIGEST]]
    body = bytearray(_HEADER.pack(_MAGIC, page_size, size))
    for index in changed:
        f.seek(index * page_size)
        body += _INDEX.pack(index) + f.read(page_size)
    packed = gzip.compress(bytes(body), compresslevel=6, mtime=0)
    if previous.delta_bytes + len(packed) > COMPACT_AT * previous.base_bytes:
        return None  # a new base costs less to bring down than base and deltas
    key = object_key(packed)
    put(key, packed)
    return replace(previous, deltas=(*previous.deltas, key), size=size, sha256=sha,
                   delta_bytes=previous.delta_bytes + len(packed))


def _send_base(f: IO[bytes], previous: DbRef | None, page_size: int, size: int, sha: str,
               put: Put) -> DbRef:
    f.seek(0)
    keys = []
    total = 0
    while chunk := f.read(BASE_CHUNK):
        packed = gzip.compress(chunk, compresslevel=3, mtime=0)
        key = object_key(packed)
        if previous is None or key not in previous.base:
            put(key, packed)
        keys.append(key)
        total += len(packed)
    return DbRef(tuple(keys), (), page_size, size, sha, total, 0)


def _apply(out: IO[bytes], body: bytes, key: str) -> None:
    magic, page_size, size = _HEADER.unpack_from(body)
    if magic != _MAGIC or page_size not in _PAGE_SIZES:
        raise StateError("not a page delta", where=key)
    position = _HEADER.size
    while position < len(body):
        (index,) = _INDEX.unpack_from(body, position)
        position += _INDEX.size
        out.seek(index * page_size)
        out.write(body[position:position + page_size])
        position += page_size
    out.truncate(size)
