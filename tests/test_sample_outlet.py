"""The sample outlet serves what the rest of the test suite relies on."""

from __future__ import annotations

import asyncio
import io
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from email.message import Message
from html import escape

import aiohttp
import feedparser
import pytest

from mirrorkit.sample import HOSTILE_MARKERS, SampleArticle, SampleOutlet, sample_articles
from mirrorkit.sample.png import PNG_SIGNATURE, sample_png


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


@pytest.fixture(scope="module")
def outlet() -> Iterator[SampleOutlet]:
    """A shared, never-modified outlet; tests that change things start their own."""
    with SampleOutlet() as running:
        yield running


def by_encoding(outlet: SampleOutlet, encoding: str) -> SampleArticle:
    return next(a for a in outlet.articles if a.encoding == encoding and a.language == "ru")


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data.startswith(PNG_SIGNATURE)
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


# -- content -------------------------------------------------------------------------------


def test_content_is_fixed_and_varied() -> None:
    articles = sample_articles()
    languages = [a.language for a in articles]
    assert languages.count("en") == 18
    assert languages.count("ru") == 12
    assert {a.encoding for a in articles} == {"utf-8", "windows-1251", "koi8-r"}
    assert len({a.slug for a in articles}) == len(articles)
    assert all(3 <= len(a.paragraphs) <= 6 and 1 <= len(a.authors) <= 2 for a in articles)
    assert [a.published for a in articles] == sorted((a.published for a in articles),
                                                     reverse=True)
    used = [name for a in articles for name in a.images]
    assert any(used.count(name) > 1 for name in used), "an image shared by two articles"


# -- feeds, sitemap, listing ---------------------------------------------------------------


def test_rss_lists_every_article_newest_first(outlet: SampleOutlet) -> None:
    status, headers, body = fetch(outlet.feed_url)
    assert status == 200
    assert headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    feed = feedparser.parse(io.BytesIO(body))
    assert not feed.bozo, feed.get("bozo_exception")
    assert [e.link for e in feed.entries] == [a.url for a in outlet.articles]
    first, article = feed.entries[0], outlet.articles[0]
    assert first.title == article.title
    assert first.id == article.url
    assert first.summary == article.summary
    assert first.author == article.authors[0]
    assert first.language == article.language
    assert article.paragraphs[0] in first.content[0].value
    published = [e.published_parsed for e in feed.entries]
    assert published == sorted(published, reverse=True)


def test_atom_feed_parses(outlet: SampleOutlet) -> None:
    feed = feedparser.parse(io.BytesIO(fetch(outlet.atom_url)[2]))
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert [e.link for e in feed.entries] == [a.url for a in outlet.articles]
    assert all(e.updated_parsed and e.published_parsed for e in feed.entries)


