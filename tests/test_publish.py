"""The two-stage publish: what is uploaded, in which order, what is kept and what goes.

Bundles are built by hand here (files plus a manifest; the signature is a dummy — signing
is another module's job — unless a test passes a key, to check what a verifier sees).
A recording wrapper sees every write and, after each one, checks invariant 1 of
DESIGN.md: every file the live manifest names (in ``files`` or ``retired``) is on the mirror
with the listed hash — except pointers, and files replaced in place in stage 2 (written with
short caching) until the next commit: that is the accepted window of publish/stage.py.
A file written as new (stage 1) over one the live manifest names is always a violation.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirrorkit import sign
from mirrorkit.config import MirrorConfig
from mirrorkit.errors import PublishError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    POINTERS,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    RetiredEntry,
    media_type,
    sha256_hex,
)
from mirrorkit.publish import (
    Backend,
    ObjectInfo,
    PublishResult,
    fetch_live_manifest,
    open_backend,
    publish_all,
    publish_tree,
)
from mirrorkit.publish.base import CACHE_IMMUTABLE, CACHE_POINTER
from mirrorkit.publish.local import TMP_DIR, LocalBackend
from mirrorkit.publish.s3 import S3Backend
from mirrorkit.publish.stage import plan_publish
from mirrorkit.verify import DirectoryTarget, check_manifest, verify_target

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

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
              key: sign.SecretKey | None = None, name: str | None = None) -> Path:
    """A bundle as the build stage leaves it: the site, manifest.json and its signature.

    The signature is a dummy unless ``key`` is given.
    """
    tree = root / (name or f"bundle-v{version}")
    for path, data in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(data)
    manifest = Manifest(
        outlet=outlet, version=version, created=T0, expires=T0 + timedelta(days=7),
        key_id=key.public.key_id_hex if key else "0123456789ABCDEF", mirror="m", mirrors=(),
        files=tuple(FileEntry(p, len(d), sha256_hex(d), media_type(p))
                    for p, d in files.items()),
        retired=tuple(RetiredEntry(p, len(d), sha256_hex(d), T0)
                      for p, d in (retired or {}).items()),
    )
    manifest_bytes = manifest.to_bytes()
    (tree / MANIFEST_NAME).write_bytes(manifest_bytes)
    if key is None:
        signature = f"untrusted comment: dummy v{version}\n".encode()
    else:
        signature = sign.sign(manifest_bytes, key, f"outlet:{outlet} version:{version}").to_bytes()
    (tree / SIGNATURE_NAME).write_bytes(signature)
    return tree


def plant(backend: Backend, path: str, data: bytes) -> None:
    """Put a file on the mirror the way someone other than mirrorkit would."""
    if isinstance(backend, LocalBackend):
        (backend.root / path).parent.mkdir(parents=True, exist_ok=True)
        (backend.root / path).write_bytes(data)
    else:
        backend.put(path, data, "application/octet-stream", immutable=False)


class Recorder(Backend):
    """Passes writes through one at a time, logging each and checking invariant 1 after."""

    def __init__(self, inner: Backend, fail_on: str | None = None):
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.fail_on = fail_on
        self.ops: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.replaced: set[str] = set()  # replaced in place since the last commit
        self._lock = threading.Lock()

    def put(self, path: str, data: bytes, media_type: str, *, immutable: bool) -> None:
        with self._lock:
            if path == self.fail_on:
                raise PublishError(f"cannot upload {path}: injected", where=f"mirror {self.name}")
            self.inner.put(path, data, media_type, immutable=immutable)
            self.ops.append(("put", path))
            if path == MANIFEST_NAME:
                self.replaced.clear()
            elif not immutable:
                self.replaced.add(path)
            self._check()

    def delete(self, paths: Sequence[str]) -> None:
        with self._lock:
            self.inner.delete(paths)
            self.ops.extend(("delete", p) for p in paths)
            self._check()

    def get(self, path: str) -> bytes | None:
        return self.inner.get(path)

    def head(self, path: str) -> ObjectInfo | None:
        return self.inner.head(path)

    def list(self) -> Iterator[ObjectInfo]:
        return self.inner.list()

    def discard_partial_writes(self) -> None:
        self.inner.discard_partial_writes()

    def _check(self) -> None:
        data = self.inner.get(MANIFEST_NAME)
        if data is None:
            return
        live = Manifest.from_bytes(data)
        named = [(f.path, f.sha256) for f in live.files] + [
            (r.path, r.sha256) for r in live.retired]
        for path, digest in named:
            if path in POINTERS or path in self.replaced:
                continue
            got = self.inner.get(path)
            if got is None or sha256_hex(got) != digest:
                self.violations.append(f"after {self.ops[-1]}: {path} missing or wrong")

    def puts(self) -> builtins.list[str]:  # `list` is the Backend method in here
        return [path for op, path in self.ops if op == "put"]


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


def site(files: dict[str, bytes], tree: Path) -> dict[str, bytes]:
    """What a mirror holds after publishing ``tree``: the files plus manifest and signature."""
    return {**files, MANIFEST_NAME: (tree / MANIFEST_NAME).read_bytes(),
            SIGNATURE_NAME: (tree / SIGNATURE_NAME).read_bytes()}


# -- first and second versions --------------------------------------------------------------

def test_first_publish_uploads_everything(mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    result = publish_tree(mirror, tree, concurrency=4)

    assert result == PublishResult(
        mirror=mirror.name, version=1, uploaded=len(V1) + 2, skipped=0, deleted=0,
        bytes_uploaded=sum(len(d) for d in site(V1, tree).values()), dry_run=False)
    assert contents(mirror) == site(V1, tree)
    live = fetch_live_manifest(mirror)
    assert live is not None and live.version == 1


def test_second_publish_uploads_only_changes_in_order(mirror: Backend, tmp_path: Path) -> None:
    publish_tree(mirror, make_tree(tmp_path, 1, V1))
    tree = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    recorder = Recorder(mirror)

    result = publish_tree(recorder, tree, concurrency=4)

    # rss.xml, article a and image x are unchanged and skipped; c is neither listed nor
    # retired.
    assert (result.uploaded, result.skipped, result.deleted) == (5, 3, 1)
    puts = recorder.puts()
    assert set(puts[:2]) == {"articles/d/index.html", "media/y.png"}  # stage 1
    assert puts[2:] == ["index.html", SIGNATURE_NAME, MANIFEST_NAME]  # stage 2, commit last
    assert recorder.ops[-1] == ("delete", "articles/c/index.html")   # cleanup after commit
    assert recorder.violations == []
    # The retired page stays for readers holding old links; the dropped one is gone.
    assert contents(mirror) == {**site(V2, tree), **V2_RETIRED}


def test_retired_files_go_once_no_longer_listed(mirror: Backend, tmp_path: Path) -> None:
    publish_tree(mirror, make_tree(tmp_path, 1, V1))
    publish_tree(mirror, make_tree(tmp_path, 2, V2, retired=V2_RETIRED))
    tree = make_tree(tmp_path, 3, V2)  # the grace window has passed

    result = publish_tree(mirror, tree)

    assert result.deleted == 1
    assert contents(mirror) == site(V2, tree)


class BackendTarget:
    """A mirror as ``verify`` sees it, read through its backend."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.label = backend.name

    def read_many(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        return {p: self.backend.get(p) for p in paths}

    def listing(self) -> list[str]:
        return [o.path for o in self.backend.list()]


# v3 brings back article b, retired by v2, with other content, and adds image z.
V3 = {**V2, "articles/b/index.html": b"<p>b, back and rewritten</p>",
      "media/z.png": b"\x89PNG z"}


@pytest.mark.parametrize("fail_on", [None, "media/z.png", MANIFEST_NAME],
                         ids=["ok", "stage-1-fails", "commit-fails"])
def test_a_retired_file_brought_back_changed_waits_for_the_commit(
        mirror: Backend, tmp_path: Path, fail_on: str | None) -> None:
    # The live manifest still names b (as retired, with its old hash) and verify checks it
    # while it is served, so new content for b must not arrive as a "new" file in stage 1.
    key = sign.SecretKey.generate()
    steps = Recorder(mirror)
    publish_tree(steps, make_tree(tmp_path, 1, V1, key=key))
    tree2 = make_tree(tmp_path, 2, V2, retired=V2_RETIRED, key=key)
    publish_tree(steps, tree2)
    tree3 = make_tree(tmp_path, 3, V3, key=key)
    recorder = Recorder(mirror, fail_on=fail_on)

    if fail_on is None:
        result = publish_tree(recorder, tree3, concurrency=1)
        assert (result.uploaded, result.skipped) == (4, len(V2))
        # Stage 1 is the new image only; b is replaced in stage 2, just before the commit.
        assert recorder.puts() == ["media/z.png", "articles/b/index.html",
                                   SIGNATURE_NAME, MANIFEST_NAME]
    else:
        with pytest.raises(PublishError, match="injected"):
            publish_tree(recorder, tree3, concurrency=1)
        live = fetch_live_manifest(mirror)
        assert live is not None and live.version == 2
        # Stopped before or at the commit: version 2 is whole again (the old signature, b
        # as it was, and no unnamed new image), so it verifies with no finding at all.
        assert mirror.get("articles/b/index.html") == V1["articles/b/index.html"]
        assert mirror.get("media/z.png") is None
        report = verify_target(BackendTarget(mirror), key.public, now=T0)
        assert report.ok and report.findings == (), report.findings
        # The next run completes the work (the window, if open, closes with its commit).
        recorder.fail_on = None
        publish_tree(recorder, tree3)
    assert steps.violations == [] and recorder.violations == []
    assert contents(mirror) == site(V3, tree3)
    report = verify_target(BackendTarget(mirror), key.public, now=T0)
    assert report.ok and report.findings == (), report.findings


def test_republishing_the_live_version_sends_nothing(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree)
    recorder = Recorder(mirror)

    result = publish_tree(recorder, tree)

    assert recorder.puts() == []
    assert (result.uploaded, result.skipped, result.deleted) == (0, len(V1), 0)


def test_republishing_restores_a_damaged_signature(mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree)
    mirror.put(SIGNATURE_NAME, b"garbage", "text/plain", immutable=False)
    recorder = Recorder(mirror)

    result = publish_tree(recorder, tree)

    assert recorder.puts() == [SIGNATURE_NAME, MANIFEST_NAME]
    assert result.uploaded == 2
    assert mirror.get(SIGNATURE_NAME) == (tree / SIGNATURE_NAME).read_bytes()


def test_changed_pages_are_replaced_with_short_caching(
        s3_bucket: MirrorConfig, tmp_path: Path) -> None:
    files = {**V1, "articles/a/index.html": b"<p>a, corrected</p>"}
    with open_backend(s3_bucket) as backend:
        publish_tree(backend, make_tree(tmp_path, 1, V1))
        publish_tree(backend, make_tree(tmp_path, 2, files))

    def cache(path: str) -> str:
        with urllib.request.urlopen(s3_bucket.public_url + path) as r:
            return str(r.headers["Cache-Control"])

    assert cache("articles/b/index.html") == CACHE_IMMUTABLE
    assert cache("articles/a/index.html") == CACHE_POINTER  # it has shown that it changes
    assert cache("index.html") == CACHE_POINTER
    assert cache(MANIFEST_NAME) == CACHE_POINTER


# -- a mirror that is not as the live manifest says -----------------------------------------

def test_missing_files_are_uploaded_again(mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree)
    mirror.delete(["articles/a/index.html"])
    recorder = Recorder(mirror)

    result = publish_tree(recorder, tree)

    assert recorder.puts() == ["articles/a/index.html", SIGNATURE_NAME, MANIFEST_NAME]
    assert result.skipped == len(V1) - 1
    assert contents(mirror) == site(V1, tree)


def test_unreadable_live_manifest_means_upload_everything(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree)
    mirror.put(MANIFEST_NAME, b"{not json", "application/json", immutable=False)

    result = publish_tree(mirror, tree)

    assert (result.uploaded, result.skipped) == (len(V1) + 2, 0)
    assert contents(mirror) == site(V1, tree)


def test_refuses_to_publish_over_files_it_did_not_put_there(tmp_path: Path) -> None:
    root = tmp_path / "home"
    (root / "Documents").mkdir(parents=True)
    (root / "Documents" / "thesis.odt").write_bytes(b"years of work")
    backend = LocalBackend("usb", root)

    with pytest.raises(PublishError, match="refusing") as info:
        publish_tree(backend, make_tree(tmp_path, 1, V1))

    assert info.value.where == "mirror usb"
    assert "Documents/thesis.odt" in str(info.value)
    assert {o.path for o in backend.list()} == {"Documents/thesis.odt"}


def test_interrupted_first_publish_is_completed(tmp_path: Path) -> None:
    # A first publish killed after some uploads leaves files but no manifest: not foreign.
    backend = LocalBackend("usb", tmp_path / "m")
    tree = make_tree(tmp_path, 1, V1)
    backend.put("media/x.png", V1["media/x.png"], "image/png", immutable=True)

    result = publish_tree(backend, tree)

    assert result.uploaded == len(V1) + 2
    assert contents(backend) == site(V1, tree)


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
        publish_tree(recorder, make_tree(tmp_path, 1, V1))

    assert "app.js" in str(info.value)
    assert "not a mirrorkit manifest" in str(info.value)
    assert recorder.ops == []
    assert contents(mirror) == before


def test_another_outlets_mirror_is_not_ours(mirror: Backend, tmp_path: Path) -> None:
    theirs = make_tree(tmp_path, 5, V1, outlet="other-outlet")
    publish_tree(mirror, theirs)
    before = contents(mirror)

    with pytest.raises(PublishError, match="refusing") as info:
        publish_tree(mirror, make_tree(tmp_path, 1, V2, name="ours"))

    assert "'other-outlet'" in str(info.value)
    assert contents(mirror) == before


def test_a_root_holding_only_what_the_bundle_names_is_taken_over(
        mirror: Backend, tmp_path: Path) -> None:
    # Nothing would be deleted, so an unreadable manifest.json is simply replaced.
    for path, data in V1.items():
        plant(mirror, path, data)
    plant(mirror, MANIFEST_NAME, b"{not json")
    tree = make_tree(tmp_path, 1, V1)

    publish_tree(mirror, tree)

    assert contents(mirror) == site(V1, tree)


# -- never backwards --------------------------------------------------------------------------

@pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry-run"])
def test_refuses_to_take_the_mirror_back_to_an_older_version(
        mirror: Backend, tmp_path: Path, dry_run: bool) -> None:
    # The state directory was restored from an old backup: builds count from 1 again.
    publish_tree(mirror, make_tree(tmp_path, 7, V2))
    before = contents(mirror)
    recorder = Recorder(mirror)

    with pytest.raises(PublishError, match="refusing") as info:
        publish_tree(recorder, make_tree(tmp_path, 1, V1), dry_run=dry_run)

    assert "version 7" in str(info.value) and "version 1" in str(info.value)
    assert info.value.hint is not None and "state directory looks older" in info.value.hint
    assert recorder.ops == []
    assert contents(mirror) == before


def test_refuses_the_same_version_with_other_content(mirror: Backend, tmp_path: Path) -> None:
    publish_tree(mirror, make_tree(tmp_path, 3, V1))
    before = contents(mirror)

    with pytest.raises(PublishError, match="version 3") as info:
        publish_tree(mirror, make_tree(tmp_path, 3, V2, name="other-v3"))

    assert info.value.where == f"mirror {mirror.name}"
    assert contents(mirror) == before


def test_another_outlets_newer_version_is_not_a_rollback(tmp_path: Path) -> None:
    # Not ours: the foreign-root rule decides, and a root with nothing to delete is fine.
    backend = LocalBackend("usb", tmp_path / "m")
    publish_tree(backend, make_tree(tmp_path, 9, V1, outlet="other-outlet"))
    tree = make_tree(tmp_path, 1, V1, name="ours")

    assert publish_tree(backend, tree).version == 1
    assert contents(backend) == site(V1, tree)


# -- odd names and leftovers on the mirror ------------------------------------------------------

ODD = {"read me.txt": b"hello", "naïve café.html": b"<p>x</p>", "notes/draft (1).txt": b"d"}


def test_stray_files_with_odd_names_are_cleaned_up(mirror: Backend, tmp_path: Path) -> None:
    publish_tree(mirror, make_tree(tmp_path, 1, V1))
    for path, data in ODD.items():
        plant(mirror, path, data)
    tree = make_tree(tmp_path, 2, V2)

    result = publish_tree(mirror, tree)

    assert result.deleted == 2 + len(ODD)  # articles b and c (not retired) go too
    assert contents(mirror) == site(V2, tree)


def test_an_operators_tmp_files_survive_refusal_and_dry_run(tmp_path: Path) -> None:
    root = tmp_path / "www"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / ".draft.tmp").write_bytes(b"my draft")
    backend = LocalBackend("www", root)

    with pytest.raises(PublishError, match="refusing"):
        publish_tree(backend, make_tree(tmp_path, 1, V1), dry_run=True)
    with pytest.raises(PublishError, match=r"notes/\.draft\.tmp"):
        publish_tree(backend, make_tree(tmp_path, 1, V1))

    assert (root / "notes" / ".draft.tmp").read_bytes() == b"my draft"


