"""Hostile feeds, mirrors, copies and networks: one named regression test per finding of
the security review (issue 6), and hostile targets that ``verify`` must end on quickly,
in little memory, with exit 1 or 3 and a one-line reason."""

from __future__ import annotations

import ast
import asyncio
import http.server
import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from conftest import MotoServer
from mirrorkit.build import load_signer, write_archive
from mirrorkit.build.feeds import render_feeds
from mirrorkit.cli import cli
from mirrorkit.config import from_dict
from mirrorkit.errors import (
    ConfigError,
    PublishError,
    SourceError,
    TargetUnreachableError,
    VerifyError,
)
from mirrorkit.extract import decode_html
from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    MirrorEntry,
    signature_path,
)
from mirrorkit.models import Article, article_id
from mirrorkit.publish import publish_tree
from mirrorkit.publish.local import LocalBackend
from mirrorkit.serve import make_app
from mirrorkit.sign import SecretKey, load_public_key, sign, write_keypair
from mirrorkit.sources import parse_feed
from mirrorkit.verify import (
    MAX_ZIP_ENTRIES,
    DirectoryTarget,
    TrustStore,
    UrlTarget,
    ZipTarget,
    open_target,
    verify_target,
)
from sites import write_site, zip_tree
from test_pipeline import write_config

KEY = SecretKey.generate()
REPO = Path(__file__).resolve().parent.parent
MARKUP = '<img src=x onerror="alert(1)">'
NOW = datetime.now(UTC).replace(microsecond=0)


def _site(tree: Path, version: int = 3, mirror: str = "m",
          files: dict[str, bytes] | None = None) -> Manifest:
    files = files or {"index.html": b"<p>home</p>", "a/b.html": b"<p>b</p>"}
    return Manifest.from_bytes(write_site(tree, version, files, KEY, mirror=mirror,
                                          created=NOW))


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "outlet.pub"
    path.write_text(KEY.public.to_text())
    return path


class _Static(http.server.ThreadingHTTPServer):
    """A loopback HTTP server: each path answered by ``routes`` (status, headers, body
    or a generator of chunks)."""

    daemon_threads = True

    def __init__(self, routes: dict[str, object]):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                route = outer.routes.get(self.path.split("?")[0], (404, {}, b""))
                status, headers, body = route  # type: ignore[misc]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.end_headers()
                try:
                    for chunk in body():
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.routes = routes
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@pytest.fixture
def http_server() -> Iterator[type[_Static]]:
    servers: list[_Static] = []

    def start(routes: dict[str, object]) -> _Static:
        server = _Static(routes)
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()


def _zeros() -> Iterator[bytes]:
    chunk = b"\0" * 65536
    while True:
        yield chunk


# -- finding 1: RSS carries live markup ---------------------------------------------------

def test_finding_1_rss_text_stays_text(tmp_path: Path) -> None:
    config = from_dict({
        "outlet": {"id": "x", "name": "X & <b>Co</b>", "origin": "https://x.example/"},
        "signing": {"secret_key": "k.key", "public_key": "k.pub"},
        "mirrors": [{"name": "m", "type": "local", "path": "m",
                     "public_url": "https://m.example/"}],
    }, tmp_path / "mirrorkit.toml")
    url = "https://x.example/1"
    article = Article(id=article_id(url), url=url, source="feed", title=f"Shows {MARKUP}",
                      authors=(), published=datetime(2026, 1, 1, tzinfo=UTC), updated=None,
                      language="en", text=f"Shows {MARKUP}", html="<p>Shows &lt;img&gt;</p>",
                      summary=f"Summary {MARKUP}")
    feeds = render_feeds(config, [article], config.mirrors[0],
                         built=datetime(2026, 1, 2, tzinfo=UTC))
    rss = feedparser.parse(io.BytesIO(feeds["rss.xml"]))
    entry = rss.entries[0]
    # Readers take RSS title and description as HTML: as such they must show the text.
    for detail in (entry.title_detail, entry.summary_detail):
        assert "<img" not in detail.value and "&lt;img" in detail.value, detail
    assert "<b>" not in rss.feed.title_detail.value
    atom = feedparser.parse(io.BytesIO(feeds["atom.xml"])).entries[0]
    assert atom.title == f"Shows {MARKUP}" and atom.title_detail.type == "text/plain"
    assert atom.summary == f"Summary {MARKUP}" and atom.summary_detail.type == "text/plain"


