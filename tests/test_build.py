"""The build stage: versions, the manifest chain, retired files and the grace window, and
what never goes into a bundle."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mirrorkit.build import build
from mirrorkit.config import Config, from_dict
from mirrorkit.errors import KeyFileError
from mirrorkit.manifest import MANIFEST_NAME, Manifest
from mirrorkit.models import Article, article_id
from mirrorkit.sign import write_keypair
from mirrorkit.store import Store

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def article(n: int) -> Article:
    url = f"https://news.example/{n}"
    return Article(id=article_id(url), url=url, source="feed", title=f"Story {n}",
                   authors=("A. Writer",), published=T0 - timedelta(hours=n), updated=None,
                   language="en", text=f"Body {n}", html=f"<p>Body {n}</p>")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Config, Store]:
    write_keypair(tmp_path / "outlet")
    config = from_dict({
        "outlet": {"id": "t", "name": "T", "origin": "https://news.example/"},
        "signing": {"secret_key": "outlet.key", "public_key": "outlet.pub"},
        "publish": {"grace": "1h"},
        "mirrors": [{"name": "m", "type": "local", "path": "m",
                     "public_url": "https://m.example/"}],
    }, tmp_path / "mirrorkit.toml")
    store = Store(config.state_dir)
    for n in range(3):
        store.save_article(article(n))
    yield config, store
    store.close()


def manifest(bundle_tree: Path) -> Manifest:
    return Manifest.from_bytes((bundle_tree / MANIFEST_NAME).read_bytes())


def test_versions_chain_and_unchanged_pages_keep_their_bytes(setup: tuple[Config, Store]) -> None:
    config, store = setup
    first = build(config, store, now=T0)
    second = build(config, store, now=T0 + timedelta(minutes=5))
    m1, m2 = manifest(first.trees["m"]), manifest(second.trees["m"])
    assert (m1.version, m2.version) == (1, 2)
    assert m1.previous is None
    first_bytes = (first.trees["m"] / MANIFEST_NAME).read_bytes()
    assert m2.previous == hashlib.sha256(first_bytes).hexdigest()
    pages = [f for f in m1.files if f.path.startswith("articles/")]
    assert pages and all(m2.file(f.path) == f for f in pages)
    assert m2.file("index.html") != m1.file("index.html")  # carries the version


def test_dropped_files_stay_listed_for_the_grace_window(setup: tuple[Config, Store]) -> None:
    config, store = setup
    first = build(config, store, now=T0)
    gone = next(f for f in manifest(first.trees["m"]).files if article(2).id in f.path)
    # No command removes articles yet; the store's table stands in for a future one.
    store._db.execute("DELETE FROM articles WHERE url = ?", (article(2).url,))
    within = manifest(build(config, store, now=T0 + timedelta(minutes=30)).trees["m"])
    assert [r.path for r in within.retired] == [gone.path]
    assert within.file(gone.path) is None
    later = manifest(build(config, store, now=T0 + timedelta(minutes=90)).trees["m"])
    assert later.retired == ()


def test_a_mismatched_key_pair_is_refused(setup: tuple[Config, Store], tmp_path: Path) -> None:
    config, store = setup
    write_keypair(tmp_path / "other")
    (tmp_path / "outlet.pub").write_text((tmp_path / "other.pub").read_text())
    with pytest.raises(KeyFileError, match="does not belong"):
        build(config, store, now=T0)
    assert store.last_version() == 0


def test_the_secret_key_is_in_no_bundle_file(setup: tuple[Config, Store], tmp_path: Path) -> None:
    config, store = setup
    bundle = build(config, store, now=T0)
    secret = (tmp_path / "outlet.key").read_text().splitlines()[-1].encode()
    for path in bundle.path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
