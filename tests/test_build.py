"""The build stage: versions, the manifest chain, retired files and the grace window, and
what never goes into a bundle."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrorkit.build import Bundle, build, build_with_stats
from mirrorkit.build.render import article_path
from mirrorkit.cli import cli
from mirrorkit.config import Config, from_dict
from mirrorkit.errors import KeyFileError, StoreError
from mirrorkit.fetch import FetchReport
from mirrorkit.manifest import Manifest, bin_of
from mirrorkit.pipeline import needs_build
from mirrorkit.sign import write_keypair
from mirrorkit.store import SCHEMA_VERSION, Store
from sites import article, bundle_entries

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOTHING = FetchReport((), 0, 0)  # a fetch that found nothing new


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


def root(bundle: Bundle) -> Manifest:
    return bundle.manifest("m")


def test_versions_chain_and_unchanged_pages_keep_their_bytes(setup: tuple[Config, Store]) -> None:
    config, store = setup
    first = build(config, store, now=T0)
    second = build(config, store, now=T0 + timedelta(minutes=5))
    m1, m2 = root(first), root(second)
    assert (m1.version, m2.version) == (1, 2)
    assert m1.previous is None
    assert m2.previous == hashlib.sha256(first.source("m").root()).hexdigest()
    e1, e2 = bundle_entries(first, "m"), bundle_entries(second, "m")
    pages = [f for f in e1.values() if f.path.startswith("articles/")]
    assert len(pages) == 3 and all(e2[f.path] == f for f in pages)
    assert e2["index.html"] != e1["index.html"]  # carries the version
    assert e1["index.html"].mutable and pages[0].mutable


def test_a_build_renders_what_changed_and_reencodes_few_parts(
        setup: tuple[Config, Store]) -> None:
    config, store = setup
    for n in range(3, 1500):
        store.save_article(article(n))
    _, full = build_with_stats(config, store, now=T0)
    assert full.full and full.rendered >= 1500
    fresh = replace(article(5000), published=T0 + timedelta(hours=1))
    store.save_article(fresh)
    bundle, stats = build_with_stats(config, store, now=T0 + timedelta(minutes=5))
    # The new page and its copy at the outlet's own path, its archive page, the page
    # before it, the archive index, home, mirror list (2), the feeds (2), the newest
    # sitemap file and the sitemap index.
    assert not stats.full and stats.rendered <= 13, stats
    bins = root(bundle).bins
    touched = {bin_of(p, bins) for paths in stats.changed_paths.values() for p in paths}
    # Each article is at two paths (its page and the outlet's own): 3,000 files, 32 bins.
    assert stats.parts == len(touched) < bins == 32, stats
    entries = bundle_entries(bundle, "m")
    assert article_path(fresh) in entries
    home = bundle.source("m").lookup("index.html") or b""
    assert b"Story 5000" in home


def test_a_template_change_rebuilds_every_page_and_retires_the_old_stylesheet(
        setup: tuple[Config, Store], tmp_path: Path) -> None:
    config, store = setup
    first = build(config, store, now=T0)
    old_css = next(p for p in bundle_entries(first, "m") if p.startswith("style."))
    assert not needs_build(config, store, NOTHING, now=T0 + timedelta(minutes=1))
    theme = tmp_path / "theme"
    theme.mkdir()
    (theme / "style.css").write_text("body { color: teal; }\n")
    themed = replace(config, build=replace(config.build, templates=theme))
    # Nothing was fetched, yet the changed theme makes the next sync build by itself.
    assert needs_build(themed, store, NOTHING, now=T0 + timedelta(minutes=2))
    bundle, stats = build_with_stats(themed, store, now=T0 + timedelta(minutes=2))
    assert stats.full
    entries = bundle_entries(bundle, "m")
    new_css = next(p for p, e in entries.items() if p.startswith("style.") and not e.retired)
    assert new_css != old_css and not entries[new_css].mutable
    assert entries[old_css].retired is not None  # readers of older pages still find it
    page = bundle.source("m").lookup(article_path(article(0))) or b""
    assert new_css.encode() in page
    later = build(themed, store, now=T0 + timedelta(minutes=90))
    assert old_css not in bundle_entries(later, "m")  # the grace window has passed


def test_a_config_value_shown_on_pages_rebuilds_them(setup: tuple[Config, Store]) -> None:
    config, store = setup
    build(config, store, now=T0)
    renamed = replace(config, outlet=replace(config.outlet, name="The Renamed Times"))
    assert needs_build(renamed, store, NOTHING, now=T0 + timedelta(minutes=1))
    bundle = build(renamed, store, now=T0 + timedelta(minutes=1))
    page = bundle.source("m").lookup(article_path(article(0))) or b""
    assert b"The Renamed Times" in page


def test_a_new_mirror_url_rewrites_its_feeds_and_sitemaps(setup: tuple[Config, Store]) -> None:
    config, store = setup
    build(config, store, now=T0)
    moved = replace(config, mirrors=(replace(config.mirrors[0],
                                             public_url="https://moved.example/"),))
    assert needs_build(moved, store, NOTHING, now=T0 + timedelta(minutes=1))
    bundle = build(moved, store, now=T0 + timedelta(minutes=1))
    source = bundle.source("m")
    for path in ("rss.xml", "sitemap.xml", "sitemaps/0001.xml"):
        data = source.lookup(path) or b""
        assert b"https://moved.example/" in data and b"https://m.example/" not in data, path


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
    written = [p for d in (bundle.path, store.blob_dir) for p in d.rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        assert secret not in path.read_bytes(), path


def test_new_articles_are_numbered_oldest_first(setup: tuple[Config, Store]) -> None:
    """A batch (a first import of an archive) fills archive pages in date order, whatever
    order the fetch stored it in."""
    config, store = setup
    for n in (7, 4, 9, 5):  # article(n) is n hours old
        store.save_article(article(n))
    build(config, store, now=T0)
    ages = [int(a.title.split()[-1]) for a in store.articles_by_seq(1, 7)]
    assert ages == sorted(ages, reverse=True)  # seq 1 is the oldest


def test_an_old_store_is_migrated(tmp_path: Path) -> None:
    """A store written before schema versions (user_version 0) opens, numbers its articles
    in arrival order and exports."""
    state = tmp_path / "old"
    state.mkdir()
    db = sqlite3.connect(state / "mirrorkit.sqlite3")
    db.executescript(OLD_SCHEMA)
    for n, fetched in ((1, "2026-01-02T00:00:00+00:00"), (2, "2026-01-01T00:00:00+00:00")):
        a = article(n)
        db.execute("INSERT INTO articles VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (a.id, a.url, a.source, a.title, '["A. Writer"]', None, None, "en",
                    a.text, a.html, "[]", "", "x", fetched, fetched))
    db.commit()
    db.close()
    with Store(state) as store:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        seqs = {a.url: a.seq for a in store.articles()}
        assert seqs == {article(2).url: 1, article(1).url: 2}  # fetched first, numbered first
        store.save_article(article(3))
        assert store.number_articles() == 1  # the next build numbers new articles
        assert store.articles_by_seq(3, 3)[0].url == article(3).url
    result = CliRunner().invoke(cli, ["--config", str(state / "none.toml"), "--help"])
    assert result.exit_code == 0


def test_a_store_from_a_newer_mirrorkit_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        store._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this mirrorkit"):
        Store(tmp_path / "s")


OLD_SCHEMA = """
CREATE TABLE articles (id TEXT PRIMARY KEY, url TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
    title TEXT NOT NULL, authors TEXT NOT NULL, published TEXT, updated TEXT,
    language TEXT NOT NULL, text TEXT NOT NULL, html TEXT NOT NULL, media TEXT NOT NULL,
    summary TEXT NOT NULL, content_hash TEXT NOT NULL, fetched_at TEXT NOT NULL,
    changed_at TEXT NOT NULL);
CREATE TABLE media (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    media_type TEXT NOT NULL);
CREATE TABLE http_cache (url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT,
    checked_at TEXT NOT NULL);
CREATE TABLE builds (version INTEGER PRIMARY KEY, created TEXT NOT NULL, path TEXT NOT NULL);
CREATE TABLE publishes (mirror TEXT NOT NULL, version INTEGER NOT NULL,
    published_at TEXT NOT NULL, PRIMARY KEY (mirror, version));
"""
