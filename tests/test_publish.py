"""The two-stage publish: what is uploaded, in which order, what is kept and what goes.

Sites are written by hand here with ``tests/sites.py`` (files, parts, a signed root).  A
publish plans from the mirror's live root only when it passes ``key=`` and the root's
signature verifies with it; otherwise the mirror is *unknown* and every file is sent.

A recording wrapper sees every write and, after each one, checks invariant 1 of DESIGN.md
against the live root (when it is one the outlet signed): every file and part it names is
on the mirror with the listed hash, and a retired file or a previous part, if present, is
as listed — except mutable files replaced in place since the last commit (stage 2): that
is the accepted window of publish/stage.py.  A file written as new (stage 1) after a
replacement began, or other content over an immutable file, is always a violation.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirrorkit import sign
from mirrorkit.config import MirrorConfig
from mirrorkit.errors import PublishError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    read_entries,
    sha256_hex,
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
from mirrorkit.publish.stage import plan_publish
from mirrorkit.verify import (
    DirectoryTarget,
    authentic_root,
    check_manifest,
    check_written,
    verify_target,
)
from sites import T0, write_site

KEY = sign.SecretKey.generate()
PUB = KEY.public
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


class Recorder(Backend):
    """Passes writes through one at a time, logging each and checking invariant 1 after."""

    def __init__(self, inner: Backend, fail_on: str | None = None,
                 key: sign.PublicKey = PUB):
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.fail_on = fail_on
        self.key = key
        self.ops: list[tuple[str, str]] = []   # puts and deletes
        self.gets: list[str] = []
        self.lists = 0
        self.violations: list[str] = []
        self.replaced: set[str] = set()  # live-named paths written since the last commit
        self.replacing = False           # stage 2 has begun
        self._trusted: set[bytes] = set()
        self._entries: dict[bytes, dict[str, FileEntry]] = {}
        self._lock = threading.Lock()

    def put(self, path: str, data: bytes, media_type: str, *, cache: str) -> None:
        with self._lock:
            if path == self.fail_on:
                raise PublishError(f"cannot upload {path}: injected", where=f"mirror {self.name}")
            if path not in CONTROL:
                named = self._named()
                if named is not None and path in named:
                    self.replacing = True
                    self.replaced.add(path)
                elif self.replacing:
                    self.violations.append(f"{path} written as new after stage 2 began")
            self.inner.put(path, data, media_type, cache=cache)
            self.ops.append(("put", path))
            if path == MANIFEST_NAME:
                self.replaced.clear()
                self.replacing = False
            self._check()

    def delete(self, paths: Sequence[str]) -> None:
        with self._lock:
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
        # Called once at the start of each real publish: a new run, a new plan.
        self.replaced.clear()
        self.replacing = False
        self.inner.discard_partial_writes()

    def _live(self) -> tuple[bytes, Manifest] | None:
        """The live root, if it is one the outlet signed (now, or when it was put)."""
        data = self.inner.get(MANIFEST_NAME)
        if data is None:
            return None
        if data not in self._trusted:
            signature = self.inner.get(SIGNATURE_NAME)
            if signature is None or authentic_root(data, signature, self.key) is None:
                return None  # readers do not trust it either
            self._trusted.add(data)
        return data, Manifest.from_bytes(data)

    def _named(self) -> dict[str, FileEntry] | None:
        """Every path the live signed root names: files, retired files, parts."""
        live = self._live()
        if live is None:
            return None
        data, root = live
        if data not in self._entries:
            parts = {p.path: self.inner.get(p.path) for p in root.parts}
            entries, problems = read_entries(root, parts)
            if problems:
                self.violations.append(f"after {self.ops[-1:]}: {problems}")
            self._entries[data] = entries
        named = dict(self._entries[data])
        named.update({p.path: p.entry() for p in root.parts})
        for p in root.previous_parts:
            named[p.path] = dataclasses.replace(p.entry(), retired=root.created)
        return named

    def _check(self) -> None:
        named = self._named()
        for path, entry in (named or {}).items():
            if path in self.replaced and entry.mutable:
                continue  # the accepted window: replaced in place, until the commit
            got = self.inner.get(path)
            if got is None and entry.retired is not None:
                continue  # kept for a while if present, never required
            if got is None or sha256_hex(got) != entry.sha256:
                self.violations.append(f"after {self.ops[-1]}: {path} missing or wrong")

    def puts(self) -> builtins.list[str]:  # `list` is the Backend method in here
        return [path for op, path in self.ops if op == "put"]

    def deletes(self) -> builtins.list[str]:
        return [path for op, path in self.ops if op == "delete"]


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


class BackendTarget:
    """A mirror as ``verify`` sees it, read through its backend."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.label = backend.name
        self.reads: list[str] = []

    def read_many(self, reads: Sequence[tuple[str, int]]) -> dict[str, bytes | None]:
        self.reads += [p for p, _ in reads]
        found = {p: (self.backend.get(p), limit) for p, limit in reads}
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

    assert result == PublishResult(
        mirror=mirror.name, version=1, uploaded=len(V1) + len(parts) + 2, skipped=0,
        deleted=0, bytes_uploaded=sum(len(d) for d in site(tree).values()), dry_run=False,
        written=result.written)
    assert {f.path for f in result.written} == set(V1) | parts
    assert contents(mirror) == site(tree)
    assert live_version(mirror) == 1
    assert findings(mirror) == []


