"""The two-stage publish: what is uploaded, in which order, what is kept and what goes.

Sites are written by hand here with ``tests/sites.py`` (files, parts, a signed root).  A
publish plans from the mirror's live root only when it passes ``key=`` and the root's
signature verifies with it; otherwise the mirror is *unknown* and every file is sent.

A recording wrapper sees every write and, after each one, checks invariant 1 of DESIGN.md
the way a verifier does: ``verify_target`` reads the live root, its signature by the
root's hash, and every file and part it names (a transition root's alternatives
included).  Once the mirror has verified, it must verify after every later write.  A
publish without a signer still has the old window (files replaced in place before the
commit); tests of that path say so with ``Recorder(window=True)``.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import re
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirrorkit import sign
from mirrorkit.build import sign_root
from mirrorkit.config import MirrorConfig
from mirrorkit.errors import PublishConflictError, PublishError, TargetUnreachableError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    sha256_hex,
    signature_path,
)
from mirrorkit.publish import (
    Backend,
    ObjectInfo,
    PublishResult,
    open_backend,
    publish_all,
    publish_tree,
)
from mirrorkit.publish.base import CACHE_IMMUTABLE
from mirrorkit.publish.local import TMP_DIR, LocalBackend
from mirrorkit.publish.s3 import S3Backend
from mirrorkit.publish.stage import _Publish, plan_publish
from mirrorkit.verify import (
    DirectoryTarget,
    check_manifest,
    check_written,
    verify_target,
)
from sites import T0, write_site

KEY = sign.SecretKey.generate()
PUB = KEY.public
# Signs transition roots at publish time, as ``load_signer`` does with the outlet's key.
SIGN = functools.partial(sign_root, secret=KEY)
CONTROL = (SIGNATURE_NAME, MANIFEST_NAME)

V1 = {
    "index.html": b"<h1>home v1</h1>",
    "rss.xml": b"<rss>v1</rss>",
    "articles/a/index.html": b"<p>a</p>",
    "articles/b/index.html": b"<p>b</p>",
    "articles/c/index.html": b"<p>c</p>",
    "media/x.png": b"\x89PNG x",
}
# v2: home page changed, rss, a and x unchanged, b retired, c dropped, d and y new.
V2 = {
    "index.html": b"<h1>home v2</h1>",
    "rss.xml": b"<rss>v1</rss>",
    "articles/a/index.html": b"<p>a</p>",
    "articles/d/index.html": b"<p>d</p>",
    "media/x.png": b"\x89PNG x",
    "media/y.png": b"\x89PNG y",
}
V2_RETIRED = {"articles/b/index.html": V1["articles/b/index.html"]}


def make_tree(root: Path, version: int, files: dict[str, bytes],
              retired: dict[str, bytes] | None = None, *, outlet: str = "example",
              key: sign.SecretKey = KEY, name: str | None = None, bins: int | None = None,
              after: Path | None = None) -> Path:
    """A version as a site tree: the files, the parts, manifest.json and its signature.

    ``after`` is the previous version's tree: then, as the build does, the root names its
    hash and keeps the parts this version replaced as ``previous_parts``.
    """
    tree = root / (name or f"bundle-v{version}")
    previous = (after / MANIFEST_NAME).read_bytes() if after is not None else None
    root_bytes = write_site(tree, version, files, key, outlet=outlet, retired=retired,
                            previous=previous, bins=bins)
    if previous is not None:
        new = Manifest.from_bytes(root_bytes)
        kept = set(new.parts)
        replaced = {p for p in Manifest.from_bytes(previous).parts if p not in kept}
        resign(tree, dataclasses.replace(
            new, previous_parts=tuple(sorted(replaced, key=lambda p: p.sha256))), key)
    return tree


def resign(tree: Path, manifest: Manifest, key: sign.SecretKey) -> bytes:
    """Write ``manifest`` as the tree's root, signed by ``key``; returns its bytes."""
    data = manifest.to_bytes()
    comment = (f"timestamp:{int(manifest.created.timestamp())} outlet:{manifest.outlet} "
               f"version:{manifest.version}")
    (tree / MANIFEST_NAME).write_bytes(data)
    (tree / SIGNATURE_NAME).write_bytes(sign.sign(data, key, comment).to_bytes())
    return data


def root_of(tree: Path) -> Manifest:
    return Manifest.from_bytes((tree / MANIFEST_NAME).read_bytes())


def part_paths(tree: Path) -> set[str]:
    return {p.path for p in root_of(tree).parts}


def site(tree: Path) -> dict[str, bytes]:
    """What a mirror holds after publishing ``tree``: its files, parts, root and signature."""
    return {p.relative_to(tree).as_posix(): p.read_bytes()
            for p in tree.rglob("*") if p.is_file()}


def by_hash(tree: Path) -> str:
    """Where the mirror keeps the signature of ``tree``'s root, by the root's hash."""
    return signature_path((tree / MANIFEST_NAME).read_bytes())


def published(tree: Path) -> dict[str, bytes]:
    """What a mirror holds after publishing ``tree``: ``site(tree)`` and the signature by
    the root's hash (new in the by-hash protocol)."""
    return {**site(tree), by_hash(tree): (tree / SIGNATURE_NAME).read_bytes()}


def live_version(backend: Backend) -> int | None:
    data = backend.get(MANIFEST_NAME)
    return Manifest.from_bytes(data).version if data is not None else None


def plant(backend: Backend, path: str, data: bytes) -> None:
    """Put a file on the mirror the way someone other than mirrorkit would."""
    if isinstance(backend, LocalBackend):
        (backend.root / path).parent.mkdir(parents=True, exist_ok=True)
        (backend.root / path).write_bytes(data)
    else:
        backend.put(path, data, "application/octet-stream", cache="no-cache")


class Killed(BaseException):
    """A stand-in for ``kill -9``: no handler of the publish catches it, so nothing after
    the point of the kill runs (no rollback, no cleanup, no journal update)."""


