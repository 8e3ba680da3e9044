"""Check that a copy of the site is exactly what the outlet signed.

The checks are pure: :func:`check_manifest`, :func:`check_file` and :func:`check_listing`
take bytes and names and return findings; they do no I/O.  The readers below them
(:class:`DirectoryTarget`, :class:`ZipTarget`, :class:`UrlTarget`) fetch the bytes, and
:func:`verify_target` runs the checks over a target.

Findings say what is wrong and where: a bad or foreign signature, a changed, missing or
extra file, an expired manifest, or a version older than one this verifier saw before
(rollback).  Trust state (the newest version seen per key, and per key and mirror: see
:class:`TrustStore`) lives in a small JSON
file that the caller loads and saves.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import re
import stat
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from mirrorkit.errors import (
    BlockedAddressError,
    TargetUnreachableError,
    VerifyError,
    printable,
)
from mirrorkit.manifest import (
    MANIFEST_NAME,
    MAX_ROOT_SIZE,
    MAX_SIGNATURE_SIZE,
    SIGNATURE_DIR,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    decode_part,
    read_entries,
    signature_path,
)
from mirrorkit.sign import PublicKey, Signature, verify
from mirrorkit.store import iter_relative, write_atomic

if TYPE_CHECKING:
    import aiohttp

_COMMENT = re.compile(r"(\w+):(\S+)")
log = logging.getLogger("mirrorkit")


@dataclass(frozen=True)
class Finding:
    # signature, key, malformed, part, tampered, size, missing, extra, duplicate, unsafe,
    # expired, rollback, lagging (not fatal), mirror, changed, copy (an offline copy's
    # age; a note)
    kind: str
    path: str | None
    detail: str
    fatal: bool = True

    def line(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return printable(f"{self.kind}: {where}{self.detail}")


@dataclass(frozen=True)
class Report:
    target: str
    manifest: Manifest | None
    findings: tuple[Finding, ...]
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.manifest is not None and not any(f.fatal for f in self.findings)

    def to_json(self) -> dict[str, object]:
        m = self.manifest
        return {
            "target": self.target,
            "valid": self.ok,
            "outlet": m.outlet if m else None,
            "mirror": m.mirror if m else None,
            "version": m.version if m else None,
            "created": m.created.isoformat() if m else None,
            "expires": m.expires.isoformat() if m else None,
            "key_id": m.key_id if m else None,
            "files_checked": self.files_checked,
            "findings": [
                {"kind": f.kind, "path": f.path, "detail": f.detail, "fatal": f.fatal}
                for f in self.findings
            ],
        }


# -- pure checks --------------------------------------------------------------------------

def check_manifest(
    manifest_bytes: bytes, signature_bytes: bytes, key: PublicKey, *, now: datetime,
    seen_version: int | None = None,
) -> tuple[Manifest | None, list[Finding]]:
    """Signature, format, expiry and rollback; the manifest is returned only if genuine."""
    try:
        signature = Signature.from_bytes(signature_bytes, SIGNATURE_NAME)
        comment = verify(manifest_bytes, signature, key, SIGNATURE_NAME)
    except VerifyError as e:
        kind = "key" if "not by the given key" in e.what else "signature"
        return None, [Finding(kind, SIGNATURE_NAME, e.what)]
    try:
        manifest = Manifest.from_bytes(manifest_bytes)
    except VerifyError as e:
        return None, [Finding("malformed", MANIFEST_NAME, e.what)]
    findings: list[Finding] = []
    fields = dict(_COMMENT.findall(comment))
    if fields.get("outlet") != manifest.outlet or fields.get("version") != str(manifest.version):
        findings.append(Finding("malformed", SIGNATURE_NAME,
                                "trusted comment does not match the manifest"))
    if manifest.key_id != key.key_id_hex:
        findings.append(Finding(
            "key", MANIFEST_NAME,
            f"manifest names key {manifest.key_id}, signed by {key.key_id_hex}"))
    if now >= manifest.expires:
        findings.append(Finding("expired", MANIFEST_NAME,
                                f"expired at {manifest.expires.isoformat()}; the mirror is stale"))
    if seen_version is not None and manifest.version < seen_version:
        findings.append(_rollback(manifest.version, seen_version))
    return manifest, findings


def _rollback(version: int, seen: int, transition: bool = False,
              elsewhere: bool = False) -> Finding:
    if transition and version == seen:
        return Finding("rollback", MANIFEST_NAME,
                       f"a transition root of version {version}, which was seen settled "
                       "before: old contents replayed; try another mirror")
    if elsewhere:
        # Not necessarily an attack (publishes to this mirror may keep failing), but
        # whoever serves it could as well be hiding the news since: the reader decides.
        return Finding("rollback", MANIFEST_NAME,
                       f"version {version} is older than version {seen} seen on another "
                       f"mirror: this one is {seen - version} versions behind; try another "
                       "mirror, or check this one alone with --no-trust")
    return Finding("rollback", MANIFEST_NAME,
                   f"version {version} is older than version {seen} seen before at this "
                   "mirror: an old copy served again; try another mirror")


def _copy_note(manifest: Manifest, now: datetime, seen: int | None) -> Finding:
    since = f"; version {seen} was seen since" if seen is not None else ""
    return Finding("copy", MANIFEST_NAME,
                   f"a copy of version {manifest.version}, made "
                   f"{manifest.created:%Y-%m-%d %H:%M}Z, {_age(now - manifest.created)}"
                   f"{since}", fatal=False)


def _age(age: timedelta) -> str:
    """``age`` in the largest whole unit a reader needs: "3 days ago", "5 hours ago"."""
    if age < timedelta(0):
        return "later than this machine's clock says it is now"
    days, hours = age.days, age.seconds // 3600
    if days:
        return f"{days} day{'s' if days > 1 else ''} ago"
    if hours:
        return f"{hours} hour{'s' if hours > 1 else ''} ago"
    return "less than an hour ago"


def signed_root(target: Target, key: PublicKey, now: datetime,
                ) -> tuple[bytes | None, Manifest | None, list[Finding]]:
    """The target's root, checked (:func:`check_manifest`) against its signature: the
    one kept by the root's hash (written before the root, so always the root's own),
    else ``manifest.json.minisig``.  The root's bytes are None if there is no root."""
    root = target.read_many([(MANIFEST_NAME, MAX_ROOT_SIZE)])[MANIFEST_NAME]
    if root is None:
        return None, None, [Finding("missing", MANIFEST_NAME, "not found")]
    by_hash = signature_path(root)
    kept = target.read_many([(by_hash, MAX_SIGNATURE_SIZE)])[by_hash]
    if kept is not None:
        manifest, findings = check_manifest(root, kept, key, now=now)
        if manifest is not None:
            return root, manifest, findings
    standard = target.read_many([(SIGNATURE_NAME, MAX_SIGNATURE_SIZE)])[SIGNATURE_NAME]
    if standard is None:
        if kept is not None:
            return root, None, findings
        return root, None, [Finding("signature", SIGNATURE_NAME, "missing")]
    manifest, findings = check_manifest(root, standard, key, now=now)
    return root, manifest, findings