def test_second_publish_uploads_only_changes_in_order(mirror: Backend, tmp_path: Path) -> None:
    tree1 = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree1, key=PUB)
    tree = make_tree(tmp_path, 2, V2, retired=V2_RETIRED, after=tree1)
    new_parts, old_parts = part_paths(tree), part_paths(tree1)
    assert new_parts.isdisjoint(old_parts)  # one bin, and it changed
    recorder = Recorder(mirror)

    result = publish_tree(recorder, tree, key=PUB, concurrency=4)

    # rss.xml, article a, image x, retired b (still there as listed) and the old part (kept
    # as a previous part) are already on the mirror; c is neither listed nor retired.
    assert (result.uploaded, result.skipped, result.deleted) == (
        3 + len(new_parts) + 2, 5, 1)
    puts = recorder.puts()
    assert set(puts[:2]) == {"articles/d/index.html", "media/y.png"}  # stage 1, files
    assert set(puts[2:-3]) == new_parts                                # stage 1, parts last
    assert puts[-3:] == ["index.html", SIGNATURE_NAME, MANIFEST_NAME]  # stage 2, commit last
    assert recorder.ops[-1] == ("delete", "articles/c/index.html")   # cleanup after commit
    assert recorder.lists == 0  # planned from the signed root, not from a listing
    assert recorder.violations == []
    # The retired page stays for readers holding old links; the dropped one is gone; the
    # replaced part stays one more version.
    old = {p: d for p, d in site(tree1).items() if p in old_parts}
    assert contents(mirror) == {**site(tree), **V2_RETIRED, **old}
    assert findings(mirror) == []


def test_retired_files_go_once_no_longer_listed(mirror: Backend, tmp_path: Path) -> None:
    publish_tree(mirror, make_tree(tmp_path, 1, V1), key=PUB)
    tree2 = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    publish_tree(mirror, tree2, key=PUB)
    tree = make_tree(tmp_path, 3, V2)  # the grace window has passed

    result = publish_tree(mirror, tree, key=PUB)

    # b, and v2's part (this tree names no previous parts).
    assert result.deleted == 1 + len(part_paths(tree2) - part_paths(tree))
    assert contents(mirror) == site(tree)


# v3 brings back article b, retired by v2, with other content, and adds image z.
V3 = {**V2, "articles/b/index.html": b"<p>b, back and rewritten</p>",
      "media/z.png": b"\x89PNG z"}