# -- finding 2: a feed body opened as a file name -----------------------------------------

def test_finding_2_feed_body_is_never_opened_as_a_file(tmp_path: Path) -> None:
    local = tmp_path / "local.xml"
    local.write_bytes(b'<rss version="2.0"><channel><title>t</title><item><title>secret'
                      b'</title><link>https://x.example/secret</link></item></channel></rss>')
    started = time.monotonic()
    # (and an encoding name feedparser chokes on: found by tests/test_fuzz.py)
    for body in (b"/dev/zero", str(local).encode(), b"file://" + str(local).encode(),
                 b'<?xml version="1.0" encoding="\0"?><rss/>',
                 b'<?xml version="1.0" encoding="\x80"?><rss/>'):
        with pytest.raises(SourceError):
            parse_feed(body, "https://x.example/rss")
    assert time.monotonic() - started < 5
    # The rule everywhere: every feedparser call in the project parses a stream.
    for path in [*REPO.glob("src/**/*.py"), *REPO.glob("tests/*.py"), *REPO.glob("bench/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "parse" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "feedparser"):
                arg = node.args[0]
                assert (isinstance(arg, ast.Call) and ast.unparse(arg.func).endswith("BytesIO")
                        ), f"{path.name}:{node.lineno}: feedparser.parse without BytesIO"


# -- finding 3: verify reads without limits ------------------------------------------------

def test_finding_3_every_read_of_a_target_is_capped(tmp_path: Path, http_server: type[_Static],
                                                     ) -> None:
    # A manifest that is a link to /dev/zero, or a FIFO: not read at all.
    for make in (lambda p: p.symlink_to("/dev/zero"), lambda p: os.mkfifo(p)):
        site = tmp_path / f"site{len(list(tmp_path.iterdir()))}"
        _site(site)
        (site / MANIFEST_NAME).unlink()
        make(site / MANIFEST_NAME)
        with pytest.raises(TargetUnreachableError, match=r"no manifest\.json"):
            verify_target(DirectoryTarget(site), KEY.public)
    # A zip whose manifest.json inflates to 64 MB: read up to the root's cap only.
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z, z.open(MANIFEST_NAME, "w") as f:
        for _ in range(1024):
            f.write(b"\0" * 65536)
    target = ZipTarget(bomb)
    report = verify_target(target, KEY.public)
    target.close()
    assert not report.ok
    # A mirror URL that streams forever, and one that declares 2 GB.
    server = http_server({"/manifest.json": (200, {}, _zeros),
                          "/big/manifest.json": (200, {"Content-Length": str(2 << 30)},
                                                 _zeros)})
    for base in (server.url, server.url + "big/"):
        started = time.monotonic()
        assert not verify_target(UrlTarget(base, timeout=10), KEY.public).ok
        assert time.monotonic() - started < 10


# -- finding 4: rollback through another mirror's name ------------------------------------

def test_finding_4_rollback_is_judged_per_outlet_key(tmp_path: Path,
                                                     http_server: type[_Static]) -> None:
    trust = TrustStore(tmp_path / "trust.json")
    a5, b2, b4 = tmp_path / "a5", tmp_path / "b2", tmp_path / "b4"
    _site(a5, 5, "a")
    _site(b2, 2, "b")
    _site(b4, 4, "b")
    assert verify_target(DirectoryTarget(a5), KEY.public, trust=trust).ok
    # An authentic but older copy of mirror B at a new address: a rollback.
    report = verify_target(DirectoryTarget(b2), KEY.public, trust=trust)
    assert [f.kind for f in report.findings if f.fatal] == ["rollback"]
    # One version behind (a failed publish to B): reported, accepted.
    report = verify_target(DirectoryTarget(b4), KEY.public, trust=trust)
    assert report.ok and [f.kind for f in report.findings] == ["lagging"]
    # ...but never behind what this mirror itself showed before.
    _site(tmp_path / "a4", 4, "a")
    report = verify_target(DirectoryTarget(tmp_path / "a4"), KEY.public, trust=trust)
    assert [f.kind for f in report.findings if f.fatal] == ["rollback"]
    # A copy of mirror B served at the address B's own root gives mirror A is refused.
    files = {"index.html": b"<p>home</p>"}
    copy = tmp_path / "copy"
    copy.mkdir()
    server = http_server({})
    manifest = Manifest.from_bytes(write_site(copy, 6, files, KEY, mirror="b", created=NOW))
    forged = replace(manifest, mirrors=(MirrorEntry("a", server.url),
                                        MirrorEntry("b", "https://b.example/")))
    data = forged.to_bytes()
    signature = sign(data, KEY, "outlet:test-outlet version:6").to_bytes()  # by the outlet
    server.routes.update({
        f"/{p.relative_to(copy).as_posix()}": (200, {}, p.read_bytes())
        for p in copy.rglob("*") if p.is_file()})
    server.routes["/" + MANIFEST_NAME] = (200, {}, data)
    server.routes["/" + SIGNATURE_NAME] = (200, {}, signature)
    report = verify_target(UrlTarget(server.url), KEY.public)
    assert [f.kind for f in report.findings if f.fatal] == ["mirror"], report.findings


# -- finding 5: publishing trusts the unsigned live manifest ------------------------------

def test_finding_5_an_unsigned_live_manifest_freezes_nothing(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    # A root claiming version 999999999, signed by someone else (or by no one).
    forged = write_site(tmp_path / "forged", 999999999, {"a.html": b"a"}, SecretKey.generate(),
                        created=NOW)
    (mirror / MANIFEST_NAME).write_bytes(forged)
    (mirror / SIGNATURE_NAME).write_bytes((tmp_path / "forged" / SIGNATURE_NAME).read_bytes())
    write_site(tmp_path / "v2", 2, {"a.html": b"a2"}, KEY, created=NOW)
    publish_tree(LocalBackend("m", mirror), tmp_path / "v2", key=KEY.public)
    assert verify_target(DirectoryTarget(mirror), KEY.public).ok


def test_finding_5_repair_hashes_every_file_where_the_listing_gives_no_md5(
        tmp_path: Path) -> None:
    files = {"index.html": b"<p>home</p>", "a/b.html": b"<p>b</p>", "c.html": b"<p>c</p>"}
    write_site(tmp_path / "v1", 1, files, KEY, created=NOW, retired={"old.html": b"old"})
    mirror = tmp_path / "mirror"
    publish_tree(LocalBackend("m", mirror), tmp_path / "v1", key=KEY.public)
    (mirror / "index.html").write_bytes(b"<p>HOME</p>")  # same size
    (mirror / "a" / "b.html").unlink()
    (mirror / "old.html").write_bytes(b"new")  # a retired file may be gone, never forged
    (mirror / "junk.html").write_bytes(b"junk")
    assert not verify_target(DirectoryTarget(mirror), KEY.public).ok
    result = publish_tree(LocalBackend("m", mirror), tmp_path / "v1", key=KEY.public,
                          repair=True)
    assert result.repaired == 2 and result.deleted == 2
    report = verify_target(DirectoryTarget(mirror), KEY.public)
    assert report.ok and report.findings == (), report.findings
    assert not (mirror / "old.html").exists()


def _tamper(moto: MotoServer, bucket: str) -> tuple[str, str]:
    """Change one page (same size), delete another, add junk; returns the two pages."""
    client = moto.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]
                  if o["Key"].startswith("articles/"))
    page, gone = keys[0], keys[1]
    body = client.get_object(Bucket=bucket, Key=page)["Body"].read()
    client.put_object(Bucket=bucket, Key=page, Body=body[:-1] + b"!", ContentType="text/html")
    client.delete_object(Bucket=bucket, Key=gone)
    client.put_object(Bucket=bucket, Key="junk/planted.html", Body=b"<p>junk</p>")
    return page, gone


def test_finding_5_publish_repair_mends_a_tampered_mirror(
        tmp_path: Path, moto_server: MotoServer) -> None:
    from mirrorkit.sample import SampleOutlet

    bucket = moto_server.new_bucket(listable=True)
    with SampleOutlet() as outlet:
        config = str(write_config(tmp_path, outlet.feed_url, moto_server, [bucket]))
        assert _cli("--config", config, "sync")[0] == 0
    base = f"{moto_server.endpoint}/{bucket}/"
    pub = str(tmp_path / "keys" / "outlet.pub")
    page, gone = _tamper(moto_server, bucket)
    # A plain publish reads only what it plans from: the damage stays.
    assert _cli("--config", config, "publish")[0] == 0
    code, out = _cli("--config", config, "verify", base, "--key", pub, "--no-trust")
    assert code == 1 and f"tampered: {page}" in out and f"missing: {gone}" in out, out
    code, out = _cli("--config", config, "publish", "--repair")
    assert code == 0, out
    code, out = _cli("--config", config, "verify", base, "--key", pub, "--no-trust")
    assert code == 0 and "extra" not in out, out


def test_finding_5_repair_of_an_intact_bucket_sends_nothing(
        tmp_path: Path, moto_server: MotoServer) -> None:
    """Pages at the outlet's own paths may end in "/" (``news/story/``): the listing must
    name them, or every daily repair sends them again and reports them as damage."""
    from mirrorkit.sample import SampleOutlet

    bucket = moto_server.new_bucket()
    with SampleOutlet() as outlet:
        config = str(write_config(tmp_path, outlet.feed_url, moto_server, [bucket]))
        assert _cli("--config", config, "sync")[0] == 0
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.endswith("/") for k in keys), keys  # the case this test is about
    code, out = _cli("--config", config, "publish", "--repair", "--json")
    assert code == 0, out
    [mirror] = json.loads(out.splitlines()[-1])["mirrors"]
    assert mirror["uploaded"] == 0 and mirror["deleted"] == 0, out


