"""The embedded store: one SQLite database plus a content-addressed blob folder.

Layout under the state directory::

    mirrorkit.sqlite3     articles, HTTP validators, failed fetch attempts, the built
                          site (path -> blob, per mirror), builds, publishes
    blobs/ab/abcdef...    images and built files, named by SHA-256, written once and
                          shared by every mirror and version that holds the same bytes
    builds/<version>/     each mirror's signed root (manifest.json + signature)

Every write is a transaction, and blobs are written to a temporary file and renamed, so a
process killed at any point leaves the store as it was before or after the write, never
in between.  The schema carries a version (``PRAGMA user_version``); an older store is
migrated when opened.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from mirrorkit.errors import StoreError
from mirrorkit.manifest import FileEntry, PartRef, path_key
from mirrorkit.models import Article, Media

# Each entry brings a store from the version before it to its own (SQLite user_version).
# A store is opened at the newest version; an older one is migrated in one transaction.
_MIGRATIONS: tuple[str, ...] = (
    # 1: the original tables.
    """
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
""",
    # 2: incremental builds.  ``seq`` numbers articles in the order they arrived (archive
    # pages are stable groups of it); ``rev`` counts changes, so a build finds what changed
    # since the last one with an index, not a scan.  ``files`` is the built site: by
    # mirror ('' for files every mirror shares) and path, the blob holding the bytes.
    """
ALTER TABLE articles ADD COLUMN seq INTEGER;
ALTER TABLE articles ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
UPDATE articles SET seq = (SELECT COUNT(*) FROM articles b
    WHERE b.fetched_at < articles.fetched_at
       OR (b.fetched_at = articles.fetched_at AND b.id <= articles.id));