@pytest.mark.parametrize("fail_on", [None, "media/z.png", MANIFEST_NAME],
                         ids=["ok", "stage-1-fails", "commit-fails"])
def test_a_retired_file_brought_back_changed_waits_for_the_commit(
        mirror: Backend, tmp_path: Path, fail_on: str | None) -> None:
    # The live manifest still names b (as retired, with its old hash) and verify checks it
    # while it is served, so new content for b must not arrive as a "new" file in stage 1.
    steps = Recorder(mirror)
    publish_tree(steps, make_tree(tmp_path, 1, V1), key=PUB)
    tree2 = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    publish_tree(steps, tree2, key=PUB)
    tree3 = make_tree(tmp_path, 3, V3)
    new_parts = part_paths(tree3)
    recorder = Recorder(mirror, fail_on=fail_on)

    if fail_on is None:
        result = publish_tree(recorder, tree3, key=PUB, concurrency=1)
        assert (result.uploaded, result.skipped) == (2 + len(new_parts) + 2, len(V2))
        # Stage 1 is the new image and the new part; b is replaced in stage 2, just before
        # the commit.
        assert recorder.puts() == ["media/z.png", *sorted(new_parts), "articles/b/index.html",
                                   SIGNATURE_NAME, MANIFEST_NAME]
    else:
        with pytest.raises(PublishError, match="injected"):
            publish_tree(recorder, tree3, key=PUB, concurrency=1)
        assert live_version(mirror) == 2
        # Stopped before or at the commit: version 2 is whole again (the old signature, b
        # as it was, and no unnamed new image or part), so it verifies with no finding.
        assert mirror.get("articles/b/index.html") == V1["articles/b/index.html"]
        assert mirror.get("media/z.png") is None
        assert all(mirror.get(p) is None for p in new_parts)
        assert findings(mirror) == []
        # The next run completes the work (the window, if open, closes with its commit).
        recorder.fail_on = None
        publish_tree(recorder, tree3, key=PUB)
    assert steps.violations == [] and recorder.violations == []
    assert contents(mirror) == site(tree3)
    assert findings(mirror) == []


def test_republishing_the_live_version_sends_nothing(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree, key=PUB)
    recorder = Recorder(mirror)

    result = publish_tree(recorder, tree, key=PUB)

    assert recorder.ops == []
    # New: a live root equal in bytes to ours is the whole answer — one GET, nothing
    # compared, so nothing is counted as skipped either.
    assert recorder.gets == [MANIFEST_NAME] and recorder.lists == 0
    assert (result.uploaded, result.skipped, result.deleted) == (0, 0, 0)


def test_a_damaged_signature_is_not_trusted_and_the_next_version_restores_it(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree, key=PUB)
    mirror.put(SIGNATURE_NAME, b"garbage", "text/plain", cache="no-cache")
    recorder = Recorder(mirror)

    # Changed on purpose: republishing the same root is one GET and no write (the old
    # behaviour re-sent the signature); verify names the damage meanwhile.
    assert publish_tree(recorder, tree, key=PUB).uploaded == 0
    assert recorder.ops == []
    assert findings(mirror) == [("signature", SIGNATURE_NAME)]

    # The next version finds a root it cannot trust, so it sends every file, and its
    # commit writes a good signature.
    tree2 = make_tree(tmp_path, 2, {**V1, "index.html": b"<h1>home v2</h1>"})
    result = publish_tree(recorder, tree2, key=PUB)

    assert result.uploaded == len(V1) + len(part_paths(tree2)) + 2
    assert recorder.puts()[-2:] == [SIGNATURE_NAME, MANIFEST_NAME]
    assert mirror.get(SIGNATURE_NAME) == (tree2 / SIGNATURE_NAME).read_bytes()
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

    assert (result.uploaded, result.skipped) == (len(V1) + len(part_paths(tree3)) + 2, 0)
    assert contents(mirror) == site(tree3)
    assert findings(mirror) == []