class Recorder(Backend):
    """Passes writes through one at a time, logging each and checking invariant 1 after.

    After every write, :func:`mirrorkit.verify.verify_target` reads the mirror as any
    verifier does (the root, its signature by the root's hash, transition alternatives):
    once the mirror has verified (before the publish, or after any write), every later
    state must verify too, at a version never older than one seen before.  ``window``
    excuses the documented window of a publish without a signer: a file the live root
    names, replaced in place since the last commit.  ``fail_on`` makes the write of that
    path fail with a PublishError; ``kill_at`` raises :class:`Killed` instead of the
    write of that index (0-based, counting puts and deletes).
    """

    def __init__(self, inner: Backend, fail_on: str | None = None,
                 key: sign.PublicKey = PUB, *, kill_at: int | None = None,
                 window: bool = False):
        self.inner = inner
        self.name = self.label = inner.name
        self.capabilities = inner.capabilities
        self.fail_on = fail_on
        self.kill_at = kill_at
        self.key = key
        self.window = window
        self.ops: list[tuple[str, str]] = []   # puts and deletes that happened
        self.writes = 0                        # writes attempted
        self.gets: list[str] = []
        self.lists = 0
        self.violations: list[str] = []
        self.roots: list[Manifest] = []   # every authentic live root seen, in order
        self.replaced: set[str] = set()   # paths written since the last commit
        self._lock = threading.Lock()
        # What the checks read, kept until a write through here changes it (or another
        # publish starts: the mirror may have been changed behind the recorder's back).
        self._seen: dict[str, bytes | None] = {}
        self.ok = self._verified([])

    @contextlib.contextmanager
    def publishing(self) -> Iterator[None]:
        with self._lock:
            self._seen.clear()
        with self.inner.publishing():
            yield

    def read_many(self, reads: Sequence[tuple[str, int]]) -> dict[str, bytes | None]:
        """The mirror as a verify target (unlisted: extra files are never fatal)."""
        for path, _ in reads:
            if path not in self._seen:
                self._seen[path] = self.inner.get(path)
        return {p: (data[:limit + 1] if (data := self._seen[p]) is not None else None)
                for p, limit in reads}

    def listing(self) -> None:
        return None

    def tag(self, path: str) -> str | None:
        return self.inner.tag(path)

    def _start_write(self, what: str) -> None:
        if self.kill_at is not None and self.writes == self.kill_at:
            raise Killed(f"killed before write {self.writes}: {what}")
        self.writes += 1

    def put(self, path: str, data: bytes, media_type: str, *, cache: str,
            if_match: str | None = None, if_absent: bool = False) -> str:
        with self._lock:
            self._start_write(f"put {path}")
            if path == self.fail_on:
                raise PublishError(f"cannot upload {path}: injected", where=f"mirror {self.name}")
            self._seen.pop(path, None)
            tag = self.inner.put(path, data, media_type, cache=cache, if_match=if_match,
                                 if_absent=if_absent)
            self.ops.append(("put", path))
            if path == MANIFEST_NAME:
                self.replaced.clear()
            else:
                self.replaced.add(path)
            self._check()
            return tag

    def delete(self, paths: Sequence[str]) -> None:
        with self._lock:
            self._start_write(f"delete {list(paths)}")
            for path in paths:
                self._seen.pop(path, None)
            self.inner.delete(paths)
            self.ops.extend(("delete", p) for p in paths)
            self._check()

    def get(self, path: str, *, limit: int | None = None) -> bytes | None:
        self.gets.append(path)
        return self.inner.get(path, limit=limit)

    def head(self, path: str) -> ObjectInfo | None:
        return self.inner.head(path)

    def list(self) -> Iterator[ObjectInfo]:
        self.lists += 1
        return self.inner.list()

    def discard_partial_writes(self) -> None:
        self.inner.discard_partial_writes()

    def _verified(self, problems: builtins.list[str]) -> bool:
        """Whether the mirror verifies now; what is wrong goes to ``problems``."""
        try:
            report = verify_target(self, self.key, now=T0)  # type: ignore[arg-type]
        except TargetUnreachableError as e:
            problems.append(str(e))
            return False
        fatal = [f for f in report.findings if f.fatal and not (
            self.window and f.kind in ("tampered", "size") and f.path in self.replaced)]
        problems += [f.line() for f in fatal]
        if report.manifest is None:
            return False
        if self.roots and report.manifest.version < self.roots[-1].version:
            problems.append(f"version {report.manifest.version} after "
                            f"{self.roots[-1].version}")
        if not self.roots or self.roots[-1] != report.manifest:
            self.roots.append(report.manifest)
        return not problems

    def _check(self) -> None:
        problems: builtins.list[str] = []
        if self._verified(problems):
            self.ok = True
        elif self.ok:
            self.violations.append(f"after {self.ops[-1]}: {problems}")

    def puts(self) -> builtins.list[str]:  # `list` is the Backend method in here
        return [path for op, path in self.ops if op == "put"]

    def deletes(self) -> builtins.list[str]:
        return [path for op, path in self.ops if op == "delete"]

    def transitions(self) -> builtins.list[Manifest]:
        """The transition roots seen live."""
        return [r for r in self.roots if r.transition]


class MemoryJournal:
    """What the store keeps for a mirror between publishes, in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value


@pytest.fixture(params=["local", "s3"])
def mirror(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        config = MirrorConfig(name="dir", type="local", public_url="http://127.0.0.1:1/",
                              path=tmp_path / "mirror")
    else:
        config = request.getfixturevalue("s3_bucket")
    with open_backend(config) as backend:
        yield backend


def contents(backend: Backend) -> dict[str, bytes]:
    return {o.path: backend.get(o.path) or b"" for o in backend.list()}


def served(backend: Backend) -> dict[str, bytes]:
    """``contents`` but for the signatures kept by root hash (``signatures/``)."""
    return {p: d for p, d in contents(backend).items() if not p.startswith("signatures/")}


class BackendTarget:
    """A mirror as ``verify`` sees it, read through its backend."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.label = backend.name
        self.reads: list[str] = []

    def read_many(self, reads: Sequence[tuple[str, int]]) -> dict[str, bytes | None]:
        self.reads += [p for p, _ in reads]
        with ThreadPoolExecutor(8) as pool:  # backends are thread-safe
            got = pool.map(self.backend.get, [p for p, _ in reads])
        found = {p: (data, limit) for (p, limit), data in zip(reads, got, strict=True)}
        return {p: data[:limit + 1] if data is not None else None
                for p, (data, limit) in found.items()}

    def listing(self) -> list[str]:
        return [o.path for o in self.backend.list()]


def findings(backend: Backend) -> list[tuple[str, str | None]]:
    report = verify_target(BackendTarget(backend), PUB, now=T0)
    return [(f.kind, f.path) for f in report.findings]


# -- first and second versions --------------------------------------------------------------

def test_first_publish_uploads_everything(mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    parts = part_paths(tree)
    result = publish_tree(mirror, tree, key=PUB, concurrency=4)

    # Changed on purpose: one more PUT, the signature by the root's hash (before the root).
    assert result == PublishResult(
        mirror=mirror.name, version=1, uploaded=len(V1) + len(parts) + 3, skipped=0,
        deleted=0, bytes_uploaded=sum(len(d) for d in published(tree).values()),
        dry_run=False, written=result.written)
    assert {f.path for f in result.written} == set(V1) | parts
    assert contents(mirror) == published(tree)
    assert live_version(mirror) == 1
    assert findings(mirror) == []


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_second_publish_uploads_only_changes_in_order(
        mirror: Backend, tmp_path: Path, signed: bool) -> None:
    tree1 = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree1, key=PUB)
    tree = make_tree(tmp_path, 2, V2, retired=V2_RETIRED, after=tree1)
    new_parts, old_parts = part_paths(tree), part_paths(tree1)
    assert new_parts.isdisjoint(old_parts)  # one bin, and it changed
    # Without a signer, index.html is briefly newer than the live root (the old window).
    recorder = Recorder(mirror, window=not signed)

    result = publish_tree(recorder, tree, key=PUB, signer=SIGN if signed else None,
                          concurrency=4)

    # rss.xml, article a, image x, retired b (still there as listed) and the old part (kept
    # as a previous part) are already on the mirror; c is neither listed nor retired.
    # Changed on purpose: the signatures by root hash are PUT too (one more with a
    # transition root, which is also committed), and without a journal the live root's
    # signature (and the transition's) go at once, with c.
    puts = recorder.puts()
    assert set(puts[:2]) == {"articles/d/index.html", "media/y.png"}  # stage 1, files
    assert set(puts[2:2 + len(new_parts)]) == new_parts               # stage 1, parts last
    signatures = {by_hash(tree1), by_hash(tree)}
    if signed:
        [transition] = recorder.transitions()  # committed, then live during stage 2
        assert transition.version == 2 and [p for p, _ in transition.transition] == [
            "index.html"]
        transition_signature = signature_path(transition.to_bytes())
        signatures.add(transition_signature)
        assert set(puts[-7:-5]) == {by_hash(tree), transition_signature}
        assert puts[-5:] == [MANIFEST_NAME, SIGNATURE_NAME, "index.html",  # commit 1, stage 2
                             MANIFEST_NAME, SIGNATURE_NAME]                # commit 2
    else:
        assert recorder.transitions() == []
        assert puts[-4:] == [by_hash(tree), "index.html", MANIFEST_NAME, SIGNATURE_NAME]
    assert (result.uploaded, result.skipped, result.deleted) == (
        len(puts), 5, len(signatures))
    assert len(puts) == 3 + len(new_parts) + (6 if signed else 3)
    assert set(recorder.deletes()) == {"articles/c/index.html"} | signatures - {by_hash(tree)}
    assert recorder.ops[-len(signatures):] == [("delete", p) for p in recorder.deletes()]
    assert recorder.lists == 0  # planned from the signed root, not from a listing
    assert recorder.violations == []
    # The retired page stays for readers holding old links; the dropped one is gone; the
    # replaced part stays one more version.
    old = {p: d for p, d in site(tree1).items() if p in old_parts}
    assert contents(mirror) == {**published(tree), **V2_RETIRED, **old}
    assert findings(mirror) == []