def test_a_publish_clears_what_a_killed_write_left(tmp_path: Path) -> None:
    key = sign.SecretKey.generate()
    root = tmp_path / "m"
    backend = LocalBackend("dir", root)
    publish_tree(backend, make_tree(tmp_path, 1, V1, key=key))
    leftover = root / TMP_DIR / ".index.html.k3j4.tmp"
    leftover.parent.mkdir()
    leftover.write_bytes(b"half a pa")
    tree = make_tree(tmp_path, 2, V2, key=key)

    publish_tree(backend, tree, dry_run=True)
    assert leftover.exists()  # a dry run changes nothing
    publish_tree(backend, tree, concurrency=4)

    assert not (root / TMP_DIR).exists()
    assert contents(backend) == site(V2, tree)
    report = verify_target(DirectoryTarget(root), key.public, now=T0)
    assert report.ok and report.findings == ()


# -- dry runs and failures ------------------------------------------------------------------

def test_dry_run_reports_and_changes_nothing(mirror: Backend, tmp_path: Path) -> None:
    publish_tree(mirror, make_tree(tmp_path, 1, V1))
    before = contents(mirror)
    tree = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    recorder = Recorder(mirror)

    planned = publish_tree(recorder, tree, dry_run=True)

    assert recorder.ops == []
    assert contents(mirror) == before
    done = publish_tree(mirror, tree)
    assert planned == dataclasses.replace(done, dry_run=True)


