"""The conformance suite every mirror backend passes, and each backend's own edges.

Every built-in backend (see ``mirrorkit.publish.registry``) is run through the same
cases: a directory, and S3 on a real moto server over loopback, with and without a key
prefix.  A new backend joins by adding a case to ``subject``.
"""

from __future__ import annotations

import dataclasses
import socket
import tomllib
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mirrorkit.config import MirrorConfig
from mirrorkit.errors import ConfigError, PublishError
from mirrorkit.publish import s3 as s3_module
from mirrorkit.publish.base import (
    CACHE_CONTROL,
    CACHE_IMMUTABLE,
    CONTENT_TYPE,
    DELETE,
    LIST,
    Backend,
    ObjectInfo,
)
from mirrorkit.publish.local import TMP_DIR, LocalBackend
from mirrorkit.publish.providers import providers
from mirrorkit.publish.registry import BACKENDS, open_backend
from mirrorkit.publish.s3 import S3Backend

if TYPE_CHECKING:
    from conftest import MotoServer


@dataclass
class Subject:
    backend: Backend
    public_url: str | None  # where readers fetch objects over HTTP, if the backend serves


@pytest.fixture(params=["local", "s3", "s3-prefix"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    if request.param == "local":
        mirror = MirrorConfig(name="dir", type="local", public_url="http://127.0.0.1:1/",
                              path=tmp_path / "mirror")
        public_url = None
    else:
        mirror = request.getfixturevalue("s3_bucket")
        if request.param == "s3-prefix":
            mirror = dataclasses.replace(mirror, prefix="outlet/site",
                                         public_url=mirror.public_url + "outlet/site/")
        public_url = mirror.public_url
    with open_backend(mirror) as backend:
        yield Subject(backend, public_url)


def listing(backend: Backend) -> dict[str, int]:
    return {o.path: o.size for o in backend.list()}


# -- the conformance suite ------------------------------------------------------------------

def test_a_new_mirror_is_empty(subject: Subject) -> None:
    assert listing(subject.backend) == {}
    assert subject.backend.get("manifest.json") is None


def test_put_then_get_head_list(subject: Subject) -> None:
    b = subject.backend
    b.put("articles/2024/a/index.html", b"<p>a</p>", "text/html; charset=utf-8",
          cache=CACHE_IMMUTABLE)
    b.put("index.html", b"home", "text/html; charset=utf-8", cache="public, max-age=60")

    assert b.get("articles/2024/a/index.html") == b"<p>a</p>"
    assert b.head("articles/2024/a/index.html") == ObjectInfo("articles/2024/a/index.html", 8)
    assert listing(b) == {"articles/2024/a/index.html": 8, "index.html": 4}


def test_put_replaces(subject: Subject) -> None:
    b = subject.backend
    b.put("rss.xml", b"old", "application/rss+xml", cache="public, max-age=60")
    b.put("rss.xml", b"newer", "application/rss+xml", cache="public, max-age=60")
    assert b.get("rss.xml") == b"newer"
    assert listing(b) == {"rss.xml": 5}


def test_empty_and_binary_objects_round_trip(subject: Subject) -> None:
    b = subject.backend
    blob = bytes(range(256)) * 10
    b.put("media/ab.png", blob, "image/png", cache=CACHE_IMMUTABLE)
    b.put("empty.txt", b"", "text/plain", cache=CACHE_IMMUTABLE)
    assert b.get("media/ab.png") == blob
    assert b.get("empty.txt") == b""
    assert b.head("empty.txt") == ObjectInfo("empty.txt", 0)


@pytest.mark.parametrize("path", [
    pytest.param("nothing.html", id="top-level"),
    pytest.param("no/such/dir/page.html", id="nested"),
])
def test_missing_objects_are_none(subject: Subject, path: str) -> None:
    subject.backend.put("present.html", b"x", "text/html", cache=CACHE_IMMUTABLE)
    assert subject.backend.get(path) is None
    assert subject.backend.head(path) is None


def test_delete_removes_only_what_is_named(subject: Subject) -> None:
    b = subject.backend
    for path in ("a/1.html", "a/2.html", "b/c/3.html", "4.html"):
        b.put(path, path.encode(), "text/html", cache=CACHE_IMMUTABLE)

    b.delete(["a/1.html", "b/c/3.html", "never/existed.html"])

    assert listing(b) == {"a/2.html": 8, "4.html": 6}
    assert b.get("b/c/3.html") is None


def test_delete_nothing_is_fine(subject: Subject) -> None:
    subject.backend.delete([])


ODD_NAMES = ["read me.txt", "naïve café.html", "notes/draft (1).txt", "a/.draft.tmp", "x~y#z"]


def test_delete_takes_any_name_the_listing_gives(subject: Subject, tmp_path: Path) -> None:
    # Stray files are not site paths; cleanup must remove them all the same.
    b = subject.backend
    b.put("keep.html", b"k", "text/html", cache=CACHE_IMMUTABLE)
    for name in ODD_NAMES:
        if isinstance(b, LocalBackend):
            (b.root / name).parent.mkdir(parents=True, exist_ok=True)
            (b.root / name).write_bytes(b"stray")
        else:
            b.put(name, b"stray", "text/plain", cache=CACHE_IMMUTABLE)
    assert set(listing(b)) == {"keep.html", *ODD_NAMES}

    b.delete([p for p in listing(b) if p != "keep.html"])

    assert listing(b) == {"keep.html": 1}


def test_declares_its_capabilities(subject: Subject) -> None:
    # Publishing needs list and delete; the rest is optional.
    assert {LIST, DELETE} <= subject.backend.capabilities


def test_served_with_media_type_and_caching(subject: Subject) -> None:
    b = subject.backend
    if subject.public_url is None or CONTENT_TYPE not in b.capabilities:
        assert isinstance(b, LocalBackend)  # only the directory backend serves nothing
        return
    b.put("articles/x/index.html", "<p>ü</p>".encode(), "text/html; charset=utf-8",
          cache=CACHE_IMMUTABLE)
    b.put("rss.xml", b"<rss/>", "application/rss+xml; charset=utf-8", cache="public, max-age=60")

    with urllib.request.urlopen(subject.public_url + "articles/x/index.html") as r:
        assert r.read() == "<p>ü</p>".encode()
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        if CACHE_CONTROL in b.capabilities:
            assert r.headers["Cache-Control"] == CACHE_IMMUTABLE
    with urllib.request.urlopen(subject.public_url + "rss.xml") as r:
        assert r.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
        assert r.headers["Cache-Control"] == "public, max-age=60"


# -- the directory backend ------------------------------------------------------------------

def test_local_delete_prunes_empty_directories(tmp_path: Path) -> None:
    b = LocalBackend("dir", tmp_path / "m")
    b.put("a/b/c.html", b"x", "text/html", cache=CACHE_IMMUTABLE)
    b.put("a/d.html", b"x", "text/html", cache=CACHE_IMMUTABLE)
    b.delete(["a/b/c.html"])
    assert not (tmp_path / "m" / "a" / "b").exists()
    assert (tmp_path / "m" / "a" / "d.html").exists()
    b.delete(["a/d.html"])
    assert (tmp_path / "m").is_dir()  # the root itself stays
    assert list((tmp_path / "m").iterdir()) == []


def test_local_files_are_world_readable(tmp_path: Path) -> None:
    b = LocalBackend("dir", tmp_path)
    b.put("x.html", b"x", "text/html", cache=CACHE_IMMUTABLE)
    assert (tmp_path / "x.html").stat().st_mode & 0o777 == 0o644


def test_local_list_skips_only_the_temporary_folder(tmp_path: Path) -> None:
    b = LocalBackend("dir", tmp_path)
    b.put("a/x.html", b"x", "text/html", cache=CACHE_IMMUTABLE)
    (tmp_path / TMP_DIR).mkdir()
    (tmp_path / TMP_DIR / ".x.html.k3j4.tmp").write_bytes(b"half")
    # Writes never leave files beside their targets, so a .tmp there is someone's file.
    (tmp_path / "a" / ".draft.tmp").write_bytes(b"mine")
    (tmp_path / "a" / TMP_DIR).mkdir()  # only the root's folder is mirrorkit's
    (tmp_path / "a" / TMP_DIR / "f").write_bytes(b"f")
    assert listing(b) == {"a/x.html": 1, "a/.draft.tmp": 4, f"a/{TMP_DIR}/f": 1}


def test_local_writes_leave_no_temporary_folder(tmp_path: Path) -> None:
    b = LocalBackend("dir", tmp_path / "m")

    def put(i: int) -> None:  # as publish does: several writes at once
        b.put(f"d{i % 3}/p{i}.html", f"<p>{i}</p>".encode(), "text/html", cache=CACHE_IMMUTABLE)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, range(40)))
    b.put("x.html", b"x", "text/html", cache=CACHE_IMMUTABLE)

    assert not (tmp_path / "m" / TMP_DIR).exists()
    assert len(listing(b)) == 41


