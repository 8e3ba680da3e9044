"""The embedded store: one SQLite database plus a content-addressed blob folder.

Layout under the state directory::

    mirrorkit.sqlite3     articles, HTTP validators, failed fetch attempts,
                          builds, publishes
    blobs/ab/abcdef...    image bytes, named by SHA-256, written once
    builds/<version>/     bundles written by the build stage

Every write is a transaction, and blobs are written to a temporary file and renamed, so a
process killed at any point leaves the store as it was before or after the write, never
in between.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from mirrorkit.errors import StoreError
from mirrorkit.models import Article, Media

_SCHEMA = """
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    authors TEXT NOT NULL,
    published TEXT,
    updated TEXT,
    language TEXT NOT NULL,
    text TEXT NOT NULL,
    html TEXT NOT NULL,
    media TEXT NOT NULL,
    summary TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS media (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS http_cache (
    url TEXT PRIMARY KEY,
    etag TEXT,
    last_modified TEXT,
    checked_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS builds (
    version INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    path TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS publishes (
    mirror TEXT NOT NULL,
    version INTEGER NOT NULL,
    published_at TEXT NOT NULL,
    PRIMARY KEY (mirror, version)
);
CREATE TABLE IF NOT EXISTS fetch_attempts (
    url TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    updated TEXT NOT NULL
);
"""

_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/avif": "avif",
}


def media_extension(media_type: str) -> str | None:
    """File extension for an image type mirrorkit stores, or None if it is not one."""
    return _EXTENSIONS.get(media_type.split(";")[0].strip().lower())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Store:
    """Articles, images and build records of one outlet."""

    def __init__(self, state_dir: Path, *, exclusive: bool = False):
        """``exclusive``: hold the state directory's lock, so that two runs (an overlapping
        cron job, say) never fetch, build or publish from one store at once."""
        self.dir = state_dir
        self._lock: IO[bytes] | None = None
        self.blob_dir = state_dir / "blobs"
        self.builds_dir = state_dir / "builds"
        try:
            self.blob_dir.mkdir(parents=True, exist_ok=True)
            self.builds_dir.mkdir(parents=True, exist_ok=True)
            if exclusive:
                self._lock = _acquire(state_dir / "lock")
            self._db = sqlite3.connect(state_dir / "mirrorkit.sqlite3", isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            if self._lock is not None:
                self._lock.close()
            raise StoreError(
                f"cannot open the store: {e}", where=str(state_dir),
                hint="check [state] dir and its permissions",
            ) from e

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP validators for conditional requests ------------------------------------

    def validators(self, url: str) -> tuple[str | None, str | None]:
        row = self._db.execute(
            "SELECT etag, last_modified FROM http_cache WHERE url = ?", (url,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def checked_at(self, url: str) -> datetime | None:
        """When ``url`` was last fetched or revalidated (with or without validators)."""
        row = self._db.execute(
            "SELECT checked_at FROM http_cache WHERE url = ?", (url,)
        ).fetchone()
        return _dt(row[0]) if row else None

    def set_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO http_cache (url, etag, last_modified, checked_at)"
            " VALUES (?, ?, ?, ?)",
            (url, etag, last_modified, _now()),
        )

    # -- failed fetch attempts ----------------------------------------------------------

    def attempts(self, url: str) -> int:
        """How many runs in a row ``url`` failed for now (see :meth:`record_attempt`)."""
        row = self._db.execute(
            "SELECT attempts FROM fetch_attempts WHERE url = ?", (url,)
        ).fetchone()
        return int(row[0]) if row else 0

    def record_attempt(self, url: str, error: str) -> int:
        """Count one more run in which ``url`` failed for now; returns the new count."""
        self._db.execute(
            "INSERT INTO fetch_attempts (url, attempts, last_error, updated)"
            " VALUES (?, 1, ?, ?) ON CONFLICT (url) DO UPDATE SET"
            " attempts = attempts + 1, last_error = excluded.last_error,"
            " updated = excluded.updated",
            (url, error, _now()),
        )
        return self.attempts(url)

    def clear_attempts(self, url: str) -> None:
        self._db.execute("DELETE FROM fetch_attempts WHERE url = ?", (url,))

    # -- articles -----------------------------------------------------------------------

    def content_hash(self, url: str) -> str | None:
        row = self._db.execute(
            "SELECT content_hash FROM articles WHERE url = ?", (url,)
        ).fetchone()
        return row[0] if row else None

    def article_times(self, url: str) -> tuple[datetime | None, datetime | None] | None:
        """``(published, updated)`` of a stored article, or None if it is not stored."""
        row = self._db.execute(
            "SELECT published, updated FROM articles WHERE url = ?", (url,)
        ).fetchone()
        return (_dt(row[0]), _dt(row[1])) if row else None

    def save_article(self, article: Article) -> bool:
        """Insert or update; returns True if the article is new or its content changed."""
        digest = article.content_hash
        if self.content_hash(article.url) == digest:
            return False
        now = _now()
        self._db.execute(
            "INSERT OR REPLACE INTO articles (id, url, source, title, authors, published,"
            " updated, language, text, html, media, summary, content_hash, fetched_at,"
            " changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                article.id, article.url, article.source, article.title,
                json.dumps(list(article.authors), ensure_ascii=False),
                _iso(article.published), _iso(article.updated), article.language,
                article.text, article.html, json.dumps(list(article.media)),
                article.summary, digest, now, now,
            ),
        )
        return True

    def articles(self) -> list[Article]:
        """All stored articles, newest first."""
        rows = self._db.execute(
            "SELECT id, url, source, title, authors, published, updated, language, text,"
            " html, media, summary FROM articles"
            " ORDER BY COALESCE(published, updated, fetched_at) DESC, id"
        ).fetchall()
        return [
            Article(
                id=r[0], url=r[1], source=r[2], title=r[3], authors=tuple(json.loads(r[4])),
                published=_dt(r[5]), updated=_dt(r[6]), language=r[7], text=r[8],
                html=r[9], media=tuple(json.loads(r[10])), summary=r[11],
            )
            for r in rows
        ]

    def last_change(self) -> datetime | None:
        row = self._db.execute("SELECT MAX(changed_at) FROM articles").fetchone()
        return _dt(row[0])

    # -- media blobs --------------------------------------------------------------------

    def put_media(self, data: bytes, media_type: str) -> Media:
        ext = media_extension(media_type)
        if ext is None:
            raise StoreError(f"not a stored image type: {media_type!r}")
        digest = hashlib.sha256(data).hexdigest()
        media = Media(name=f"{digest}.{ext}", sha256=digest, size=len(data),
                      media_type=media_type.split(";")[0].strip().lower())
        path = self.blob_path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
        self._db.execute(
            "INSERT OR IGNORE INTO media (name, sha256, size, media_type) VALUES (?, ?, ?, ?)",
            (media.name, media.sha256, media.size, media.media_type),
        )
        return media

    def media(self, name: str) -> Media | None:
        row = self._db.execute(
            "SELECT name, sha256, size, media_type FROM media WHERE name = ?", (name,)
        ).fetchone()
        return Media(*row) if row else None

    def blob_path(self, sha256: str) -> Path:
        return self.blob_dir / sha256[:2] / sha256

    # -- builds and publishes -----------------------------------------------------------

    def last_version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM builds").fetchone()
        return int(row[0] or 0)

    def build_path(self, version: int) -> Path | None:
        row = self._db.execute(
            "SELECT path FROM builds WHERE version = ?", (version,)
        ).fetchone()
        return Path(row[0]) if row else None

    def build_created(self, version: int) -> datetime | None:
        row = self._db.execute(
            "SELECT created FROM builds WHERE version = ?", (version,)
        ).fetchone()
        return _dt(row[0]) if row else None

    def record_build(self, version: int, created: datetime, path: Path) -> None:
        self._db.execute(
            "INSERT INTO builds (version, created, path) VALUES (?, ?, ?)",
            (version, created.isoformat(), str(path)),
        )

    def record_publish(self, mirror: str, version: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO publishes (mirror, version, published_at) VALUES (?, ?, ?)",
            (mirror, version, _now()),
        )

    def published_version(self, mirror: str) -> int:
        row = self._db.execute(
            "SELECT MAX(version) FROM publishes WHERE mirror = ?", (mirror,)
        ).fetchone()
        return int(row[0] or 0)


def _acquire(path: Path) -> IO[bytes]:
    handle = path.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        handle.close()
        raise StoreError(
            "another mirrorkit run is using this state directory", where=str(path.parent),
            hint="wait for it to finish; the lock goes with the process, even after kill -9",
        ) from e
    return handle


def write_atomic(
    path: Path, data: bytes, mode: int | None = None, tmp_dir: Path | None = None
) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file.

    The temporary file goes beside ``path``, or into ``tmp_dir`` (which must exist and be
    on the same filesystem, so that the final rename is atomic).
    """
    fd, tmp = tempfile.mkstemp(dir=tmp_dir if tmp_dir is not None else path.parent,
                               prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def iter_files(root: Path) -> Iterator[Path]:
    """Every entry under ``root`` that is not a plain directory, in a stable order.

    A link to a directory is listed as an entry rather than followed, so that what it
    points at is never hidden from (nor walked twice by) whoever checks the listing.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        linked = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        for name in sorted(filenames + linked):
            yield Path(dirpath) / name