UPDATE articles SET rev = seq;
CREATE UNIQUE INDEX articles_seq ON articles (seq);
CREATE INDEX articles_rev ON articles (rev);
CREATE INDEX articles_when ON articles (COALESCE(published, updated, fetched_at) DESC, id);
ALTER TABLE builds ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
ALTER TABLE builds ADD COLUMN inputs TEXT NOT NULL DEFAULT '';
CREATE TABLE files (
    mirror TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    type TEXT NOT NULL,
    mutable INTEGER NOT NULL,
    max_age INTEGER NOT NULL,
    path_key INTEGER NOT NULL,
    retired TEXT,
    PRIMARY KEY (mirror, path)
);
CREATE INDEX files_key ON files (mirror, path_key);
CREATE INDEX files_sha ON files (sha256);
CREATE INDEX files_retired ON files (retired) WHERE retired IS NOT NULL;
CREATE TABLE garbage (sha256 TEXT PRIMARY KEY, since TEXT NOT NULL);
CREATE TABLE archive_pages (
    page INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    first TEXT,
    last TEXT
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE parts (
    mirror TEXT NOT NULL,
    bin INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (mirror, bin)
);
CREATE INDEX parts_sha ON parts (sha256);
""",
    # 3: deduplication by canonical URL.  An article is stored under its page's canonical
    # URL; every other URL a source named it by is an alias of that one, so a source
    # that names it so again finds it stored.
    """
CREATE TABLE aliases (
    url TEXT PRIMARY KEY,
    article_url TEXT NOT NULL
);
""",
    # 4: the outlet's own paths on the mirrors (build/aliases.py): which article holds
    # each, per style of mirror; '' when two articles claimed it (then neither does).
    """
CREATE TABLE origin_paths (
    style TEXT NOT NULL,
    path TEXT NOT NULL,
    article TEXT NOT NULL,
    PRIMARY KEY (style, path)
);
""",
)
SCHEMA_VERSION = len(_MIGRATIONS)

_WHEN = "COALESCE(published, updated, fetched_at)"
# Composed from constants only; every value goes in as a parameter.
_UNNUMBERED = "SELECT id FROM articles WHERE seq IS NULL ORDER BY " + _WHEN + ", id"  # noqa: S608
_SELECT_ARTICLES = (
    "SELECT id, url, source, title, authors, published, updated, language, text, html,"  # noqa: S608
    f" media, summary, seq, {_WHEN} FROM articles"
)

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


@dataclass(frozen=True)
class SiteFile:
    """A built file: where it goes on a mirror, and the blob that holds it."""

    path: str
    sha256: str
    size: int
    type: str
    mutable: bool
    max_age: int  # Cache-Control max-age; immutable files are cached for good
    retired: datetime | None = None

    def entry(self) -> FileEntry:
        return FileEntry(self.path, self.size, self.sha256, self.type, self.mutable,
                         self.retired)


class BlobSource(Protocol):
    """Where blobs missing from this disk can be had (the state in object storage)."""

    def fetch_blob(self, sha256: str) -> bytes | None: ...


class Store:
    """Articles, images and the built site of one outlet.

    Safe to share between threads: every statement runs under one lock.  Every SQLite
    error leaves as :class:`~mirrorkit.errors.StoreError`.
    """

    def __init__(self, state_dir: Path, *, exclusive: bool = False):
        """``exclusive``: hold the state directory's lock, so that two runs (an overlapping
        cron job, say) never fetch, build or publish from one store at once."""
        self.dir = state_dir
        self._lock: IO[bytes] | None = None
        self._mutex = threading.RLock()
        self.blob_dir = state_dir / "blobs"
        self.builds_dir = state_dir / "builds"
        # For a state kept in object storage (mirrorkit.state): blobs missing here are
        # read from ``remote``; what this run stored and dropped travels back with it.
        self.remote: BlobSource | None = None
        self.stored_blobs: set[str] = set()
        self.dropped_blobs: set[str] = set()
        try:
            self.blob_dir.mkdir(parents=True, exist_ok=True)
            self.builds_dir.mkdir(parents=True, exist_ok=True)
            if exclusive:
                self._lock = lock_state_dir(state_dir)
            self._db = sqlite3.connect(state_dir / "mirrorkit.sqlite3", isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._migrate()
        except (OSError, sqlite3.Error) as e:
            if self._lock is not None:
                self._lock.close()
            raise StoreError(
                f"cannot open the store: {e}", where=str(state_dir),
                hint="check [state] dir and its permissions",
            ) from e

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store has schema version {version}, newer than this mirrorkit's"
                f" {SCHEMA_VERSION}", where=str(self.dir), hint="upgrade mirrorkit")
        for number in range(version, SCHEMA_VERSION):
            # One transaction per step: a kill leaves the store at one version or the next.
            self._db.executescript(
                "BEGIN IMMEDIATE;\n" + _MIGRATIONS[number]
                + f"\nPRAGMA user_version = {number + 1};\nCOMMIT;")

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one way statements run -----------------------------------------------------

    def _q(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._mutex:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise _store_error(e, self.dir) from e

    def _one(self, sql: str, params: Sequence[object] = ()) -> tuple[Any, ...] | None:
        rows = self._q(sql, params)
        return rows[0] if rows else None

    def _many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with self._mutex:
            try:
                self._db.executemany(sql, rows)
            except sqlite3.Error as e:
                raise _store_error(e, self.dir) from e

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside happen together or not at all (also after kill -9)."""
        with self._mutex:
            self._q("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            self._q("COMMIT")

    # -- HTTP validators for conditional requests ------------------------------------

    def validators(self, url: str) -> tuple[str | None, str | None]:
        row = self._one("SELECT etag, last_modified FROM http_cache WHERE url = ?", (url,))
        return (row[0], row[1]) if row else (None, None)

    def checked_at(self, url: str) -> datetime | None:
        """When ``url`` was last fetched or revalidated (with or without validators)."""
        row = self._one("SELECT checked_at FROM http_cache WHERE url = ?", (url,))
        return _dt(row[0]) if row else None

    def set_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        self._q(
            "INSERT OR REPLACE INTO http_cache (url, etag, last_modified, checked_at)"
            " VALUES (?, ?, ?, ?)",
            (url, etag, last_modified, _now()),
        )

    # -- failed fetch attempts ----------------------------------------------------------

    def attempts(self, url: str) -> int:
        """How many runs in a row ``url`` failed for now (see :meth:`record_attempt`)."""
        row = self._one("SELECT attempts FROM fetch_attempts WHERE url = ?", (url,))
        return int(row[0]) if row else 0

    def record_attempt(self, url: str, error: str) -> int:
        """Count one more run in which ``url`` failed for now; returns the new count."""
        self._q(
            "INSERT INTO fetch_attempts (url, attempts, last_error, updated)"
            " VALUES (?, 1, ?, ?) ON CONFLICT (url) DO UPDATE SET"
            " attempts = attempts + 1, last_error = excluded.last_error,"
            " updated = excluded.updated",
            (url, error, _now()),
        )
        return self.attempts(url)

    def clear_attempts(self, url: str) -> None:
        self._q("DELETE FROM fetch_attempts WHERE url = ?", (url,))

    # -- articles -----------------------------------------------------------------------

    def content_hash(self, url: str) -> str | None:
        row = self._one("SELECT content_hash FROM articles WHERE url = ?", (url,))
        return row[0] if row else None

    def stored_url(self, url: str) -> str | None:
        """The URL the article named by ``url`` (itself or an alias) is stored under."""
        row = self._one(
            "SELECT url FROM articles WHERE url = COALESCE("
            "(SELECT article_url FROM aliases WHERE url = ?), ?)", (url, url))
        return str(row[0]) if row else None

    def article_times(self, url: str) -> tuple[datetime | None, datetime | None] | None:
        """``(published, updated)`` of the article ``url`` names (itself or by an alias),
        or None if it is not stored."""
        row = self._one(
            "SELECT published, updated FROM articles WHERE url = COALESCE("
            "(SELECT article_url FROM aliases WHERE url = ?), ?)", (url, url))
        return (_dt(row[0]), _dt(row[1])) if row else None

    def article(self, url: str) -> Article | None:
        """The article stored under ``url`` (its own URL, not an alias), if any."""
        rows = self._q(_SELECT_ARTICLES + " WHERE url = ?", (url,))
        return _article(rows[0]) if rows else None

    def add_alias(self, url: str, article_url: str) -> None:
        """Record ``url`` as another name of the stored article ``article_url``."""
        if url != article_url:
            self._q("INSERT INTO aliases (url, article_url) VALUES (?, ?) ON CONFLICT (url)"
                    " DO UPDATE SET article_url = excluded.article_url", (url, article_url))

    def save_article(self, article: Article, alias: str | None = None) -> bool:
        """Insert or update; returns True if the article is new or its content changed.

        ``alias``: another URL that names the article (the one a source gave, when the
        page's canonical URL differs), recorded even if the content did not change.

        A new article gets its ``seq`` from the next build (:meth:`number_articles`); a
        changed one keeps its own.  Either way it takes the next ``rev``, which is how the
        build finds it.
        """
        digest = article.content_hash
        with self._mutex:
            if alias is not None:
                self.add_alias(alias, article.url)
            if self.content_hash(article.url) == digest:
                return False
            now = _now()
            self._q(
                "INSERT INTO articles (id, url, source, title, authors, published,"
                " updated, language, text, html, media, summary, content_hash, fetched_at,"
                " changed_at, seq, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " NULL, (SELECT COALESCE(MAX(rev), 0) + 1 FROM articles))"
                " ON CONFLICT (id) DO UPDATE SET url = excluded.url, source = excluded.source,"
                " title = excluded.title, authors = excluded.authors,"
                " published = excluded.published, updated = excluded.updated,"
                " language = excluded.language, text = excluded.text, html = excluded.html,"
                " media = excluded.media, summary = excluded.summary,"
                " content_hash = excluded.content_hash, fetched_at = excluded.fetched_at,"
                " changed_at = excluded.changed_at, rev = excluded.rev",
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
        """All stored articles, newest first (for export and tests; builds stream)."""
        return list(self.iter_articles())

    def iter_articles(self, batch: int = 500) -> Iterator[Article]:
        """All stored articles, newest first, read a batch at a time."""
        after: tuple[str, str] | None = None
        while True:
            where = f" WHERE ({_WHEN}, id) < (?, ?)" if after else ""
            rows = self._q(_SELECT_ARTICLES + where + f" ORDER BY {_WHEN} DESC, id DESC LIMIT ?",
                           (*after, batch) if after else (batch,))
            if not rows:
                return
            yield from (_article(r) for r in rows)
            after = (rows[-1][-1], rows[-1][0])

    def newest(self, limit: int) -> list[Article]:
        """The ``limit`` newest articles by date (an index read, not a scan)."""
        rows = self._q(_SELECT_ARTICLES + f" ORDER BY {_WHEN} DESC, id LIMIT ?", (limit,))
        return [_article(r) for r in rows]

    def changed_since(self, rev: int) -> list[Article]:
        rows = self._q(_SELECT_ARTICLES + " WHERE rev > ? ORDER BY rev", (rev,))
        return [_article(r) for r in rows]

    def articles_by_seq(self, first: int, last: int) -> list[Article]:
        rows = self._q(_SELECT_ARTICLES + " WHERE seq BETWEEN ? AND ? ORDER BY seq",
                       (first, last))
        return [_article(r) for r in rows]

    def number_articles(self) -> int:
        """Give articles that have no ``seq`` yet the next numbers, oldest first by date,
        so a batch (a first import of a whole archive) fills archive pages in date order.
        Returns how many were numbered."""
        with self._mutex:
            rows = self._q(_UNNUMBERED)
            start = self.article_count()
            self._many("UPDATE articles SET seq = ? WHERE id = ?",
                       [(start + n, r[0]) for n, r in enumerate(rows, 1)])
        return len(rows)

    def article_stubs(self, first: int, last: int) -> list[Article]:
        """Articles ``first``..``last`` by seq with only what links and sitemaps need
        (id, url, title, dates, language): no body is read."""
        rows = self._q("SELECT id, url, title, published, updated, language, seq"
                       " FROM articles WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last))
        return [Article(id=r[0], url=r[1], source="", title=r[2], authors=(),
                        published=_dt(r[3]), updated=_dt(r[4]), language=r[5], text="",
                        html="", seq=int(r[6])) for r in rows]

    def article_count(self) -> int:
        row = self._one("SELECT COALESCE(MAX(seq), 0) FROM articles")
        return int(row[0]) if row else 0

    def last_rev(self) -> int:
        row = self._one("SELECT COALESCE(MAX(rev), 0) FROM articles")
        return int(row[0]) if row else 0

    def last_change(self) -> datetime | None:
        row = self._one("SELECT MAX(changed_at) FROM articles")
        return _dt(row[0]) if row else None

    # -- media blobs --------------------------------------------------------------------

    def put_media(self, data: bytes, media_type: str) -> Media:
        ext = media_extension(media_type)
        if ext is None:
            raise StoreError(f"not a stored image type: {media_type!r}")
        digest = self.put_blob(data, durable=True)
        media = Media(name=f"{digest}.{ext}", sha256=digest, size=len(data),
                      media_type=media_type.split(";")[0].strip().lower())
        self._q(
            "INSERT OR IGNORE INTO media (name, sha256, size, media_type) VALUES (?, ?, ?, ?)",
            (media.name, media.sha256, media.size, media.media_type),
        )
        return media

    def media(self, name: str) -> Media | None:
        row = self._one("SELECT name, sha256, size, media_type FROM media WHERE name = ?",
                        (name,))
        return Media(*row) if row else None

    def blob_path(self, sha256: str) -> Path:
        return self.blob_dir / sha256[:2] / sha256

    def put_blob(self, data: bytes, *, durable: bool = False) -> str:
        """Store ``data`` by its SHA-256 (once); returns the hash.

        ``durable`` fsyncs the blob (fetched images: the only copy).  Built files can be
        built again, and a kill -9 loses nothing the kernel holds, so they skip the fsync
        that would make a full build of a large archive take minutes.
        """
        digest = hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        with self._mutex:
            self.stored_blobs.add(digest)
        # One that is there with another size was damaged (a power cut, a full disk):
        # written again.
        if not _has_size(path, len(data)):
            _write_blob(path, data, durable=durable)
        return digest

    def read_blob(self, sha256: str, size: int) -> bytes:
        """A blob's bytes, checked against the hash and size that name it."""
        path = self.blob_path(sha256)
        try:
            with path.open("rb") as f:
                data = f.read(size + 1)
        except FileNotFoundError as e:
            fetched = self.remote.fetch_blob(sha256) if self.remote is not None else None
            if fetched is None or len(fetched) != size or (
                    hashlib.sha256(fetched).hexdigest() != sha256):
                raise StoreError("a built file is missing", where=str(path),
                                 hint="run 'mirrorkit build --full' to build every file "
                                      "again") from e
            _write_blob(path, fetched)
            return fetched
        except OSError as e:
            raise StoreError(f"cannot read a built file: {e.strerror or e}", where=str(path),
                             hint="run 'mirrorkit build --full' to build every file again"
                             ) from e
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            # Removed, so the next build writes it again.
            path.unlink(missing_ok=True)
            raise StoreError("a built file is damaged", where=str(path),
                             hint="run 'mirrorkit build --full' to build every file again")
        return data

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    # -- the built site -----------------------------------------------------------------

    def site_file(self, mirror: str, path: str) -> SiteFile | None:
        row = self._one("SELECT path, sha256, size, type, mutable, max_age, retired"
                        " FROM files WHERE mirror = ? AND path = ?", (mirror, path))
        return _site_file(row) if row else None

    def site_files(self, mirror: str, low: int = 0, high: int = 1 << 32) -> list[SiteFile]:
        """Files of ``mirror`` ('' for shared ones) whose path key is in ``[low, high)``."""
        rows = self._q("SELECT path, sha256, size, type, mutable, max_age, retired FROM files"
                       " WHERE mirror = ? AND path_key >= ? AND path_key < ?",
                       (mirror, low, high))
        return [_site_file(r) for r in rows]

    def site_file_count(self, mirror: str) -> int:
        row = self._one("SELECT COUNT(*) FROM files WHERE mirror = ?", (mirror,))
        return int(row[0]) if row else 0

    def site_paths(self, mirror: str) -> list[str]:
        return [r[0] for r in self._q("SELECT path FROM files WHERE mirror = ?"
                                      " AND retired IS NULL", (mirror,))]

    def put_site_file(self, mirror: str, file: SiteFile, now: datetime) -> bool:
        """Record ``file`` at its path; returns True if that changed what the path holds.

        The blob it replaces becomes garbage, collected once no file names it and the
        grace window has passed (:meth:`collect_garbage`).
        """
        old = self.site_file(mirror, file.path)
        if old is not None and old.sha256 == file.sha256 and old.retired is None and (
                old.max_age, old.mutable, old.type) == (file.max_age, file.mutable, file.type):
            return False
        if old is not None and old.sha256 != file.sha256:
            self._garbage(old.sha256, now)
        self._q("INSERT OR REPLACE INTO files (mirror, path, sha256, size, type, mutable,"
                " max_age, path_key, retired) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (mirror, file.path, file.sha256, file.size, file.type, int(file.mutable),
                 file.max_age, path_key(file.path)))
        return old is None or old.sha256 != file.sha256 or old.retired is not None

    def retire_site_file(self, mirror: str, path: str, now: datetime) -> None:
        self._q("UPDATE files SET retired = ? WHERE mirror = ? AND path = ?"
                " AND retired IS NULL", (_iso(now), mirror, path))

    def expire_retired(self, before: datetime) -> list[tuple[str, str]]:
        """Forget retired files retired before ``before``; returns ``(mirror, path)``."""
        rows = self._q("SELECT mirror, path, sha256 FROM files WHERE retired IS NOT NULL"
                       " AND retired < ?", (_iso(before),))
        for mirror, path, sha in rows:
            self._q("DELETE FROM files WHERE mirror = ? AND path = ?", (mirror, path))
            self._garbage(sha, before)
        return [(r[0], r[1]) for r in rows]

    def drop_mirror(self, mirror: str, now: datetime) -> None:
        for (sha,) in self._q("SELECT sha256 FROM files WHERE mirror = ?", (mirror,)):
            self._garbage(sha, now)
        self._q("DELETE FROM files WHERE mirror = ?", (mirror,))
        self.set_parts(mirror, [], now)

    def origin_path_owner(self, style: str, path: str) -> str | None:
        """The article id holding an origin path: None if free, '' if contested."""
        row = self._one("SELECT article FROM origin_paths WHERE style = ? AND path = ?",
                        (style, path))
        return str(row[0]) if row else None

    def set_origin_path_owner(self, style: str, path: str, article: str) -> None:
        self._q("INSERT OR REPLACE INTO origin_paths (style, path, article)"
                " VALUES (?, ?, ?)", (style, path, article))

    def built_mirrors(self) -> list[str]:
        return [r[0] for r in self._q("SELECT DISTINCT mirror FROM parts")]

    def _garbage(self, sha256: str, now: datetime) -> None:
        self._q("INSERT OR REPLACE INTO garbage (sha256, since) VALUES (?, ?)",
                (sha256, _iso(now)))

    def add_garbage(self, sha256: str, now: datetime) -> None:
        self._garbage(sha256, now)

    def collect_garbage(self, before: datetime) -> int:
        """Delete blobs that became garbage before ``before`` and that no file, image or
        kept build names any more; returns how many went.  Costs what became garbage,
        not the size of the store."""
        rows = self._q("SELECT sha256 FROM garbage WHERE since < ?", (_iso(before),))
        removed = 0
        for (sha,) in rows:
            used = self._one(
                "SELECT 1 FROM files WHERE sha256 = ? UNION ALL"
                " SELECT 1 FROM parts WHERE sha256 = ? UNION ALL"
                " SELECT 1 FROM media WHERE sha256 = ? LIMIT 1", (sha, sha, sha))
            self._q("DELETE FROM garbage WHERE sha256 = ?", (sha,))
            if used is None:
                self.blob_path(sha).unlink(missing_ok=True)
                with self._mutex:
                    self.dropped_blobs.add(sha)
                removed += 1
        return removed

    # -- manifest parts -----------------------------------------------------------------

    def parts(self, mirror: str) -> list[PartRef]:
        """The current parts of ``mirror``'s manifest, in bin order."""
        return [PartRef(r[0], int(r[1])) for r in
                self._q("SELECT sha256, size FROM parts WHERE mirror = ? ORDER BY bin",
                        (mirror,))]

    def set_parts(self, mirror: str, parts: Sequence[PartRef], now: datetime) -> None:
        old = self.parts(mirror)
        self._q("DELETE FROM parts WHERE mirror = ?", (mirror,))
        self._many("INSERT INTO parts (mirror, bin, sha256, size) VALUES (?, ?, ?, ?)",
                   [(mirror, i, p.sha256, p.size) for i, p in enumerate(parts)])
        for ref in set(old) - set(parts):
            self._garbage(ref.sha256, now)

    # -- archive pages ------------------------------------------------------------------

    def set_archive_page(self, page: int, count: int, first: datetime | None,
                         last: datetime | None) -> None:
        self._q("INSERT OR REPLACE INTO archive_pages (page, count, first, last)"
                " VALUES (?, ?, ?, ?)", (page, count, _iso(first), _iso(last)))

    def archive_pages(self) -> list[tuple[int, int, datetime | None, datetime | None]]:
        return [(r[0], r[1], _dt(r[2]), _dt(r[3]))
                for r in self._q("SELECT page, count, first, last FROM archive_pages"
                                 " ORDER BY page DESC")]

    # -- small named values -------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._q("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def drop_meta(self, key: str) -> None:
        self._q("DELETE FROM meta WHERE key = ?", (key,))

    # -- builds and publishes -----------------------------------------------------------

    def last_version(self) -> int:
        row = self._one("SELECT MAX(version) FROM builds")
        return int(row[0] or 0) if row else 0

    def build_path(self, version: int) -> Path | None:
        row = self._one("SELECT path FROM builds WHERE version = ?", (version,))
        # By name under this store's builds folder: the store may have been brought here
        # from another machine (mirrorkit.state), where the folder had another path.
        return self.builds_dir / Path(row[0]).name if row else None

    def build_created(self, version: int) -> datetime | None:
        row = self._one("SELECT created FROM builds WHERE version = ?", (version,))
        return _dt(row[0]) if row else None

    def build_inputs(self, version: int) -> tuple[int, str] | None:
        """``(rev, inputs)`` a build was made from: the last article change it saw, and
        the fingerprint of the templates and config values it rendered with."""
        row = self._one("SELECT rev, inputs FROM builds WHERE version = ?", (version,))
        return (int(row[0]), str(row[1])) if row else None

    def record_build(self, version: int, created: datetime, path: Path, *, rev: int = 0,
                     inputs: str = "") -> None:
        self._q("INSERT INTO builds (version, created, path, rev, inputs)"
                " VALUES (?, ?, ?, ?, ?)",
                (version, created.isoformat(), str(path), rev, inputs))

    def forget_builds(self, up_to: int) -> None:
        self._q("DELETE FROM builds WHERE version <= ?", (up_to,))

    def record_publish(self, mirror: str, version: int) -> None:
        self._q(
            "INSERT OR REPLACE INTO publishes (mirror, version, published_at) VALUES (?, ?, ?)",
            (mirror, version, _now()),
        )

    def published_version(self, mirror: str) -> int:
        row = self._one("SELECT MAX(version) FROM publishes WHERE mirror = ?", (mirror,))
        return int(row[0] or 0) if row else 0


class StoreJournal:
    """A publish's memory of one mirror between runs (see :mod:`mirrorkit.publish.stage`)."""

    def __init__(self, store: Store, mirror: str):
        self.store = store
        self.prefix = f"publish:{mirror}:"

    def get(self, key: str) -> str | None:
        return self.store.meta(self.prefix + key)

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self.store.drop_meta(self.prefix + key)
        else:
            self.store.set_meta(self.prefix + key, value)


def _write_blob(path: Path, data: bytes, *, durable: bool = False) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, durable=durable)
    except OSError as e:
        raise StoreError(f"cannot write a blob: {e.strerror or e}", where=str(path)) from e


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _article(r: Sequence[Any]) -> Article:
    return Article(
        id=r[0], url=r[1], source=r[2], title=r[3], authors=tuple(json.loads(r[4])),
        published=_dt(r[5]), updated=_dt(r[6]), language=r[7], text=r[8],
        html=r[9], media=tuple(json.loads(r[10])), summary=r[11], seq=int(r[12] or 0),
    )