@pytest.mark.parametrize("path", ["../escape.html", "/etc/passwd", "a/../../b", "a//b"])
def test_local_refuses_paths_outside_the_root(tmp_path: Path, path: str) -> None:
    b = LocalBackend("dir", tmp_path / "root")
    with pytest.raises(PublishError, match="unsafe site path"):
        b.put(path, b"x", "text/html", cache=CACHE_IMMUTABLE)
    assert not (tmp_path / "escape.html").exists()


def test_local_refuses_to_write_into_its_temporary_folder(tmp_path: Path) -> None:
    b = LocalBackend("dir", tmp_path)
    with pytest.raises(PublishError, match="reserved"):
        b.put(f"{TMP_DIR}/x.html", b"x", "text/html", cache=CACHE_IMMUTABLE)


@pytest.mark.parametrize("path", [
    "../escape.html", "/tmp/escape.html", "a/../../escape.html", "link/escape.html", ".", "",
])
def test_local_delete_refuses_paths_outside_the_root(tmp_path: Path, path: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "escape.html").write_bytes(b"not the mirror's")
    (tmp_path / "escape.html").write_bytes(b"not the mirror's")
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "link").symlink_to(outside)
    b = LocalBackend("dir", root)
    with pytest.raises(PublishError, match="outside the mirror"):
        b.delete([path.replace("/tmp/", f"{tmp_path}/")])
    assert (outside / "escape.html").exists() and (tmp_path / "escape.html").exists()
    assert root.is_dir()