def test_unreadable_live_manifest_means_upload_everything(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree, key=PUB)
    mirror.put(MANIFEST_NAME, b"{not json", "application/json", cache="no-cache")

    result = publish_tree(mirror, tree, key=PUB)

    assert (result.uploaded, result.skipped) == (len(V1) + len(part_paths(tree)) + 2, 0)
    assert contents(mirror) == site(tree)


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
    assert set(recorder.puts()) == set(V2) | part_paths(tree) | set(CONTROL)
    assert recorder.violations == []
    assert contents(mirror) == site(tree)
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
        assert set(recorder.puts()) == set(V1) | part_paths(tree2) | set(CONTROL)
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

    assert result.uploaded == len(V1) + len(part_paths(tree)) + 2
    assert contents(backend) == site(tree)


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

    assert contents(mirror) == site(tree)


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
    assert info.value.hint is not None and "state directory looks older" in info.value.hint
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
    assert contents(backend) == site(tree)


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

    if trusted:
        # Changed on purpose: with a signed live root, stage 3 deletes what that root named
        # and no listing is made, so strays stay (verify names them as extra).
        assert result.deleted == stale
        assert {o.path for o in mirror.list()} == set(site(tree)) | set(ODD)
        assert findings(mirror) == [("extra", p) for p in sorted(ODD)]
    else:
        # A mirror without a trusted root is listed, and everything unnamed goes.
        assert result.deleted == stale + len(ODD)
        assert contents(mirror) == site(tree)


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
    assert contents(backend) == site(tree)
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
    recorder = Recorder(mirror)

    result = publish_tree(recorder, tree2, key=PUB, concurrency=4)

    # The new part goes in stage 1; the page is replaced in stage 2; then the commit.
    assert recorder.puts() == [*changed, page, SIGNATURE_NAME, MANIFEST_NAME]
    assert {f.path for f in result.written} == {page, *changed}
    assert result.deleted == 0 and recorder.deletes() == []  # the old part stays a version
    assert recorder.lists == 0
    # Only the root, its signature, the old part of the one changed bin, and the page being
    # replaced (kept for a rollback) were read.
    assert set(recorder.gets) <= {MANIFEST_NAME, SIGNATURE_NAME, page,
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

    recorder = Recorder(mirror)
    result = publish_tree(recorder, tree3, key=PUB)

    # The version after: those go, and version 2's replaced parts take their place.
    assert set(recorder.deletes()) == gone_in_2
    assert result.deleted == len(gone_in_2)
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
    assert set(target.reads) == {MANIFEST_NAME, SIGNATURE_NAME, *written}

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
    assert contents(mirror) == site(tree1)  # what stage 1 had added is gone again
    assert live_version(mirror) == 1
    assert failing.violations == []
    # The next run completes the work.
    assert publish_tree(mirror, tree2, key=PUB).version == 2
    assert contents(mirror) == {**site(tree2), **V2_RETIRED}


@pytest.mark.parametrize("first", [False, True], ids=["update", "first-publish"])
def test_failed_commit_leaves_the_old_manifest_verifiable(
        mirror: Backend, tmp_path: Path, first: bool) -> None:
    if not first:
        publish_tree(mirror, make_tree(tmp_path, 1, V1), key=PUB)
    tree = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    failing = Recorder(mirror, fail_on=MANIFEST_NAME)  # e.g. 503 after every retry

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
    assert results["good-s3"].uploaded == len(V1) + len(part_paths(tree)) + 2
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
    # Stage 2 only touches paths the live root names; stage 1 never writes over a path the
    # live root names (invariant 1).
    named = live or {}
    assert all(p in named for p in replace)
    assert all(p not in named for p in first)
    # Deletions come from the signed root when there is one, else from the listing; only a
    # root that is ours licenses them.
    if live is not None:
        assert set(plan.delete) <= set(live) and plan.foreign == ()
    else:
        assert set(plan.delete) <= set(present)
        assert plan.foreign == (() if ours else plan.delete)