def _site_file(r: Sequence[Any]) -> SiteFile:
    return SiteFile(r[0], r[1], int(r[2]), r[3], bool(r[4]), int(r[5]), _dt(r[6]))


def _store_error(e: sqlite3.Error, where: Path) -> StoreError:
    full = isinstance(e, sqlite3.OperationalError) and "full" in str(e)
    return StoreError(f"store: {e}", where=str(where),
                      hint="free disk space" if full else None)


def lock_state_dir(state_dir: Path) -> IO[bytes]:
    """Hold the state directory for this process (until the handle is closed)."""
    path = state_dir / "lock"
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
    path: Path, data: bytes, mode: int | None = None, tmp_dir: Path | None = None, *,
    durable: bool = True,
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
            if durable:
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
    for relative in iter_relative(root):
        yield root / relative


def iter_relative(root: Path) -> Iterator[str]:
    """:func:`iter_files` as paths relative to ``root`` (``a/b.html``): one ``scandir``
    per directory, the file types it reports, no stat per file."""
    stack = [("", os.fspath(root))]
    while stack:
        prefix, directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                found = sorted(entries, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        subdirs = []
        for entry in found:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((prefix + entry.name + "/", entry.path))
            else:
                yield prefix + entry.name
        stack.extend(reversed(subdirs))