def test_finding_5_a_normal_sync_mends_what_its_check_finds(
        tmp_path: Path, moto_server: MotoServer) -> None:
    from mirrorkit.sample import SampleOutlet

    bucket = moto_server.new_bucket(listable=True)
    with SampleOutlet() as outlet:
        path = write_config(tmp_path, outlet.feed_url, moto_server, [bucket])
        path.write_text(path.read_text() + "\n[publish]\ncheck_sample = 100000\n")
        config = str(path)
        assert _cli("--config", config, "sync")[0] == 0
        _tamper(moto_server, bucket)
        code, out = _cli("--config", config, "sync")
        assert code == 0, out
    base = f"{moto_server.endpoint}/{bucket}/"
    code, out = _cli("--config", config, "verify", base, "--key",
                     str(tmp_path / "keys" / "outlet.pub"), "--no-trust")
    assert code == 0, out


def test_finding_5_what_a_sync_or_repair_mends_is_counted_apart(
        tmp_path: Path, moto_server: MotoServer) -> None:
    """A tampered mirror is news to ops: the files a run found changed and sent again are
    counted in its mirror line and its JSON, even when the version was already live."""
    from mirrorkit.sample import SampleOutlet

    bucket = moto_server.new_bucket()
    with SampleOutlet() as outlet:
        path = write_config(tmp_path, outlet.feed_url, moto_server, [bucket])
        path.write_text(path.read_text() + "\n[publish]\ncheck_sample = 100000\n")
        config = str(path)
        assert _cli("--config", config, "sync")[0] == 0
        page, gone = _tamper(moto_server, bucket)
        code, out = _cli("--config", config, "sync", "--json")
        assert code == 0, out
        [mirror] = json.loads(out.splitlines()[-1])["mirrors"]
        assert mirror["repaired"] == 2, out
        assert f"({gone}, {page})" in out or f"({page}, {gone})" in out, out
        _tamper(moto_server, bucket)
        code, out = _cli("--config", config, "publish", "--repair")
        assert code == 0 and "2 files repaired" in out, out
        code, out = _cli("--config", config, "publish", "--repair", "--json")
        assert code == 0 and json.loads(out.splitlines()[-1])["mirrors"][0]["repaired"] == 0


