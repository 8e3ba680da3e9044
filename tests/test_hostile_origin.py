"""A hostile origin against the fetcher: dates, JSON-LD, sitemap sizes and canonical URLs.

Each case is something a compromised or intercepted origin can send; each must cost one
entry or one field at most, never the source, the article or another article.
"""

from __future__ import annotations

import io
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mirrorkit import fetch as fetch_module
from mirrorkit import images, sources
from mirrorkit.errors import FetchError
from mirrorkit.extract import extract_page, parse_datetime
from mirrorkit.sources import parse_sitemap
from mirrorkit.store import Store
from test_fetch import LoopbackServer, fixed
from test_sources import article, config_for, index, png, run, urlset

# Not representable in UTC: Python raises OverflowError on converting them.
OVERFLOWING = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "state") as s:
        yield s


# -- dates --------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    pytest.param(OVERFLOWING[0], None, id="year-1-east-of-utc"),
    pytest.param(OVERFLOWING[1], None, id="year-9999-west-of-utc"),
    pytest.param("2 hours ago", None, id="relative"),
    pytest.param("yesterday", None, id="relative-word"),
    pytest.param("27 October 2026", datetime(2026, 10, 27, tzinfo=UTC), id="words"),
])
def test_hostile_dates_are_absent_not_errors(value: str, expected: datetime | None) -> None:
    assert parse_datetime(value) == expected


def test_a_date_out_of_range_fails_neither_the_sitemap_nor_the_article(
        tmp_path: Path, store: Store) -> None:
    ld = ('<script type="application/ld+json">{"@type": "NewsArticle", "headline": "Odd",'
          f' "datePublished": "{OVERFLOWING[1]}"}}</script>')
    routes = {"/a/1.html": fixed(article("Plain")), "/a/2.html": fixed(article("Odd", head=ld))}
    with LoopbackServer(routes) as site:
        site.routes["/s.xml"] = fixed(urlset(
            (f"{site.url}a/1.html", f"<lastmod>{OVERFLOWING[0]}</lastmod>"),
            (f"{site.url}a/2.html", "<lastmod>2026-11-01</lastmod>")), "application/xml")
        report, _ = run(config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"}),
                        store)
    assert (report.new, report.any_failed) == (2, False)
    assert sorted(a.title for a in store.articles()) == ["Odd", "Plain"]


def test_dates_in_no_standard_form_are_read_only_a_few_per_sitemap() -> None:
    # dateparser takes milliseconds a value: 50,000 of them would hold a run for minutes.
    count = sources.MAX_SLOW_DATES + 20
    data = urlset(*[(f"https://n.example/{n}", "<lastmod>27 October 2026</lastmod>")
                    for n in range(count)])
    read = parse_sitemap(data, "https://n.example/s.xml")
    assert len(read.entries) == count
    assert sum(1 for e in read.entries if e.updated) == sources.MAX_SLOW_DATES


# -- JSON-LD ------------------------------------------------------------------------------

@pytest.mark.parametrize("ld", [
    pytest.param("[" * 100_000 + "]" * 100_000, id="nested-arrays"),
    pytest.param('{"@graph": ' * 5000 + "{}" + "}" * 5000, id="nested-graphs"),
])
def test_json_ld_nested_past_the_recursion_limit_is_ignored(ld: str) -> None:
    page = article("Deep", head=f'<script type="application/ld+json">{ld}</script>')
    content = extract_page(page.encode(), "https://n.example/a/1.html")
    assert content is not None
    assert content.title == "Deep"


# -- sitemap sizes ------------------------------------------------------------------------

def test_a_sitemap_is_read_up_to_the_protocol_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_SITEMAP_URLS", 10)
    data = urlset(*[(f"https://n.example/{n}", "") for n in range(25)])
    assert len(parse_sitemap(data, "https://n.example/s.xml").entries) == 10
    data = index(*[(f"https://n.example/{n}.xml", "2026-11") for n in range(25)])
    assert len(parse_sitemap(data, "https://n.example/s.xml").children) == 10