def test_retired_files_go_once_no_longer_listed(mirror: Backend, tmp_path: Path) -> None:
    publish_tree(mirror, make_tree(tmp_path, 1, V1), key=PUB)
    tree2 = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    publish_tree(mirror, tree2, key=PUB)
    tree = make_tree(tmp_path, 3, V2)  # the grace window has passed

    result = publish_tree(mirror, tree, key=PUB)

    # b, and v2's part (this tree names no previous parts); changed on purpose: and v2's
    # signature by root hash (without a journal it goes at once).
    assert result.deleted == 1 + len(part_paths(tree2) - part_paths(tree)) + 1
    assert contents(mirror) == published(tree)


# v3 brings back article b, retired by v2, with other content, and adds image z.
V3 = {**V2, "articles/b/index.html": b"<p>b, back and rewritten</p>",
      "media/z.png": b"\x89PNG z"}


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("fail_on", [None, "media/z.png", MANIFEST_NAME],
                         ids=["ok", "stage-1-fails", "commit-fails"])
def test_a_retired_file_brought_back_changed_waits_for_the_commit(
        mirror: Backend, tmp_path: Path, fail_on: str | None, signed: bool) -> None:
    # The live manifest still names b (as retired, with its old hash) and verify checks it
    # while it is served, so new content for b must not arrive as a "new" file in stage 1.
    signer = SIGN if signed else None
    steps = Recorder(mirror, window=not signed)
    publish_tree(steps, make_tree(tmp_path, 1, V1), key=PUB, signer=signer)
    tree2 = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    publish_tree(steps, tree2, key=PUB, signer=signer)
    tree3 = make_tree(tmp_path, 3, V3)
    new_parts = part_paths(tree3)
    recorder = Recorder(mirror, fail_on=fail_on, window=not signed)

    if fail_on is None:
        result = publish_tree(recorder, tree3, key=PUB, signer=signer, concurrency=1)
        # Stage 1 is the new image and the new part (and, new, the signatures by root
        # hash); b is replaced in stage 2, just before the commit (with a signer, after
        # the transition root that allows its old and new content).
        stage1 = ["media/z.png", *sorted(new_parts), by_hash(tree3)]
        if signed:
            [transition] = recorder.transitions()
            assert transition.transition == (("articles/b/index.html", (
                (sha256_hex(V1["articles/b/index.html"]), len(V1["articles/b/index.html"])),)),)
            assert recorder.puts() == [*stage1, signature_path(transition.to_bytes()),
                                       MANIFEST_NAME, SIGNATURE_NAME, "articles/b/index.html",
                                       MANIFEST_NAME, SIGNATURE_NAME]
        else:
            assert recorder.puts() == [*stage1, "articles/b/index.html", MANIFEST_NAME,
                                       SIGNATURE_NAME]
        assert (result.uploaded, result.skipped) == (len(recorder.puts()), len(V2))
    else:
        with pytest.raises(PublishError, match="injected"):
            publish_tree(recorder, tree3, key=PUB, signer=signer, concurrency=1)
        assert live_version(mirror) == 2
        # Stopped before or at the commit: version 2 is whole (the old signature, b as it
        # was), so it verifies.  Without a signer, the rollback also removed the unnamed
        # new image and part; changed on purpose: with a signer nothing is rolled back, and
        # what stage 1 sent stays for the next run (extra files are not fatal).
        assert mirror.get("articles/b/index.html") == V1["articles/b/index.html"]
        uploaded = signed and fail_on == MANIFEST_NAME
        assert (mirror.get("media/z.png") is not None) == uploaded
        assert all((mirror.get(p) is not None) == uploaded for p in new_parts)
        expected = [("extra", p) for p in sorted(["media/z.png", *new_parts])]
        assert findings(mirror) == (expected if uploaded else [])
        # The next run completes the work (the window, if open, closes with its commit).
        recorder.fail_on = None
        publish_tree(recorder, tree3, key=PUB, signer=signer)
    assert steps.violations == [] and recorder.violations == []
    assert contents(mirror) == published(tree3)
    assert findings(mirror) == []


def test_republishing_the_live_version_sends_nothing(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree, key=PUB)
    recorder = Recorder(mirror)

    result = publish_tree(recorder, tree, key=PUB)

    assert recorder.ops == []
    # A live root equal in bytes to ours is the whole answer, nothing compared, so nothing
    # is counted as skipped either; changed on purpose: two GETs, the root and the standard
    # signature (checked, to put it right if damaged).
    assert recorder.gets == [MANIFEST_NAME, SIGNATURE_NAME] and recorder.lists == 0
    assert (result.uploaded, result.skipped, result.deleted) == (0, 0, 0)


def test_a_damaged_signature_is_not_trusted_and_the_next_version_restores_it(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree, key=PUB)
    mirror.put(SIGNATURE_NAME, b"garbage", "text/plain", cache="no-cache")
    recorder = Recorder(mirror)

    # Changed on purpose: verify reads the signature kept by the root's hash, so a damaged
    # manifest.json.minisig alone breaks only bare minisign users; republishing the same
    # root puts it right (the two GETs of a no-op, then one PUT).
    assert findings(mirror) == []
    assert publish_tree(recorder, tree, key=PUB).uploaded == 1
    assert recorder.ops == [("put", SIGNATURE_NAME)]
    assert mirror.get(SIGNATURE_NAME) == (tree / SIGNATURE_NAME).read_bytes()
    assert recorder.violations == []

    # With both signatures damaged, the next version finds a root it cannot trust, so it
    # sends every file, and its commit writes good signatures.
    for path in (SIGNATURE_NAME, by_hash(tree)):
        mirror.put(path, b"garbage", "text/plain", cache="no-cache")
    assert findings(mirror) == [("signature", SIGNATURE_NAME)]
    tree2 = make_tree(tmp_path, 2, {**V1, "index.html": b"<h1>home v2</h1>"})
    recorder = Recorder(mirror)
    result = publish_tree(recorder, tree2, key=PUB)

    assert result.uploaded == len(V1) + len(part_paths(tree2)) + 3
    assert recorder.puts()[-3:] == [by_hash(tree2), MANIFEST_NAME, SIGNATURE_NAME]
    assert mirror.get(SIGNATURE_NAME) == (tree2 / SIGNATURE_NAME).read_bytes()
    assert recorder.violations == []
    assert findings(mirror) == []


def test_changed_pages_are_replaced_with_short_caching(
        s3_bucket: MirrorConfig, tmp_path: Path) -> None:
    files = {**V1, "articles/a/index.html": b"<p>a, corrected</p>"}
    tree2 = make_tree(tmp_path, 2, files)
    with open_backend(s3_bucket) as backend:
        publish_tree(backend, make_tree(tmp_path, 1, V1), key=PUB)
        publish_tree(backend, tree2, key=PUB)

    def cache(path: str) -> str:
        with urllib.request.urlopen(s3_bucket.public_url + path) as r:
            return str(r.headers["Cache-Control"])

    # Changed on purpose: only content-addressed names (media/, parts/) are immutable; every
    # page is mutable and gets the tree source's default lifetime, changed or not; the
    # manifest and its signature get a minute.
    assert cache("media/x.png") == CACHE_IMMUTABLE
    for part in part_paths(tree2):
        assert cache(part) == CACHE_IMMUTABLE
    assert cache("articles/b/index.html") == "public, max-age=300"
    assert cache("articles/a/index.html") == "public, max-age=300"
    assert cache("index.html") == "public, max-age=300"
    assert cache(MANIFEST_NAME) == "public, max-age=60"
    assert cache(SIGNATURE_NAME) == "public, max-age=60"


# -- a mirror that is not as the live manifest says -----------------------------------------

