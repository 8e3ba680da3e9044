"""A mirror that is a plain directory: a USB stick, a web server's document root, a share.

Every write goes to a temporary file beside its target and is renamed over it, so a web
server (or a reader copying the folder) sees either the old or the new file, never a
torn one, even if mirrorkit is killed mid-write.  Files are world-readable (0644) so that
a web server running as another user can serve them.  Deleting a file also removes the
directories it leaves empty.  Temporary files of a write that was killed are removed by
the next :meth:`LocalBackend.list`, which every publish calls first.

Media type and caching are properties of the web server in front, not of the files, so
this backend declares neither capability.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from mirrorkit.errors import PublishError
from mirrorkit.manifest import check_path
from mirrorkit.publish.base import DELETE, LIST, Backend, ObjectInfo, publish_error
from mirrorkit.store import write_atomic

FILE_MODE = 0o644


def _is_temp(name: str) -> bool:
    # The names mirrorkit.store.write_atomic gives its temporary files.
    return name.startswith(".") and name.endswith(".tmp")


class LocalBackend(Backend):
    capabilities = frozenset({LIST, DELETE})

    def __init__(self, name: str, root: Path):
        self.name = name
        self.root = root

    def __repr__(self) -> str:
        return f"LocalBackend({self.name!r}, {str(self.root)!r})"

    def _target(self, path: str) -> Path:
        try:
            return self.root / check_path(path)
        except ValueError as e:
            raise PublishError(str(e), where=f"mirror {self.name}") from e

    def put(self, path: str, data: bytes, media_type: str, *, immutable: bool) -> None:
        target = self._target(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, data, mode=FILE_MODE)
        except OSError as e:
            raise publish_error(self.name, f"write {path} under {self.root}", e) from e

    def get(self, path: str) -> bytes | None:
        target = self._target(path)
        try:
            return target.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
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
            dirnames.sort()
            base = Path(dirpath)
            for filename in sorted(filenames):
                file = base / filename
                if _is_temp(filename):
                    # Left by a write that was killed: publish lists the mirror before and
                    # after its uploads, never during one, so no live write owns it.
                    file.unlink(missing_ok=True)
                    continue
                try:
                    size = file.stat().st_size
                except FileNotFoundError:
                    continue  # removed while we walked
                except OSError as e:
                    raise publish_error(self.name, f"stat {file}", e) from e
                yield ObjectInfo(file.relative_to(self.root).as_posix(), size)

    def delete(self, paths: Sequence[str]) -> None:
        for path in paths:
            target = self._target(path)
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