def test_local_root_that_is_a_file_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "m").write_text("not a directory")
    b = LocalBackend("usb", tmp_path / "m")
    with pytest.raises(PublishError) as info:
        b.put("index.html", b"x", "text/html", cache="public, max-age=60")
    assert info.value.where == "mirror usb"
    assert "index.html" in str(info.value)
    assert not info.value.retryable
    with pytest.raises(PublishError):
        list(b.list())


# -- the S3 backend -------------------------------------------------------------------------

def test_s3_prefix_confines_the_site(s3_bucket: MirrorConfig, moto_server: MotoServer) -> None:
    client = moto_server.client()
    assert s3_bucket.bucket is not None
    client.put_object(Bucket=s3_bucket.bucket, Key="other/keep.html", Body=b"not ours")
    client.put_object(Bucket=s3_bucket.bucket, Key="site-old/keep.html", Body=b"not ours")
    mirror = dataclasses.replace(s3_bucket, prefix="site")
    with open_backend(mirror) as b:
        b.put("x.html", b"ours", "text/html", cache=CACHE_IMMUTABLE)
        assert listing(b) == {"x.html": 4}
        b.delete(["x.html"])
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket.bucket)["Contents"]}
    assert keys == {"other/keep.html", "site-old/keep.html"}


def test_s3_deletes_in_batches(s3_bucket: MirrorConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "DELETE_BATCH", 2)
    with open_backend(s3_bucket) as b:
        paths = [f"p/{i}.html" for i in range(5)]
        for p in paths:
            b.put(p, b"x", "text/html", cache=CACHE_IMMUTABLE)
        b.delete(paths[:4])
        assert listing(b) == {"p/4.html": 1}


@pytest.mark.parametrize("preset", sorted(providers()))
def test_every_provider_preset_talks_to_an_s3_server(s3_bucket: MirrorConfig,
                                                     preset: str) -> None:
    # Each preset's addressing style and checksum mode must produce requests a standard
    # S3 server accepts, DeleteObjects (which needs a checksum) included.
    with open_backend(dataclasses.replace(s3_bucket, provider=preset)) as b:
        b.put("a/b.html", b"hello", "text/html", cache=CACHE_IMMUTABLE)
        assert b.get("a/b.html") == b"hello"
        assert listing(b) == {"a/b.html": 5}
        b.delete(["a/b.html"])
        assert listing(b) == {}


