"""The state in object storage, so that any machine can run an outlet's next sync.

With ``[state] url = "s3://BUCKET/PREFIX"``, a command that changes the store (fetch,
build, publish, sync) runs as::

    lease   take PREFIX/lease.json with a conditional write (If-None-Match on the very
            first run, else If-Match on the tag of an expired or released lease).  A lease
            that has not expired is another run's: this one exits 1 at once, naming the
            holder and when its lease ends.  The lease is renewed every third of its
            length while the run works; a killed run stops renewing, so the next run takes
            over at most ``lease`` later.
    pull    read PREFIX/state.json, the committed state, and bring its database and signed
            roots into ``dir`` (unless ``dir`` holds exactly that state already, as on a
            machine that ran the last sync).  Blobs (images, built pages, manifest parts)
            are not copied: one missing here is read from PREFIX/blobs/ when a publish
            needs it, and only then.
    work    on the local copy, as without a url.
    push    renew the lease (If-Match: proof it is still this run's), upload the blobs
            this run stored, the database pages it changed and the new roots, then state.json
            with If-Match on the tag read at pull: the commit.  Then what the commit no
            longer names goes (blobs the store dropped, the replaced database), and the
            lease is released.

A run stopped with SIGTERM (a pod evicted, a stopped service, a cancelled CI job) writes
back what it did and releases the lease, exiting 1; only a kill -9 leaves the lease to
end by itself.  A run that finds its lease lost at push writes nothing and exits 1; the
next run resumes from the last committed state (what the lost run published stays
consistent: each mirror commits its own signed root conditionally, and the next publish
plans from it).

Layout under the prefix::

    lease.json              who holds the state, until when
    state.json              the committed state: generation, database object, roots
    db/<sha256>.gz          the database: a base in chunks and page deltas (mirrorkit.dbsync)
    roots/<sha256>          the signed roots of the kept builds
    blobs/<sha256>          the store's blobs, gzipped, each uploaded once

Clocks: a lease's end is an absolute time, so runners' clocks must agree to within a
small part of ``lease`` (NTP does).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mirrorkit import dbsync
from mirrorkit.config import Config
from mirrorkit.dbsync import DbRef
from mirrorkit.errors import (
    LeaseError,
    MirrorkitError,
    PublishConflictError,
    PublishError,
    StateError,
    StoreError,
)
from mirrorkit.publish.base import Backend, md5_hex
from mirrorkit.store import Store, iter_relative, lock_state_dir, write_atomic

log = logging.getLogger("mirrorkit")

LEASE = "lease.json"
HEAD = "state.json"
DB_NAME = "mirrorkit.sqlite3"
# In the state dir: the state.json this copy was pushed as (absent while a run works on it).
MARKER = "remote-state.json"
PAGES = "remote-pages"  # the page digests of the database as last pushed or pulled
_NO_CACHE = "no-store"
_BLOB_CACHE = "private, max-age=31536000, immutable"
_STATE_LIMIT = 1 << 20
_UPLOADS = 8  # blobs uploaded at once
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HOLDER_MAX = 200


def holder_name() -> str:
    """Who a lease names: the host (a pod's name on Kubernetes), process and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Lease:
    holder: str
    taken: datetime
    expires: datetime

    def to_bytes(self) -> bytes:
        return json.dumps({"holder": self.holder, "taken": self.taken.isoformat(),
                           "expires": self.expires.isoformat()}, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Lease | None:
        """None for a lease that cannot be read: anyone may take it over."""
        try:
            raw = json.loads(data)
            return cls(_printable(str(raw["holder"])), _aware(raw["taken"]),
                       _aware(raw["expires"]))
        except (ValueError, KeyError, TypeError, OverflowError):
            return None


def _aware(value: str) -> datetime:
    """A lease's time; one without a zone is read as UTC (mirrorkit writes UTC), so that
    comparing it with the clock cannot fail."""
    when = datetime.fromisoformat(value)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _printable(text: str) -> str:
    """A holder's name as it may appear in a message: whoever wrote the lease object chose
    it, so no control characters (a forged line or terminal escape) and not too long."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned[:_HOLDER_MAX] + ("..." if len(cleaned) > _HOLDER_MAX else "")


@dataclass(frozen=True)
class Committed:
    """What state.json says: the state as the last successful run wrote it back."""

    generation: int = 0
    db: DbRef | None = None
    roots: dict[str, str] = field(default_factory=dict)  # builds/ path -> sha256

    def to_bytes(self, holder: str) -> bytes:
        return json.dumps({"format": 1, "generation": self.generation,
                           "db": self.db.to_json() if self.db else None,
                           "roots": self.roots, "by": holder,
                           "written": datetime.now(UTC).isoformat()},
                          sort_keys=True, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Committed:
        try:
            raw = json.loads(data)
            roots = {str(k): str(v) for k, v in dict(raw["roots"]).items()}
            for path, sha in roots.items():
                _check_root(path, sha)
            return cls(int(raw["generation"]), DbRef.from_json(raw["db"]), roots)
        except (ValueError, KeyError, TypeError) as e:
            raise StateError(f"state.json cannot be read: {e}", where=where,
                             hint="it is written only by mirrorkit; restore it or remove "
                                  "it to start again from the state dir") from e


class RemoteState:
    """One run's hold on the state in object storage (see the module docstring)."""

    def __init__(self, config: Config, *, holder: str | None = None):
        from mirrorkit.publish.s3 import S3Backend

        bucket = config.state.bucket() if config.state else None
        if config.state is None or bucket is None:
            raise StateError("no [state] url configured", where=str(config.path))
        self.url = config.state.url
        self.dir = config.state_dir
        self.length = config.state.lease
        self.holder = holder or holder_name()
        self.backend: Backend = S3Backend(bucket, max_attempts=3, connect_timeout=5,
                                          read_timeout=30)
        self._tag: str | None = None        # of our lease object
        self._head_tag: str | None = None   # of state.json as pulled (None: none yet)
        self._head = Committed()
        self._lost: str | None = None
        self._pages: bytes | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def close(self) -> None:
        self.backend.close()

    def _error(self, e: MirrorkitError) -> StateError:
        return StateError(e.what, where=f"state {self.url}", hint=e.hint)

    # -- the lease ------------------------------------------------------------------------

    def acquire(self) -> None:
        now = datetime.now(UTC)
        try:
            data = self.backend.get(LEASE, limit=_STATE_LIMIT)
            lease = Lease.from_bytes(data) if data is not None else None
            if lease is not None and lease.expires > now:
                raise self._held(lease)
            mine = Lease(self.holder, now, now + self.length)
            try:
                self._tag = self.backend.put(
                    LEASE, mine.to_bytes(), "application/json", cache=_NO_CACHE,
                    if_match=md5_hex(data) if data is not None else None,
                    if_absent=data is None)
            except PublishConflictError:
                # Another run took it between our read and our write: it is theirs.
                other = self.backend.get(LEASE, limit=_STATE_LIMIT)
                lease = Lease.from_bytes(other) if other is not None else None
                raise self._held(lease) from None
        except LeaseError:
            raise
        except MirrorkitError as e:
            raise self._error(e) from e
        if lease is not None and lease.expires > lease.taken:  # ended, not released
            log.warning("state %s: took over the lease of %s, which ended %s", self.url,
                        lease.holder, f"{lease.expires:%Y-%m-%d %H:%M:%S}Z")
        self._renewer = threading.Thread(target=self._renew_loop, name="state-lease",
                                         daemon=True)
        self._renewer.start()

    def _held(self, lease: Lease | None) -> LeaseError:
        who = lease.holder if lease else "another run"
        until = f" until {lease.expires:%Y-%m-%d %H:%M:%S}Z" if lease else ""
        return LeaseError(
            f"the lease is held by {who}{until}", where=f"state {self.url}",
            hint="another run of this outlet is at work; this one changed nothing. A run "
                 "that was killed holds the lease until it ends")

    def _renew(self, expires: datetime) -> None:
        """Extend (or with ``expires`` now, release) the lease, if it is still ours."""
        with self._lock:
            if self._lost or self._tag is None:
                return
            lease = Lease(self.holder, datetime.now(UTC), expires)
            try:
                self._tag = self.backend.put(LEASE, lease.to_bytes(), "application/json",
                                             cache=_NO_CACHE, if_match=self._tag)
            except PublishConflictError:
                self._lost = "another run took the lease over after it ended"
            except PublishError as e:
                log.warning("state %s: cannot renew the lease: %s", self.url, e)

    def _renew_loop(self) -> None:
        every = self.length.total_seconds() / 3
        while not self._stop.wait(every):
            self._renew(datetime.now(UTC) + self.length)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        with suppress(PublishError):
            self._renew(datetime.now(UTC))

    # -- pull -----------------------------------------------------------------------------

    def pull(self, *, reading: bool = False) -> None:
        """Bring the committed state into the state dir (if it is not there already).
        ``reading``: for a command that only reads the store, so the copy stays current."""
        try:
            data = self.backend.get(HEAD, limit=_STATE_LIMIT)
        except MirrorkitError as e:
            raise self._error(e) from e
        self.dir.mkdir(parents=True, exist_ok=True)
        marker = self.dir / MARKER
        if data is None:
            self._head_tag, self._head = None, Committed()
            (log.debug if reading else log.info)(
                "state %s: empty; starting from the state dir", self.url)
            marker.unlink(missing_ok=True)
            return
        self._head_tag = md5_hex(data)
        self._head = Committed.from_bytes(data, f"state {self.url}")
        current = marker.is_file() and marker.read_bytes() == data
        if current:
            try:
                self._pages = (self.dir / PAGES).read_bytes()
            except OSError:
                current = False
        if not reading:
            # From here the local copy changes: a run killed now must not trust it later.
            marker.unlink(missing_ok=True)
        if current:
            return
        marker.unlink(missing_ok=True)
        try:
            self._download_db()
            self._download_roots()
        except MirrorkitError as e:
            raise self._error(e) from e
        if reading:
            self._mark(data)
        # A command that only reads (export into a pipe) says it only when asked (-v).
        (log.debug if reading else log.info)(
            "state %s: generation %d brought down", self.url, self._head.generation)

    def _download_db(self) -> None:
        if self._head.db is None:
            raise StateError("state.json names no database", where=f"state {self.url}")
        self._pages = dbsync.receive(self._head.db, self._get, self.dir / DB_NAME)

    def _get(self, key: str) -> bytes:
        data = self.backend.get(key)
        if data is None:
            raise StateError(f"{key} is missing", where=f"state {self.url}",
                             hint="restore it, or remove state.json to start again "
                                  "from a state dir")
        return data

    def _mark(self, head: bytes) -> None:
        """This copy is the committed state ``head`` (for the next run on this disk)."""
        if self._pages is not None:
            write_atomic(self.dir / PAGES, self._pages, durable=False)
            write_atomic(self.dir / MARKER, head)

    def _download_roots(self) -> None:
        builds = self.dir / "builds"
        shutil.rmtree(builds, ignore_errors=True)
        for path, sha in self._head.roots.items():
            data = self._get(f"roots/{sha}")
            if _sha(data) != sha:
                raise StateError(f"roots/{sha} does not match its SHA-256",
                                 where=f"state {self.url}", hint="it was changed or damaged")
            target = builds / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    def fetch_blob(self, sha256: str) -> bytes | None:
        """A blob this disk lacks (the store checks it against its hash)."""
        try:
            packed = self.backend.get(f"blobs/{sha256}")
            return gzip.decompress(packed) if packed is not None else None
        except (PublishError, OSError, EOFError) as e:
            log.warning("state %s: cannot read blob %s: %s", self.url, sha256, e)
            return None

    # -- push -----------------------------------------------------------------------------

    def push(self, touched: set[str]) -> None:
        """Write the local state back: the commit of this run (see the module docstring).
        ``touched``: the blobs this run stored or dropped; those still here are uploaded
        (once: content-addressed), the others deleted after the commit."""
        self._renew(datetime.now(UTC) + self.length)
        if self._lost:
            raise LeaseError(
                f"lease lost: {self._lost}; nothing written back", where=f"state {self.url}",
                hint="the next run resumes from the last written state; make 'lease' "
                     "longer than a run takes")
        blobs = self.dir / "blobs"
        if self._head_tag is None:
            # The first push (a state dir moving into object storage): every blob goes.
            touched = touched | {Path(p).name for p in iter_relative(blobs)}
        here = {sha for sha in touched if (blobs / sha[:2] / sha).is_file()}
        try:
            with ThreadPoolExecutor(_UPLOADS) as pool:
                list(pool.map(lambda sha: self._put_once(sha, blobs / sha[:2] / sha),
                              sorted(here)))
            roots = {}
            for path in iter_relative(self.dir / "builds"):
                if path.startswith("."):
                    continue  # a build's temporary folder
                data = (self.dir / "builds" / path).read_bytes()
                roots[path] = sha = _sha(data)
                if sha not in self._head.roots.values():
                    self._put(f"roots/{sha}", data)
            db, self._pages = dbsync.send(self.dir / DB_NAME, self._head.db, self._pages,
                                          self._put)
            new = Committed(self._head.generation + 1, db, roots)
            head = new.to_bytes(self.holder)
            self._commit(head)
        except MirrorkitError as e:
            raise self._error(e) from e
        self._mark(head)
        # What the committed state no longer names.
        gone = [f"blobs/{sha}" for sha in sorted(touched - here)]
        gone += [f"roots/{sha}" for sha in sorted(set(self._head.roots.values())
                                                   - set(roots.values()))]
        if self._head.db is not None:
            gone += sorted(set(self._head.db.objects) - set(db.objects))
        try:
            self.backend.delete(gone)
        except PublishError as e:
            log.warning("state %s: %d stale objects left: %s", self.url, len(gone), e)

    def _commit(self, head: bytes) -> None:
        self._renew(datetime.now(UTC) + self.length)
        if self._lost:
            raise LeaseError(f"lease lost: {self._lost}; nothing written back",
                             where=f"state {self.url}",
                             hint="the next run resumes from the last written state")
        try:
            self.backend.put(HEAD, head, "application/json", cache=_NO_CACHE,
                             if_match=self._head_tag, if_absent=self._head_tag is None)
        except PublishConflictError as e:
            raise LeaseError("another run wrote the state meanwhile; nothing written back",
                             where=f"state {self.url}",
                             hint="the next run resumes from its state") from e

    def _put(self, key: str, data: bytes) -> None:
        self.backend.put(key, data, "application/octet-stream", cache=_BLOB_CACHE)

    def _put_once(self, sha: str, path: Path) -> None:
        """Upload a blob gzipped (pages and feeds shrink to a quarter; images barely
        grow), unless it is there already: it is named by its content."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return  # stored and dropped again by this run
        with suppress(PublishConflictError):
            self.backend.put(f"blobs/{sha}", gzip.compress(data, compresslevel=6, mtime=0),
                             "application/gzip", cache=_BLOB_CACHE, if_absent=True)


def _check_root(path: str, sha: str) -> None:
    """A root as state.json names it: a relative path inside builds/ and a SHA-256.  Who
    can write the bucket must not get to write files elsewhere on the runner."""
    parts = path.split("/")
    if (not _SHA256.fullmatch(sha) or "\\" in path or "\0" in path
            or any(p in ("", ".", "..") for p in parts)):
        raise ValueError(f"not a root inside builds/: {path[:100]!r}")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def open_store(config: Config, *, exclusive: bool = True) -> Iterator[Store]:
    """The store a command works on.  With ``[state] url`` and ``exclusive`` (a command
    that changes it): under the lease, brought down first and written back after (also
    after an error: every write of the store is a transaction, so what it holds is
    consistent and no finished work is lost).  Without ``exclusive``: brought down if this
    copy is not the committed state, then read (blobs not here are read from the bucket)."""
    remote_cfg = config.state.bucket() if config.state else None
    if remote_cfg is None:
        with Store(config.state_dir, exclusive=exclusive) as store:
            yield store
        return
    remote = RemoteState(config)
    if not exclusive:
        try:
            _pull_to_read(remote)
            with Store(config.state_dir) as store:
                store.remote = remote
                yield store
        finally:
            remote.close()
        return
    try:
        with _terminate_gracefully() as terminated:
            remote.acquire()
            try:
                remote.pull()
                with Store(config.state_dir, exclusive=True) as store:
                    store.remote = remote
                    try:
                        yield store
                    except (Exception, SystemExit):
                        _push_after_error(remote, store)
                        raise
                    except KeyboardInterrupt:  # Ctrl-C stops at once; SIGTERM does not
                        if not terminated.is_set():
                            raise
                        _push_after_error(remote, store)
                        raise SystemExit(1) from None
                remote.push(store.stored_blobs | store.dropped_blobs)
            finally:
                remote.release()
    finally:
        remote.close()


@contextmanager
def _terminate_gracefully() -> Iterator[threading.Event]:
    """While the lease is held, SIGTERM (a pod evicted or past its deadline, a stopped
    service, a cancelled CI job) ends the run as an error does (exit 1): what it did is
    written back and the lease released, instead of blocking the next runs until it ends.
    Inside an event loop (fetching) it stops the loop as Ctrl-C does, which asyncio
    handles cleanly; the yielded event tells that interrupt from a real Ctrl-C.  A second
    SIGTERM kills at once."""
    terminated = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield terminated
        return

    def stop(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        terminated.set()
        log.error("state: terminated; writing back what this run did, releasing the lease")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise SystemExit(1) from None  # a failed run, per the exit code contract
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield terminated
    finally:
        signal.signal(signal.SIGTERM, previous)


def _pull_to_read(remote: RemoteState) -> None:
    """Bring the committed state down for a command that only reads it, without the
    lease; while a run on this machine holds the state dir, its copy is read as it is."""
    remote.dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = lock_state_dir(remote.dir)
    except StoreError:
        return
    with lock:
        remote.pull(reading=True)


def _push_after_error(remote: RemoteState, store: Store) -> None:
    """Write back what a failed run did; a failure here is logged, the first one raised."""
    store.close()
    try:
        remote.push(store.stored_blobs | store.dropped_blobs)
    except MirrorkitError as e:
        log.error("%s", e)