def test_sitemap_and_index_link_every_article(outlet: SampleOutlet) -> None:
    urls = {a.url for a in outlet.articles}
    ns = {"sm": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    root = ET.fromstring(fetch(outlet.sitemap_url)[2])  # noqa: S314 (our own loopback server)
    assert {e.text for e in root.findall("sm:url/sm:loc", ns)} == urls
    assert len(root.findall("sm:url/sm:lastmod", ns)) == len(urls)
    index = fetch(outlet.index_url)[2].decode()
    assert all(f'href="{a.path}"' in index for a in outlet.articles)


# -- article pages -------------------------------------------------------------------------


def test_article_page_is_a_realistic_hostile_page(outlet: SampleOutlet) -> None:
    article = next(a for a in outlet.articles if len(a.images) == 2)
    status, _, body = fetch(article.url)
    page = body.decode("utf-8")
    assert status == 200
    for marker in HOSTILE_MARKERS:
        assert marker in page
    for part in ("<nav", "<aside", "<footer", 'class="ad-slot"', "<article",
                 f"<h1>{article.title}</h1>", 'property="article:published_time"',
                 f'<meta name="author" content="{article.authors[0]}">'):
        assert part in page
    up = "../" * article.path.count("/")  # images by relative URL from any depth
    for name in article.images:
        assert f'src="{up}images/{name}.png"' in page
    assert page.count("<figure>") == 2


def test_articles_live_at_the_paths_real_outlets_use(outlet: SampleOutlet) -> None:
    """Dated and extensionless, trailing slash, percent-encoded Cyrillic, and a query:
    the paths mirrors must also serve (or report) for a swapped host to work."""
    paths = {a.path for a in outlet.articles}
    assert "2026/10/30/harwick-council-approves-tram-extension-a12345" in paths
    assert "news/alder-valley-heavy-rain-warning/" in paths
    assert "story.php?id=31" in paths
    cyrillic = [p for p in paths if p.startswith("ru/%D")]
    assert len(cyrillic) == 2 and any(p.endswith("/") for p in cyrillic)
    assert sum(p.startswith("articles/") for p in paths) == len(paths) - 5
    for article in outlet.articles:
        if not article.path.startswith("articles/"):
            status, _, body = fetch(article.url)
            assert status == 200, article.url
            assert escape(article.title) in body.decode(article.encoding)
    assert fetch(outlet.url + "story.php?id=32")[0] == 404
    assert fetch(outlet.url + "articles/school-meals-review.html")[0] == 404


@pytest.mark.parametrize(
    ("encoding", "content_type", "meta"),
    [
        pytest.param("utf-8", "text/html; charset=utf-8", '<meta charset="utf-8">', id="utf-8"),
        pytest.param("windows-1251", "text/html; charset=windows-1251", None,
                     id="windows-1251-header-only"),
        pytest.param("koi8-r", "text/html", '<meta charset="koi8-r">', id="koi8-r-meta-only"),
    ],
)
def test_russian_pages_are_really_encoded(
    outlet: SampleOutlet, encoding: str, content_type: str, meta: str | None
) -> None:
    article = by_encoding(outlet, encoding)
    _, headers, body = fetch(article.url)
    assert headers["Content-Type"] == content_type
    if encoding != "utf-8":
        with pytest.raises(UnicodeDecodeError):
            body.decode("utf-8")
    page = body.decode(encoding)
    assert f"<h1>{article.title}</h1>" in page
    assert ("<meta charset" in page) == (meta is not None)
    if meta:
        assert meta in page


def test_unknown_paths_are_404(outlet: SampleOutlet) -> None:
    for path in ("nope", "articles/nope.html", "images/nope.png", "rss.xml/x"):
        assert fetch(outlet.url + path)[0] == 404


# -- conditional requests ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["rss.xml", "atom.xml", "sitemap.xml", "index.html",
                                  "articles/harwick-draft-budget-2027.html",
                                  "images/council-chamber.png"])
def test_etag_gives_304(outlet: SampleOutlet, path: str) -> None:
    status, headers, _ = fetch(outlet.url + path)
    assert status == 200
    etag = headers["ETag"]
    status, headers, body = fetch(outlet.url + path, {"If-None-Match": etag})
    assert (status, body, headers["ETag"]) == (304, b"", etag)
    assert fetch(outlet.url + path, {"If-None-Match": '"other"'})[0] == 200


def test_last_modified_gives_304(outlet: SampleOutlet) -> None:
    _, headers, _ = fetch(outlet.feed_url)
    assert headers["Last-Modified"] == "Sun, 01 Nov 2026 07:00:00 GMT"
    assert fetch(outlet.feed_url, {"If-Modified-Since": headers["Last-Modified"]})[0] == 304
    earlier = "Sat, 31 Oct 2026 07:00:00 GMT"
    assert fetch(outlet.feed_url, {"If-Modified-Since": earlier})[0] == 200


# -- images --------------------------------------------------------------------------------