def test_entries_of_a_sitemap_index_are_kept_to_the_newest_while_read(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fifty sitemaps of 50,000 URLs would otherwise be held whole before the cut.
    monkeypatch.setattr(fetch_module, "MAX_ENTRIES", 4)
    held: list[int] = []
    real = fetch_module.newest_first

    def spy(entries: list[Any]) -> list[Any]:
        held.append(len(entries))
        return real(entries)

    monkeypatch.setattr(fetch_module, "newest_first", spy)
    with LoopbackServer({"/a/2-4.html": fixed(article("Newest"))}) as site:
        for child in range(3):
            site.routes[f"/{child}.xml"] = fixed(urlset(*[
                (f"{site.url}a/{child}-{n}.html", f"<lastmod>2026-0{child + 1}-0{n + 1}</lastmod>")
                for n in range(5)]), "application/xml")
        site.routes["/index.xml"] = fixed(index(*[(f"{site.url}{c}.xml", "2026-11")
                                                  for c in range(3)]), "application/xml")
        config = config_for(tmp_path, {"type": "sitemap", "url": site.url + "index.xml"},
                            max_articles_per_source=1)
        report, _ = run(config, store)
    assert report.sources[0].entries == 4
    assert max(held) <= 4 + 5  # the newest so far and one sitemap's entries
    assert [a.url for a in store.articles()] == [f"{site.url}a/2-4.html"]


# -- canonical URLs -----------------------------------------------------------------------

def test_a_page_cannot_take_over_a_stored_article_by_naming_it_canonical(
        tmp_path: Path, store: Store) -> None:
    with LoopbackServer({}) as site:
        victim = f"{site.url}a/victim.html"
        site.routes["/a/victim.html"] = fixed(article("Victim"))
        site.routes["/s.xml"] = fixed(urlset((victim, "<lastmod>2026-01-01</lastmod>")),
                                      "application/xml")
        config = config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"})
        run(config, store)

        site.routes["/a/evil.html"] = fixed(article(
            "Impostor", head=f'<link rel="canonical" href="{victim}">'))
        for lastmod in ("2026-02-01", "2026-03-01"):  # new, then re-dated
            site.routes["/s.xml"] = fixed(urlset(
                (victim, "<lastmod>2026-01-01</lastmod>"),
                (f"{site.url}a/evil.html", f"<lastmod>{lastmod}</lastmod>")),
                "application/xml")
            report, _ = run(config, store)
            assert (report.new, report.changed, report.any_failed) == (0, 0, False)
            assert [(a.url, a.title) for a in store.articles()] == [(victim, "Victim")]


def test_an_article_named_canonical_by_a_page_read_before_it_is_its_own_after(
        tmp_path: Path, store: Store) -> None:
    with LoopbackServer({}) as site:
        victim = f"{site.url}a/victim.html"
        site.routes["/a/victim.html"] = fixed(article("Victim"))
        site.routes["/a/evil.html"] = fixed(article(
            "Impostor", head=f'<link rel="canonical" href="{victim}">'))
        config = config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"},
                            per_host=1, concurrency=1)
        for lastmod in ("2026-02-01", "2026-03-01"):  # the impostor first, then re-dated
            site.routes["/s.xml"] = fixed(urlset(
                (f"{site.url}a/evil.html", f"<lastmod>{lastmod}</lastmod>"),
                (victim, "<lastmod>2026-01-01</lastmod>")), "application/xml")
            run(config, store)
            assert [(a.url, a.title) for a in store.articles()] == [(victim, "Victim")]


# -- images -------------------------------------------------------------------------------

def test_images_past_the_byte_cap_are_not_stored(tmp_path: Path, store: Store) -> None:
    data = []
    for n in range(6):
        out = io.BytesIO()
        Image.effect_noise((200, 200), 80 + n).convert("RGB").save(out, "PNG")
        data.append(out.getvalue())
    figures = "".join(f'<img src="/img/{n}.png">' for n in range(6))
    routes = {"/a/1.html": fixed(article("Heavy", extra=figures)),
              **{f"/img/{n}.png": fixed(d, "image/png") for n, d in enumerate(data)}}
    with LoopbackServer(routes) as site:
        site.routes["/s.xml"] = fixed(urlset((f"{site.url}a/1.html", "")), "application/xml")
        run(config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"},
                       max_image_bytes_per_article=int(len(data[0]) * 2.5)), store)
    (stored,) = store.articles()
    assert len(stored.media) == 2  # the byte cap per article (also issue 10's test)
    # What the cap leaves out takes no disk: only the two kept images are in the store.
    assert len([p for p in store.blob_dir.rglob("*") if p.is_file()]) == 2


