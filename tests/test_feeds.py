"""Per-mirror feeds and the machine mirror list.

Feeds link to the serving mirror's own copies with absolute URLs, keep item ids across
mirrors and versions (Invariant 5), parse cleanly with feedparser, and depend only on
their inputs.  mirrors.json has the Bypass Censorship v2 shape.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser
import lxml.etree
import pytest

from mirrorkit.build.feeds import item_id
from mirrorkit.build.render import article_path, render_feeds
from mirrorkit.config import Config, from_dict
from mirrorkit.errors import BuildError
from mirrorkit.models import MEDIA_SCHEME, Article, article_id
from sites import render_site

BUILT = datetime(2024, 3, 20, 12, 0, tzinfo=UTC)
IMAGE = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.png"
FEEDS = ("rss.xml", "atom.xml")


def make_config(tmp_path: Path, **build: Any) -> Config:
    return from_dict(
        {
            "outlet": {"id": "example-times", "name": "Example Times",
                       "origin": "https://www.example.com/", "language": "ru"},
            "signing": {"secret_key": "outlet.key", "public_key": "outlet.pub"},
            "build": build,
            "mirrors": [
                {"name": "r2", "type": "local", "path": "r2",
                 "public_url": "https://pub-1234.r2.dev/"},
                {"name": "usb", "type": "local", "path": "usb",
                 "public_url": "http://127.0.0.1:8080/news/"},
            ],
        },
        tmp_path / "mirrorkit.toml",
    )


def make_article(n: int, *, title: str = "Новости дня",
                 authors: tuple[str, ...] = ("Иван Петров",)) -> Article:
    url = f"https://www.example.com/news/story-{n}"
    return Article(
        id=article_id(url), url=url, source="https://www.example.com/rss",
        title=f"{title} {n}", authors=authors,
        published=datetime(2024, 3, n, 9, 30, tzinfo=UTC), updated=None,
        language="ru", text="Полный текст статьи.",
        html=f'<p>Полный текст статьи.</p><img src="{MEDIA_SCHEME}{IMAGE}" alt="фото">',
        media=(IMAGE,), summary="Кратко о главном",
    )


ARTICLES = [make_article(1), make_article(3), make_article(2, authors=())]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


def parsed(config: Config, mirror: int, name: str) -> Any:
    feeds = render_feeds(config, ARTICLES, config.mirrors[mirror], built=BUILT)
    return feedparser.parse(io.BytesIO(feeds[name]))


@pytest.mark.parametrize("name", FEEDS)
def test_feedparser_reads_feed_without_complaint(config: Config, name: str) -> None:
    feed = parsed(config, 0, name)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == ("rss20" if name == "rss.xml" else "atom10")
    assert feed.feed.title == "Example Times (pub-1234.r2.dev)"
    assert [e.title for e in feed.entries] == ["Новости дня 3", "Новости дня 2",
                                               "Новости дня 1"]  # newest first


@pytest.mark.parametrize("name", FEEDS)
def test_links_point_to_the_serving_mirror(config: Config, name: str) -> None:
    for index, mirror in enumerate(config.mirrors):
        feed = parsed(config, index, name)
        assert feed.feed.link == mirror.public_url + "index.html"
        self_links = [ln.href for ln in feed.feed.links if ln.rel == "self"]
        assert self_links == [mirror.public_url + name]
        newest = sorted(ARTICLES, key=lambda a: a.sort_time or BUILT, reverse=True)
        for entry, article in zip(feed.entries, newest, strict=True):
            assert entry.link == mirror.public_url + article_path(article)


@pytest.mark.parametrize("name", FEEDS)
def test_item_ids_are_the_same_on_every_mirror(config: Config, name: str) -> None:
    ids = [[e.id for e in parsed(config, i, name).entries] for i in range(2)]
    assert ids[0] == ids[1]
    assert ids[0][0] == item_id("example-times", ARTICLES[1])
    assert ids[0][0] == f"urn:mirrorkit:example-times:{ARTICLES[1].id}"


def test_rss_guid_is_not_a_permalink(config: Config) -> None:
    rss = render_feeds(config, ARTICLES, config.mirrors[0], built=BUILT)["rss.xml"]
    guids = lxml.etree.fromstring(rss).findall("channel/item/guid")
    assert [g.get("isPermaLink") for g in guids] == ["false"] * 3


def test_item_ids_survive_a_new_version(config: Config) -> None:
    older = parsed(config, 0, "atom.xml")
    later = render_feeds(config, [*ARTICLES, make_article(4)], config.mirrors[0],
                         built=datetime(2025, 1, 1, tzinfo=UTC))
    newer = feedparser.parse(io.BytesIO(later["atom.xml"]))
    assert {e.id for e in older.entries} < {e.id for e in newer.entries}


@pytest.mark.parametrize("name", FEEDS)
def test_full_content_with_images_absolute_on_that_mirror(config: Config, name: str) -> None:
    for index, mirror in enumerate(config.mirrors):
        entry = parsed(config, index, name).entries[0]
        html = entry.content[0].value
        assert "Полный текст статьи." in html
        assert f'src="{mirror.public_url}media/{IMAGE}"' in html
        assert MEDIA_SCHEME not in html
        assert entry.summary == "Кратко о главном"


@pytest.mark.parametrize("name", FEEDS)
def test_authors_and_dates(config: Config, name: str) -> None:
    entries = parsed(config, 0, name).entries
    assert entries[0].author == "Иван Петров"
    assert entries[0].published_parsed[:5] == (2024, 3, 3, 9, 30)
    assert "author" not in entries[1]  # an article without authors names nobody


def test_feed_items_limits_the_entries(tmp_path: Path) -> None:
    config = make_config(tmp_path, feed_items=2)
    for name in FEEDS:
        feed = feedparser.parse(io.BytesIO(render_feeds(config, ARTICLES, config.mirrors[0],
                                                        built=BUILT)[name]))
        assert len(feed.entries) == 2


def test_same_inputs_give_same_bytes(config: Config) -> None:
    first = render_feeds(config, ARTICLES, config.mirrors[0], built=BUILT)
    again = render_feeds(config, list(reversed(ARTICLES)), config.mirrors[0], built=BUILT)
    assert first == again
    assert b"lastBuildDate>Wed, 20 Mar 2024 12:00:00 +0000<" in first["rss.xml"]
    assert b"<updated>2024-03-20T12:00:00+00:00</updated>" in first["atom.xml"]


def test_undated_article_still_makes_a_valid_feed(config: Config) -> None:
    undated = Article(
        id=article_id("https://www.example.com/x"), url="https://www.example.com/x",
        source="s", title="Без даты", authors=(), published=None, updated=None,
        language="ru", text="", html="<p>текст</p>",
    )
    for name in FEEDS:
        feed = feedparser.parse(io.BytesIO(render_feeds(config, [undated], config.mirrors[0],
                                                        built=BUILT)[name]))
        assert not feed.bozo
        assert feed.entries[0].title == "Без даты"


@pytest.mark.parametrize("field", ["title", "summary", "html", "authors"])
def test_article_xml_cannot_carry_is_a_one_line_build_error(config: Config, field: str) -> None:
    # fetch strips such characters; an article stored before that must still not end the
    # build with a traceback from deep inside lxml.
    bad = make_article(4)
    value: Any = ("Bad\x01Name",) if field == "authors" else "Bad\x01Title"
    bad = dataclasses.replace(bad, **{field: value})
    with pytest.raises(BuildError) as info:
        render_feeds(config, [*ARTICLES, bad], config.mirrors[0], built=BUILT)
    message = str(info.value)
    assert message.startswith(f"{bad.url}: cannot write rss.xml: All strings must be XML")
    assert "\n" not in message
    assert isinstance(info.value.__cause__, ValueError)


# -- mirrors.json ---------------------------------------------------------------------------

def test_mirror_list_has_the_bypass_censorship_v2_shape(config: Config) -> None:
    data = render_site(config, ARTICLES, built=BUILT, version=3)["mirrors.json"]
    assert json.loads(data) == {
        "version": "2.0",
        "sites": [{
            "main_domain": "example.com",
            "available_alternatives": [
                {"proto": "https", "type": "mirror", "created_at": "2024-03-20T12:00:00Z",
                 "updated_at": "2024-03-20T12:00:00Z", "url": "https://pub-1234.r2.dev/"},
                {"proto": "http", "type": "mirror", "created_at": "2024-03-20T12:00:00Z",
                 "updated_at": "2024-03-20T12:00:00Z", "url": "http://127.0.0.1:8080/news/"},
            ],
        }],
    }
    # Sorted keys, stable bytes: the same list gives the same file.
    assert data == json.dumps(json.loads(data), sort_keys=True, indent=2).encode() + b"\n"
    assert render_site(config, [], built=BUILT, version=9)["mirrors.json"] == data


# -- Issue 8: mirrors told apart, entry languages, lead images --------------------------------

def test_each_mirrors_feed_title_names_that_mirror(config: Config) -> None:
    for name in FEEDS:
        titles = [parsed(config, m, name).feed.title for m in (0, 1)]
        assert titles == ["Example Times (pub-1234.r2.dev)",
                          "Example Times (127.0.0.1:8080/news)"]


MIXED = [make_article(1), dataclasses.replace(make_article(2), language="en", title="News")]


@pytest.mark.parametrize("name", FEEDS)
def test_entries_carry_their_own_language(config: Config, name: str) -> None:
    data = render_feeds(config, MIXED, config.mirrors[0], built=BUILT)[name]
    feed = feedparser.parse(io.BytesIO(data))
    assert not feed.bozo, feed.get("bozo_exception")
    by_title = {e.title: e for e in feed.entries}
    if name == "atom.xml":  # feedparser reads xml:lang (feed default: the outlet's)
        assert by_title["News"].title_detail.language == "en"
        assert by_title["Новости дня 1"].title_detail.language == "ru"
    else:
        assert (by_title["News"].language, by_title["Новости дня 1"].language) == ("en", "ru")


@pytest.mark.parametrize("name", FEEDS)
def test_lead_image_is_an_enclosure_on_that_mirror(config: Config, name: str) -> None:
    def media(n: str) -> tuple[int, str] | None:
        return (1234, "image/png") if n == IMAGE else None

    for m, mirror in enumerate(config.mirrors):
        data = render_feeds(config, ARTICLES, mirror, built=BUILT, media=media)[name]
        entry = feedparser.parse(io.BytesIO(data)).entries[0]
        assert [(e.href, e.length, e.type) for e in entry.enclosures] == [
            (f"{mirror.public_url}media/{IMAGE}", "1234", "image/png")], m


# -- the feed validator's rules -------------------------------------------------------------
# The W3C feed validator is not packaged; these are the rules of RFC 4287 and RSS 2.0 that
# it enforces as errors, checked on every element of both feeds of every mirror.
ATOM = "{http://www.w3.org/2005/Atom}"
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"
LANGUAGE_TAG = r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*"


def _one(parent: Any, tag: str) -> Any:
    found = parent.findall(tag)
    assert len(found) == 1, f"{parent.tag}: {len(found)} × {tag}, the spec wants exactly one"
    return found[0]


def _absolute(url: str) -> None:
    parts = urlsplit(url)
    assert parts.scheme and (parts.netloc or parts.scheme == "urn"), f"not absolute: {url}"


def _atom_rules(root: Any) -> None:
    assert root.tag == ATOM + "feed"
    for tag in ("id", "title", "updated"):
        _one(root, ATOM + tag)
    for tag in ("icon", "logo", "rights", "subtitle", "generator"):
        assert len(root.findall(ATOM + tag)) <= 1, tag
    entries = root.findall(ATOM + "entry")
    assert entries
    feed_author = root.find(ATOM + "author") is not None
    for element in [root, *entries]:
        _absolute(_one(element, ATOM + "id").text)
        assert re.fullmatch(RFC3339, _one(element, ATOM + "updated").text)
        for link in element.findall(ATOM + "link"):
            _absolute(link.get("href"))
        alternates = [(ln.get("type"), ln.get("hreflang")) for ln in element.findall(ATOM + "link")
                      if ln.get("rel", "alternate") == "alternate"]
        assert len(alternates) == len(set(alternates)), "two alternate links of one type"
        lang = element.get("{http://www.w3.org/XML/1998/namespace}lang")
        assert lang is None or re.fullmatch(LANGUAGE_TAG, lang), lang
    for entry in entries:
        _one(entry, ATOM + "title")
        assert feed_author or entry.find(ATOM + "author") is not None, "entry without author"
        for author in entry.findall(ATOM + "author"):
            _one(author, ATOM + "name")
        assert len(entry.findall(ATOM + "published")) <= 1
        for published in entry.findall(ATOM + "published"):
            assert re.fullmatch(RFC3339, published.text)
        content = entry.find(ATOM + "content")
        if content is None:
            assert any(ln.get("rel", "alternate") == "alternate"
                       for ln in entry.findall(ATOM + "link"))
        else:
            assert content.get("type") in (None, "text", "html", "xhtml")
            if content.get("type") == "html":
                assert len(content) == 0, "html content must be escaped text, not elements"


def _rss_rules(root: Any) -> None:
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = _one(root, "channel")
    for tag in ("title", "link", "description"):
        assert (_one(channel, tag).text or "").strip(), f"channel {tag} is empty"
    _absolute(channel.findtext("link"))
    for tag in ("language", "pubDate", "lastBuildDate", "ttl", "image", "docs"):
        assert len(channel.findall(tag)) <= 1, tag
    if channel.find("language") is not None:
        assert re.fullmatch(LANGUAGE_TAG, channel.findtext("language"))
    dates = [d.text for d in channel.iter("pubDate", "lastBuildDate")]
    items = channel.findall("item")
    assert items
    for item in items:
        assert item.find("title") is not None or item.find("description") is not None
        for tag in ("link", "guid", "pubDate", "enclosure", "description", "title"):
            assert len(item.findall(tag)) <= 1, f"item with two {tag}"
        if item.find("link") is not None:
            _absolute(item.findtext("link"))
        guid = item.find("guid")
        if guid is not None and guid.get("isPermaLink", "true") == "true":
            _absolute(guid.text)
        enclosure = item.find("enclosure")
        if enclosure is not None:
            _absolute(enclosure.get("url"))
            assert enclosure.get("length", "").isdigit() and enclosure.get("type")
    for date in dates:
        assert re.fullmatch(r"(\w{3}, )?\d{1,2} \w{3} \d{4} \d\d:\d\d(:\d\d)? "
                            r"([+-]\d{4}|GMT|UT|[A-Z]{3})", date), f"not RFC 822: {date}"
        assert parsedate_to_datetime(date).tzinfo is not None, date


@pytest.mark.parametrize("language", ["ru", "fa", "en"])
def test_feeds_follow_the_rss_20_and_atom_rules_the_feed_validator_checks(
        tmp_path: Path, language: str) -> None:
    config = make_config(tmp_path)
    config = dataclasses.replace(config, outlet=dataclasses.replace(config.outlet,
                                                                    language=language))
    for mirror in config.mirrors:
        feeds = render_feeds(config, ARTICLES, mirror, built=BUILT)
        _atom_rules(lxml.etree.fromstring(feeds["atom.xml"]))
        _rss_rules(lxml.etree.fromstring(feeds["rss.xml"]))
