"""Verification: each way a copy can be wrong is a named case, found and reported."""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import MotoServer
from mirrorkit.config import MirrorConfig
from mirrorkit.errors import TargetUnreachableError
from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    decode_part,
    encode_part,
    make_parts,
    read_entries,
)
from mirrorkit.publish import open_backend, publish_tree
from mirrorkit.sign import PublicKey, SecretKey
from mirrorkit.verify import (
    DirectoryTarget,
    TrustStore,
    UrlTarget,
    ZipTarget,
    open_target,
    verify_target,
)
from sites import write_site as write_signed_site
from sites import zip_tree

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
KEY = SecretKey.generate()
FILES = {
    "index.html": b"<!doctype html><title>home</title>",
    "articles/a-1/index.html": b"<!doctype html><title>a</title>",
    "media/ab.png": b"\x89PNG fake",
}


def write_site(root: Path, files: dict[str, bytes] = FILES, *, version: int = 3,
               key: SecretKey = KEY, created: datetime = NOW,
               retired: dict[str, bytes] | None = None, mirror: str = "m1",
               bins: int | None = None) -> Manifest:
    """A signed site in ``root`` (files, parts, root, signature); returns its root."""
    return Manifest.from_bytes(write_signed_site(
        root, version, files, key, outlet="x", mirror=mirror, retired=retired,
        created=created, bins=bins))


def kinds(root: Path, key: PublicKey = KEY.public,
          now: datetime = NOW) -> list[tuple[str, str | None]]:
    """Fatal findings, and files served but not signed (reported, not fatal: no signed
    page links to them, and an interrupted publish leaves its new files first)."""
    report = verify_target(DirectoryTarget(root), key, now=now)
    extras = [f for f in report.findings if f.kind == "extra" and f.path]
    assert not any(f.fatal for f in extras)
    return [(f.kind, f.path) for f in report.findings if f.fatal or f in extras]


def test_genuine_copy_is_valid(tmp_path: Path) -> None:
    write_site(tmp_path)
    report = verify_target(DirectoryTarget(tmp_path), KEY.public, now=NOW)
    assert report.ok, report.findings
    assert report.files_checked == len(FILES)


def _edit(path: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / path).write_bytes(data)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        pytest.param(_edit("articles/a-1/index.html", b"<!doctype html><title>A</title>"),
                     [("tampered", "articles/a-1/index.html")], id="tampered-same-size"),
        pytest.param(_edit("index.html", b"forged"), [("size", "index.html")],
                     id="tampered-other-size"),
        pytest.param(lambda root: (root / "media/ab.png").unlink(),
                     [("missing", "media/ab.png")], id="missing"),
        pytest.param(_edit("evil.js", b"alert(1)"), [("extra", "evil.js")], id="extra"),
        pytest.param(_edit(MANIFEST_NAME, b"{}"), [("signature", SIGNATURE_NAME)],
                     id="manifest-replaced"),
        pytest.param(lambda root: (root / SIGNATURE_NAME).write_text("garbage"),
                     [("signature", SIGNATURE_NAME)], id="signature-garbled"),
    ],
)
def test_damage_is_named(tmp_path: Path, damage: Callable[[Path], None],
                         expected: list[tuple[str, str]]) -> None:
    write_site(tmp_path)
    damage(tmp_path)
    assert kinds(tmp_path) == expected


@pytest.mark.parametrize("how", ["tampered", "missing"])
def test_a_damaged_part_is_named(tmp_path: Path, how: str) -> None:
    # A part is named by its hash in the signed root: changed or gone, it is a finding, and
    # the files it named are then not accounted for: counted on one line, not listed as
    # extra one by one (a mirror with a lost part would otherwise print its whole tree).
    root = write_site(tmp_path, bins=2)
    part = root.part_for("index.html")
    named = sorted(p for p in FILES if root.part_for(p) == part)
    if how == "tampered":
        (tmp_path / part.path).write_bytes(b'{"files":[]}\n')
    else:
        (tmp_path / part.path).unlink()
    assert kinds(tmp_path) == [("part", part.path)]
    report = verify_target(DirectoryTarget(tmp_path), KEY.public, now=NOW)
    [note] = [f.line() for f in report.findings if f.kind == "extra"]
    assert note.startswith(f"extra: {len(named)} file"), note