def test_an_image_that_breaks_its_decoder_is_left_out_in_one_line() -> None:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "AVIF")
    broken = bytearray(out.getvalue())
    broken[81] = 0  # an item of the AVIF container: libavif raises RuntimeError
    with pytest.raises(FetchError, match=r"^https://n\.example/x\.avif: broken image: "):
        images.reencode(bytes(broken), "https://n.example/x.avif", 100)


def test_images_are_decoded_one_per_core_at_most(tmp_path: Path, store: Store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A 400 KB PNG of 9,400 x 9,400 pixels takes about 700 MB to decode: threads decoding
    # one each at once would take gigabytes.
    running, most = 0, 0
    lock = threading.Lock()
    real = images.reencode

    def counting(*args: Any) -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.2)
            return real(*args)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(images, "reencode", counting)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    figures = "".join(f'<img src="/img/{n}.png">' for n in range(8))
    routes = {"/a/1.html": fixed(article("Many", extra=figures)),
              **{f"/img/{n}.png": fixed(png(16, 16, (n, 0, 0)), "image/png") for n in range(8)}}
    with LoopbackServer(routes) as site:
        site.routes["/s.xml"] = fixed(urlset((f"{site.url}a/1.html", "")), "application/xml")
        report, _ = run(config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"}),
                        store)
    assert (report.new, len(store.articles()[0].media)) == (1, 8)
    assert most == 2


# -- addresses ----------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    pytest.param("http://169.254.169.254/latest/meta-data/iam/", id="aws-gcp-azure-metadata"),
    pytest.param("http://[fd00:ec2::254]/latest/meta-data/", id="aws-metadata-v6"),
    pytest.param("http://[fe80::1]/", id="link-local-v6"),
])
def test_metadata_services_are_refused_even_for_a_private_origin(
        tmp_path: Path, store: Store, target: str) -> None:
    # allow_private_addresses lets mirrorkit read an origin on a private network; a
    # hostile sitemap must not send it on to the machine's credentials.
    with LoopbackServer({}) as site:
        site.routes["/s.xml"] = fixed(urlset((target, "")), "application/xml")
        report, lines = run(config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"},
                                       allow_private_addresses=True, connect_timeout=1),
                            store)
    assert report.sources[0].failed_articles == 1
    assert any(" address " in line and "never fetched" in line for line in lines), lines


def test_a_private_origin_is_still_read_with_allow_private(tmp_path: Path,
                                                           store: Store) -> None:
    with LoopbackServer({"/a/1.html": fixed(article("Local"))}) as site:
        site.routes["/s.xml"] = fixed(urlset((f"{site.url}a/1.html", "")), "application/xml")
        report, _ = run(config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"},
                                   allow_private_addresses=True), store)
    assert (report.new, report.any_failed) == (1, False)


# -- dates in the future ------------------------------------------------------------------

def test_a_date_in_the_future_neither_pins_nor_freezes_an_article(tmp_path: Path,
                                                                  store: Store) -> None:
    ld = ('<script type="application/ld+json">{"@type": "NewsArticle", "headline": "Soon",'
          ' "datePublished": "2999-01-01T00:00:00Z"}</script>')
    with LoopbackServer({"/a/1.html": fixed(article("Soon", head=ld))}) as site:
        config = config_for(tmp_path, {"type": "sitemap", "url": site.url + "s.xml"})
        site.routes["/s.xml"] = fixed(urlset(
            (f"{site.url}a/1.html", "<lastmod>9999-01-01</lastmod>")), "application/xml")
        run(config, store)
        (stored,) = store.articles()
        assert (stored.published, stored.updated) == (None, None)
        # The origin, itself again, dates its next change truly: it is read.
        site.routes["/a/1.html"] = fixed(article("Corrected"))
        site.routes["/s.xml"] = fixed(urlset(
            (f"{site.url}a/1.html", f"<lastmod>{datetime.now(UTC).isoformat()}</lastmod>")),
            "application/xml")
        report, _ = run(config, store)
    assert report.changed == 1
    assert [a.title for a in store.articles()] == ["Corrected"]