def test_failed_upload_leaves_the_live_version_whole(mirror: Backend, tmp_path: Path) -> None:
    tree1 = make_tree(tmp_path, 1, V1)
    publish_tree(mirror, tree1)
    tree2 = make_tree(tmp_path, 2, V2, retired=V2_RETIRED)
    failing = Recorder(mirror, fail_on="media/y.png")

    with pytest.raises(PublishError, match=r"media/y\.png") as info:
        publish_tree(failing, tree2, concurrency=1)

    assert info.value.where == f"mirror {mirror.name}"
    assert all(path not in failing.puts() for path in ("index.html", MANIFEST_NAME))
    assert contents(mirror)["index.html"] == V1["index.html"]
    live = fetch_live_manifest(mirror)
    assert live is not None and live.version == 1
    assert failing.violations == []
    # The next run completes the work.
    assert publish_tree(mirror, tree2).version == 2
    assert contents(mirror) == {**site(V2, tree2), **V2_RETIRED}


@pytest.mark.parametrize("first", [False, True], ids=["update", "first-publish"])
def test_failed_commit_leaves_the_old_manifest_verifiable(
        mirror: Backend, tmp_path: Path, first: bool) -> None:
    key = sign.SecretKey.generate()
    if not first:
        publish_tree(mirror, make_tree(tmp_path, 1, V1, key=key))
    tree = make_tree(tmp_path, 2, V2, retired=V2_RETIRED, key=key)
    failing = Recorder(mirror, fail_on=MANIFEST_NAME)  # e.g. 503 after every retry

    with pytest.raises(PublishError, match=r"manifest\.json: injected"):
        publish_tree(failing, tree)

    if first:
        # No manifest is live: no signature is left without its manifest either.
        assert mirror.get(MANIFEST_NAME) is None
        assert mirror.get(SIGNATURE_NAME) is None
    else:
        manifest_bytes, signature = mirror.get(MANIFEST_NAME), mirror.get(SIGNATURE_NAME)
        assert manifest_bytes is not None and signature is not None
        live, findings = check_manifest(manifest_bytes, signature, key.public, now=T0)
        assert findings == []
        assert live is not None and live.version == 1
    # The next run completes the work.
    assert publish_tree(mirror, tree).version == 2
    manifest_bytes, signature = mirror.get(MANIFEST_NAME), mirror.get(SIGNATURE_NAME)
    assert manifest_bytes is not None and signature is not None
    assert check_manifest(manifest_bytes, signature, key.public, now=T0)[1] == []