def test_provider_presets_are_complete() -> None:
    raw = tomllib.loads(
        resources.files("mirrorkit.publish").joinpath("providers.toml").read_text("utf-8"))
    assert set(raw) == {"aws", "r2", "b2", "minio", "wasabi", "digitalocean", "generic"}
    for preset in providers().values():
        assert preset.addressing_style in ("path", "virtual")
        assert preset.checksums in ("when_supported", "when_required")
        assert preset.endpoint and preset.public_url and preset.notes
    # Stores known to reject boto3's default CRC checksums get the legacy behaviour.
    for key in ("r2", "b2", "generic"):
        assert providers()[key].checksums == "when_required"


def test_unknown_provider_is_a_config_error(s3_bucket: MirrorConfig) -> None:
    with pytest.raises(ConfigError) as info:
        open_backend(dataclasses.replace(s3_bucket, provider="acme"))
    assert info.value.where == "mirror s3: provider"
    assert "generic" in str(info.value)


def test_unknown_mirror_type_is_a_config_error() -> None:
    mirror = MirrorConfig(name="x", type="ftp", public_url="http://127.0.0.1/")
    with pytest.raises(ConfigError, match="ftp"):
        open_backend(mirror)
    assert set(BACKENDS) == {"local", "s3"}


def test_missing_bucket_is_an_error_not_an_empty_mirror(s3_bucket: MirrorConfig) -> None:
    missing = dataclasses.replace(s3_bucket, bucket="mk-no-such-bucket")
    with S3Backend(missing) as b, pytest.raises(PublishError, match="NoSuchBucket"):
        b.get("manifest.json")


def test_unreachable_endpoint_is_retryable_and_hides_credentials(
        s3_bucket: MirrorConfig) -> None:
    with socket.socket() as s:  # a port nobody listens on once it is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "SECRET-do-not-print-4242"
    mirror = dataclasses.replace(
        s3_bucket, endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="AKIA-do-not-print", secret_access_key=secret,
    )
    with (S3Backend(mirror, max_attempts=1, connect_timeout=1, read_timeout=1) as b,
          pytest.raises(PublishError) as info):
        b.put("index.html", b"x", "text/html", cache="public, max-age=60")
    error = info.value
    assert error.retryable
    assert error.where == "mirror s3"
    assert "index.html" in str(error)
    assert secret not in str(error) and "AKIA-do-not-print" not in str(error)
    assert secret not in repr(mirror)


def test_local_leftovers_of_a_killed_write_go_only_when_a_publish_starts(
        tmp_path: Path) -> None:
    backend = LocalBackend("disk", tmp_path)
    backend.put("articles/a/index.html", b"a", "text/html", cache="public, max-age=60")
    leftover = tmp_path / TMP_DIR / ".index.html.x1y2z3.tmp"
    leftover.parent.mkdir()
    leftover.write_bytes(b"half a fi")
    draft = tmp_path / "articles" / "a" / ".draft.tmp"  # an operator's, not ours
    draft.write_bytes(b"mine")

    # Listing (which dry runs and the foreign-root check do) removes nothing.
    assert [o.path for o in backend.list()] == ["articles/a/.draft.tmp",
                                                "articles/a/index.html"]
    assert leftover.exists()

    backend.discard_partial_writes()

    assert not (tmp_path / TMP_DIR).exists()
    assert draft.read_bytes() == b"mine"
    backend.discard_partial_writes()  # nothing to do is fine


def test_local_linked_directory_is_listed_and_deleted_not_followed(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.html").write_text("not ours")
    backend = LocalBackend("disk", root)
    backend.put("index.html", b"home", "text/html", cache="public, max-age=60")
    (root / "linked").symlink_to(elsewhere)
    assert sorted(o.path for o in backend.list()) == ["index.html", "linked"]
    backend.delete(["linked"])
    assert not (root / "linked").exists()
    assert (elsewhere / "keep.html").read_text() == "not ours"
