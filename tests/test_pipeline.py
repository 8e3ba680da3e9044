"""The whole pipeline over real servers on loopback: the sample outlet, moto's S3 server
and plain HTTP reads, driven through the command line as ops and verifiers use it."""

from __future__ import annotations

import io
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import feedparser
import pytest
from click.testing import CliRunner, Result

from conftest import MOTO_KEY, MotoServer, free_port
from mirrorkit.cli import cli
from mirrorkit.manifest import signature_path
from mirrorkit.sample import SampleOutlet
from mirrorkit.sign import write_keypair
from sites import entries_of

SECRET = f"mk-secret-{uuid.uuid4().hex}"  # a storage credential that must never leak


@pytest.fixture
def outlet() -> Iterator[SampleOutlet]:
    with SampleOutlet() as running:
        yield running


def write_config(root: Path, feed_url: str, moto: MotoServer, buckets: list[str],
                 prefix: str = "", provider: str = "generic", *,
                 public_urls: list[str] | None = None,
                 credentials: tuple[str, str] = (MOTO_KEY, SECRET), extra: str = "") -> Path:
    """The sample outlet's config with one S3 mirror "s3-I" per bucket (``public_urls``
    default to each bucket's own), and ``extra`` TOML after [fetch]."""
    if not (root / "keys" / "outlet.key").exists():
        write_keypair(root / "keys" / "outlet")
    urls = public_urls or [f"{moto.endpoint}/{bucket}/{prefix + '/' if prefix else ''}"
                           for bucket in buckets]
    mirrors = "".join(
        f"""
[[mirrors]]
name = "s3-{i}"
type = "s3"
provider = "{provider}"
bucket = "{bucket}"
prefix = "{prefix}"
endpoint_url = "{moto.endpoint}"
access_key_id = "{credentials[0]}"
secret_access_key = "{credentials[1]}"
public_url = "{url}"
"""
        for i, (bucket, url) in enumerate(zip(buckets, urls, strict=True))
    )
    path = root / "mirrorkit.toml"
    path.write_text(f"""
[outlet]
id = "sample-courier"
name = "The Sample Courier"
origin = "https://courier.example/"

[signing]
secret_key = "keys/outlet.key"
public_key = "keys/outlet.pub"

[fetch]
allow_private_addresses = true
{extra}
[[sources]]
url = "{feed_url}"
{mirrors}""")
    return path


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


@pytest.fixture(autouse=True)
def _trust_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))


def test_sync_to_two_buckets_then_verify_over_http(
    tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer
) -> None:
    buckets = [moto_server.new_bucket(listable=True), moto_server.new_bucket()]
    config = write_config(tmp_path, outlet.feed_url, moto_server, buckets)
    pub = str(tmp_path / "keys" / "outlet.pub")

    result = run(config, "-v", "sync")  # debug detail too: it must not leak secrets either
    assert result.exit_code == 0, result.output
    assert "s3-0: ok, version 1" in result.output
    assert "uploaded articles/" in result.output

    client = moto_server.client()
    for i, bucket in enumerate(buckets):
        base = f"{moto_server.endpoint}/{bucket}/"
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
        root = http_get(base + "manifest.json")
        manifest = json.loads(root)
        listed = set(entries_of(root, lambda p, b=base: http_get(b + p)))
        listed |= {f"parts/{p['sha256']}.json" for p in manifest["parts"]}
        listed.add(signature_path(root))
        assert set(keys) == listed | {"manifest.json", "manifest.json.minisig"}
        for key in keys:  # every object, read back anonymously over plain HTTP
            assert http_get(base + quote(key)), key
        pages = [k for k in keys if k.startswith("articles/") and k.endswith("/index.html")]
        assert len(pages) == len(outlet.articles)
        # ... and each also at the outlet's own path, but the one identified by its query.
        assert sum(unquote(a.path) in keys for a in outlet.articles) == len(outlet.articles) - 1
        assert manifest["mirror"] == f"s3-{i}"

        verified = run(config, "verify", base, "--key", pub)
        assert verified.exit_code == 0, verified.output
        assert "valid:" in verified.output

    # Change one object behind mirrorkit's back: verify names it and fails.
    page = next(k for k in listed if k.startswith("articles/"))
    client.put_object(Bucket=buckets[0], Key=page, Body=b"<p>forged</p>",
                      ContentType="text/html")
    tampered = run(config, "verify", f"{moto_server.endpoint}/{buckets[0]}/", "--key", pub,
                   "--json")
    assert tampered.exit_code == 1, tampered.output
    report = json.loads(tampered.output)
    assert report["valid"] is False
    assert [(f["kind"], f["path"]) for f in report["findings"] if f["fatal"]] == [
        ("size", page)]

    # An object added behind mirrorkit's back is found where the bucket can be listed.
    client.put_object(Bucket=buckets[0], Key="extra.html", Body=b"<p>planted</p>")
    extra = run(config, "verify", f"{moto_server.endpoint}/{buckets[0]}/", "--key", pub)
    assert "extra: extra.html" in extra.output

    # Nothing leaks: the storage secret and the signing key are in no object.
    secret_key_text = (tmp_path / "keys" / "outlet.key").read_text().splitlines()[-1]
    for bucket in buckets:
        for obj in client.list_objects_v2(Bucket=bucket)["Contents"]:
            body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            assert SECRET.encode() not in body
            assert secret_key_text.encode() not in body
    assert SECRET not in result.output
    for path in (tmp_path / "state" / "builds").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data, path
            assert secret_key_text.encode() not in data, path