def test_expired_manifest(tmp_path: Path) -> None:
    write_site(tmp_path)
    assert kinds(tmp_path, now=NOW + timedelta(days=8)) == [("expired", MANIFEST_NAME)]


def test_wrong_key(tmp_path: Path) -> None:
    write_site(tmp_path)
    assert kinds(tmp_path, key=SecretKey.generate().public) == [("key", SIGNATURE_NAME)]


def test_forged_site_signed_by_another_key(tmp_path: Path) -> None:
    write_site(tmp_path, {"index.html": b"forged"}, key=SecretKey.generate())
    assert kinds(tmp_path) == [("key", SIGNATURE_NAME)]


def test_rollback_is_caught_against_versions_seen_before(tmp_path: Path) -> None:
    trust = TrustStore.load(tmp_path / "trust.json")
    new, old = tmp_path / "new", tmp_path / "old"
    write_site(new, version=5)
    write_site(old, version=4)
    assert verify_target(DirectoryTarget(new), KEY.public, now=NOW, trust=trust).ok
    again = TrustStore.load(tmp_path / "trust.json")
    report = verify_target(DirectoryTarget(old), KEY.public, now=NOW, trust=again)
    assert [(f.kind, f.fatal) for f in report.findings] == [("rollback", True)]
    assert not report.ok


def test_retired_files_may_stay_but_must_be_genuine(tmp_path: Path) -> None:
    old_page = b"old article"
    write_site(tmp_path, retired={"articles/old/index.html": old_page})
    assert kinds(tmp_path) == []  # retired and absent: fine
    (tmp_path / "articles/old").mkdir(parents=True)
    (tmp_path / "articles/old/index.html").write_bytes(old_page)
    assert kinds(tmp_path) == []  # retired and present: fine
    (tmp_path / "articles/old/index.html").write_bytes(b"new article")
    assert kinds(tmp_path) == [("tampered", "articles/old/index.html")]