def test_a_file_removed_by_hand_is_repaired_only_without_a_trusted_root(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree, key=PUB)
    mirror.delete(["articles/a/index.html"])
    recorder = Recorder(mirror)

    # Changed on purpose: the signed live root, not a listing, decides what is skipped, so
    # a file removed by hand is not noticed by a publish that trusts the root (verify
    # names it) ...
    publish_tree(recorder, tree, key=PUB)
    tree2 = make_tree(tmp_path, 2, {**V1, "index.html": b"<h1>home v2</h1>"})
    publish_tree(recorder, tree2, key=PUB)
    assert "articles/a/index.html" not in recorder.puts()
    assert findings(mirror) == [("missing", "articles/a/index.html")]

    # ... while a publish that cannot trust the root (here: given no key) sends every file.
    tree3 = make_tree(tmp_path, 3, {**V1, "index.html": b"<h1>home v3</h1>"})
    result = publish_tree(mirror, tree3)

    assert (result.uploaded, result.skipped) == (len(V1) + len(part_paths(tree3)) + 3, 0)
    # Changed on purpose: signatures by root hash are never deleted on the word of a
    # listing (version 2's stays: this publish could not trust its root).
    assert served(mirror) == site(tree3) and mirror.get(by_hash(tree3)) is not None
    assert findings(mirror) == []


def test_unreadable_live_manifest_means_upload_everything(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree, key=PUB)
    mirror.put(MANIFEST_NAME, b"{not json", "application/json", cache="no-cache")

    result = publish_tree(mirror, tree, key=PUB)

    assert (result.uploaded, result.skipped) == (len(V1) + len(part_paths(tree)) + 3, 0)
    assert contents(mirror) == published(tree)


@pytest.mark.parametrize("signed_by", ["nobody", "another-key"])
def test_a_forged_live_root_claiming_a_huge_version_does_not_freeze_publishing(
        mirror: Backend, tmp_path: Path, signed_by: str) -> None:
    publish_tree(mirror, make_tree(tmp_path, 1, V1), key=PUB)
    # Someone with write access to the mirror (not the outlet's key) puts up a root for
    # this outlet claiming version 999999: believed, it would refuse every real version.
    forged = make_tree(tmp_path, 999999, V1, name="forged",
                       key=sign.SecretKey.generate())
    plant(mirror, MANIFEST_NAME, (forged / MANIFEST_NAME).read_bytes())
    if signed_by == "another-key":
        plant(mirror, SIGNATURE_NAME, (forged / SIGNATURE_NAME).read_bytes())
    tree = make_tree(tmp_path, 2, V2)
    recorder = Recorder(mirror)

    result = publish_tree(recorder, tree, key=PUB)

    assert result.version == 2 and live_version(mirror) == 2
    # Not believed for skipping either: every file of version 2 is sent.
    assert result.skipped == 0
    assert set(recorder.puts()) == set(V2) | part_paths(tree) | set(CONTROL) | {by_hash(tree)}
    assert recorder.violations == []
    # Changed on purpose: the signature of version 1 by its hash stays (the forged root
    # does not name it, and a listing never licenses deleting signatures/).
    assert served(mirror) == site(tree) and mirror.get(by_hash(tree)) is not None
    assert findings(mirror) == []


@pytest.mark.parametrize("forged", [False, True], ids=["signed-root-intact", "forged-root"])
def test_a_forged_root_does_not_spare_a_tampered_file(
        mirror: Backend, tmp_path: Path, forged: bool) -> None:
    tree1 = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree1, key=PUB)
    page = "articles/a/index.html"
    plant(mirror, page, b"<p>A</p>")  # same size, other content
    if forged:
        # A root that names the genuine hashes (so trusting it would skip the tampered
        # page), with a later expiry: not signed by the outlet's key.
        genuine = root_of(tree1)
        fake = dataclasses.replace(genuine, expires=genuine.expires.replace(year=2099))
        plant(mirror, MANIFEST_NAME, fake.to_bytes())
    tree2 = make_tree(tmp_path, 2, {**V1, "index.html": b"<h1>home v2</h1>"})
    recorder = Recorder(mirror)

    publish_tree(recorder, tree2, key=PUB)

    if forged:
        # Its hashes are not believed: every file is sent, the page is put right.
        assert page in recorder.puts()
        assert set(recorder.puts()) == set(V1) | part_paths(tree2) | set(CONTROL) | {
            by_hash(tree2)}
        assert mirror.get(page) == V1[page]
        assert findings(mirror) == []
    else:
        # The outlet's own root says the page is there as listed: it is skipped (a signed
        # root is trusted for what the mirror holds), and verify names the damage.
        assert page not in recorder.puts()
        assert findings(mirror) == [("tampered", page)]


def test_refuses_to_publish_over_files_it_did_not_put_there(tmp_path: Path) -> None:
    root = tmp_path / "home"
    (root / "Documents").mkdir(parents=True)
    (root / "Documents" / "thesis.odt").write_bytes(b"years of work")
    backend = LocalBackend("usb", root)

    with pytest.raises(PublishError, match="refusing") as info:
        publish_tree(backend, make_tree(tmp_path, 1, V1), key=PUB)

    assert info.value.where == "mirror usb"
    assert "Documents/thesis.odt" in str(info.value)
    assert {o.path for o in backend.list()} == {"Documents/thesis.odt"}


def test_interrupted_first_publish_is_completed(tmp_path: Path) -> None:
    # A first publish killed after some uploads leaves files but no manifest: not foreign.
    backend = LocalBackend("usb", tmp_path / "m")
    tree = make_tree(tmp_path, 1, V1)
    backend.put("media/x.png", V1["media/x.png"], "image/png", cache=CACHE_IMMUTABLE)

    result = publish_tree(backend, tree, key=PUB)

    assert result.uploaded == len(V1) + len(part_paths(tree)) + 3  # and the by-hash signature
    assert contents(backend) == published(tree)


PWA = {
    MANIFEST_NAME: b'{"name": "My App", "start_url": "/", "display": "standalone"}',
    "app.js": b"console.log('app')",
    "index.html": b"<h1>the app</h1>",
}


@pytest.mark.parametrize("manifest", [
    pytest.param(PWA[MANIFEST_NAME], id="web-app-manifest"),
    pytest.param(b"{not json", id="unparsable"),
])
def test_a_manifest_json_that_is_not_ours_does_not_license_deleting(
        mirror: Backend, tmp_path: Path, manifest: bytes) -> None:
    # A mirror path pointed at a web app's root: its manifest.json is not mirrorkit's.
    for path, data in {**PWA, MANIFEST_NAME: manifest}.items():
        plant(mirror, path, data)
    before = contents(mirror)
    recorder = Recorder(mirror)

    with pytest.raises(PublishError, match="refusing") as info:
        publish_tree(recorder, make_tree(tmp_path, 1, V1), key=PUB)

    assert "app.js" in str(info.value)
    assert "not a mirrorkit manifest" in str(info.value)
    assert recorder.ops == []
    assert contents(mirror) == before


def test_another_outlets_mirror_is_not_ours(mirror: Backend, tmp_path: Path) -> None:
    # Signed with the same key, so only the outlet name tells them apart.
    theirs = make_tree(tmp_path, 5, V1, outlet="other-outlet")
    publish_tree(mirror, theirs, key=PUB)
    before = contents(mirror)

    with pytest.raises(PublishError, match="refusing") as info:
        publish_tree(mirror, make_tree(tmp_path, 1, V2, name="ours"), key=PUB)

    assert "for outlet 'other-outlet'" in str(info.value)
    assert contents(mirror) == before


def test_a_root_holding_only_what_the_bundle_names_is_taken_over(
        mirror: Backend, tmp_path: Path) -> None:
    # Nothing would be deleted, so an unreadable manifest.json is simply replaced.
    tree = make_tree(tmp_path, 1, V1)
    for path, data in V1.items():
        plant(mirror, path, data)
    plant(mirror, MANIFEST_NAME, b"{not json")

    publish_tree(mirror, tree, key=PUB)

    assert contents(mirror) == published(tree)


# -- never backwards --------------------------------------------------------------------------

@pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry-run"])
def test_refuses_to_take_the_mirror_back_to_an_older_version(
        mirror: Backend, tmp_path: Path, dry_run: bool) -> None:
    # The state directory was restored from an old backup: builds count from 1 again.
    publish_tree(mirror, make_tree(tmp_path, 7, V2), key=PUB)
    before = contents(mirror)
    recorder = Recorder(mirror)

    with pytest.raises(PublishError, match="refusing") as info:
        publish_tree(recorder, make_tree(tmp_path, 1, V1), key=PUB, dry_run=dry_run)

    assert "version 7" in str(info.value) and "version 1" in str(info.value)
    assert info.value.hint is not None and "restored from a backup" in info.value.hint
    assert recorder.ops == []
    assert contents(mirror) == before


def test_refuses_the_same_version_with_other_content(mirror: Backend, tmp_path: Path) -> None:
    publish_tree(mirror, make_tree(tmp_path, 3, V1), key=PUB)
    before = contents(mirror)

    with pytest.raises(PublishError, match="version 3") as info:
        publish_tree(mirror, make_tree(tmp_path, 3, V2, name="other-v3"), key=PUB)

    assert info.value.where == f"mirror {mirror.name}"
    assert contents(mirror) == before


def test_another_outlets_newer_version_is_not_a_rollback(tmp_path: Path) -> None:
    # Not ours (though signed with the same key): the foreign-root rule decides, and a root
    # with nothing to delete is fine.
    backend = LocalBackend("usb", tmp_path / "m")
    publish_tree(backend, make_tree(tmp_path, 9, V1, outlet="other-outlet"), key=PUB)
    tree = make_tree(tmp_path, 1, V1, name="ours")

    assert publish_tree(backend, tree, key=PUB).version == 1
    assert served(backend) == site(tree)


# -- odd names and leftovers on the mirror ------------------------------------------------------

ODD = {"read me.txt": b"hello", "naïve café.html": b"<p>x</p>", "notes/draft (1).txt": b"d"}


@pytest.mark.parametrize("trusted", [True, False], ids=["signed-root", "unknown-root"])
def test_stray_files_with_odd_names(mirror: Backend, tmp_path: Path, trusted: bool) -> None:
    tree1 = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree1, key=PUB)
    for path, data in ODD.items():
        plant(mirror, path, data)
    tree = make_tree(tmp_path, 2, V2)
    stale = 2 + len(part_paths(tree1))  # articles b and c (not retired), and v1's part

    result = publish_tree(mirror, tree, key=PUB if trusted else None)

    # Changed on purpose: with a trusted root and no journal, version 1's signature by root
    # hash goes too.
    if trusted:
        # Changed on purpose: with a signed live root, stage 3 deletes what that root named
        # and no listing is made, so strays stay (verify names them as extra, not fatal).
        assert result.deleted == stale + 1
        assert {o.path for o in mirror.list()} == set(published(tree)) | set(ODD)
        assert findings(mirror) == [("extra", p) for p in sorted(ODD)]
        assert verify_target(BackendTarget(mirror), PUB, now=T0).ok
    else:
        # A mirror without a trusted root is listed, and everything unnamed goes, version
        # 1's signature by root hash too.
        assert result.deleted == stale + len(ODD) + 1
        assert served(mirror) == site(tree) and mirror.get(by_hash(tree)) is not None
        assert mirror.get(by_hash(tree1)) is None


def test_an_operators_tmp_files_survive_refusal_and_dry_run(tmp_path: Path) -> None:
    root = tmp_path / "www"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / ".draft.tmp").write_bytes(b"my draft")
    backend = LocalBackend("www", root)

    with pytest.raises(PublishError, match="refusing"):
        publish_tree(backend, make_tree(tmp_path, 1, V1), key=PUB, dry_run=True)
    with pytest.raises(PublishError, match=r"notes/\.draft\.tmp"):
        publish_tree(backend, make_tree(tmp_path, 1, V1), key=PUB)

    assert (root / "notes" / ".draft.tmp").read_bytes() == b"my draft"


def test_a_publish_clears_what_a_killed_write_left(tmp_path: Path) -> None:
    root = tmp_path / "m"
    backend = LocalBackend("dir", root)
    publish_tree(backend, make_tree(tmp_path, 1, V1), key=PUB)
    leftover = root / TMP_DIR / ".index.html.k3j4.tmp"
    leftover.parent.mkdir()
    leftover.write_bytes(b"half a pa")
    tree = make_tree(tmp_path, 2, V2)

    publish_tree(backend, tree, key=PUB, dry_run=True)
    assert leftover.exists()  # a dry run changes nothing
    publish_tree(backend, tree, key=PUB, concurrency=4)

    assert not (root / TMP_DIR).exists()
    assert contents(backend) == published(tree)
    report = verify_target(DirectoryTarget(root), PUB, now=T0)
    assert report.ok and report.findings == ()


# -- cost follows the change -------------------------------------------------------------------

BIG = {f"articles/{n:02d}/index.html": f"<p>article {n}</p>".encode() for n in range(24)}


def test_one_changed_file_costs_that_file_its_part_and_the_commit(
        mirror: Backend, tmp_path: Path) -> None:
    tree1 = make_tree(tmp_path, 1, BIG, bins=8)
    publish_tree(mirror, tree1, key=PUB)
    page = "articles/07/index.html"
    tree2 = make_tree(tmp_path, 2, {**BIG, page: b"<p>article 7, corrected</p>"}, bins=8,
                      after=tree1)
    changed = part_paths(tree2) - part_paths(tree1)
    assert len(changed) == 1 and len(part_paths(tree1)) == 8
    recorder = Recorder(mirror, window=True)  # no signer: the page is replaced unsigned

    result = publish_tree(recorder, tree2, key=PUB, concurrency=4)

    # The new part goes in stage 1 (changed on purpose: with the new root's signature by
    # hash); the page is replaced in stage 2; then the commit, root first.
    assert recorder.puts() == [*changed, by_hash(tree2), page, MANIFEST_NAME, SIGNATURE_NAME]
    assert {f.path for f in result.written} == {page, *changed}
    # The old part stays a version; changed on purpose: without a journal version 1's
    # signature by hash goes at once.
    assert result.deleted == 1 and recorder.deletes() == [by_hash(tree1)]
    assert recorder.lists == 0
    # Only the root, its signature (by hash), the old part of the one changed bin, and the
    # page being replaced (kept for a rollback) were read.
    assert set(recorder.gets) <= {MANIFEST_NAME, by_hash(tree1), page,
                                  *(part_paths(tree1) - part_paths(tree2))}
    assert recorder.violations == []
    assert findings(mirror) == []


def test_replaced_parts_stay_one_more_version(mirror: Backend, tmp_path: Path) -> None:
    tree1 = make_tree(tmp_path, 1, BIG, bins=4)
    publish_tree(mirror, tree1, key=PUB)
    tree2 = make_tree(tmp_path, 2, {**BIG, "articles/01/index.html": b"<p>one v2</p>"},
                      bins=4, after=tree1)
    tree3 = make_tree(tmp_path, 3, {**BIG, "articles/02/index.html": b"<p>two v3</p>"},
                      bins=4, after=tree2)
    gone_in_2 = part_paths(tree1) - part_paths(tree2)
    gone_in_3 = part_paths(tree2) - part_paths(tree3)
    assert gone_in_2 and gone_in_3 and gone_in_2.isdisjoint(part_paths(tree3))

    publish_tree(mirror, tree2, key=PUB)

    # Named by the live root as previous parts, and still served, as they were.
    assert {p.path for p in root_of(tree2).previous_parts} == gone_in_2
    assert all(mirror.get(p) == (tree1 / p).read_bytes() for p in gone_in_2)
    assert findings(mirror) == []

    recorder = Recorder(mirror, window=True)  # no signer: pages are replaced unsigned
    result = publish_tree(recorder, tree3, key=PUB)

    # The version after: those go, and version 2's replaced parts take their place.
    # Changed on purpose: without a journal, version 2's signature by hash goes too.
    assert set(recorder.deletes()) == gone_in_2 | {by_hash(tree2)}
    assert result.deleted == len(gone_in_2) + 1
    assert all(mirror.get(p) is None for p in gone_in_2)
    assert all(mirror.get(p) == (tree2 / p).read_bytes() for p in gone_in_3)
    assert recorder.violations == []
    assert findings(mirror) == []