def test_feeds_on_each_mirror_link_to_that_mirror(
    tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer
) -> None:
    buckets = [moto_server.new_bucket(), moto_server.new_bucket()]
    config = write_config(tmp_path, outlet.feed_url, moto_server, buckets, prefix="news")
    assert run(config, "sync").exit_code == 0
    ids = []
    for bucket in buckets:
        base = f"{moto_server.endpoint}/{bucket}/news/"
        for name in ("rss.xml", "atom.xml"):
            feed = feedparser.parse(io.BytesIO(http_get(base + name)))
            assert not feed.bozo, feed.get("bozo_exception")
            assert len(feed.entries) == len(outlet.articles)
            assert all(e.link.startswith(base) for e in feed.entries)
            assert all(http_get(e.link) for e in feed.entries[:3])
        ids.append([e.id for e in feed.entries])
    assert ids[0] == ids[1]


def test_unreachable_source_exits_3_and_mirrors_keep_their_version(
    tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer
) -> None:
    buckets = [moto_server.new_bucket()]
    config = write_config(tmp_path, outlet.feed_url, moto_server, buckets)
    assert run(config, "sync").exit_code == 0
    base = f"{moto_server.endpoint}/{buckets[0]}/"
    before = http_get(base + "manifest.json")

    dead = f"http://127.0.0.1:{free_port()}/rss.xml"
    write_config(tmp_path, dead, moto_server, buckets)
    result = run(config, "sync")
    assert result.exit_code == 3, result.output
    assert f"source {dead}:" in result.output
    assert http_get(base + "manifest.json") == before
    verified = run(config, "verify", base)
    assert verified.exit_code == 0, verified.output
    status = run(config, "status", "--json")
    assert json.loads(status.output.splitlines()[0])["version"] == 1


def test_second_sync_with_nothing_new_changes_nothing(
    tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer
) -> None:
    buckets = [moto_server.new_bucket()]
    config = write_config(tmp_path, outlet.feed_url, moto_server, buckets)
    assert run(config, "sync").exit_code == 0
    again = run(config, "sync")
    assert again.exit_code == 0, again.output
    assert "s3-0: ok, version 1" in again.output

    outlet.update_article(outlet.articles[0].slug, title="Corrected headline")
    third = run(config, "sync")
    assert third.exit_code == 0, third.output
    assert "s3-0: ok, version 2" in third.output
    home = http_get(f"{moto_server.endpoint}/{buckets[0]}/index.html").decode()
    assert "Corrected headline" in home
