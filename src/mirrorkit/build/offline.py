"""The offline copy: the whole site as one zip that readers download from a mirror and pass
on (USB stick, messenger), that opens from ``file://`` once unpacked, and that
``mirrorkit verify`` checks, zipped or unpacked.

What the zip holds and why nothing is circular:

- every entry lies under one top-level folder (``<outlet>-v<version>/``), so unpacking
  makes one folder, not fifty files in the current directory;
- the site's files as a mirror serves them (its feeds link to that mirror), except the
  zip itself, and with each page's link to the zip cut out (the part of a page between
  ``<!--offline-->`` and ``<!--/offline-->``): inside the unpacked copy it would lead
  nowhere;
- its own signed root over its own parts, marked ``offline``: verifiers judge it by its
  age (a copy passed on is older by nature) and never as a mirror's rollback.

The mirror's manifest then names the zip as one more file (``offline.zip``).

Making it reads every file of the archive, so a build makes it again at most once per
``[build] offline_every`` (:func:`due`) and keeps the one it has in between: a sync that
adds ten articles does not pay for it.

The same files give the same bytes: entries in path order with a fixed time, and the
root's times are the build's.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    make_parts,
    sha256_hex,
)

OFFLINE_PATH = "offline.zip"
# Store meta key: when the build last made the zip.
MADE_KEY = "offline:made"

_LINK = re.compile(rb"<!--offline-->.*?<!--/offline-->", re.DOTALL)
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)

Signer = Callable[[Manifest], tuple[bytes, bytes]]


def due(last: str | None, now: datetime, every: timedelta) -> bool:
    """Whether a build at ``now`` makes the zip again (``last``: when it last did, ISO)."""
    return last is None or now - datetime.fromisoformat(last) >= every


def folder_name(root: Manifest) -> str:
    return f"{root.outlet}-v{root.version}"


def without_offline_link(data: bytes) -> bytes:
    """A page as the unpacked copy holds it: its link to the zip cut out."""
    return _LINK.sub(b"", data)


def make_zip(files: Iterable[FileEntry], read: Callable[[FileEntry], bytes], root: Manifest,
             sign: Signer) -> bytes:
    """The zip of ``files`` (read with ``read``), with its own parts and root, signed by
    ``sign``; ``root`` gives everything but the parts (outlet, version, times, mirror)."""
    buffer = io.BytesIO()
    folder = folder_name(root) + "/"
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(folder + name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)

        entries = []
        for entry in sorted(files, key=lambda f: f.path):
            if entry.retired is not None or entry.path == OFFLINE_PATH:
                continue
            data = read(entry)
            if entry.type.startswith("text/html"):
                data = without_offline_link(data)
            add(entry.path, data)
            entries.append(FileEntry(entry.path, len(data), sha256_hex(data), entry.type,
                                     entry.mutable))
        refs, parts = make_parts(entries)
        for ref in refs:
            add(ref.path, parts[ref.path])
        own = replace(root, parts=refs, previous=None, previous_parts=(), transition=(),
                      offline=True)
        manifest, signature = sign(own)
        add(MANIFEST_NAME, manifest)
        add(SIGNATURE_NAME, signature)
    return buffer.getvalue()