def authentic_root(root: bytes, signature: bytes, key: PublicKey) -> Manifest | None:
    """The root if ``signature`` is the outlet's over it and it parses, else None.  Expiry
    and rollback are not judged: this is for deciding what a mirror already holds."""
    try:
        verify(root, Signature.from_bytes(signature, SIGNATURE_NAME), key, SIGNATURE_NAME)
        manifest = Manifest.from_bytes(root)
    except VerifyError:
        return None
    return manifest if manifest.key_id == key.key_id_hex else None


def check_file(entry: FileEntry, data: bytes | None) -> Finding | None:
    """Whether ``data`` is what ``entry`` signs (or, in a declared transition, one of the
    contents the path may still hold)."""
    if data is None:
        return Finding("missing", entry.path, "listed in the manifest but not found")
    sizes = {entry.size} | {size for _, size in entry.also}
    if len(data) not in sizes:
        # A larger file is read no further than its cap: its true size is not known.
        if len(data) > max(sizes):
            return Finding("size", entry.path, f"larger than signed ({entry.size} bytes): "
                           "content differs from what was signed")
        return Finding("size", entry.path, f"{len(data)} bytes, signed {entry.size} bytes: "
                       "content differs from what was signed")
    digest = hashlib.sha256(data).hexdigest()
    if (digest, len(data)) != (entry.sha256, entry.size) and (digest, len(data)) not in (
            entry.also):
        return Finding("tampered", entry.path, "content differs from what was signed")
    return None