def test_the_check_after_publish_reads_what_was_written(
        mirror: Backend, tmp_path: Path) -> None:
    publish_tree(mirror, make_tree(tmp_path, 1, V1), key=PUB)
    tree = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    root = (tree / MANIFEST_NAME).read_bytes()
    result = publish_tree(mirror, tree, key=PUB)
    written = {f.path for f in result.written}
    assert "index.html" in written and "rss.xml" not in written

    target = BackendTarget(mirror)
    report = check_written(target, PUB, root, result.written, now=T0)
    assert report.ok and report.findings == (), report.findings
    assert report.files_checked == len(written)
    # Changed on purpose: the signature is read by the root's hash.
    assert set(target.reads) == {MANIFEST_NAME, by_hash(tree), *written}

    # An unchanged file damaged since is not read; a written one is.
    plant(mirror, "rss.xml", b"<rss>v0</rss>")
    assert check_written(BackendTarget(mirror), PUB, root, result.written, now=T0).ok
    plant(mirror, "index.html", b"<h1>home v3</h1>")
    report = check_written(BackendTarget(mirror), PUB, root, result.written, now=T0)
    assert not report.ok
    assert [(f.kind, f.path) for f in report.findings] == [("tampered", "index.html")]
    # And the root must be the one this run published.
    other = check_written(BackendTarget(mirror), PUB, (tmp_path / "bundle-v1" /
                          MANIFEST_NAME).read_bytes(), result.written, now=T0)
    assert [(f.kind, f.path) for f in other.findings] == [("changed", MANIFEST_NAME)]


# -- dry runs and failures ------------------------------------------------------------------

def test_dry_run_reports_and_changes_nothing(mirror: Backend, tmp_path: Path) -> None:
    tree1 = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree1, key=PUB)
    before = contents(mirror)
    tree = make_tree(tmp_path, 2, V2, retired=V2_RETIRED, after=tree1)
    recorder = Recorder(mirror)

    planned = publish_tree(recorder, tree, key=PUB, dry_run=True)

    assert recorder.ops == []
    assert contents(mirror) == before
    done = publish_tree(mirror, tree, key=PUB)
    # What is sent and skipped is planned exactly (the counts: see the test below).
    assert (planned.version, planned.skipped, planned.written, planned.dry_run) == (
        done.version, done.skipped, done.written, True)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_dry_run_counts_what_the_real_run_does(
        mirror: Backend, tmp_path: Path, signed: bool) -> None:
    tree1 = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree1, key=PUB)
    tree = make_tree(tmp_path, 2, V2, retired=V2_RETIRED, after=tree1)
    signer = SIGN if signed else None

    planned = publish_tree(mirror, tree, key=PUB, signer=signer, dry_run=True)

    done = publish_tree(mirror, tree, key=PUB, signer=signer)
    assert planned == dataclasses.replace(done, dry_run=True)


def test_failed_upload_leaves_the_live_version_whole(mirror: Backend, tmp_path: Path) -> None:
    tree1 = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree1, key=PUB)
    tree2 = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    failing = Recorder(mirror, fail_on="media/y.png")

    with pytest.raises(PublishError, match=r"media/y\.png") as info:
        publish_tree(failing, tree2, key=PUB, concurrency=1)

    assert info.value.where == f"mirror {mirror.name}"
    assert all(path not in failing.puts() for path in ("index.html", MANIFEST_NAME))
    # What stage 1 had added is gone again (no signer: the rollback of the old protocol).
    assert contents(mirror) == published(tree1)
    assert live_version(mirror) == 1
    assert failing.violations == []
    # The next run completes the work.
    assert publish_tree(mirror, tree2, key=PUB).version == 2
    assert contents(mirror) == {**published(tree2), **V2_RETIRED}


@pytest.mark.parametrize("first", [
    pytest.param(False, id="update"),
    pytest.param(True, id="first-publish"),
])
def test_failed_commit_leaves_the_old_manifest_verifiable(
        mirror: Backend, tmp_path: Path, first: bool) -> None:
    if not first:
        publish_tree(mirror, make_tree(tmp_path, 1, V1), key=PUB)
    tree = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    # e.g. 503 after every retry; no signer: index.html is replaced unsigned, then put back.
    failing = Recorder(mirror, fail_on=MANIFEST_NAME, window=True)

    with pytest.raises(PublishError, match=r"manifest\.json: injected"):
        publish_tree(failing, tree, key=PUB)

    if first:
        # No manifest is live: no signature is left without its manifest either.
        assert mirror.get(MANIFEST_NAME) is None
        assert mirror.get(SIGNATURE_NAME) is None
    else:
        manifest_bytes, signature = mirror.get(MANIFEST_NAME), mirror.get(SIGNATURE_NAME)
        assert manifest_bytes is not None and signature is not None
        live, problems = check_manifest(manifest_bytes, signature, PUB, now=T0)
        assert problems == []
        assert live is not None and live.version == 1
        assert findings(mirror) == []
    assert failing.violations == []
    # The next run completes the work.
    assert publish_tree(mirror, tree, key=PUB).version == 2
    manifest_bytes, signature = mirror.get(MANIFEST_NAME), mirror.get(SIGNATURE_NAME)
    assert manifest_bytes is not None and signature is not None
    assert check_manifest(manifest_bytes, signature, PUB, now=T0)[1] == []


