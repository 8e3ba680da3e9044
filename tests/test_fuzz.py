"""Fuzzing the parsers that take hostile input: whatever the bytes, each ends in a result
or in one of mirrorkit's own errors (:mod:`mirrorkit.errors`), never another exception.

Inputs are random bytes, random JSON, and valid documents with a part replaced or bytes
changed (which reach further into each parser than noise does).  Examples are few per
parser, so the whole file runs in well under a minute in CI.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tomllib
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirrorkit.config import from_dict
from mirrorkit.errors import MirrorkitError
from mirrorkit.extract import decode_html
from mirrorkit.manifest import Manifest, PartRef, decode_part, encode_part, sha256_hex
from mirrorkit.sign import SecretKey, Signature, sign
from mirrorkit.sources import parse_feed, parse_listing, parse_sitemap, unpack
from mirrorkit.verify import TrustStore, ZipTarget, check_manifest, verify_target
from sites import write_site, zip_tree

# MIRRORKIT_FUZZ_EXAMPLES=2000 for a longer hunt than CI's.
FUZZ = settings(max_examples=int(os.environ.get("MIRRORKIT_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
KEY = SecretKey.generate()
NOW = datetime.now(UTC).replace(microsecond=0)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12)


def _mutate(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with the node chosen by ``path`` (indexes into children) set to ``value``."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    if isinstance(doc, dict):
        keys = sorted(doc)
        key = keys[path[0] % len(keys)]
        return {**doc, key: _mutate(doc[key], path[1:], value)}
    i = path[0] % len(doc)
    return [*doc[:i], _mutate(doc[i], path[1:], value), *doc[i + 1:]]


def _flip(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, byte in edits:
        if out:
            out[at % len(out)] = byte
    return bytes(out)


mutations = st.tuples(st.lists(st.integers(0, 50), max_size=5), json_values)
edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1,
                 max_size=8)


def _only_ours(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except MirrorkitError:
        return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("site")
    write_site(tree, 3, {"index.html": b"<p>home</p>", "a/b.html": b"<p>b</p>"}, KEY,
               created=NOW, retired={"old.html": b"old"})
    return tree


# -- manifest root and parts --------------------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_manifest_root_from_noise(data: bytes) -> None:
    _only_ours(Manifest.from_bytes, data)


@FUZZ
@given(mutation=mutations)
def test_manifest_root_with_a_field_replaced(site: Path, mutation: tuple[list[int], Any]
                                             ) -> None:
    doc = json.loads((site / "manifest.json").read_bytes())
    data = json.dumps(_mutate(doc, *mutation)).encode()
    manifest = _only_ours(Manifest.from_bytes, data)
    if manifest is not None:  # what parses must serialize and reparse to itself
        assert Manifest.from_bytes(manifest.to_bytes()) == manifest


@FUZZ
@given(mutation=mutations, raw=st.booleans())
def test_manifest_part_with_a_field_replaced(site: Path, mutation: tuple[list[int], Any],
                                             raw: bool) -> None:
    root = Manifest.from_bytes((site / "manifest.json").read_bytes())
    doc = json.loads((site / root.parts[0].path).read_bytes())
    data = json.dumps(_mutate(doc, *mutation)).encode()
    if raw:
        data = data[: len(data) // 2]
    entries = _only_ours(decode_part, data, PartRef(sha256_hex(data), len(data)), 0, 1)
    if entries is not None:
        assert decode_part(encode_part(entries), PartRef(
            sha256_hex(encode_part(entries)), len(encode_part(entries))), 0, 1) == sorted(
            entries, key=lambda e: e.path)


# -- signatures ---------------------------------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=300), edit=edits,
       comment=st.text(max_size=40).filter(lambda c: c.splitlines() == [c]))
def test_signature_files(site: Path, data: bytes, edit: list[tuple[int, int]],
                         comment: str) -> None:
    root = (site / "manifest.json").read_bytes()
    genuine = (site / "manifest.json.minisig").read_bytes()
    other = sign(root, KEY, comment).to_bytes()  # genuine, with an odd trusted comment
    for candidate in (data, _flip(genuine, edit), other, genuine[: len(data) % len(genuine)]):
        _only_ours(Signature.from_bytes, candidate)
        manifest, findings = check_manifest(root, candidate, KEY.public, now=NOW)
        assert manifest is not None or findings


# -- zips ---------------------------------------------------------------------------------

@FUZZ
@given(edit=edits, cut=st.integers(0, 4096))
def test_zip_archives(site: Path, tmp_path_factory: pytest.TempPathFactory,
                      edit: list[tuple[int, int]], cut: int) -> None:
    buffer = io.BytesIO()
    zip_tree(site, buffer, compression=zipfile.ZIP_DEFLATED)
    data = _flip(buffer.getvalue(), edit)
    archive = tmp_path_factory.mktemp("zip") / "a.zip"
    for candidate in (data, data[: len(data) - cut]):
        archive.write_bytes(candidate)
        try:
            target = ZipTarget(archive)
        except MirrorkitError:
            continue
        try:
            _only_ours(verify_target, target, KEY.public)
        finally:
            target.close()


# -- sitemaps and feeds -------------------------------------------------------------------

SITEMAP = (b'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/'
           b'schemas/sitemap/0.9"><url><loc>https://x.example/a</loc><lastmod>2026-01-02'
           b'</lastmod></url><url><loc>/b</loc></url></urlset>')
FEED = (b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        b'<item><title>A &amp; B</title><link>https://x.example/a</link><pubDate>Tue, 02 '
        b'Jan 2026 10:00:00 GMT</pubDate><description>&lt;p&gt;x&lt;/p&gt;</description>'
        b'<author>a@x.example (A)</author></item></channel></rss>')
ATOM = (b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry><title type="html">'
        b'&lt;b&gt;A&lt;/b&gt;</title><link href="/a"/><updated>2026-01-02T10:00:00Z</updated>'
        b'</entry></feed>')
CHARSETS = st.sampled_from(["", "utf-8", "zlib", "rot13", "idna", "utf-16", "koi8-r",
                            "x-unknown", "base64"])


@FUZZ
@given(data=st.binary(max_size=200), edit=edits, which=st.sampled_from([SITEMAP, FEED, ATOM]),
       charset=CHARSETS, text=st.text(max_size=40))
def test_sitemaps_and_feeds(data: bytes, edit: list[tuple[int, int]], which: bytes,
                            charset: str, text: str) -> None:
    spliced = which.replace(b"https://x.example/a", text.encode("utf-8", "replace"))
    declared = which.replace(b'encoding="utf-8"', f'encoding="{charset}"'.encode())
    for candidate in (data, _flip(which, edit), spliced, declared):
        _only_ours(parse_sitemap, candidate, "https://x.example/sitemap.xml")
        _only_ours(parse_feed, candidate, "https://x.example/rss",
                   f"application/rss+xml; charset={charset}")


@FUZZ
@given(data=st.binary(max_size=300), edit=edits, cut=st.integers(0, 64))
def test_gzipped_sitemaps(data: bytes, edit: list[tuple[int, int]], cut: int) -> None:
    packed = gzip.compress(SITEMAP)
    for candidate in (b"\x1f\x8b" + data, _flip(packed, edit), packed[: len(packed) - cut]):
        unpacked = _only_ours(unpack, candidate, "https://x.example/s.xml.gz", 4096)
        if unpacked is not None:
            _only_ours(parse_sitemap, unpacked, "https://x.example/s.xml.gz")


@FUZZ
@given(data=st.binary(max_size=300), charset=CHARSETS,
       links=st.sampled_from(["a", "h2 a", "a[href]", "a:nth-child(2)"]))
def test_listing_pages(data: bytes, charset: str, links: str) -> None:
    page = b'<html><body><h2><a href="/a">A</a></h2><a href="/next" rel="next">' + data
    for candidate in (data, page):
        _only_ours(parse_listing, candidate, "https://x.example/news/", charset or None, links,
                   "a[rel=next]")


@FUZZ
@given(data=st.binary(max_size=400), charset=CHARSETS)
def test_html_decoding(data: bytes, charset: str) -> None:
    assert isinstance(decode_html(data, charset or None), str)
    page = b'<meta charset="' + charset.encode() + b'">' + data
    assert isinstance(decode_html(page), str)


# -- trust state and config ---------------------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=100) | json_values.map(lambda v: json.dumps(v).encode())
       | json_values.map(lambda v: json.dumps({"versions": v, "settled": {"k": v}}).encode()))
def test_trust_files(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("trust") / "trust.json"
    path.write_bytes(data)
    trust = _only_ours(TrustStore.load, path)
    if trust is not None:
        root = Manifest.from_bytes(write_site(tmp_path_factory.mktemp("s"), 2, {"a": b"a"},
                                              KEY, created=NOW))
        trust.judge(root)


CONFIG = """
[outlet]
id = "x"
name = "X"
origin = "https://x.example/"
[signing]
secret_key = "k.key"
public_key = "k.pub"
expires_after = "7d"
[fetch]
allow_private_addresses = false
[publish]
check_sample = 2
[[sources]]
url = "https://x.example/rss"
[[mirrors]]
name = "m"
type = "s3"
bucket = "b"
endpoint_url = "https://s3.example/"
public_url = "https://m.example/"
"""


@FUZZ
@given(mutation=mutations, toml_text=st.text(max_size=200))
def test_config(tmp_path_factory: pytest.TempPathFactory, mutation: tuple[list[int], Any],
                toml_text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "mirrorkit.toml"
    doc = _mutate(tomllib.loads(CONFIG), *mutation)
    for raw in (doc, _toml_or_none(toml_text)):
        if not isinstance(raw, dict):
            continue
        _only_ours(from_dict, raw, path)


def _toml_or_none(text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