def test_images_are_valid_pngs(outlet: SampleOutlet) -> None:
    for image in outlet.images.values():
        status, headers, body = fetch(outlet.url + image.path)
        assert (status, headers["Content-Type"]) == (200, "image/png")
        assert body == image.data == sample_png(image.seed)
        chunks = png_chunks(body)
        assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
        width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
        assert (width, height, depth, colour) == (320, 180, 8, 2)
        assert len(zlib.decompress(chunks[1][1])) == (1 + 3 * width) * height
    assert len({image.data for image in outlet.images.values()}) == len(outlet.images)


# -- faults and changes --------------------------------------------------------------------


def statuses(outlet: SampleOutlet, n: int) -> list[int]:
    return [fetch(outlet.url + "images/harbour.png")[0] for _ in range(n)]


def test_fail_rate_is_seeded() -> None:
    with SampleOutlet(fail_rate=0.5, seed=7) as first:
        seen = statuses(first, 40)
    with SampleOutlet(fail_rate=0.5, seed=7) as second:
        assert statuses(second, 40) == seen
    assert set(seen) == {200, 503}


def test_down_switch_and_request_log() -> None:
    with SampleOutlet() as outlet:
        outlet.set_down(True)
        assert fetch(outlet.feed_url)[0] == 503
        outlet.set_down(False)
        assert fetch(outlet.feed_url)[0] == 200
        assert [(r.path, r.status) for r in outlet.requests] == [("/rss.xml", 503),
                                                                 ("/rss.xml", 200)]
        outlet.reset_requests()
        assert outlet.requests == []


def test_latency_delays_responses() -> None:
    with SampleOutlet(latency=0.2) as outlet:
        start = time.monotonic()
        assert fetch(outlet.feed_url)[0] == 200
        assert time.monotonic() - start >= 0.2


def test_update_article_changes_page_etag_and_feed() -> None:
    with SampleOutlet() as outlet:
        article, other = outlet.articles[5], outlet.articles[6]
        etag = fetch(article.url)[1]["ETag"]
        other_etag = fetch(other.url)[1]["ETag"]

        updated = outlet.update_article(article.slug, title="Corrected title",
                                        extra_paragraph="Correction: an earlier version erred.")

        status, headers, body = fetch(article.url, {"If-None-Match": etag})
        assert status == 200 and headers["ETag"] != etag
        assert "Corrected title" in body.decode(article.encoding)
        assert fetch(other.url, {"If-None-Match": other_etag})[0] == 304
        feed = feedparser.parse(io.BytesIO(fetch(outlet.feed_url)[2]))
        entry = next(e for e in feed.entries if e.link == article.url)
        assert entry.title == "Corrected title"
        assert entry.updated == "2026-11-01T09:01:00Z"
        assert updated.updated is not None and updated.paragraphs[-1].startswith("Correction")


def test_add_article_is_published() -> None:
    with SampleOutlet() as outlet:
        added = outlet.add_article("late-news", "Late news", ["First.", "Second."],
                                   images=["harbour"])
        feed = feedparser.parse(io.BytesIO(fetch(outlet.feed_url)[2]))
        assert feed.entries[0].link == added.url == outlet.url + "articles/late-news.html"
        assert fetch(added.url)[0] == 200
        with pytest.raises(ValueError, match="already exists"):
            outlet.add_article("late-news", "Again", ["Text."])


# -- running -------------------------------------------------------------------------------


def test_concurrent_clients_and_clean_restart() -> None:
    outlet = SampleOutlet(latency=0.05)

    async def fetch_all(urls: list[str]) -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def one(url: str) -> int:
                async with session.get(url) as response:
                    await response.read()
                    return response.status

            return await asyncio.gather(*(one(url) for url in urls))

    with outlet:
        url = outlet.url
        assert asyncio.run(fetch_all([a.url for a in outlet.articles])) == [200] * 30
    with outlet:  # same port and content after a restart
        assert outlet.url == url
        assert len(outlet.requests) == 30


def test_module_entry_point_serves_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mirrorkit.sample", "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split()[3]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert fetch(url + "rss.xml")[0] == 200
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()
