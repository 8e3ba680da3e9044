"""The outlet's own paths on the mirrors (build/aliases.py): a host-swapped origin link
opens the article.  Object stores hold the exact key, directory mirrors ``PATH/index.html``;
what cannot be placed is reported and keeps its canonical page only.  (The reader's view
in a browser, from moto's S3 endpoint and file://, is in tests/test_browser.py.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.html
import pytest

from mirrorkit.build import build_with_stats, load_signer, write_archive
from mirrorkit.build.aliases import DIR, KEY, NotSwappable, origin_key, site_path
from mirrorkit.build.render import article_path, legacy_article_path
from mirrorkit.config import Config, from_dict
from mirrorkit.errors import PublishError
from mirrorkit.manifest import Manifest
from mirrorkit.models import Article, article_id
from mirrorkit.publish.local import LocalBackend
from mirrorkit.sign import write_keypair
from mirrorkit.store import SiteFile, Store
from sites import bundle_entries

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CYRILLIC = "https://news.example/ru/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/"


@pytest.mark.parametrize(
    ("url", "key"),
    [
        pytest.param("https://o.example/2026/11/28/some-story-a12345",
                     "2026/11/28/some-story-a12345", id="dated-extensionless"),
        pytest.param("https://o.example/news/story/", "news/story/", id="trailing-slash"),
        pytest.param(CYRILLIC, "ru/новости/", id="percent-encoded-cyrillic"),
        pytest.param("https://o.example/a/story.html?utm_source=x&fbclid=1#top",
                     "a/story.html", id="tracking-query-dropped"),
        pytest.param("https://o.example/a_b/Story~1.HTML", "a_b/Story~1.HTML", id="kept-as-is"),
        pytest.param("https://o.example/articles/story.html", "articles/story.html",
                     id="outlets-articles-folder"),
        pytest.param("https://o.example/archive/2024/story", "archive/2024/story",
                     id="outlets-archive-folder"),
        pytest.param("https://o.example/offline/story", "offline/story",
                     id="outlets-folder-named-like-a-site-file"),
    ],
)
def test_origin_key(url: str, key: str) -> None:
    assert origin_key(url) == key


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("https://o.example/story.php?id=31", "query", id="query-identified"),
        pytest.param("https://o.example/", "no path", id="home"),
        pytest.param("https://o.example/articles/x-0123456789abcdef/", "clashes",
                     id="own-article-folder"),
        pytest.param("https://o.example/archive/0001.html", "clashes", id="own-archive-page"),
        pytest.param("https://o.example/media/" + "a" * 64 + ".png", "clashes", id="own-media"),
        pytest.param("https://o.example/parts/x.json", "clashes", id="own-folder"),
        pytest.param("https://o.example/rss.xml", "clashes", id="own-file"),
        pytest.param("https://o.example/index.html", "clashes", id="own-home"),
        pytest.param("https://o.example/.well-known/x", "clashes", id="hidden"),
        pytest.param("https://o.example/a%20b", "characters", id="space"),
        pytest.param("https://o.example/a/../b", "characters", id="dot-dot"),
        pytest.param("https://o.example/a%2Fb", "characters", id="encoded-slash-is-a-name"),
        pytest.param("https://o.example/%FF", "UTF-8", id="not-utf-8"),
        # An offline copy unpacked on Windows cannot hold these names.
        pytest.param("https://o.example/news/con/", "characters", id="windows-device"),
        pytest.param("https://o.example/Aux.html", "characters", id="windows-device-page"),
        pytest.param("https://o.example/news/story./", "characters", id="trailing-dot"),
        pytest.param("https://o.example/ru/" + "%D0%B0" * 101, "longer", id="name-too-long"),
        pytest.param("https://o.example/" + "a/" * 401 + "b", "longer", id="key-too-long"),
        # A directory mirror or an unpacked copy on Windows or macOS ignores case.
        pytest.param("https://o.example/Parts/x.json", "clashes", id="own-folder-any-case"),
        pytest.param("https://o.example/SIGNATURES/x", "clashes", id="own-folder-upper"),
        pytest.param("https://o.example/Articles/x-0123456789abcdef/index.html", "clashes",
                     id="own-article-any-case"),
        pytest.param("https://o.example/archive/Index.html", "clashes",
                     id="own-archive-index-any-case"),
        # On a directory mirror "rss.xml/x" needs a folder where the file rss.xml is.
        pytest.param("https://o.example/rss.xml/x", "clashes", id="own-file-as-folder"),
        pytest.param("https://o.example/offline.zip/y/", "clashes", id="own-zip-as-folder"),
    ],
)
def test_not_host_swappable(url: str, reason: str) -> None:
    found = origin_key(url)
    assert isinstance(found, NotSwappable) and reason in found.reason, found


@pytest.mark.parametrize(
    ("key", "on_s3", "on_dir"),
    [
        ("2026/11/28/story", "2026/11/28/story", "2026/11/28/story/index.html"),
        ("news/story/", "news/story/", "news/story/index.html"),
        ("a/story.html", "a/story.html", "a/story.html"),
        ("a/story.php", "a/story.php", "a/story.php/index.html"),
        ("a.html/b", "a.html/b", None),
        # "/a.htm" is the file a.htm there: "/a.htm/" cannot be a folder beside it.
        ("a.htm/", "a.htm/", None),
    ],
)
def test_site_path_per_style(key: str, on_s3: str, on_dir: str | None) -> None:
    assert (site_path(key, KEY), site_path(key, DIR)) == (on_s3, on_dir)


def test_a_directory_mirror_refuses_a_path_ending_in_slash(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="cannot hold"):
        LocalBackend("d", tmp_path).put("news/story/", b"x", "text/html", cache="")


# -- in the build ---------------------------------------------------------------------------

def story(url: str, title: str = "Story") -> Article:
    return Article(id=article_id(url), url=url, source="feed", title=title, authors=(),
                   published=T0 - timedelta(hours=1), updated=None, language="en",
                   text="Body", html="<p>Body</p>")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Config, Store]]:
    write_keypair(tmp_path / "outlet")
    config = from_dict({
        "outlet": {"id": "t", "name": "T", "origin": "https://news.example/"},
        "signing": {"secret_key": "outlet.key", "public_key": "outlet.pub"},
        "publish": {"grace": "1h"},
        "mirrors": [
            {"name": "usb", "type": "local", "path": "usb", "public_url": "https://u.example/"},
            {"name": "s3", "type": "s3", "bucket": "b", "public_url": "https://s.example/b/"},
        ],
    }, tmp_path / "mirrorkit.toml")
    with Store(config.state_dir) as store:
        yield config, store


def test_every_mirror_lists_the_article_at_its_origin_path(setup: tuple[Config, Store]) -> None:
    config, store = setup
    dated, slash = story("https://news.example/2026/10/30/a-story"), story(CYRILLIC)
    query = story("https://news.example/story.php?id=31")
    for a in (dated, slash, query):
        store.save_article(a)
    bundle, stats = build_with_stats(config, store, now=T0)
    s3, usb = bundle_entries(bundle, "s3"), bundle_entries(bundle, "usb")
    assert {"2026/10/30/a-story", "ru/новости/"} <= set(s3)
    assert {"2026/10/30/a-story/index.html", "ru/новости/index.html"} <= set(usb)
    assert "ru/новости/index.html" not in s3 and "ru/новости/" not in usb
    assert s3["ru/новости/"].type == "text/html; charset=utf-8"
    assert not any(p.startswith("story.php") for p in (*s3, *usb))
    assert set(stats.not_swappable) == {query.url}
    # The copy's links lead from where it is, and it names the canonical page.
    page = lxml.html.document_fromstring(bundle.source("s3").lookup("ru/новости/") or b"")
    assert page.xpath("//link[@rel='canonical']/@href") == ["../../" + article_path(slash)]
    assert "../../index.html" in page.xpath("//a/@href")
    deep = bundle.source("s3").lookup("2026/10/30/a-story") or b""
    assert b'href="../../../index.html"' in deep


def test_a_path_two_articles_claim_goes_to_neither(setup: tuple[Config, Store]) -> None:
    config, store = setup
    first = story("https://news.example/news/story")
    store.save_article(first)
    bundle, _ = build_with_stats(config, store, now=T0)
    assert "news/story/index.html" in bundle_entries(bundle, "usb")
    # On a directory mirror "/news/story/" lands where "/news/story" does.
    second = story("https://news.example/news/story/")
    store.save_article(second)
    bundle, stats = build_with_stats(config, store, now=T0 + timedelta(minutes=5))
    assert "another article" in stats.not_swappable[second.url]
    assert "news/story/index.html" in stats.changed_paths["~dir"]
    later = T0 + timedelta(hours=2)  # past the grace: the contested page is gone
    bundle, _ = build_with_stats(config, store, now=later)
    assert "news/story/index.html" not in bundle_entries(bundle, "usb")
    # An object store tells the two apart, so both keep their pages there.
    assert {"news/story", "news/story/"} <= set(bundle_entries(bundle, "s3"))
    bundle, _ = build_with_stats(config, store, now=later, full=True)  # and stays so
    assert "news/story/index.html" not in bundle_entries(bundle, "usb")


@pytest.mark.parametrize("path", ["archive/", "archive", "Archive/"])
def test_an_origin_path_never_replaces_the_archive_index(
        setup: tuple[Config, Store], tmp_path: Path, path: str) -> None:
    """``/archive/`` is a fine S3 key but on a directory mirror (and in every offline
    copy) it is ``archive/index.html``, the site's own archive index."""
    config, store = setup
    hostile = story(f"https://news.example/{path}", title="Not the archive")
    store.save_article(hostile)
    bundle, stats = build_with_stats(config, store, now=datetime.now(UTC))
    assert "clashes" in stats.not_swappable[hostile.url]
    page = bundle.source("usb").lookup("archive/index.html") or b""
    assert b"Not the archive" not in page
    out = write_archive(bundle, "usb", tmp_path / "usb.zip", load_signer(config))
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
    assert len(names) == len(set(names))
    checked = subprocess.run([sys.executable, "-m", "mirrorkit", "verify", str(out), "--key",
                              str(config.signing.public_key)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_origin_page_an_earlier_build_let_onto_a_site_file_gives_way(
        setup: tuple[Config, Store]) -> None:
    """A store whose earlier build put an outlet's page at archive/index.html: the
    manifest names that path once, with the site's own page."""
    config, store = setup
    store.save_article(story("https://news.example/a-story"))
    build_with_stats(config, store, now=T0)
    store.put_site_file("~dir", SiteFile("archive/index.html", store.put_blob(b"hostile"), 7,
                                         "text/html", True, 60), T0)
    bundle, _ = build_with_stats(config, store, now=T0 + timedelta(minutes=1), full=True)
    source = bundle.source("usb")
    entry = bundle_entries(bundle, "usb")["archive/index.html"]
    assert source.read(entry) != b"hostile"
    parts = [source.lookup(p.path) or b"" for p in Manifest.from_bytes(source.root()).parts]
    assert sum(p.count(b'"archive/index.html"') for p in parts) == 1


def test_pages_published_under_a_bare_id_stay_there(setup: tuple[Config, Store]) -> None:
    """An outlet upgrading from renderer 2: its non-Latin articles were published at
    ``articles/article-<id>/``; they move to a transliterated slug and keep the old page,
    so links shared before the upgrade still open them.  New articles get only the new."""
    config, store = setup
    old, new = story(CYRILLIC), story("https://news.example/%D0%B4%D0%B0")
    store.save_article(old)
    legacy = legacy_article_path(old)
    store.put_site_file("", SiteFile(legacy, store.put_blob(b"old page"), 8, "text/html",
                                     True, 60), T0)
    store.save_article(new)
    bundle, _ = build_with_stats(config, store, now=T0, full=True)
    entries = bundle_entries(bundle, "usb")
    assert {article_path(old), legacy, article_path(new)} <= set(entries)
    assert article_path(old) == f"articles/novosti-{old.id}/index.html"
    assert legacy_article_path(new) not in entries
    page = bundle.source("usb").lookup(legacy) or b""
    assert b"Story" in page and b'rel="canonical"' in page


def test_an_offline_copy_holds_the_directory_layout_and_verifies(
        setup: tuple[Config, Store], tmp_path: Path) -> None:
    """A zip cannot hold an object store's ``PATH/`` key (a name ending in "/" is a
    folder), so every offline copy, an S3 mirror's too, has the directory layout."""
    config, store = setup
    store.save_article(story(CYRILLIC))
    bundle, _ = build_with_stats(config, store, now=datetime.now(UTC))
    out = write_archive(bundle, "s3", tmp_path / "s3.zip", load_signer(config))
    with zipfile.ZipFile(out) as z:
        names = {n.partition("/")[2] for n in z.namelist()}
    assert "ru/новости/index.html" in names and "ru/новости/" not in names
    checked = subprocess.run([sys.executable, "-m", "mirrorkit", "verify", str(out), "--key",
                              str(config.signing.public_key)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