def check_listing(named: set[str], listing: Iterable[str]) -> list[Finding]:
    """``named``: every path the signed root names (files, retired files, parts).

    An extra file is reported, not fatal: no signed page links to it, so readers who
    follow links never meet it, and an interrupted publish leaves its new files there
    before the manifest that names them.  Files under ``signatures/`` are the by-hash
    signatures of roots being published (see :func:`~mirrorkit.manifest.signature_path`).
    """
    listing = list(listing)
    counts = Counter(listing)
    unsafe = {p for p in listing if not _safe(p)}
    return [
        Finding("unsafe", path[:200], "a name that climbs out of the site root: a trap for"
                " whoever unpacks or serves this copy")
        for path in sorted(unsafe)
    ] + [
        Finding("extra", path, "served but not named in the signed manifest", fatal=False)
        for path in sorted(set(listing) - named - unsafe - {MANIFEST_NAME, SIGNATURE_NAME})
        if not path.startswith(SIGNATURE_DIR + "/")
    ] + [
        Finding("duplicate", path, "more than one entry of this name")
        for path, n in sorted(counts.items()) if n > 1
    ]


def _safe(path: str) -> bool:
    """Whether a served name stays inside the site root wherever it is unpacked."""
    parts = path.replace("\\", "/").split("/")
    return not (path.startswith(("/", "\\")) or ".." in parts or "\0" in path
                or (parts[0].endswith(":") and len(parts[0]) == 2))  # "C:" on Windows


# -- targets ------------------------------------------------------------------------------

# A read asks for a path and the most bytes it may hold: the size the signed manifest
# gives (or a fixed cap for the root and signature).  Readers stop at ``limit + 1`` bytes,
# so a file that is too large is a finding, never an unbounded read.
Read = tuple[str, int]


class Target(Protocol):
    label: str

    def read_many(self, reads: Sequence[Read]) -> dict[str, bytes | None]: ...

    def listing(self) -> list[str] | None:
        """Every file under the site root, or None where the target cannot be listed."""
        ...


class DirectoryTarget:
    def __init__(self, root: Path):
        self.root = root
        self.label = str(root)

    def read_many(self, reads: Sequence[Read]) -> dict[str, bytes | None]:
        return dict(self._read(r) for r in reads)

    def _read(self, read: Read) -> tuple[str, bytes | None]:
        path, limit = read
        target = f"{self.root}/{path}"
        try:
            fd = _open_inside(os.fspath(self.root), path)
        except (FileNotFoundError, NotADirectoryError):
            return path, None
        except OSError as e:
            if e.errno == errno.ELOOP:
                return path, None  # a link: not a file of this copy
            raise TargetUnreachableError(f"cannot read: {e.strerror}", where=target) from e
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return path, None
            # One read: a regular file gives all it has up to the cap at once.
            return path, os.read(fd, limit + 1)
        except OSError as e:
            raise TargetUnreachableError(f"cannot read: {e.strerror}", where=target) from e
        finally:
            os.close(fd)

    def listing(self) -> list[str]:
        # A directory mirror's publisher keeps its lock and temporary files beside the site.
        return [p for p in iter_relative(self.root)
                if p != ".mirrorkit-lock" and not p.startswith(".mirrorkit-tmp/")]


def _open_inside(root: str, path: str) -> int:
    """Open ``root/path`` for reading through no link at all, on the way or at the end
    (a link could show any file of this machine as signed, or leak its size), and
    non-blocking, so a FIFO planted at a listed path cannot hang the read."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        *folders, name = path.split("/")
        for folder in folders:
            inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


# An archive's central directory is read whole when it is opened (Python keeps about
# 0.6 KB per entry with its names: 250,000 entries stay under 200 MB): its size, from
# its end record, and its records, counted, are checked first.
MAX_ZIP_ENTRIES = 250_000
MAX_ZIP_DIRECTORY = 64 * 1024 * 1024
_EOCD, _ZIP64_LOCATOR, _ZIP64_EOCD = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"


def _zip_directory(path: Path) -> tuple[int, int]:
    """The entry count and central directory size of an archive, from its end record.

    The count is the directory's own: its records are counted, because the end record's
    count is not what a reader goes by (zipfile reads every record in the directory's
    declared size), so a directory of a million records may declare three.  The walk stops
    one record past the cap."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - (22 + 0xFFFF + 20)))
        base = f.tell()
        tail = f.read()
        at = tail.rfind(_EOCD)
        if at < 0 or len(tail) < at + 22:
            raise zipfile.BadZipFile("no end of central directory record")
        count = int.from_bytes(tail[at + 10:at + 12], "little")
        directory = int.from_bytes(tail[at + 12:at + 16], "little")
        end = base + at  # where zipfile takes the directory to end
        if at >= 20 and tail[at - 20:at - 16] == _ZIP64_LOCATOR:
            f.seek(int.from_bytes(tail[at - 12:at - 4], "little"))
            record = f.read(56)
            if record[:4] == _ZIP64_EOCD and len(record) == 56:
                count = int.from_bytes(record[32:40], "little")
                directory = int.from_bytes(record[40:48], "little")
                end -= 56 + 20
        if count > MAX_ZIP_ENTRIES or directory > MAX_ZIP_DIRECTORY:
            return count, directory
        f.seek(max(0, end - directory))
        return _count_records(f.read(directory)), directory


