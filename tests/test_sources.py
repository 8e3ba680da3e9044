"""Real outlets' sources and pages, fetched from loopback origins.

Listing pages with pagination, sitemap indexes of gzip sitemaps, Google News sitemaps,
deduplication by canonical URL, figures with captions from the origin to the mirror's
pages and feeds, and images re-encoded, scaled and capped per article.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from PIL import Image

from mirrorkit import images
from mirrorkit.build.render import make_environment, render_article, render_feeds
from mirrorkit.config import Config, from_dict
from mirrorkit.doctor import check_sources
from mirrorkit.extract import parse_datetime
from mirrorkit.fetch import FetchReport, fetch, probe_sources
from mirrorkit.sources import normalize_url
from mirrorkit.store import Store
from test_fetch import PARAGRAPH, LoopbackServer, fixed

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def config_for(tmp_path: Path, *sources: dict[str, Any], **fetch_options: Any) -> Config:
    return from_dict({
        "outlet": {"id": "mini", "name": "Mini", "origin": "http://127.0.0.1/"},
        "signing": {"secret_key": "k.key", "public_key": "k.pub"},
        "fetch": {"allow_private_addresses": True, "timeout": 5, **fetch_options},
        "sources": list(sources),
        "mirrors": [{"name": "m", "type": "local", "path": "m",
                     "public_url": "https://mirror.example/news/"}],
    }, tmp_path / "mirrorkit.toml")


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "state") as s:
        yield s


def run(config: Config, store: Store) -> tuple[FetchReport, list[str]]:
    lines: list[str] = []
    return fetch(config, store, progress=lines.append), lines


def article(title: str, *, extra: str = "", head: str = "") -> str:
    return (f"<html><head><title>{title}</title>{head}</head><body><nav>Home</nav><article>"
            f"<h1>{title}</h1><p>{PARAGRAPH * 2}</p>{extra}<p>{PARAGRAPH}</p></article>"
            "</body></html>")


def png(width: int, height: int, color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def article_requests(server: LoopbackServer) -> list[str]:
    return [p for p in server.requests if p.startswith("/a/")]


# -- listing sources ----------------------------------------------------------------------

class Listing(LoopbackServer):
    """A section front of ``pages`` pages, ``per_page`` links each, newest first."""

    def __init__(self, count: int, per_page: int = 3) -> None:
        self.slugs = [f"story-{n}" for n in range(count, 0, -1)]
        self.per_page = per_page
        super().__init__({"/news/": self._page})

    async def _page(self, request: Any) -> Any:
        page = int(request.query.get("page", "1"))
        chunk = self.slugs[(page - 1) * self.per_page:page * self.per_page]
        items = "".join(f'<li class="teaser"><h2><a href="/a/{s}.html">Teaser {s}</a></h2>'
                        '<a class="more" href="/about">About us</a></li>' for s in chunk)
        more = len(self.slugs) > page * self.per_page
        following = f'<a rel="next" href="/news/?page={page + 1}">Older</a>' if more else ""
        html = f"<html><body><ul>{items}</ul>{following}</body></html>"
        return await fixed(html)(request)

    def __enter__(self) -> Listing:
        super().__enter__()
        for slug in self.slugs:
            self.routes[f"/a/{slug}.html"] = fixed(article(f"Story {slug}"))
        return self

    def add(self, slug: str) -> None:
        self.slugs.insert(0, slug)
        self.routes[f"/a/{slug}.html"] = fixed(article(f"Story {slug}"))

    def source(self, **keys: Any) -> dict[str, Any]:
        return {"type": "listing", "url": self.url + "news/", "links": ".teaser h2",
                "next": "a[rel=next]", **keys}


def test_listing_follows_pages_and_stops_at_one_without_news(tmp_path: Path,
                                                             store: Store) -> None:
    with Listing(8) as site:
        config = config_for(tmp_path, site.source())
        report, _ = run(config, store)
        assert (report.new, report.any_failed) == (8, False)
        assert [p for p in site.requests if p.startswith("/news/")] == [
            "/news/", "/news/?page=2", "/news/?page=3"]
        # Titles come from the pages, not the teasers; the "About us" link is no article.
        assert sorted(a.title for a in store.articles())[0] == "Story story-1"
        assert "/about" not in site.requests
        site.requests.clear()
        report, _ = run(config, store)
        # Nothing new: the first page alone, no article.
        assert (report.new, site.requests) == (0, ["/news/"])
        site.add("story-9")
        site.requests.clear()
        report, _ = run(config, store)
        # News on page 1: page 2 is read too, and has none, so paging stops there.
        assert report.new == 1
        assert site.requests == ["/news/", "/news/?page=2", "/a/story-9.html"]


def test_listing_reads_at_most_max_pages(tmp_path: Path, store: Store) -> None:
    with Listing(20) as site:
        report, _ = run(config_for(tmp_path, site.source(max_pages=2)), store)
    assert report.new == 6
    assert [p for p in site.requests if p.startswith("/news/")] == ["/news/", "/news/?page=2"]


# -- sitemaps -----------------------------------------------------------------------------

def urlset(*urls: tuple[str, str], news: bool = False) -> bytes:
    ns = ' xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"' if news else ""
    body = "".join(f"<url><loc>{loc}</loc>{extra}</url>" for loc, extra in urls)
    return (f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
            f"{ns}>{body}</urlset>").encode()


def index(*children: tuple[str, str]) -> bytes:
    body = "".join(f"<sitemap><loc>{loc}</loc><lastmod>{lastmod}</lastmod></sitemap>"
                   for loc, lastmod in children)
    return ('<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/'
            f'sitemap/0.9">{body}</sitemapindex>').encode()


def test_sitemap_index_of_gzip_sitemaps_reads_only_what_changed(tmp_path: Path,
                                                                 store: Store) -> None:
    routes = {f"/a/{n}.html": fixed(article(f"Story {n}")) for n in range(1, 6)}
    with LoopbackServer(routes) as site:
        base = site.url
        # lastmod in several W3C datetime forms.
        old = urlset((f"{base}a/1.html", "<lastmod>2024</lastmod>"),
                     (f"{base}a/2.html?utm_source=x", "<lastmod>2024-05</lastmod>"))
        recent = urlset((f"{base}a/3.html", "<lastmod>2026-11-19T10:30+02:00</lastmod>"),
                        (f"{base}a/4.html", "<lastmod>2026-11-19T10:30:15.5Z</lastmod>"))
        site.routes["/old.xml.gz"] = fixed(gzip.compress(old), "application/x-gzip")
        site.routes["/recent.xml.gz"] = fixed(gzip.compress(recent), "application/gzip")
        children = [(f"{base}old.xml.gz", "2024-05-02"),
                    (f"{base}recent.xml.gz", "2026-11-19")]
        site.routes["/index.xml"] = fixed(index(*children), "application/xml")
        config = config_for(tmp_path, {"type": "sitemap", "url": base + "index.xml"})
        report, _ = run(config, store)
        assert (report.new, report.any_failed) == (4, False)
        stored = {a.url: a for a in store.articles()}
        # Tracking parameters are gone from the stored URL.
        assert set(stored) == {f"{base}a/{n}.html" for n in range(1, 5)}
        assert stored[f"{base}a/2.html"].updated == datetime(2024, 5, 1, tzinfo=UTC)
        assert stored[f"{base}a/3.html"].updated == datetime(2026, 11, 19, 8, 30, tzinfo=UTC)

        # Nothing new: the index alone (both children are older than the last full pass).
        site.requests.clear()
        report, _ = run(config, store)
        assert (report.new, site.requests) == (0, ["/index.xml"])

        # One child changes: it alone is read, and its new entry fetched.
        recent = urlset((f"{base}a/5.html", f"<lastmod>{datetime.now(UTC).isoformat()}"
                                            "</lastmod>"))
        site.routes["/recent.xml.gz"] = fixed(gzip.compress(recent), "application/gzip")
        children[1] = (f"{base}recent.xml.gz", datetime.now(UTC).isoformat())
        site.routes["/index.xml"] = fixed(index(*children), "application/xml")
        site.requests.clear()
        report, _ = run(config, store)
        assert report.new == 1
        assert sorted(site.requests) == ["/a/5.html", "/index.xml", "/recent.xml.gz"]


def test_gzip_sitemap_that_unpacks_too_large_fails_with_one_line(tmp_path: Path,
                                                                 store: Store) -> None:
    bomb = gzip.compress(urlset(*[(f"http://x.example/{'a' * 200}/{n}", "")
                                  for n in range(2000)]))
    assert len(bomb) < 20_000
    with LoopbackServer({"/s.xml.gz": fixed(bomb, "application/gzip")}) as site:
        config = config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml.gz"},
                            max_page_size="100KB")
        report, _ = run(config, store)
    assert report.sources[0].error == (
        f"{site.url}s.xml.gz: unpacks to more than the limit of 100000 bytes"
        " (raise [fetch] max_page_size if this is expected)")


def test_news_sitemap_gives_titles_and_publication_dates(tmp_path: Path, store: Store) -> None:
    routes = {"/a/1.html": fixed(article("Page title"))}
    with LoopbackServer(routes) as site:
        news = ("<news:news><news:publication><news:name>Mini</news:name>"
                "<news:language>en</news:language></news:publication>"
                "<news:publication_date>2026-11-18T07:45:00+01:00</news:publication_date>"
                "<news:title>Council &amp; mayor agree on budget</news:title></news:news>")
        site.routes["/news.xml"] = fixed(urlset((f"{site.url}a/1.html", news), news=True),
                                         "application/xml")
        report, _ = run(config_for(tmp_path, {"type": "sitemap", "url": site.url + "news.xml"}),
                        store)
    assert report.new == 1
    (stored,) = store.articles()
    assert stored.title == "Council & mayor agree on budget"
    assert stored.published == datetime(2026, 11, 18, 6, 45, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("2024", datetime(2024, 1, 1, tzinfo=UTC), id="year"),
    pytest.param("2024-05", datetime(2024, 5, 1, tzinfo=UTC), id="year-month"),
    pytest.param("2024-05-06", datetime(2024, 5, 6, tzinfo=UTC), id="date"),
    pytest.param("2024-05-06T10:20+02:00", datetime(2024, 5, 6, 8, 20, tzinfo=UTC),
                 id="minutes-offset"),
    pytest.param("2024-05-06T10:20:30Z", datetime(2024, 5, 6, 10, 20, 30, tzinfo=UTC),
                 id="seconds-z"),
    pytest.param("2024-05-06T10:20:30.45-01:00",
                 datetime(2024, 5, 6, 11, 20, 30, 450000, tzinfo=UTC), id="fraction"),
    pytest.param("Tue, 27 Oct 2026 09:00:00 GMT", datetime(2026, 10, 27, 9, tzinfo=UTC),
                 id="rfc822"),
    pytest.param("not a date", None, id="junk"),
    pytest.param("", None, id="empty"),
])
def test_dates_in_every_w3c_form(value: str, expected: datetime | None) -> None:
    assert parse_datetime(value) == expected


# -- deduplication ------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "normal"), [
    pytest.param("https://n.example/a?utm_source=rss&utm_medium=feed", "https://n.example/a",
                 id="utm"),
    pytest.param("https://n.example/a?id=3&fbclid=x&gclid=y#top", "https://n.example/a?id=3",
                 id="click-ids-and-fragment"),
    pytest.param("https://n.example/a?page=2", "https://n.example/a?page=2", id="kept"),
])
def test_tracking_parameters_are_stripped(url: str, normal: str) -> None:
    assert normalize_url(url) == normal


def test_one_article_by_several_urls_is_stored_once(tmp_path: Path, store: Store) -> None:
    with LoopbackServer({}) as site:
        canonical = f'<link rel="canonical" href="{site.url}a/story.html">'
        site.routes["/a/story.html"] = fixed(article("Story", head=canonical))
        # The AMP copy names the story as canonical by og:url only.
        og = f'<meta property="og:url" content="{site.url}a/story.html?utm_campaign=amp">'
        site.routes["/a/story-amp.html"] = fixed(article("Story", head=og))
        # A page claiming another site's article as canonical keeps its own URL.
        site.routes["/a/other.html"] = fixed(article(
            "Other", head='<link rel="canonical" href="https://elsewhere.example/x">'))
        feed = ('<rss version="2.0"><channel><title>t</title>'
                "<item><title>Story</title><link>a/story.html?utm_source=rss</link></item>"
                "<item><title>Other</title><link>a/other.html</link></item></channel></rss>")
        site.routes["/feed"] = fixed(feed, "application/rss+xml")
        site.routes["/sitemap.xml"] = fixed(urlset((f"{site.url}a/story-amp.html", "")),
                                            "application/xml")
        config = config_for(tmp_path, {"type": "feed", "url": site.url + "feed"},
                            {"type": "sitemap", "url": site.url + "sitemap.xml"})
        run(config, store)
        assert sorted(a.url for a in store.articles()) == [
            f"{site.url}a/other.html", f"{site.url}a/story.html"]
        site.requests.clear()
        run(config, store)
        # Known by every URL that named it: no article is asked for again.
        assert article_requests(site) == []


# -- figures and images -------------------------------------------------------------------

FIGURE = ('<figure><img src="/img/hall.png" alt="Hall" width="4000" height="1000">'
          '<figcaption>The council chamber at Harwick city hall. <span class="credit">'
          "Photo: Ann Lee</span></figcaption></figure>")


def test_figure_with_caption_reaches_page_and_feeds_scaled_down(tmp_path: Path,
                                                                store: Store) -> None:
    routes = {"/a/1.html": fixed(article("Council", extra=FIGURE)),
              "/img/hall.png": fixed(png(4000, 1000), "image/png")}
    with LoopbackServer(routes) as site:
        site.routes["/s.xml"] = fixed(urlset((f"{site.url}a/1.html", "")), "application/xml")
        config = config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"},
                            image_max_width=800)
        run(config, store)
    (stored,) = store.articles()
    (name,) = stored.media
    media = store.media(name)
    assert media is not None
    with Image.open(store.blob_path(media.sha256)) as img:
        assert img.size == (800, 200)
    env = make_environment(None)
    page = render_article(env, config, stored, "style.css").decode()
    assert 'alt="Hall" width="800" height="200" loading="lazy">' in page
    assert ("<figcaption>The council chamber at Harwick city hall."
            " <small>Photo: Ann Lee</small></figcaption>") in page
    feeds = render_feeds(config, [stored], config.mirrors[0], built=NOW)
    for name in ("rss.xml", "atom.xml"):
        entry = feedparser.parse(io.BytesIO(feeds[name])).entries[0]
        content = entry.content[0].value if "content" in entry else entry.summary
        assert "The council chamber at Harwick city hall." in content
        assert "Photo: Ann Lee" in content
        assert "https://mirror.example/news/media/" in content


def test_images_per_article_are_capped_and_captions_stay(tmp_path: Path, store: Store) -> None:
    figures = "".join(f'<figure><img src="/img/{n}.png"><figcaption>Picture {n}</figcaption>'
                      "</figure>" for n in range(12))
    routes = {"/a/1.html": fixed(article("Many", extra=figures)),
              **{f"/img/{n}.png": fixed(png(64, 64, (n * 20, 0, 0)), "image/png")
                 for n in range(12)}}
    with LoopbackServer(routes) as site:
        site.routes["/s.xml"] = fixed(urlset((f"{site.url}a/1.html", "")), "application/xml")
        report, lines = run(config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"},
                                       max_images_per_article=5), store)
        images_asked = [p for p in site.requests if p.startswith("/img/")]
    assert report.new == 1
    assert sorted(images_asked) == sorted(f"/img/{n}.png" for n in range(5))
    (stored,) = store.articles()
    assert len(stored.media) == 5
    assert stored.html.count("<img") == 5
    # Every caption stays, those of the pictures left out too.
    assert all(f"Picture {n}" in stored.html for n in range(12))
    assert any("7 of 12 images left out (max_images_per_article = 5)" in line for line in lines)


def test_decompression_bomb_is_left_out_with_its_caption_kept(tmp_path: Path,
                                                              store: Store) -> None:
    # 20,000 x 20,000 pixels of one colour: a few hundred kilobytes as PNG.
    bomb = io.BytesIO()
    Image.MAX_IMAGE_PIXELS = None
    try:
        Image.new("1", (20_000, 20_000)).save(bomb, "PNG")
    finally:
        Image.MAX_IMAGE_PIXELS = images.MAX_PIXELS
    extra = '<figure><img src="/img/bomb.png"><figcaption>A very large map</figcaption></figure>'
    routes = {"/a/1.html": fixed(article("Map", extra=extra)),
              "/img/bomb.png": fixed(bomb.getvalue(), "image/png")}
    with LoopbackServer(routes) as site:
        site.routes["/s.xml"] = fixed(urlset((f"{site.url}a/1.html", "")), "application/xml")
        report, _ = run(config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"}),
                        store)
    assert (report.new, report.any_failed) == (1, False)
    (stored,) = store.articles()
    assert stored.media == ()
    assert "<figure><figcaption>A very large map</figcaption></figure>" in stored.html


def test_doctor_probe_reads_every_source_type(tmp_path: Path) -> None:
    with Listing(4) as site:
        site.routes["/index.xml.gz"] = fixed(gzip.compress(index(
            (f"{site.url}a.xml", "2026-11"), (f"{site.url}b.xml", "2026-11"))),
            "application/gzip")
        config = config_for(tmp_path, site.source(),
                            {"type": "sitemap", "url": site.url + "index.xml.gz"})
        probed = probe_sources(config)
    assert [found for _, found in probed] == [3, 2]


# -- one run, several sources -------------------------------------------------------------

def slow(body: str) -> Any:
    """A page that answers after a moment: every source has planned before one is saved."""
    inner = fixed(body)

    async def handler(request: Any) -> Any:
        await asyncio.sleep(0.3)
        return await inner(request)

    return handler


@pytest.mark.parametrize("listed", [
    # The listing's links carry tracking tags: one URL once normalized, so one request.
    pytest.param("/a/{}.html?utm_source=section&utm_medium=web", id="tracking-tags"),
    # The listing's links carry a parameter of their own: the page's canonical URL tells.
    pytest.param("/a/{}.html?ref=home", id="canonical"),
])
def test_article_named_by_two_sources_in_one_run_is_saved_and_counted_once(
        tmp_path: Path, store: Store, listed: str) -> None:
    slugs = [f"story-{n}" for n in range(1, 5)]
    with LoopbackServer({}) as site:
        for slug in slugs:
            canonical = f'<link rel="canonical" href="{site.url}a/{slug}.html">'
            site.routes[f"/a/{slug}.html"] = slow(article(f"Story {slug}", head=canonical))
        links = "".join(f'<h2><a href="{listed.format(s)}">{s}</a></h2>' for s in slugs)
        site.routes["/news/"] = fixed(f"<html><body>{links}</body></html>")
        # The sitemap says more than the listing (a date): not the same article twice.
        dated = "<lastmod>2026-11-18</lastmod>"
        site.routes["/s.xml"] = fixed(urlset(*((f"{site.url}a/{s}.html", dated)
                                               for s in slugs)), "application/xml")
        config = config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"},
                            {"type": "listing", "url": site.url + "news/", "links": "h2 a"})
        report, _ = run(config, store)
        assert (report.new, report.changed, report.any_failed) == (4, 0, False)
        # Whichever source came first, the sitemap's date is kept.
        assert [a.updated for a in store.articles()] == [datetime(2026, 11, 18, tzinfo=UTC)] * 4
        if "utm" in listed:
            assert sorted(article_requests(site)) == sorted(f"/a/{s}.html" for s in slugs)
        site.requests.clear()
        report, _ = run(config, store)
        assert (report.new, report.changed, article_requests(site)) == (0, 0, [])


def ld(**dates: str) -> str:
    return ('<script type="application/ld+json">'
            + json.dumps({"@context": "https://schema.org", "@type": "NewsArticle", **dates})
            + "</script>")


def test_sitemap_lastmod_never_dates_an_update_before_publication(tmp_path: Path,
                                                                  store: Store) -> None:
    routes = {
        # "2026-11" is 1 November by the letter: before the page was published.
        "/a/1.html": fixed(article("One", head=ld(datePublished="2026-11-18T07:30:00Z"))),
        # A lastmod to the day, and the page's own, later, time of that day's update.
        "/a/2.html": fixed(article("Two", head=ld(datePublished="2026-11-17T07:30:00Z",
                                                  dateModified="2026-11-19T15:00:00Z"))),
    }
    with LoopbackServer(routes) as site:
        site.routes["/s.xml"] = fixed(urlset(
            (f"{site.url}a/1.html", "<lastmod>2026-11</lastmod>"),
            (f"{site.url}a/2.html", "<lastmod>2026-11-19</lastmod>")), "application/xml")
        config = config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"})
        run(config, store)
        dates = {a.title: (a.published, a.updated) for a in store.articles()}
        assert dates == {
            "One": (datetime(2026, 11, 18, 7, 30, tzinfo=UTC), None),
            "Two": (datetime(2026, 11, 17, 7, 30, tzinfo=UTC),
                    datetime(2026, 11, 19, 15, 0, tzinfo=UTC)),
        }
        site.requests.clear()
        report, _ = run(config, store)
        assert (report.changed, article_requests(site)) == (0, [])


def test_listing_whose_links_match_nothing_fails_with_one_line(tmp_path: Path,
                                                                store: Store) -> None:
    # The outlet redesigned its section front: the selector finds no link any more.
    with Listing(4) as site:
        config = config_for(tmp_path, site.source(links="article h3 a"))
        report, _ = run(config, store)
        (probed,) = probe_sources(config)
    expected = (f"{site.url}news/: links = 'article h3 a' matches no link on the page"
                " (check the selector against the page's HTML, which a redesign changes)")
    assert (report.any_failed, report.sources[0].error) == (True, expected)
    assert str(probed[1]) == expected


def test_listing_in_xhtml_with_an_xml_declaration(tmp_path: Path, store: Store) -> None:
    with Listing(2) as site:
        page = ('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC'
                ' "-//W3C//DTD XHTML 1.0 Strict//EN"'
                ' "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">'
                '<html xmlns="http://www.w3.org/1999/xhtml"><body>'
                '<ul><li class="teaser"><h2><a href="/a/story-2.html">Two</a></h2></li>'
                '<li class="teaser"><h2><a href="/a/story-1.html">One</a></h2></li></ul>'
                "</body></html>")
        site.routes["/news/x.xhtml"] = fixed(page, "application/xhtml+xml")
        report, _ = run(config_for(tmp_path, site.source(url=site.url + "news/x.xhtml")), store)
    assert (report.new, report.any_failed) == (2, False)


def test_doctor_shows_a_listing_selector_that_finds_nothing_with_its_own_fix(
        tmp_path: Path) -> None:
    with Listing(2) as site:
        (check,) = check_sources(config_for(tmp_path, site.source(links="article h3 a")))
    assert check.line() == (
        f"FAIL  source {site.url}news/: {site.url}news/: links = 'article h3 a' matches no"
        " link on the page (check the selector against the page's HTML, which a redesign"
        " changes)")


@pytest.mark.parametrize("precision", [
    pytest.param("%Y-%m-%d", id="day"), pytest.param("%Y-%m", id="month"),
])
def test_sitemap_index_child_dated_only_by_day_is_read_again_that_day(
        tmp_path: Path, store: Store, precision: str) -> None:
    # "Today" names the whole day: a child dated so can change after the last pass.
    today = datetime.now(UTC).strftime(precision)
    routes = {f"/a/{n}.html": fixed(article(f"Story {n}")) for n in range(1, 3)}
    with LoopbackServer(routes) as site:
        child = f"{site.url}posts.xml"
        site.routes["/index.xml"] = fixed(index((child, today)), "application/xml")
        site.routes["/posts.xml"] = fixed(urlset((f"{site.url}a/1.html", "")),
                                          "application/xml")
        config = config_for(tmp_path, {"type": "sitemap", "url": site.url + "index.xml"})
        assert run(config, store)[0].new == 1
        site.routes["/posts.xml"] = fixed(urlset((f"{site.url}a/1.html", ""),
                                                 (f"{site.url}a/2.html", "")), "application/xml")
        assert run(config, store)[0].new == 1


@pytest.mark.parametrize("kind", ["feed", "sitemap"])
def test_section_page_named_as_a_feed_or_sitemap_says_so(tmp_path: Path, store: Store,
                                                        kind: str) -> None:
    with Listing(2) as site:
        report, _ = run(config_for(tmp_path, {"type": kind, "url": site.url + "news/"}), store)
    wanted = "a sitemap" if kind == "sitemap" else "an RSS or Atom feed"
    assert report.sources[0].error == (
        f"{site.url}news/: an HTML page, not {wanted} (check the source URL; for a section"
        ' page use type = "listing")')


@pytest.mark.parametrize(("said", "kept"), [
    ("ru", "ru"), ("en_US", "en-US"), (' en" onload="x', None), ("English", None),
    ("x" * 300, None),
])
def test_a_feeds_language_is_kept_only_as_a_language_tag(said: str, kept: str | None) -> None:
    """It ends up in every article's lang attribute and the Atom feed's xml:lang."""
    from xml.sax.saxutils import escape

    from mirrorkit.sources import parse_feed

    feed = (f"<rss version='2.0'><channel><title>t</title><link>https://o.example/</link>"
            f"<language>{escape(said)}</language><item><title>a</title>"
            f"<link>https://o.example/a</link></item></channel></rss>").encode()
    (entry,) = parse_feed(feed, "https://o.example/rss")
    assert entry.language == kept