# -- finding 6: links, redirects, zip names, corrupt zips, trust.json, huge zips ----------

def test_finding_6_verify_follows_no_link_in_a_directory(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _site(site, files={"index.html": Path("/etc/hostname").read_bytes(),
                       "a/b.html": b"<p>b</p>"})
    (site / "index.html").unlink()
    (site / "index.html").symlink_to("/etc/hostname")
    outside = tmp_path / "outside"
    (site / "a").rename(outside)
    (site / "a").symlink_to(outside)
    report = verify_target(DirectoryTarget(site), KEY.public)
    assert sorted((f.kind, f.path) for f in report.findings if f.fatal) == [
        ("missing", "a/b.html"), ("missing", "index.html")]


def test_finding_6_verify_refuses_redirects_into_this_machine(
        tmp_path: Path, http_server: type[_Static]) -> None:
    inner = http_server({"/manifest.json": (200, {}, b"{}")})
    port = inner.server_address[1]
    # Given by name, redirected to a loopback address; given by address, to a name that
    # resolves to loopback.
    outer = http_server({
        "/manifest.json": (302, {"Location": f"http://127.0.0.1:{port}/manifest.json"}, b""),
        "/n/manifest.json": (302, {"Location": f"http://localhost:{port}/manifest.json"},
                             b"")})
    named = f"http://localhost:{outer.server_address[1]}/"
    for base in (named, outer.url + "n/"):
        with pytest.raises(TargetUnreachableError, match="loopback"):
            verify_target(UrlTarget(base), KEY.public)


def test_finding_6_zip_names_that_climb_out_are_refused(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _site(site)
    archive = tmp_path / "a.zip"
    zip_tree(site, archive, [("../../evil/", b"")])
    target = ZipTarget(archive)
    report = verify_target(target, KEY.public)
    target.close()
    assert not report.ok
    assert [(f.kind, f.path) for f in report.findings if f.fatal] == [
        ("unsafe", "../../evil/")]


def test_finding_6_corrupt_zips_and_trust_files_are_one_line_errors(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _site(site)
    archive = tmp_path / "a.zip"
    zip_tree(site, archive)
    data = bytearray(archive.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    for cut in (data[:end] + b"PK\x05\x06" + b"\xff" * 18, data[: len(data) // 2],
                data[:end - 10] + data[end:]):
        archive.write_bytes(bytes(cut))
        with pytest.raises(TargetUnreachableError):
            open_target(str(archive))
    trust = tmp_path / "trust.json"
    for text in ('{"versions": {"k": 1e400}}', '{"versions": {"k": NaN}}',
                 '{"versions": []}', '{"versions": {"k": [1]}}', "[1]"):
        trust.write_text(text)
        with pytest.raises(VerifyError, match="unreadable trust state"):
            TrustStore.load(trust)


def _million_entry_zip(path: Path, count: int = 1_000_000, declared: int | None = None,
                       ) -> None:
    """A real archive of ``count`` empty entries, written cheaply: every central
    directory record points at one stored, empty local entry.  With ``declared``, the
    end record says that many entries instead (zipfile reads them all the same)."""
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"x"
    records = b"".join(
        struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0,
                    0, 0, 0, 0) + b"f%07d" % i for i in range(count))
    zip64 = count > 0xFFFF and declared is None
    end = b""
    if zip64:
        at = len(local) + len(records)
        end += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count,
                           len(records), len(local))
        end += struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
    n = 0xFFFF if zip64 else count if declared is None else declared
    end += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n,
                       0xFFFFFFFF if zip64 else len(records),
                       0xFFFFFFFF if zip64 else len(local), 0)
    path.write_bytes(local + records + end)


def test_finding_6_a_zip_of_a_million_entries_is_refused_before_it_is_read(
        tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    _million_entry_zip(archive)
    started = time.monotonic()
    with pytest.raises(TargetUnreachableError, match=f"more than the {MAX_ZIP_ENTRIES}"):
        open_target(str(archive))
    assert time.monotonic() - started < 2
    # The end record's count is not what zipfile goes by: the records are counted.
    _million_entry_zip(archive, MAX_ZIP_ENTRIES + 1, declared=3)
    with pytest.raises(TargetUnreachableError, match=f"more than the {MAX_ZIP_ENTRIES}"):
        open_target(str(archive))
    # The generator writes archives zipfile reads: a small one opens.
    _million_entry_zip(archive, 1000)
    assert len(zipfile.ZipFile(archive).namelist()) == 1000


# -- finding 7: serve through links, NUL bytes --------------------------------------------

def test_finding_7_serve_stays_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("home")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (root / "sub" / "index.html").symlink_to(secret)
    (root / "link.html").symlink_to(secret)

    async def probe() -> dict[str, int]:
        async with TestClient(TestServer(make_app(root))) as client:
            out = {}
            for path in ("/", "/sub/", "/sub/index.html", "/link.html", "/a%00b",
                         "/..%2f..%2fetc/passwd"):
                resp = await client.get(path)
                body = await resp.text()
                assert "outside" not in body and "Traceback" not in body
                out[path] = resp.status
            return out

    assert asyncio.run(probe()) == {"/": 200, "/sub/": 404, "/sub/index.html": 404,
                                    "/link.html": 404, "/a%00b": 404,
                                    "/..%2f..%2fetc/passwd": 404}


# -- finding 8: credentials in endpoint_url -----------------------------------------------

def test_finding_8_credentials_in_a_url_are_refused_unshown(tmp_path: Path) -> None:
    for key, where in (("endpoint_url", "mirrors["), ("public_url", "mirrors[")):
        mirror = {"name": "m", "type": "s3", "bucket": "b", "public_url": "https://b.example/",
                  key: "https://AKIAKEY:SUPERSECRET@s3.example/"}
        with pytest.raises(ConfigError) as e:
            from_dict({"outlet": {"id": "x", "name": "X", "origin": "https://x.example/"},
                       "signing": {"secret_key": "k", "public_key": "p"},
                       "mirrors": [mirror]}, tmp_path / "mirrorkit.toml")
        assert "SUPERSECRET" not in str(e.value) and "AKIAKEY" not in str(e.value)
        assert f"{where}" in str(e.value) and f"].{key}:" in str(e.value)


# -- finding 9: archive --out through a predictable name ----------------------------------

def test_finding_9_archive_writes_through_no_planted_link(tmp_path: Path) -> None:
    from mirrorkit.build import build
    from mirrorkit.store import Store

    write_keypair(tmp_path / "outlet")
    config = from_dict({
        "outlet": {"id": "t", "name": "T", "origin": "https://news.example/"},
        "signing": {"secret_key": "outlet.key", "public_key": "outlet.pub"},
        "mirrors": [{"name": "m", "type": "local", "path": "m",
                     "public_url": "https://m.example/"}]}, tmp_path / "mirrorkit.toml")
    store = Store(config.state_dir)
    try:
        bundle = build(config, store)
        victim = tmp_path / "victim.txt"
        victim.write_text("keep")
        out = tmp_path / "out" / "copy.zip"
        out.parent.mkdir()
        (out.parent / ".copy.zip.tmp").symlink_to(victim)
        write_archive(bundle, "m", out, load_signer(config))
    finally:
        store.close()
    assert victim.read_text() == "keep"
    target = ZipTarget(out)
    assert verify_target(target, load_public_key(tmp_path / "outlet.pub")).ok
    target.close()
    assert sorted(p.name for p in out.parent.iterdir()) == [".copy.zip.tmp", "copy.zip"]


# -- finding 10: charset names that are codecs; bidi controls in titles -------------------

@pytest.mark.parametrize("name", ["zlib", "rot13", "idna", "base64", "x-user-defined",
                                  "hz-gb-2312", "utf-7"])
def test_finding_10_codec_names_are_not_charsets(name: str) -> None:
    page = f'<html><head><meta charset="{name}"></head><body><p>Привет</p></body></html>'
    assert "Привет" in decode_html(page.encode("utf-8"))
    assert "Привет" in decode_html(page.encode("utf-8"), header_charset=name)
    # A real charset still counts.
    assert "Привет" in decode_html(page.replace(name, "koi8-r").encode("koi8-r"),
                                   header_charset="koi8-r")


def test_finding_10_bidi_controls_never_reach_a_title() -> None:
    from mirrorkit.extract import one_line

    spoof = "Breaking\u202e txt.exe\u202c news \u2066x\u2069"
    assert one_line(spoof) == "Breaking txt.exe news x"
    assert one_line("שלום\u200f עולם") == "שלום\u200f עולם"  # marks stay
    # ...and the fetch stage stores titles and authors through it.
    source = (REPO / "src/mirrorkit/fetch.py").read_text()
    assert "title=line(entry.title) or line(page.title)" in source
    assert "map(line, entry.authors or page.authors)" in source


# -- hostile targets end fast and small ---------------------------------------------------

_MEASURE = """
import resource, subprocess, sys, time
started = time.monotonic()
try:
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=30)
    code, out, err = done.returncode, done.stdout, done.stderr
except subprocess.TimeoutExpired:
    code, out, err = -1, "", "timeout"
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{code} {time.monotonic() - started:.2f} {rss}")
sys.stdout.write(out + "\\x00" + err)
"""


def _bounded(*args: str) -> tuple[int, float, int, str, str]:
    """Run ``mirrorkit ARGS`` as its own process: exit code, seconds, peak RSS (KiB),
    stdout and stderr."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "mirrorkit",
                           *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    head, _, rest = done.stdout.partition("\n")
    code, seconds, rss = head.split()
    out, _, err = rest.partition("\x00")
    return int(code), float(seconds), int(rss), out, err


@pytest.mark.parametrize("kind", ["endless-body", "zip-bomb", "fifo", "symlink-farm",
                                  "million-entries", "million-entries-declared-as-three"])
def test_verify_of_a_hostile_target_ends_fast_and_small(
        kind: str, tmp_path: Path, key_file: Path, http_server: type[_Static]) -> None:
    if kind == "endless-body":
        target = http_server({"/manifest.json": (200, {}, _zeros),
                              "/manifest.json.minisig": (200, {}, _zeros)}).url
    elif kind == "zip-bomb":
        target = str(tmp_path / "bomb.zip")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            for name in (MANIFEST_NAME, SIGNATURE_NAME):
                with z.open(name, "w", force_zip64=True) as f:
                    for _ in range(512):  # 32 MiB each, 32 times the cap
                        f.write(b"\0" * 65536)
    elif kind == "fifo":
        site = tmp_path / "site"
        _site(site)
        for name in (MANIFEST_NAME, SIGNATURE_NAME, "index.html"):
            (site / name).unlink()
            os.mkfifo(site / name)
        target = str(site)
    elif kind == "symlink-farm":
        site = tmp_path / "site"
        _site(site)
        (site / "index.html").unlink()
        (site / "index.html").symlink_to("/dev/zero")
        (site / "loop").symlink_to(".")
        (site / "up").symlink_to("..")
        for i in range(5000):
            (site / f"l{i}").symlink_to("/dev/zero" if i % 2 else "/etc/passwd")
        target = str(site)
    else:
        target = str(tmp_path / "many.zip")
        _million_entry_zip(Path(target), declared=3 if kind.endswith("three") else None)
    code, seconds, rss, out, err = _bounded("verify", target, "--key", str(key_file),
                                            "--no-trust")
    assert code in (1, 3), (code, out, err)
    assert seconds < 30 and rss < 256 * 1024, (seconds, rss)
    assert "Traceback" not in out + err
    if code == 3:
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    else:
        assert out.strip().splitlines()[-1].startswith("INVALID: "), out
    print(f"{kind}: exit {code}, {seconds:.1f} s, {rss // 1024} MB")


def test_status_reads_a_hostile_mirror_capped(tmp_path: Path) -> None:
    write_keypair(tmp_path / "keys" / "outlet")
    config = tmp_path / "mirrorkit.toml"
    config.write_text("""
[outlet]
id = "x"
name = "X"
origin = "https://x.example/"
[signing]
secret_key = "keys/outlet.key"
public_key = "keys/outlet.pub"
[[mirrors]]
name = "m"
type = "local"
path = "m"
public_url = "http://127.0.0.1:9/"
""")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / MANIFEST_NAME).symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "m" / SIGNATURE_NAME)
    started = time.monotonic()
    _, out = _cli("--config", str(config), "status", "--json")
    assert time.monotonic() - started < 10
    row = json.loads(out.splitlines()[0])
    assert row["signature_valid"] is False and "no manifest.json" in row["problems"][0], row


# -- names that rewrite the terminal (review of issue 6) ---------------------------------

_ESCAPES = "x\rvalid: news.zip: version 9\n\x1b[3A\x1b[J\x1b[8m\u202e"


def test_a_hostile_name_cannot_rewrite_the_verdict(tmp_path: Path, key_file: Path) -> None:
    """A copy's file names reach the terminal: one carrying a carriage return, cursor
    movement or a 'conceal' escape could erase the findings above it, print a false
    'valid:' and hide the 'INVALID:' below.  Every line shows them as escapes."""
    site = tmp_path / "site"
    _site(site)
    (site / "index.html").write_bytes(b"<p>evil</p>")  # same size, tampered
    archive = tmp_path / "copy.zip"
    zip_tree(site, archive)
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr(_ESCAPES, b"")
    report = verify_target(open_target(str(archive)), KEY.public)
    lines = [f.line() for f in report.findings]
    assert any(line.startswith("tampered: index.html") for line in lines)
    assert any("\\x1b[8m" in line and "\\r" in line for line in lines), lines
    assert all(line.isprintable() for line in lines), lines
    code, out = _cli("verify", str(archive), "--key", str(key_file), "--no-trust")
    assert code == 1 and "\r" not in out and out.splitlines()[-1].startswith("INVALID: ")
    error = TargetUnreachableError("redirected: refused", where="http://m/" + _ESCAPES)
    assert str(error).isprintable() and "\\x1b[3A" in str(error)


def test_a_slow_mirror_holds_the_unsigned_root_reads_one_deadline(
        http_server: type[_Static], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read of the root and its signatures ends within the request timeout, but
    they come one after another before anything is signed: a server that answers each
    just in time held verify for three timeouts (58 s seen).  They share one deadline."""
    monkeypatch.setattr("mirrorkit.verify.ROOT_DEADLINE", 2.0)

    def slow() -> Iterator[bytes]:
        yield b"x"
        time.sleep(1.2)

    server = http_server({f"/{MANIFEST_NAME}": (200, {}, b"{}"),
                          f"/{SIGNATURE_NAME}": (200, {}, slow),
                          f"/{signature_path(b'{}')}": (200, {}, slow)})
    started = time.monotonic()
    with pytest.raises(TargetUnreachableError, match="no signed root within 2 s"):
        verify_target(UrlTarget(server.url), KEY.public)
    assert time.monotonic() - started < 2.8


def test_publish_to_a_directory_mirror_reads_no_fifo_and_no_link(tmp_path: Path) -> None:
    """Whoever can write to a directory mirror planted a FIFO as its manifest (publish
    and sync hung in open) and links to /dev/zero (a repair read them without end).
    Neither is a file the backend wrote: each reads as no file, and is written over."""
    files = {"index.html": b"<p>home</p>", "a/b.html": b"<p>b</p>"}
    write_site(tmp_path / "v1", 1, files, KEY, created=NOW)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.mkfifo(mirror / MANIFEST_NAME)
    (mirror / "index.html").symlink_to("/dev/zero")
    (mirror / SIGNATURE_NAME).symlink_to(tmp_path / "v1" / SIGNATURE_NAME)
    backend = LocalBackend("m", mirror)
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(publish_tree(
        backend, tmp_path / "v1", key=KEY.public, repair=True)), daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():
        with (mirror / MANIFEST_NAME).open("wb"):  # let the hung open return
            pass
        pytest.fail("publish hung on a FIFO")
    assert verify_target(DirectoryTarget(mirror), KEY.public).ok
    assert not (mirror / "index.html").is_symlink()
    (mirror / ".mirrorkit-lock").unlink()
    os.mkfifo(mirror / ".mirrorkit-lock")
    started = time.monotonic()
    with pytest.raises(PublishError, match="lock"):
        publish_tree(backend, tmp_path / "v1", key=KEY.public)
    assert time.monotonic() - started < 5