def _count_records(data: bytes) -> int:
    """How many central directory records ``data`` holds (as zipfile walks it), counted up
    to one past :data:`MAX_ZIP_ENTRIES`."""
    count = at = 0
    while at + 46 <= len(data) and count <= MAX_ZIP_ENTRIES:
        names, extra, comment = struct.unpack_from("<3H", data, at + 28)
        at += 46 + names + extra + comment
        count += 1
    return count


class ZipTarget:
    def __init__(self, path: Path):
        self.label = str(path)
        try:
            count, directory = _zip_directory(path)
            if count > MAX_ZIP_ENTRIES or directory > MAX_ZIP_DIRECTORY:
                raise TargetUnreachableError(
                    f"archive holds {count} or more entries in a {directory}-byte directory,"
                    f" more than the {MAX_ZIP_ENTRIES} entries or {MAX_ZIP_DIRECTORY} bytes"
                    " accepted", where=str(path))
            self.zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as e:
            raise TargetUnreachableError(f"cannot open archive: {e}", where=str(path)) from e
        every = self.zip.namelist()
        # A directory entry is no file, but one that climbs out ("../../x/") is still a
        # trap for whoever unpacks the copy: kept, to be reported as unsafe.
        self.unsafe = sorted({n for n in every if not _safe(n.rstrip("/"))})
        names = [n for n in every if not n.endswith("/")]
        # An archive holds the site at its root, or inside one top-level folder.
        self.prefix = ""
        if MANIFEST_NAME not in names:
            tops = {n.split("/", 1)[0] for n in names}
            if len(tops) == 1:
                self.prefix = tops.pop() + "/"
        # Kept with repeats: two entries of one name are a finding (extractors disagree on
        # which one a reader gets).
        self.entries = [n[len(self.prefix):] for n in names if n.startswith(self.prefix)]
        self.names = set(self.entries)

    def read_many(self, reads: Sequence[Read]) -> dict[str, bytes | None]:
        return {p: self._read(p, limit) if p in self.names else None for p, limit in reads}

    def _read(self, path: str, limit: int) -> bytes:
        try:
            with self.zip.open(self.prefix + path) as f:
                return f.read(limit + 1)
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, OSError,
                EOFError, ValueError):  # a truncated stream; a bad header (fuzzed)
            # A damaged or unreadable entry is not what was signed: report it as changed.
            return b""

    def listing(self) -> list[str]:
        return sorted(self.entries + [n for n in self.unsafe if n.endswith("/")])

    def close(self) -> None:
        self.zip.close()


