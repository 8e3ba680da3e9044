"""A mirror that is a plain directory: a USB stick, a web server's document root, a share.

Every write goes to a temporary file in one dedicated folder, ``<root>/.mirrorkit-tmp/``
(same filesystem), and is renamed over its target, so a web server (or a reader copying
the folder) sees either the old or the new file, never a torn one, even if mirrorkit is
killed mid-write.  The folder is removed as soon as it is empty; :meth:`LocalBackend.list`
never reports it, and the leftovers of a killed write are removed only from there, by
:meth:`LocalBackend.discard_partial_writes`, which a real publish calls before its first
upload.  No other file under the root is ever removed except by :meth:`LocalBackend.delete`.

Files are world-readable (0644) so that a web server running as another user can serve
them.  Deleting a file also removes the directories it leaves empty.  :meth:`delete`
accepts any name that stays inside the root (an operator's ``read me.txt`` included);
``put``, ``get`` and ``head`` accept only safe site paths.

Media type and caching are properties of the web server in front, not of the files, so
this backend declares neither capability.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mirrorkit.errors import PublishConflictError, PublishError
from mirrorkit.manifest import check_path
from mirrorkit.publish.base import (
    DELETE,
    LIST,
    Backend,
    ObjectInfo,
    check_limit,
    conflict,
    md5_hex,
    publish_error,
)
from mirrorkit.store import write_atomic

FILE_MODE = 0o644
TMP_DIR = ".mirrorkit-tmp"  # below the root: where writes stage their temporary files
LOCK_FILE = ".mirrorkit-lock"  # below the root: held by the publisher, never listed


class LocalBackend(Backend):
    capabilities = frozenset({LIST, DELETE})

    def __init__(self, name: str, root: Path):
        self.name = name
        self.root = root
        # Writes in flight: the temporary folder is made by the first and removed by the
        # last, so that it exists only while this backend is writing.
        self._writing = 0
        self._writing_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalBackend({self.name!r}, {str(self.root)!r})"

    @property
    def tmp_dir(self) -> Path:
        return self.root / TMP_DIR

    def _target(self, path: str) -> Path:
        try:
            check_path(path)
        except ValueError as e:
            raise PublishError(str(e), where=f"mirror {self.name}") from e
        if path.endswith("/"):
            raise PublishError(f"a directory cannot hold a file at {path!r}",
                               where=f"mirror {self.name}")
        if path.split("/", 1)[0] in (TMP_DIR, LOCK_FILE):
            raise PublishError(f"reserved site path: {path!r}", where=f"mirror {self.name}")
        target = self.root / path
        # A directory on the way that is a link could lead out of the mirror.
        parent = target.parent
        while parent != self.root and not parent.is_symlink() and not parent.exists():
            parent = parent.parent
        if parent != self.root:
            try:
                if not parent.resolve().is_relative_to(self.root.resolve()):
                    raise PublishError(f"path leads out of the mirror through a link: {path!r}",
                                       where=f"mirror {self.name}")
            except OSError as e:
                raise publish_error(self.name, f"resolve {path}", e) from e
        return target

    def _inside(self, path: str) -> Path:
        """``root / path`` if that names something strictly inside the root, else an error.

        Any name the listing gave is accepted (spaces, non-ASCII, ...): what matters for
        deleting is only that the file stays inside the root.
        """
        target = self.root / path
        try:
            root = self.root.resolve()
            # The parent is resolved, not the file: a symlink is removed, not followed.
            where = target.parent.resolve() / target.name
            inside = (bool(path) and "\0" not in path and target.name not in ("", ".", "..")
                      and root in where.parents)
        except (OSError, ValueError, RuntimeError):
            inside = False
        if not inside:
            raise PublishError(f"path outside the mirror: {path!r}", where=f"mirror {self.name}")
        return target

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """A lock on ``<root>/.mirrorkit-lock`` for the whole publish: the directory's
        stand-in for conditional writes.  A second publisher fails at once."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # Non-blocking and through no link: a FIFO planted as the lock would hang the
            # open (here it fails at once), a link would create or lock a file elsewhere.
            handle = os.fdopen(os.open(self.root / LOCK_FILE, os.O_WRONLY | os.O_APPEND
                                       | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW, 0o644),
                               "ab")
        except OSError as e:
            raise publish_error(self.name, f"lock {self.root}", e) from e
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise PublishConflictError(
                    "another publisher is publishing to this directory",
                    where=f"mirror {self.name}: {self.root}",
                    hint="wait for it; one publisher (one state directory) per mirror") from e
            yield
        finally:
            handle.close()  # closing releases the lock, as a kill does

    def tag(self, path: str) -> str | None:
        data = self.get(path)
        return None if data is None else md5_hex(data)

    def put(self, path: str, data: bytes, media_type: str, *, cache: str,
            if_match: str | None = None, if_absent: bool = False) -> str:
        # Conditions hold under the lock that publishing() takes for the whole publish.
        if (if_match is not None or if_absent) and self.tag(path) != if_match:
            raise conflict(self.name, path)
        self._write(path, data)
        return md5_hex(data)

    def _write(self, path: str, data: bytes) -> None:
        target = self._target(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._writing_lock:
                self.tmp_dir.mkdir(parents=True, exist_ok=True)
                self._writing += 1
            try:
                write_atomic(target, data, mode=FILE_MODE, tmp_dir=self.tmp_dir)
            finally:
                with self._writing_lock:
                    self._writing -= 1
                    if self._writing == 0:
                        # Fails only if something else is in there; the next publish's
                        # discard_partial_writes removes it.
                        with contextlib.suppress(OSError):
                            self.tmp_dir.rmdir()
        except OSError as e:
            raise publish_error(self.name, f"write {path} under {self.root}", e) from e

    def discard_partial_writes(self) -> None:
        if not self.tmp_dir.exists() and not self.tmp_dir.is_symlink():
            return
        try:
            if self.tmp_dir.is_symlink() or not self.tmp_dir.is_dir():
                self.tmp_dir.unlink()
            else:
                shutil.rmtree(self.tmp_dir)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise publish_error(self.name, f"remove unfinished writes in {self.tmp_dir}",
                                e) from e

    def get(self, path: str, *, limit: int | None = None) -> bytes | None:
        target = self._target(path)
        try:
            # Only a regular file is one this backend wrote (it writes by renaming): a
            # FIFO planted at a site path would hang a blocking open, and a link could
            # show /dev/zero or any file of this machine.  Either reads as no file, so
            # publishing writes a true one over it.
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                return None
            raise publish_error(self.name, f"read {path} under {self.root}", e) from e
        try:
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    return None
                return check_limit(self.name, path, f.read(-1 if limit is None else limit + 1),
                                   limit)
        except OSError as e:
            raise publish_error(self.name, f"read {path} under {self.root}", e) from e

    def head(self, path: str) -> ObjectInfo | None:
        target = self._target(path)
        try:
            if not target.is_file():
                return None
            return ObjectInfo(path, target.stat().st_size)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise publish_error(self.name, f"stat {path} under {self.root}", e) from e

    def list(self) -> Iterator[ObjectInfo]:
        if not self.root.exists():
            return

        def fail(error: OSError) -> None:
            # os.walk skips unreadable directories silently; a partial listing would let
            # cleanup miss files, so stop instead.
            raise publish_error(self.name, f"list {self.root}", error) from error

        for dirpath, dirnames, filenames in os.walk(self.root, onerror=fail):
            base = Path(dirpath)
            if base == self.root:
                # mirrorkit's own temporary folder and lock are not part of the site.
                dirnames[:] = [d for d in dirnames if d != TMP_DIR]
                filenames = [f for f in filenames if f not in (TMP_DIR, LOCK_FILE)]
            dirnames.sort()
            # A link to a directory is an entry, as verify lists it (store.iter_files):
            # never walked into, and deleted as a stale object like any other.
            linked = [d for d in dirnames if (base / d).is_symlink()]
            for filename in sorted(filenames + linked):
                file = base / filename
                try:
                    size = file.lstat().st_size if filename in linked else file.stat().st_size
                except FileNotFoundError:
                    continue  # removed while we walked
                except OSError as e:
                    raise publish_error(self.name, f"stat {file}", e) from e
                yield ObjectInfo(file.relative_to(self.root).as_posix(), size)

    def delete(self, paths: Sequence[str]) -> None:
        for path in paths:
            target = self._inside(path)
            try:
                target.unlink(missing_ok=True)
            except OSError as e:
                raise publish_error(self.name, f"delete {path} under {self.root}", e) from e
            self._prune(target.parent)

    def _prune(self, directory: Path) -> None:
        """Remove ``directory`` and its parents while they are empty, up to the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or gone): either way, nothing more to prune
            directory = directory.parent