def test_zip_archive_with_a_top_folder(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_site(site)
    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(site.rglob("*")):
            if path.is_file():
                z.write(path, "example/" + path.relative_to(site).as_posix())
    target = open_target(str(archive))
    assert isinstance(target, ZipTarget)
    assert verify_target(target, KEY.public, now=NOW).ok


def test_unreadable_target(tmp_path: Path) -> None:
    with pytest.raises(TargetUnreachableError):
        open_target(str(tmp_path / "nope"))
    with pytest.raises(TargetUnreachableError, match=r"no manifest\.json"):
        verify_target(DirectoryTarget(tmp_path), KEY.public, now=NOW)


def test_a_cut_short_zip_and_an_unpacked_copys_parent_say_what_to_do(
        tmp_path: Path) -> None:
    archive = _zip_site(tmp_path)
    cut = tmp_path / "news.zip"
    cut.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(TargetUnreachableError, match=r"damaged \.zip.*cut short") as e:
        open_target(str(cut))
    assert e.value.hint == "get the copy again"
    # An offline zip unpacks into one folder: verifying where it was unpacked points there.
    unpacked = tmp_path / "unpacked"
    write_site(unpacked / "x-v3")
    with pytest.raises(TargetUnreachableError, match=r"no manifest\.json") as e:
        verify_target(DirectoryTarget(unpacked), KEY.public, now=NOW)
    assert e.value.hint == f"the site root is its folder x-v3: verify {unpacked / 'x-v3'}"


@pytest.mark.parametrize(("age", "said"), [
    pytest.param(timedelta(days=9, hours=5), "9 days ago", id="days"),
    pytest.param(timedelta(days=1), "1 day ago", id="a-day"),
    pytest.param(timedelta(hours=5, minutes=3), "5 hours ago", id="hours"),
    pytest.param(timedelta(minutes=3), "less than an hour ago", id="just-made"),
])
def test_a_copy_tells_its_age_as_readers_say_it(tmp_path: Path, age: timedelta,
                                                said: str) -> None:
    archive = _zip_site(tmp_path)
    report = verify_target(open_target(str(archive)), KEY.public, now=NOW + age)
    [note] = [f.detail for f in report.findings if f.kind == "copy"]
    assert note == f"a copy of version 3, made {NOW:%Y-%m-%d %H:%M}Z, {said}", note


def test_a_changed_size_reads_as_plainly_as_a_changed_page(tmp_path: Path) -> None:
    write_site(tmp_path)
    (tmp_path / "index.html").write_bytes(b"forged, and longer than the page signed")
    (tmp_path / "media/ab.png").write_bytes(b"\x89")
    report = verify_target(DirectoryTarget(tmp_path), KEY.public, now=NOW)
    lines = sorted(f.line() for f in report.findings if f.fatal)
    assert lines == [
        f"size: index.html: larger than signed ({len(FILES['index.html'])} bytes): "
        "content differs from what was signed",
        f"size: media/ab.png: 1 bytes, signed {len(FILES['media/ab.png'])} bytes: "
        "content differs from what was signed",
    ], lines


def test_manifest_bytes_are_canonical(tmp_path: Path) -> None:
    m = write_site(tmp_path, bins=2)
    again = Manifest.from_bytes(m.to_bytes())
    assert again == m
    assert again.to_bytes() == m.to_bytes()
    assert again.to_bytes() == (tmp_path / MANIFEST_NAME).read_bytes()
    assert b" " not in m.to_bytes() and m.to_bytes().endswith(b"}\n")
    # Parts too: the same entries give the same bytes, so the hash the root names.
    for index, ref in enumerate(m.parts):
        data = (tmp_path / ref.path).read_bytes()
        entries = decode_part(data, ref, index, m.bins)
        assert encode_part(entries) == data


def test_an_old_copy_of_another_mirror_at_a_known_address_is_a_rollback(tmp_path: Path) -> None:
    trust = TrustStore.load(tmp_path / "trust.json")
    address = tmp_path / "alpha"
    write_site(address, version=5)
    assert verify_target(DirectoryTarget(address), KEY.public, now=NOW, trust=trust).ok
    # The same address now serves an older, genuinely signed copy of another mirror,
    # whose own newest version this verifier has never seen.
    for path in list(address.rglob("*")):
        if path.is_file():
            path.unlink()
    write_site(address, version=2, mirror="m2")
    report = verify_target(DirectoryTarget(address), KEY.public, now=NOW, trust=trust)
    assert [f.kind for f in report.findings if f.fatal] == ["rollback"]


def test_a_rollback_says_where_the_newer_version_was_seen_and_what_to_do(
        tmp_path: Path) -> None:
    trust = TrustStore.load(tmp_path / "trust.json")
    for name, version, mirror in (("m5", 5, "m"), ("m4", 4, "m"), ("other3", 3, "other"),
                                  ("other4", 4, "other")):
        write_site(tmp_path / name, version=version, mirror=mirror)
    assert verify_target(DirectoryTarget(tmp_path / "m5"), KEY.public, now=NOW,
                         trust=trust).ok

    def lines(name: str) -> list[str]:
        report = verify_target(DirectoryTarget(tmp_path / name), KEY.public, now=NOW,
                               trust=trust)
        return [f.line() for f in report.findings]

    # The same mirror went back: an old copy served again.
    [same] = lines("m4")
    assert "version 4 is older than version 5 seen before at this mirror" in same, same
    assert "try another mirror" in same, same
    # Another mirror two behind: not the reader's fault, and maybe not an attack either.
    [other] = lines("other3")
    assert "version 3 is older than version 5 seen on another mirror" in other, other
    assert "2 versions behind" in other and "--no-trust" in other, other
    # One behind is only lagging (a failed publish), and says so.
    [lagging] = lines("other4")
    assert lagging.startswith("lagging:") and "one behind version 5" in lagging


def _zip_site(tmp_path: Path, extra: tuple[tuple[str, bytes], ...] = ()) -> Path:
    site = tmp_path / "site"
    write_site(site)
    archive = tmp_path / "site.zip"
    zip_tree(site, archive, extra)
    return archive


def test_a_damaged_archive_entry_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    archive = _zip_site(tmp_path)
    data = bytearray(archive.read_bytes())
    spot = data.find(b"<title>home</title>")
    data[spot + 8] ^= 0x20  # stored, not deflated: flip one letter's case
    archive.write_bytes(bytes(data))
    report = verify_target(open_target(str(archive)), KEY.public, now=NOW)
    assert [(f.kind, f.path) for f in report.findings if f.fatal] == [("size", "index.html")]


def test_two_archive_entries_with_one_name_are_refused(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we make on purpose
        archive = _zip_site(tmp_path, (("index.html", b"<script>evil()</script>"),))
    report = verify_target(open_target(str(archive)), KEY.public, now=NOW)
    assert ("duplicate", "index.html") in [(f.kind, f.path) for f in report.findings]
    assert not report.ok


@pytest.mark.parametrize("name", [
    pytest.param("Index.html", id="replaces index.html where case is ignored"),
    pytest.param("..\\..\\evil.bat", id="climbs out on Windows"),
    pytest.param("README-open-me.html", id="a page beside the genuine ones"),
])
def test_an_entry_added_to_an_archive_is_refused(tmp_path: Path, name: str) -> None:
    """A zip is written whole (never caught mid-publish, unlike a mirror), so an entry
    its root does not name was added: refused, not a note."""
    archive = _zip_site(tmp_path, ((name, b"<h1>Read this instead</h1>"),))
    report = verify_target(open_target(str(archive)), KEY.public, now=NOW)
    assert [f.path for f in report.findings if f.fatal] == [name]
    assert not report.ok


def test_an_unwritable_trust_file_loses_only_rollback_memory(tmp_path: Path) -> None:
    write_site(tmp_path / "site")
    (tmp_path / "file").write_text("not a folder")
    trust = TrustStore.load(tmp_path / "file" / "trust.json")
    report = verify_target(DirectoryTarget(tmp_path / "site"), KEY.public, now=NOW, trust=trust)
    assert report.ok


def test_a_linked_directory_is_listed_not_hidden(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_site(site)
    hidden = tmp_path / "elsewhere"
    hidden.mkdir()
    (hidden / "x.html").write_text("<script>evil()</script>")
    (site / "extra").symlink_to(hidden)
    assert kinds(site) == [("extra", "extra")]


# -- a mirror over HTTP: S3 on moto_server -------------------------------------------------

def test_a_url_target_over_s3(tmp_path: Path, moto_server: MotoServer,
                              s3_bucket: MirrorConfig) -> None:
    bucket = moto_server.new_bucket(listable=True)
    url = f"{moto_server.endpoint}/{bucket}/"
    client = moto_server.client()
    site = tmp_path / "site"
    write_site(site)
    config = dataclasses.replace(s3_bucket, bucket=bucket, public_url=url)
    with open_backend(config) as backend:
        publish_tree(backend, site, key=KEY.public)

    report = verify_target(UrlTarget(url), KEY.public, now=NOW)
    assert report.ok and report.findings == (), report.findings
    assert report.files_checked == len(FILES)

    # Read over plain HTTP, listed through the bucket: changed, too large, and extra files
    # are named; a larger file is read no further than its signed size.
    client.put_object(Bucket=bucket, Key="articles/a-1/index.html",
                      Body=b"<!doctype html><title>A</title>")
    client.put_object(Bucket=bucket, Key="index.html", Body=FILES["index.html"] * 1000)
    client.put_object(Bucket=bucket, Key="evil.js", Body=b"alert(1)")
    report = verify_target(UrlTarget(url), KEY.public, now=NOW)
    assert [(f.kind, f.path) for f in report.findings] == [
        ("tampered", "articles/a-1/index.html"), ("size", "index.html"), ("extra", "evil.js")]
    assert "larger than signed" in report.findings[1].detail
    # A missing manifest means no site there.
    client.delete_object(Bucket=bucket, Key=MANIFEST_NAME)
    with pytest.raises(TargetUnreachableError, match=r"no manifest\.json"):
        verify_target(UrlTarget(url), KEY.public, now=NOW)


def test_a_path_named_twice_in_the_signed_parts_is_a_finding() -> None:
    """Two entries of one path: a mirror serves one content there, and which one the
    signed manifest means is anyone's guess (the browser check judged the other)."""
    entries = [FileEntry("archive/index.html", 1, "a" * 64, "text/html"),
               FileEntry("archive/index.html", 2, "b" * 64, "text/html")]
    refs, parts = make_parts(entries, bins=1)
    now = datetime.now(UTC)
    root = Manifest(outlet="o", version=1, created=now, expires=now, key_id="0" * 16,
                    mirror="m", mirrors=(), parts=refs)
    _, problems = read_entries(root, parts)
    assert [what for _, what in problems] == ["archive/index.html is named twice"]