class UrlTarget:
    """A mirror's base URL.  Files are fetched in parallel over plain HTTP(S)."""

    def __init__(self, base_url: str, *, concurrency: int = 8, timeout: float = 30.0):
        self.base = base_url if base_url.endswith("/") else base_url + "/"
        self.label = self.base
        self.concurrency = concurrency
        self.timeout = timeout
        self.root_left = ROOT_DEADLINE  # seconds left for reads of the root

    def read_many(self, reads: Sequence[Read]) -> dict[str, bytes | None]:
        import time

        from mirrorkit import aio  # asyncio and aiohttp only for URL targets

        if not all(_unsigned(path) for path, _ in reads):
            return aio.run(self._read_many(reads))
        # The root and its signatures are read one after another before anything is
        # trusted: they share one deadline, so a server that answers each of them slowly
        # holds verify (or status) for ROOT_DEADLINE in all, not a timeout per read.
        started = time.monotonic()
        try:
            return aio.run(self._read_many(reads, deadline=self.root_left))
        finally:
            self.root_left = max(0.0, self.root_left - (time.monotonic() - started))

    def _session(self) -> aiohttp.ClientSession:
        import aiohttp

        from mirrorkit.addresses import GuardedResolver

        # Any name but the mirror's own must resolve to a public address: a redirect may
        # send a verifier elsewhere, never into its own machine or network (unless the
        # URL it was given points there already).
        host = urlsplit(self.base).hostname or ""
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(exempt=host)))

    @asynccontextmanager
    async def _get(self, session: aiohttp.ClientSession, url: str,
                   ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET ``url``, following redirects by hand to check where each one leads."""
        from mirrorkit.addresses import blocked_reason

        home = urlsplit(self.base).hostname
        for _hop in range(MAX_REDIRECTS + 1):
            async with session.get(url, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status not in _REDIRECTS or not location:
                    yield resp
                    return
            url = urljoin(url, location)
            parts = urlsplit(url)
            kind = blocked_reason(parts.hostname or "")
            if parts.scheme not in ("http", "https") or (kind and parts.hostname != home):
                raise TargetUnreachableError(
                    f"redirected to {kind + ' address ' if kind else ''}{url[:200]}:"
                    " refused", where=self.base)
        raise TargetUnreachableError("too many redirects", where=url)

    async def _read_many(self, reads: Sequence[Read], deadline: float | None = None,
                         ) -> dict[str, bytes | None]:
        import asyncio

        import aiohttp  # only URL targets need it: verify of a directory starts fast

        gate = asyncio.Semaphore(self.concurrency)
        async with self._session() as session:

            async def one(path: str, limit: int) -> tuple[str, bytes | None]:
                url = self.base + quote(path)
                async with gate:
                    try:
                        async with self._get(session, url) as resp:
                            if resp.status in (403, 404):
                                return path, None
                            if resp.status != 200:
                                raise TargetUnreachableError(
                                    f"HTTP {resp.status}", where=url)
                            return path, await _read_capped(resp, limit)
                    except (aiohttp.ClientError, TimeoutError) as e:
                        raise TargetUnreachableError(
                            f"cannot fetch: {type(e).__name__}: {e}", where=url) from e
                    except BlockedAddressError as e:
                        raise TargetUnreachableError(f"refused: {e.what}", where=url) from e

            try:
                async with asyncio.timeout(deadline):
                    return dict(await asyncio.gather(*(one(p, n) for p, n in reads)))
            except TimeoutError:
                if deadline is None:
                    raise
                raise TargetUnreachableError(
                    f"no signed root within {ROOT_DEADLINE:g} s (manifest and signature)",
                    where=self.base) from None

    def listing(self) -> list[str] | None:
        from mirrorkit import aio

        return aio.run(self._listing())

    async def _listing(self) -> list[str] | None:
        import asyncio


        # Object stores list a bucket at its root URL (ListObjectsV2) when the bucket allows
        # public listing; the site root may be the bucket root or a prefix inside it.
        parts = urlsplit(self.base)
        segments = [s for s in parts.path.split("/") if s]
        async with self._session() as session:
            try:
                # However the server paces its pages, listing ends in bounded time.
                async with asyncio.timeout(LIST_DEADLINE):
                    for cut in range(len(segments), -1, -1):
                        root = "/" + "".join(s + "/" for s in segments[:cut])
                        prefix = "".join(s + "/" for s in segments[cut:])
                        keys = await _s3_list(
                            session, urlunsplit(parts._replace(path=root, query="")), prefix)
                        if keys is not None:
                            return [k[len(prefix):] for k in keys]
            except TimeoutError:
                return None
        return None


MAX_REDIRECTS = 5
ROOT_DEADLINE = 20.0  # seconds for a mirror's root and signatures, all reads together


def _unsigned(path: str) -> bool:
    """Whether ``path`` is read before any signature is checked: the root or a signature."""
    return path in (MANIFEST_NAME, SIGNATURE_NAME) or path.startswith(SIGNATURE_DIR + "/")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first ``limit + 1`` bytes: enough to tell it is too large."""
    chunks: list[bytes] = []
    got = 0
    while got <= limit:
        chunk = await resp.content.read(limit + 1 - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


MAX_LIST_PAGES = 1000  # 1000 keys a page: a million files, more than any outlet has
MAX_LIST_PAGE_SIZE = 4 * 1024 * 1024  # a page of 1000 keys is about 300 KB
LIST_DEADLINE = 300.0  # seconds for a whole listing


async def _s3_list(session: aiohttp.ClientSession, url: str, prefix: str) -> list[str] | None:
    import aiohttp
    from lxml import etree

    keys: list[str] = []
    token: str | None = None
    tokens: set[str] = set()
    for _page in range(MAX_LIST_PAGES):
        params = {"list-type": "2", "prefix": prefix}
        if token:
            params["continuation-token"] = token
        try:
            async with session.get(url, params=params, allow_redirects=False) as resp:
                if resp.status != 200:
                    return None
                body = await _read_capped(resp, MAX_LIST_PAGE_SIZE)
        except (aiohttp.ClientError, TimeoutError, BlockedAddressError):
            return None
        if len(body) > MAX_LIST_PAGE_SIZE:
            return None  # not a listing page any store sends
        try:
            doc = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False,
                                                                no_network=True))
        except etree.XMLSyntaxError:
            return None
        if etree.QName(doc).localname != "ListBucketResult":
            return None
        ns = {"s3": etree.QName(doc).namespace} if etree.QName(doc).namespace else {}
        q = "s3:" if ns else ""
        keys += [k.text or "" for k in doc.findall(f"{q}Contents/{q}Key", ns)]
        token = doc.findtext(f"{q}NextContinuationToken", namespaces=ns)
        if not token:
            return keys
        if token in tokens:
            return None  # a server that loops is not a listing to trust
        tokens.add(token)
    return None