def test_bundle_file_that_does_not_match_its_manifest_is_not_sent(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    (tree / "articles/a/index.html").write_bytes(b"<p>tampered</p>")

    with pytest.raises(PublishError, match="does not match"):
        publish_tree(mirror, tree, key=PUB)

    assert mirror.get(MANIFEST_NAME) is None
    assert mirror.get("articles/a/index.html") is None


@pytest.mark.parametrize(("damage", "message"), [
    pytest.param(lambda t: (t / SIGNATURE_NAME).unlink(), "manifest.json.minisig",
                 id="unsigned"),
    pytest.param(lambda t: (t / MANIFEST_NAME).unlink(), "manifest.json", id="no-manifest"),
    pytest.param(lambda t: (t / MANIFEST_NAME).write_text("{}"), "malformed manifest",
                 id="malformed-manifest"),
])
def test_broken_bundles_are_refused_before_anything_is_written(
        mirror: Backend, tmp_path: Path, damage: Callable[[Path], object], message: str,
) -> None:
    tree = make_tree(tmp_path, 1, V1)
    damage(tree)
    with pytest.raises(PublishError, match=re.escape(message)) as info:
        publish_tree(mirror, tree, key=PUB)
    assert info.value.where is not None and info.value.where.startswith(f"mirror {mirror.name}")
    assert list(mirror.list()) == []


def test_one_failing_mirror_does_not_stop_the_others(
        s3_bucket: MirrorConfig, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    (tmp_path / "not-a-dir").write_text("a file where the mirror directory should be")
    with socket.socket() as s:  # a port nobody listens on once it is closed
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    backends: dict[str, Backend] = {
        "good-dir": LocalBackend("good-dir", tmp_path / "good"),
        "bad-dir": LocalBackend("bad-dir", tmp_path / "not-a-dir"),
        "good-s3": S3Backend(dataclasses.replace(s3_bucket, name="good-s3")),
        "dead-s3": S3Backend(dataclasses.replace(s3_bucket, name="dead-s3", endpoint_url=closed),
                             max_attempts=1, connect_timeout=1, read_timeout=1),
    }
    messages: list[str] = []
    try:
        results = publish_all(dict.fromkeys(backends, tree), backends, concurrency=4,
                              key=PUB, progress=messages.append)
    finally:
        for backend in backends.values():
            backend.close()

    assert isinstance(results["good-dir"], PublishResult)
    assert isinstance(results["good-s3"], PublishResult)
    assert results["good-s3"].uploaded == len(V1) + len(part_paths(tree)) + 3  # by-hash too
    assert isinstance(results["bad-dir"], PublishError)
    assert isinstance(results["dead-s3"], PublishError)
    assert results["dead-s3"].retryable
    assert str(results["dead-s3"]).startswith("mirror dead-s3: ")
    assert any("good-s3: version 1 is live" in m for m in messages)


def test_a_mirror_without_a_bundle_is_an_error(tmp_path: Path) -> None:
    backend = LocalBackend("usb", tmp_path / "m")
    results = publish_all({}, {"usb": backend})
    assert isinstance(results["usb"], PublishError)
    assert "no bundle" in str(results["usb"])


# -- the plan, for any entries ----------------------------------------------------------------

_paths = st.sampled_from(["index.html", "rss.xml", "a.html", "b/c.html", "d/e.png", "f.txt"])
_files = st.dictionaries(_paths, st.sampled_from([b"1", b"22", b"333"]), max_size=6)


def _entries(files: dict[str, bytes], retired: dict[str, bytes]) -> dict[str, FileEntry]:
    out = {p: FileEntry(p, len(d), sha256_hex(d), "x/y") for p, d in files.items()}
    out.update({p: FileEntry(p, len(d), sha256_hex(d), "x/y", retired=T0)
                for p, d in retired.items() if p not in files})
    return out


@given(new=_files, retired=_files, old=st.none() | _files, old_retired=_files,
       present=st.dictionaries(_paths, st.integers(0, 3)), has_manifest=st.booleans(),
       ours=st.booleans())
def test_plan_never_deletes_what_the_new_version_names(
        new: dict[str, bytes], retired: dict[str, bytes], old: dict[str, bytes] | None,
        old_retired: dict[str, bytes], present: dict[str, int], has_manifest: bool,
        ours: bool) -> None:
    new_entries = _entries(new, retired)
    live = _entries(old, old_retired) if old is not None else None
    if has_manifest:
        present = {**present, MANIFEST_NAME: 10, SIGNATURE_NAME: 10}

    plan = plan_publish(new_entries, live, present=present if live is None else None,
                        ours=ours)

    first = [f.path for f in plan.first]
    replace = [f.path for f in plan.replace]
    sent = set(first + replace)
    assert len(sent) == len(first + replace)
    # Every new entry is sent or skipped, except retired ones the mirror never had.
    unsent_retired = {p for p, e in new_entries.items()
                      if e.retired is not None and (live is None or p not in live)}
    assert len(first) + len(replace) + plan.skipped == len(new_entries) - len(unsent_retired)
    assert not sent & unsent_retired
    assert not set(plan.delete) & (set(new_entries) | {MANIFEST_NAME, SIGNATURE_NAME})
    # Stage 2 only touches paths the live root names; stage 1 never writes other content
    # over a path the live root names (invariant 1).  Changed on purpose: a path the live
    # root names as retired (or in a transition) may not be there, so stage 1 sends it
    # again, with the content listed.
    named = live or {}
    assert all(p in named for p in replace)
    assert all(p not in named or new_entries[p].same_content(named[p]) for p in first)
    # Deletions come from the signed root when there is one, else from the listing; only a
    # root that is ours licenses them.
    if live is not None:
        assert set(plan.delete) <= set(live) and plan.foreign == ()
    else:
        assert set(plan.delete) <= set(present)
        assert plan.foreign == (() if ours else plan.delete)


# -- never a broken mirror (issue 7) ------------------------------------------------------------

def verifies(backend: Backend) -> bool:
    """Whether ``mirrorkit verify`` accepts the mirror as it stands (extras are notes)."""
    return verify_target(BackendTarget(backend), PUB, now=T0).ok


def standard_signature_ok(backend: Backend) -> bool:
    """Whether a bare ``minisign -Vm manifest.json`` user accepts the live root."""
    root, signature = backend.get(MANIFEST_NAME), backend.get(SIGNATURE_NAME)
    return (root is not None and signature is not None
            and check_manifest(root, signature, PUB, now=T0)[1] == [])


def test_with_a_signer_every_state_of_an_in_place_publish_verifies(
        mirror: Backend, tmp_path: Path) -> None:
    journal = MemoryJournal()
    tree1 = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree1, key=PUB, signer=SIGN, journal=journal)
    tree2 = make_tree(tmp_path, 2, V2, retired=V2_RETIRED, after=tree1)
    recorder = Recorder(mirror)  # strict: no window
    assert recorder.ok

    publish_tree(recorder, tree2, key=PUB, signer=SIGN, journal=journal)

    assert recorder.violations == []
    # The transition root was live while index.html was replaced in place.
    assert [(r.version, bool(r.transition)) for r in recorder.roots] == [
        (1, False), (2, True), (2, False)]
    [transition] = recorder.transitions()
    assert transition.transition == (("index.html", (
        (sha256_hex(V1["index.html"]), len(V1["index.html"])),)),)
    puts = recorder.puts()
    assert puts.index("index.html") > puts.index(MANIFEST_NAME)
    assert mirror.get(MANIFEST_NAME) == (tree2 / MANIFEST_NAME).read_bytes()
    assert standard_signature_ok(mirror) and verifies(mirror)
    # With a journal, the live root's signature (and the transition's) wait for the next
    # publish: a verifier that read version 1's root still finds its signature.
    assert recorder.deletes() == ["articles/c/index.html"]
    assert mirror.get(by_hash(tree1)) is not None
    tree3 = make_tree(tmp_path, 3, V2, after=tree2)
    recorder = Recorder(mirror)
    publish_tree(recorder, tree3, key=PUB, signer=SIGN, journal=journal)
    assert {by_hash(tree1), signature_path(transition.to_bytes())} <= set(recorder.deletes())
    assert recorder.violations == [] and verifies(mirror)


def test_the_in_place_check_is_strict(tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The recorder catches the window a transition root closes: without it (as if the
    # signer were ignored), replacing index.html in place breaks the live version.
    backend = LocalBackend("dir", tmp_path / "m")
    publish_tree(backend, make_tree(tmp_path, 1, V1), key=PUB, signer=SIGN)
    monkeypatch.setattr(_Publish, "_transition", lambda self, plan: None)
    recorder = Recorder(backend)

    publish_tree(recorder, make_tree(tmp_path, 2, V2), key=PUB, signer=SIGN)

    assert recorder.violations == [
        "after ('put', 'index.html'): ['tampered: index.html: content differs from what "
        "was signed']"]


def _mirror_at(request: pytest.FixtureRequest, tmp_path: Path, name: str,
               provider: str = "generic") -> Backend:
    """A fresh local or S3 mirror (a prefix of the test's bucket), by the test's param."""
    if request.node.callspec.params["mirror"] == "local":
        return LocalBackend(name, tmp_path / "mirrors" / name)
    config = request.getfixturevalue("s3_bucket")
    return S3Backend(dataclasses.replace(config, name=name, prefix=name, provider=provider))


@pytest.mark.parametrize("mirror", ["local", "s3"])
def test_a_publish_killed_at_any_write_leaves_a_mirror_that_verifies(
        request: pytest.FixtureRequest, tmp_path: Path, mirror: str) -> None:
    tree1 = make_tree(tmp_path, 1, V1)
    tree2 = make_tree(tmp_path, 2, V2, retired=V2_RETIRED, after=tree1)
    old_part = {p: (tree1 / p).read_bytes() for p in part_paths(tree1)}
    kill_at = 0
    while True:
        backend = _mirror_at(request, tmp_path, f"k{kill_at}")
        journal = MemoryJournal()
        publish_tree(backend, tree1, key=PUB, signer=SIGN, journal=journal)
        killed = Recorder(backend, kill_at=kill_at)
        try:
            publish_tree(killed, tree2, key=PUB, signer=SIGN, journal=journal)
        except Killed:
            pass
        else:
            break  # every write index has been killed
        finally:
            backend.close()
        assert killed.violations == [], kill_at
        assert verifies(backend), kill_at
        # The next publish (same journal) completes it, every state verifying.
        resumed = Recorder(backend)
        publish_tree(resumed, tree2, key=PUB, signer=SIGN, journal=journal)
        assert resumed.violations == [], kill_at
        assert backend.get(MANIFEST_NAME) == (tree2 / MANIFEST_NAME).read_bytes()
        assert standard_signature_ok(backend) and verifies(backend), kill_at
        # Everything version 2 names is there, and what it does not name is gone.
        assert served(backend) == {**site(tree2), **V2_RETIRED, **old_part}, kill_at
        kill_at += 1
    assert kill_at >= 10  # stage 1, both commits, stage 2 and the delete were all killed


def test_a_publish_killed_after_its_transition_commit_still_deletes_what_went(
        tmp_path: Path) -> None:
    backend = LocalBackend("dir", tmp_path / "m")
    journal = MemoryJournal()
    tree1 = make_tree(tmp_path, 1, V1)
    publish_tree(backend, tree1, key=PUB, signer=SIGN, journal=journal)
    tree2 = make_tree(tmp_path, 2, V2, retired=V2_RETIRED, after=tree1)
    killed = Recorder(backend, kill_at=6)  # after the transition root, before its signature
    with pytest.raises(Killed):
        publish_tree(killed, tree2, key=PUB, signer=SIGN, journal=journal)
    assert killed.transitions() and killed.ops[-1] == ("put", MANIFEST_NAME)

    publish_tree(backend, tree2, key=PUB, signer=SIGN, journal=journal)

    assert backend.get("articles/c/index.html") is None


class Paused(Recorder):
    """A publisher's view of the mirror that stops before writing ``at`` (or anything)
    until ``go`` is set, saying so with ``waiting``."""

    def __init__(self, inner: Backend, at: str | None) -> None:
        super().__init__(inner)
        self.at = at
        self.waiting = threading.Event()
        self.go = threading.Event()

    def put(self, path: str, data: bytes, media_type: str, *, cache: str,
            if_match: str | None = None, if_absent: bool = False) -> str:
        if self.at in (None, path):  # every upload thread waits, not only the first
            self.waiting.set()
            assert self.go.wait(30), "the other publisher never finished"
        return super().put(path, data, media_type, cache=cache, if_match=if_match,
                           if_absent=if_absent)


def race(first: Paused, second: Callable[[], object]) -> tuple[object, object]:
    """Run ``first`` (a publish through a Paused backend) in a thread until it pauses, then
    ``second`` to its end, then let ``first`` go on.  Returns each one's result or error."""
    outcome: list[object] = []

    def run_first() -> None:
        try:
            outcome.append(first_publish())
        except PublishError as e:
            outcome.append(e)

    first_publish = first.publish  # type: ignore[attr-defined]
    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        assert first.waiting.wait(30), "the first publisher never reached its pause"
        try:
            other: object = second()
        except PublishError as e:
            other = e
    finally:
        first.go.set()
        thread.join(30)
    assert not thread.is_alive() and len(outcome) == 1
    return outcome[0], other


RIVAL = {**V2, "articles/d/index.html": b"<p>d, as the other operator built it</p>",
         "index.html": b"<h1>home v2, other build</h1>"}


@pytest.mark.parametrize("pause", ["before-commit", "before-stage-1"])
@pytest.mark.parametrize("first", [False, True], ids=["update", "first-publish"])
@pytest.mark.parametrize(("mirror", "provider"), [
    ("s3", "minio"),    # If-Match / If-None-Match decided by the store
    ("s3", "generic"),  # the fallback: a look just before the write
    ("local", None),    # a lock held for the whole publish
])
def test_two_publishers_racing_one_wins_and_the_mirror_verifies(
        request: pytest.FixtureRequest, tmp_path: Path, mirror: str, provider: str | None,
        first: bool, pause: str) -> None:
    if provider == "generic" and pause == "before-stage-1":
        # The documented limit of stores without conditional writes (README: "elsewhere
        # mirrorkit looks just before writing (a short race)"): stage 1 cannot create
        # only, so a loser that planned from the old root can overwrite the winner's new
        # files before its commit fails.  Strict: this fails once the fallback closes it.
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
            "generic provider: no conditional writes, stage 1 cannot create only")))
    # Two operators (two state directories, one key) publish two builds of version 2.
    mine = make_tree(tmp_path, 2, V2, name="mine")
    theirs = make_tree(tmp_path, 2, RIVAL, name="theirs")
    a = _mirror_at(request, tmp_path, "race", provider or "generic")
    b = _mirror_at(request, tmp_path, "race", provider or "generic")
    if not first:
        publish_tree(a, make_tree(tmp_path, 1, V1), key=PUB, signer=SIGN)
    local = isinstance(a, LocalBackend)
    # Mine stops (after reading the mirror and planning) before its commit or before its
    # first upload; a directory's publisher holds the lock meanwhile.
    paused = Paused(a, MANIFEST_NAME if pause == "before-commit" else None)
    paused.publish = functools.partial(  # type: ignore[attr-defined]
        publish_tree, paused, mine, key=PUB, signer=SIGN, journal=MemoryJournal())
    other = Recorder(b)

    mine_result, their_result = race(paused, functools.partial(
        publish_tree, other, theirs, key=PUB, signer=SIGN, journal=MemoryJournal()))

    results = {mine: mine_result, theirs: their_result}
    [winner] = [t for t, r in results.items() if isinstance(r, PublishResult)]
    [lost] = [r for r in results.values() if not isinstance(r, PublishResult)]
    loser = paused if winner == theirs else other
    assert isinstance(lost, PublishError), lost
    # The lock, or the commit's condition, says another publisher won (a first publish
    # that finds the other's parts and signatures takes them for its own leftovers, and
    # loses at its commit).
    assert isinstance(lost, PublishConflictError), lost
    assert "another publisher" in str(lost)
    assert winner == (mine if local else theirs)
    # The loser wrote no commit of its own and deleted nothing.
    assert loser.deletes() == [] and MANIFEST_NAME not in loser.puts()
    if local:
        assert loser.ops == []  # it failed at once, before writing anything
    assert a.get(MANIFEST_NAME) == (winner / MANIFEST_NAME).read_bytes()
    assert verifies(a) and standard_signature_ok(a)
    assert paused.violations == [] and other.violations == []
    a.close()
    b.close()