def test_bundle_file_that_does_not_match_its_manifest_is_not_sent(
        mirror: Backend, tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 1, V1)
    (tree / "articles/a/index.html").write_bytes(b"<p>tampered</p>")

    with pytest.raises(PublishError, match="does not match"):
        publish_tree(mirror, tree)

    assert fetch_live_manifest(mirror) is None
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
        publish_tree(mirror, tree)
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
                              progress=messages.append)
    finally:
        for backend in backends.values():
            backend.close()

    assert isinstance(results["good-dir"], PublishResult)
    assert isinstance(results["good-s3"], PublishResult)
    assert results["good-s3"].uploaded == len(V1) + 2
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


# -- the plan, for any manifests ------------------------------------------------------------

_paths = st.sampled_from(["index.html", "rss.xml", "a.html", "b/c.html", "d/e.png", "f.txt"])
_files = st.dictionaries(_paths, st.sampled_from([b"1", b"22", b"333"]), max_size=6)


def _manifest(version: int, files: dict[str, bytes], retired: dict[str, bytes]) -> Manifest:
    return Manifest(
        outlet="o", version=version, created=T0, expires=T0, key_id="k", mirror="m",
        mirrors=(), files=tuple(FileEntry(p, len(d), sha256_hex(d), "x/y")
                                for p, d in files.items()),
        retired=tuple(RetiredEntry(p, len(d), sha256_hex(d), T0) for p, d in retired.items()),
    )