def _root_hint(target: Target) -> str:
    """Where the site root may be instead: an offline zip unpacks into one folder."""
    if isinstance(target, DirectoryTarget):
        try:
            inner = sorted(p.name for p in target.root.iterdir()
                           if not p.is_symlink() and (p / MANIFEST_NAME).is_file())[:2]
        except OSError:
            inner = []
        if len(inner) == 1:
            return f"the site root is its folder {inner[0]}: verify {target.root / inner[0]}"
    return "is this a mirrorkit site root?"


def open_target(target: str) -> Target:
    if target.startswith(("http://", "https://")):
        return UrlTarget(target)
    path = Path(target)
    if path.is_dir():
        # Absolute, so that the rollback state kept per address does not depend on where
        # the command ran.
        return DirectoryTarget(path.resolve())
    if path.is_file() and zipfile.is_zipfile(path):
        return ZipTarget(path)
    if path.is_file() and _looks_zipped(path):
        # Copies travel by messenger and USB stick: a cut-short transfer is the usual cause.
        raise TargetUnreachableError(
            "a damaged .zip archive (its end is missing: cut short in transfer?)",
            where=target, hint="get the copy again")
    raise TargetUnreachableError(
        "not a directory, a .zip archive or an http(s) URL", where=target)


def _looks_zipped(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(b"PK") or path.suffix.lower() == ".zip"


def verify_target(target: Target, key: PublicKey, *, now: datetime | None = None,
                  trust: TrustStore | None = None, batch_bytes: int = 4 * 1024 * 1024,
                  workers: int = 4, mirror: bool = False) -> Report:
    """Verify everything about ``target``; raises TargetUnreachableError if it can't be read.

    Linear in the number of files (dictionary lookups), read in batches of at most
    ``batch_bytes`` (so memory stays bounded whatever the site's size), each read capped
    at the size the manifest signs, hashed in ``workers`` threads.  ``mirror``: the target
    is known to be a mirror (a directory mirror's folder), never a copy passed on.
    """
    now = now or datetime.now(UTC)
    manifest_bytes, manifest, findings = signed_root(target, key, now)
    if manifest_bytes is None:
        raise TargetUnreachableError(f"no {MANIFEST_NAME} found", where=target.label,
                                     hint=_root_hint(target))
    if manifest is None:
        return Report(target.label, None, tuple(findings))
    # A copy (a zip, or an unpacked offline copy) was taken at some time and is older by
    # nature: its age is reported, never a rollback or expiry, and it is not recorded as
    # any mirror's newest.  A mirror (a URL) serving an offline root is judged as a mirror.
    copy = not mirror and (isinstance(target, ZipTarget) or (
        manifest.offline and not isinstance(target, UrlTarget)))
    if copy:
        findings = [f for f in findings if f.kind != "expired"]
        findings.append(_copy_note(manifest, now, trust.newer(manifest) if trust else None))
    else:
        judged = trust.judge(manifest) if trust else None
        if judged is not None:
            findings.append(judged)
        findings += _mirror_mismatch(manifest, target.label)
    parts = target.read_many([(p.path, p.size) for p in manifest.parts])
    entries, problems = read_entries(manifest, parts)
    findings += [Finding("part", path, what) for path, what in problems]
    # Retired files and replaced parts may still be served; when they are, they must be
    # what was signed.
    optional = [FileEntry(p.path, p.size, p.sha256, "", False, manifest.created)
                for p in manifest.previous_parts]
    optional += [e for e in entries.values() if e.retired is not None]
    required = [e for e in entries.values() if e.retired is None]
    # Optional files are read whatever a listing says (an unsigned listing that hides a
    # forged retired page must not spare it); only their absence is fine.

    # Slices of files, each read and hashed by one worker: memory is bounded by the
    # workers times a slice, and no thread hop is paid per file.  The listing is walked
    # meanwhile.
    def check(chunk: list[FileEntry]) -> list[Finding]:
        data = target.read_many([(e.path, _cap(e)) for e in chunk])
        out = []
        for entry in chunk:
            finding = check_file(entry, data[entry.path])
            if finding and (entry.retired is None or finding.kind != "missing"):
                out.append(finding)
        return out

    with ThreadPoolExecutor(workers) as pool:
        listed = pool.submit(target.listing)
        results = pool.map(check, _chunks(required, batch_bytes))
        listing = listed.result()
        findings += [f for found in results for f in found]
        for chunk in _chunks(optional, batch_bytes):
            findings += check(chunk)
    checked = len(required) + len(optional)
    if listing is None:
        findings.append(Finding("extra", None,
                                "not checked: this target cannot be listed", fatal=False))
    else:
        named = set(entries) | manifest.part_paths() | {signature_path(manifest_bytes)}
        listed_findings = check_listing(named, listing)
        if problems:
            # The files an unreadable part names look unnamed: one line, not one a file.
            extra = [f for f in listed_findings if f.kind == "extra"]
            listed_findings = [f for f in listed_findings if f.kind != "extra"]
            if extra:
                files = f"{len(extra)} file{'s' if len(extra) > 1 else ''}"
                listed_findings.append(Finding(
                    "extra", None, f"{files} served that no readable part names (not "
                    "judged: see the part above)", fatal=False))
        if isinstance(target, ZipTarget):
            # A zip is written whole, never caught mid-publish: an entry the root does not
            # name was added.  Unpacked it is a page beside the genuine ones, or (another
            # case of a name) one that replaces them.
            listed_findings = [
                replace(f, fatal=True, detail="in the archive but not named in the signed"
                        " manifest: added to it")
                if f.kind == "extra" and f.path is not None else f for f in listed_findings]
        findings.extend(listed_findings)
    report = Report(target.label, manifest, tuple(findings), checked)
    if trust and report.ok and not copy:
        trust.record(manifest)
    return report


def _mirror_mismatch(manifest: Manifest, label: str) -> list[Finding]:
    """A copy served at an address its own mirror list gives to another mirror: a copy
    of that mirror passed off as this one (each mirror's root is signed for it)."""
    url = label if label.endswith("/") else label + "/"
    return [Finding("mirror", MANIFEST_NAME,
                    f"signed for mirror {manifest.mirror}, but served at the address of "
                    f"mirror {m.name}")
            for m in manifest.mirrors
            if m.url.rstrip("/") + "/" == url and m.name != manifest.mirror]


def check_written(target: Target, key: PublicKey, root: bytes, written: Sequence[FileEntry],
                  *, now: datetime | None = None, sample: int = 0) -> Report:
    """After a publish: read back the root, its signature and what the publish wrote
    (plus ``sample`` random files named by the root), nothing else.  The root must be
    ``root``, the one this run published."""
    now = now or datetime.now(UTC)
    live, manifest, findings = signed_root(target, key, now)
    if manifest is None:
        return Report(target.label, None, tuple(findings))
    if live != root:
        findings.append(Finding("changed", MANIFEST_NAME,
                                "the live manifest is not the one this run published"
                                " (another publisher?)"))
        return Report(target.label, manifest, tuple(findings))
    checks = list(written)
    if sample:
        bins = random.sample(range(manifest.bins), min(sample, manifest.bins))
        got = target.read_many([(manifest.parts[i].path, manifest.parts[i].size)
                                for i in bins])
        pool: list[FileEntry] = []
        for i in bins:
            ref = manifest.parts[i]
            try:
                pool += [e for e in decode_part(got[ref.path] or b"", ref, i, manifest.bins)
                         if e.retired is None]
            except VerifyError as e:
                findings.append(Finding("part", ref.path, e.what))
        checks += random.sample(pool, min(sample, len(pool)))
    data = target.read_many([(e.path, _cap(e)) for e in checks])
    for entry in checks:
        finding = check_file(entry, data[entry.path])
        if finding:
            findings.append(finding)
    return Report(target.label, manifest, tuple(findings), len(checks))


def _cap(entry: FileEntry) -> int:
    """The most bytes a file may hold: its signed size, or in a declared transition the
    largest of the contents allowed."""
    return max(entry.size, *(size for _, size in entry.also)) if entry.also else entry.size


def _chunks(items: list[FileEntry], budget: int, most: int = 256,
            ) -> Iterator[list[FileEntry]]:
    chunk: list[FileEntry] = []
    size = 0
    for item in items:
        if chunk and (size + item.size > budget or len(chunk) >= most):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item.size
    if chunk:
        yield chunk


@dataclass
class TrustStore:
    """What this verifier has seen, to catch rollback: per signing key and outlet, the
    newest version seen on any mirror; per key, outlet and mirror, the newest version and
    the newest settled one (not a transition root) seen of that mirror.

    The rule (README, "Guarantees, and their limits"):

    - a mirror never goes back: a version older than one seen *of that mirror* is a
      rollback;
    - every mirror carries the same versions (one build, signed per mirror), so a copy
      older than the newest version seen *anywhere* is a rollback too: an old copy of
      mirror B served at a new address cannot pass after mirror A showed a newer one;
    - except one version behind, which is reported but accepted (``lagging``): one failed
      publish leaves a mirror there until the next sync, and expiry still bounds it;
    - a transition root of a version already seen settled on that mirror is a replay of
      old contents.
    """

    path: Path
    versions: dict[str, int] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> TrustStore:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            versions = {str(k): int(v) for k, v in data.get("versions", {}).items()}
            settled = {str(k): int(v) for k, v in data.get("settled", {}).items()}
        except (FileNotFoundError, NotADirectoryError):
            versions, settled = {}, {}  # nothing seen yet (record() says if it cannot write)
        except (OSError, ValueError, TypeError, AttributeError, OverflowError,
                RecursionError) as e:
            raise VerifyError(f"unreadable trust state: {str(e)[:200]}", where=str(path),
                              hint="delete it to start afresh") from e
        return cls(path, versions, settled)

    @staticmethod
    def _keys(key_id: str, outlet: str, mirror: str) -> tuple[str, str]:
        """(per outlet key, per mirror of it)."""
        return f"{key_id}/{outlet}", f"{key_id}/{outlet}/{mirror}"

    def newer(self, m: Manifest) -> int | None:
        """The newest version seen of ``m``'s outlet and key, if newer than ``m``."""
        newest = self.versions.get(self._keys(m.key_id, m.outlet, m.mirror)[0])
        return newest if newest is not None and newest > m.version else None

    def judge(self, m: Manifest) -> Finding | None:
        """Whether ``m`` (signed, already checked) goes back from what was seen: a
        fatal rollback, a non-fatal ``lagging`` one version behind, or None."""
        anywhere, here = self._keys(m.key_id, m.outlet, m.mirror)
        seen_here = self.versions.get(here)
        if seen_here is not None and m.version < seen_here:
            return _rollback(m.version, seen_here)
        settled = self.settled.get(here)
        if m.transition and settled is not None and m.version <= settled:
            return _rollback(m.version, settled, transition=True)
        newest = self.versions.get(anywhere)
        if newest is not None and m.version < newest - 1:
            return _rollback(m.version, newest, elsewhere=True)
        if newest is not None and m.version < newest:
            return Finding("lagging", MANIFEST_NAME,
                           f"version {m.version}, one behind version {newest} seen on "
                           "another mirror (a publish to this one failed?)", fatal=False)
        return None

    def record(self, manifest: Manifest) -> None:
        changed = False
        for k in self._keys(manifest.key_id, manifest.outlet, manifest.mirror):
            if manifest.version > self.versions.get(k, 0):
                self.versions[k] = manifest.version
                changed = True
            if not manifest.transition and manifest.version > self.settled.get(k, 0):
                self.settled[k] = manifest.version
                changed = True
        if not changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(
                {"versions": self.versions, "settled": self.settled}, indent=1,
                sort_keys=True).encode())
        except OSError as e:
            # The copy was verified either way; only rollback protection for next time is lost.
            log.warning("cannot record the version seen in %s: %s", self.path,
                        e.strerror or e)