class Counting(Recorder):
    """A Recorder without the checks and the one-write-at-a-time lock: for large publishes,
    whose uploads it only counts (and kills, with ``kill_at``)."""

    def put(self, path: str, data: bytes, media_type: str, *, cache: str,
            if_match: str | None = None, if_absent: bool = False) -> str:
        with self._lock:
            self._start_write(f"put {path}")
        tag = self.inner.put(path, data, media_type, cache=cache, if_match=if_match,
                             if_absent=if_absent)
        with self._lock:
            self.ops.append(("put", path))
        return tag

    def _verified(self, problems: builtins.list[str]) -> bool:
        return False  # no checks: the test verifies the mirror at the end


MANY = {f"articles/{n:04d}/index.html": f"<p>article {n}</p>".encode() for n in range(1000)}


@pytest.mark.parametrize("mirror", ["local", "s3"])
def test_an_interrupted_large_first_publish_resumes_without_resending(
        request: pytest.FixtureRequest, tmp_path: Path, mirror: str) -> None:
    tree = make_tree(tmp_path, 1, MANY)
    backend = _mirror_at(request, tmp_path, "big")
    journal = MemoryJournal()
    killed = Counting(backend, kill_at=500)
    with pytest.raises(Killed):
        publish_tree(killed, tree, key=PUB, signer=SIGN, journal=journal, concurrency=8)
    sent = set(killed.puts())
    assert 490 <= len(sent) <= 500 and MANIFEST_NAME not in sent
    # Not taken on trust: an uploaded file damaged since is sent again.
    damaged = sorted(sent)[0]
    plant(backend, damaged, b"<p>half</p>")

    resumed = Counting(backend)
    result = publish_tree(resumed, tree, key=PUB, signer=SIGN, journal=journal, concurrency=8)

    again = sent & set(resumed.puts())
    assert damaged in again
    assert len(again) < 0.05 * len(sent), len(again)
    assert set(resumed.puts()) | sent >= set(published(tree))
    assert result.uploaded == len(resumed.puts())
    assert verifies(backend)
    assert backend.get(MANIFEST_NAME) == (tree / MANIFEST_NAME).read_bytes()
    assert journal.data == {}
    backend.close()
