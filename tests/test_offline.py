"""The offline copy each mirror serves: one zip under one folder, with its own signed root
over what it holds (so the mirror's manifest names the zip and nothing is circular), made
at most once per ``[build] offline_every``, judged by its age (never as a rollback) when
verified, while a mirror serving an old root is still a rollback."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import MotoServer
from mirrorkit.build import build, build_with_stats
from mirrorkit.build.offline import OFFLINE_PATH, without_offline_link
from mirrorkit.config import Config, from_dict
from mirrorkit.manifest import MANIFEST_NAME, Manifest
from mirrorkit.sign import load_public_key, write_keypair
from mirrorkit.store import Store
from mirrorkit.verify import DirectoryTarget, TrustStore, UrlTarget, ZipTarget, verify_target
from sites import T0, article, bundle_entries


def make_config(folder: Path) -> Config:
    """An outlet with one mirror, its keys in ``folder``."""
    return from_dict({
        "outlet": {"id": "t", "name": "T", "origin": "https://news.example/"},
        "signing": {"secret_key": "outlet.key", "public_key": "outlet.pub"},
        "mirrors": [{"name": "m", "type": "local", "path": "m",
                     "public_url": "https://m.example/"}],
    }, folder / "mirrorkit.toml")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Config, Store]]:
    write_keypair(tmp_path / "outlet")
    config = make_config(tmp_path)
    store = Store(config.state_dir)
    for n in range(3):
        store.save_article(article(n))
    yield config, store
    store.close()


def offline_zip(config: Config, store: Store, version: int | None = None) -> bytes:
    """The zip the latest build (or ``version``'s) lists for mirror "m"."""
    from mirrorkit.build import latest_bundle
    from mirrorkit.bundle import Bundle

    bundle = latest_bundle(store)
    assert bundle is not None
    if version is not None:
        bundle = Bundle.open(store, store.build_path(version), version)
    entry = bundle_entries(bundle, "m")[OFFLINE_PATH]
    return bundle.source("m").read(entry)


def unpack(data: bytes, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(into)
    (folder,) = into.iterdir()
    return folder


def test_the_zip_is_one_folder_with_its_own_signed_root_and_no_link_to_itself(
        setup: tuple[Config, Store], tmp_path: Path) -> None:
    config, store = setup
    bundle = build(config, store, now=T0)
    mirror = bundle_entries(bundle, "m")
    data = offline_zip(config, store)
    assert mirror[OFFLINE_PATH].type == "application/zip" and mirror[OFFLINE_PATH].mutable
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
    assert {n.split("/", 1)[0] for n in names} == {"t-v1"}
    folder = unpack(data, tmp_path / "unpacked")
    inside = Manifest.from_bytes((folder / MANIFEST_NAME).read_bytes())
    assert inside.offline and not bundle.manifest("m").offline
    assert (inside.version, inside.mirror) == (1, "m")
    # Nothing circular: the zip is not in itself, and its pages do not link to it.
    assert not (folder / OFFLINE_PATH).exists()
    assert b"offline.zip" in bundle.source("m").lookup("index.html")  # type: ignore[operator]
    for page in folder.rglob("*.html"):
        assert b"offline.zip" not in page.read_bytes(), page
    assert without_offline_link(b"a<!--offline--> x <a>\n</a><!--/offline-->b") == b"ab"
    # Everything else the mirror serves is in the copy.
    held = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(mirror) - held == {OFFLINE_PATH}
    # Checked as it is and unpacked; and by the standard minisign.
    key = load_public_key(config.signing.public_key)
    for target in (ZipTarget(_write(tmp_path / "copy.zip", data)), DirectoryTarget(folder)):
        report = verify_target(target, key, now=T0)
        assert report.ok, report.findings
        assert [f.kind for f in report.findings] == ["copy"]
    done = subprocess.run(["minisign", "-Vm", str(folder / MANIFEST_NAME), "-p",
                           str(config.signing.public_key)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "offline:1" in done.stdout


def test_the_zip_is_made_again_only_once_offline_every_has_passed(
        setup: tuple[Config, Store]) -> None:
    config, store = setup
    first = offline_zip(config, (build(config, store, now=T0), store)[1])
    store.save_article(article(10))
    # A sync an hour later with news: the zip stays (not rendered, not changed, not sent).
    _, stats = build_with_stats(config, store, now=T0 + timedelta(hours=1))
    assert OFFLINE_PATH not in stats.changed_paths[""]
    assert offline_zip(config, store) == first
    # A full build keeps it too.
    _, stats = build_with_stats(config, store, now=T0 + timedelta(hours=2), full=True)
    assert OFFLINE_PATH not in stats.changed_paths[""]
    assert offline_zip(config, store) == first
    # A day after it was made, the next build makes it again, with the new article.
    _, stats = build_with_stats(config, store, now=T0 + timedelta(days=1))
    assert OFFLINE_PATH in stats.changed_paths[""]
    again = offline_zip(config, store)
    assert again != first
    with zipfile.ZipFile(io.BytesIO(again)) as z, zipfile.ZipFile(io.BytesIO(first)) as y:
        assert z.namelist()[0].startswith("t-v4/")
        pages = [n for n in z.namelist() if "/articles/" in n]
        assert len(pages) == len([n for n in y.namelist() if "/articles/" in n]) + 1


def test_the_same_build_gives_the_same_zip(setup: tuple[Config, Store], tmp_path: Path) -> None:
    config, store = setup
    build(config, store, now=T0)
    made = offline_zip(config, store)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("outlet.key", "outlet.pub"):
        shutil.copy(tmp_path / name, other / name)
    config2 = make_config(other)
    with Store(config2.state_dir) as store2:
        for n in range(3):
            store2.save_article(article(n))
        build(config2, store2, now=T0)
        assert offline_zip(config2, store2) == made


def test_an_older_copy_reports_its_age_but_a_mirror_serving_it_is_a_rollback(
        setup: tuple[Config, Store], tmp_path: Path, moto_server: MotoServer) -> None:
    config, store = setup
    build(config, store, now=T0)
    old = offline_zip(config, store)
    store.save_article(article(10))
    build(config, store, now=T0 + timedelta(days=20))
    new_folder = unpack(offline_zip(config, store), tmp_path / "new")
    key = load_public_key(config.signing.public_key)
    trust = TrustStore.load(tmp_path / "trust.json")
    later = T0 + timedelta(days=20, hours=1)
    # The verifier saw the live mirror at version 2.
    bucket = moto_server.new_bucket()
    _upload(moto_server, bucket, new_folder)
    live = UrlTarget(f"{moto_server.endpoint}/{bucket}/")
    assert verify_target(live, key, now=later, trust=trust).ok
    # The first zip, passed on for twenty days: expired and older, but a copy says so.
    old_zip = _write(tmp_path / "old.zip", old)
    old_folder = unpack(old, tmp_path / "old")
    for target in (ZipTarget(old_zip), DirectoryTarget(old_folder)):
        report = verify_target(target, key, now=later, trust=trust)
        assert report.ok, report.findings
        (note,) = report.findings
        assert note.kind == "copy" and not note.fatal
        assert "version 1" in note.detail and "20 days" in note.detail
        assert "version 2 was seen since" in note.detail
    # Served by a mirror, the same old root is a rollback (and expired): an error.
    _upload(moto_server, bucket, old_folder)
    report = verify_target(live, key, now=later, trust=trust)
    assert not report.ok
    assert {"rollback", "expired"} <= {f.kind for f in report.findings if f.fatal}


def test_a_mirror_folder_holding_an_offline_copy_is_judged_as_a_mirror(
        setup: tuple[Config, Store]) -> None:
    """An old offline copy unpacked into a directory mirror's folder (a "restore", or
    someone with write access there) is not a copy passed on: status --deep judges its
    expiry as for any mirror, as the quick status does."""
    from mirrorkit.status import STALE, mirror_status

    config, store = setup
    build(config, store, now=T0)  # long expired by now
    (mirror,) = config.mirrors
    folder = unpack(offline_zip(config, store), mirror.path.parent / "unpacked")
    folder.rename(mirror.path)
    key = load_public_key(config.signing.public_key)
    for deep in (False, True):
        status = mirror_status(config, mirror, key, deep=deep)
        assert status.state == STALE, (deep, status)
        assert any("expired" in p for p in status.problems)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _upload(moto: MotoServer, bucket: str, folder: Path) -> None:
    client = moto.client()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=path.relative_to(folder).as_posix(),
                              Body=path.read_bytes())