@given(new=_files, retired=_files, old=st.none() | _files, old_retired=_files,
       present=st.dictionaries(_paths, st.integers(0, 3)), has_manifest=st.booleans(),
       old_outlet=st.sampled_from(["o", "other"]))
def test_plan_never_deletes_what_the_new_version_names(
        new: dict[str, bytes], retired: dict[str, bytes], old: dict[str, bytes] | None,
        old_retired: dict[str, bytes], present: dict[str, int], has_manifest: bool,
        old_outlet: str) -> None:
    retired = {p: d for p, d in retired.items() if p not in new}
    old_retired = {p: d for p, d in old_retired.items() if old is not None and p not in old}
    live = (dataclasses.replace(_manifest(1, old, old_retired), outlet=old_outlet)
            if old is not None else None)
    if has_manifest:
        present = {**present, MANIFEST_NAME: 10}

    plan = plan_publish(_manifest(2, new, retired), live, present)

    first = [f.path for f in plan.first]
    replace = [f.path for f in plan.replace]
    assert len(set(first + replace)) == len(first + replace)
    assert len(first) + len(replace) + plan.skipped == len(new)
    assert not set(plan.delete) & (set(new) | set(retired) | {MANIFEST_NAME, SIGNATURE_NAME})
    # Stage 2 only touches paths the live manifest names (as files or retired); stage 1
    # never writes other content over a path the live manifest names (invariant 1).
    named = {**old_retired, **(old or {})}
    assert all(p in named for p in replace)
    assert all(p not in named or named[p] == new[p] for p in first)
    # Only a readable live manifest of the same outlet makes the root ours; an object
    # called manifest.json (``has_manifest``) is not enough.
    ours = live is not None and live.outlet == "o"
    assert plan.foreign == (() if ours else plan.delete)
