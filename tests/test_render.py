"""The rendered site: relative links that name files, nothing loaded from other hosts,
language per page, user templates first, and bytes that depend only on the inputs.

The golden page under tests/golden/ is rewritten, instead of compared, when the test runs
with MIRRORKIT_UPDATE_GOLDEN=1; review the diff before committing it.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lxml.html
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirrorkit.build.render import (
    article_path,
    body_html,
    legacy_article_path,
    make_environment,
    readable_url,
    theme_dir,
)
from mirrorkit.config import Config, from_dict
from mirrorkit.errors import BuildError
from mirrorkit.models import MEDIA_SCHEME, Article, article_id
from sites import render_site, style_of

GOLDEN = Path(__file__).parent / "golden"
BUILT = datetime(2024, 3, 20, 12, 0, tzinfo=UTC)
IMAGE = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.png"
# Added to every mirror's tree by the build stage, not by the renderer.
BUILD_FILES = {"rss.xml", "atom.xml", "manifest.json", "manifest.json.minisig", "offline.zip"}


def make_config(tmp_path: Path, **build: Any) -> Config:
    return from_dict(
        {
            "outlet": {"id": "example-times", "name": "Example Times",
                       "origin": "https://www.example.com/", "language": "en",
                       "description": "Independent news"},
            "signing": {"secret_key": "keys/outlet.key", "public_key": "keys/outlet.pub"},
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


def make_article(url: str, title: str, *, language: str = "en", day: int = 1,
                 html: str | None = None, authors: tuple[str, ...] = ("Jane Roe",)) -> Article:
    return Article(
        id=article_id(url), url=url, source="https://www.example.com/rss", title=title,
        authors=authors, published=datetime(2024, 3, day, 9, 30, tzinfo=UTC), updated=None,
        language=language, text=f"{title}. Body text.",
        html=html if html is not None else (
            f'<p>{title}</p><figure><img src="{MEDIA_SCHEME}{IMAGE}" alt="A picture">'
            "</figure><p>See <a href=\"https://www.example.com/other\">more</a>.</p>"
        ),
        media=(IMAGE,), summary=f"Summary of {title}",
    )


ENGLISH = make_article("https://www.example.com/news/2024/03/city-council-votes.html",
                       "City council votes on the budget", day=3)
RUSSIAN = make_article("https://www.example.com/ru/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/",
                       "Городской совет голосует по бюджету", language="ru", day=5,
                       authors=("Иван Петров", "Мария Смирнова"))
ARTICLES = [ENGLISH, RUSSIAN]


@pytest.fixture
def site(tmp_path: Path) -> dict[str, bytes]:
    return render_site(make_config(tmp_path), ARTICLES, built=BUILT, version=7)


def pages(site: dict[str, bytes]) -> list[str]:
    return sorted(p for p in site if p.endswith(".html"))


def parse(data: bytes) -> Any:
    return lxml.html.document_fromstring(data)


# -- Invariant 3: relative links that name files --------------------------------------------

def test_site_has_the_documented_layout(site: dict[str, bytes]) -> None:
    assert {"index.html", "mirrors.html", "mirrors.json", "archive/index.html",
            "archive/0001.html", style_of(site)} <= set(site)
    assert article_path(ENGLISH) in site
    assert article_path(RUSSIAN) in site
    assert article_path(ENGLISH).count("/") == 2  # two levels deep, as the links assume


def test_internal_links_are_relative_name_files_and_resolve(site: dict[str, bytes]) -> None:
    known = set(site) | BUILD_FILES
    for page in pages(site):
        doc = parse(site[page])
        for element, attribute, link, _ in doc.iterlinks():
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                # Only plain links may leave the site: to the origin and to other mirrors.
                assert element.tag == "a", f"{page}: <{element.tag} {attribute}={link}>"
                assert parts.scheme in ("http", "https"), f"{page}: {link}"
                continue
            assert link and not link.startswith("/"), f"{page}: {link!r} is not relative"
            assert not link.endswith("/") and posixpath.basename(link) not in ("", ".", ".."), \
                f"{page}: {link!r} does not name a file"
            target = posixpath.normpath(posixpath.join(posixpath.dirname(page), parts.path))
            assert not target.startswith(".."), f"{page}: {link!r} leaves the site"
            assert target in known or re.fullmatch(r"media/[0-9a-f]{64}\.\w+", target), \
                f"{page}: {link!r} -> {target} is not in the site"


def test_article_images_point_into_media_two_levels_up(site: dict[str, bytes]) -> None:
    doc = parse(site[article_path(ENGLISH)])
    assert doc.xpath("//img/@src") == [f"../../media/{IMAGE}"]
    assert MEDIA_SCHEME.encode() not in b"".join(site.values())


def test_other_mirrors_are_absolute_links_to_their_home_page(site: dict[str, bytes]) -> None:
    hrefs = parse(site["mirrors.html"]).xpath("//ul[@class='mirrors']//a/@href")
    assert hrefs == ["https://pub-1234.r2.dev/index.html",
                     "http://127.0.0.1:8080/news/index.html"]


# -- Invariant 4: nothing from another host, no JavaScript ----------------------------------

LOADING = {"script", "link", "img", "iframe", "frame", "embed", "object", "source", "video",
           "audio", "track", "input", "style"}


def test_pages_load_nothing_from_other_hosts_and_have_no_script(
        site: dict[str, bytes]) -> None:
    for page in pages(site):
        doc = parse(site[page])
        # The one script of the site, on the verify page: its own file, no inline code.
        scripts = doc.xpath("//script")
        if page == "verify.html":
            assert [(s.get("src"), s.text) for s in scripts] == [(script_of(site), None)]
            scripts = []
        assert not scripts and not doc.xpath("//noscript | //iframe | //frame | //object"
                                             " | //embed"), page
        assert not [a for el in doc.iter() if isinstance(el.tag, str)
                    for a in el.attrib if a.lower().startswith("on")], page
        assert b"javascript:" not in site[page].lower()
        for element, _, link, _ in doc.iterlinks():
            if element.tag in LOADING:
                parts = urlsplit(link)
                assert not parts.scheme and not parts.netloc, f"{page}: loads {link}"
        for style in doc.xpath("//style/text() | //@style"):
            assert "url(" not in style and "@import" not in style, page


def script_of(site: dict[str, bytes]) -> str:
    return next(p for p in site if p.startswith("verify.") and p.endswith(".js"))


def test_stylesheet_is_local_small_and_imports_nothing(site: dict[str, bytes]) -> None:
    css = site[style_of(site)].decode()
    assert "@import" not in css and "url(" not in css and "@font-face" not in css
    assert "prefers-color-scheme: dark" in css
    assert len(site[style_of(site)]) < 4096  # readers on throttled connections


# -- HTML and language ----------------------------------------------------------------------

def test_pages_are_html5_with_charset_viewport_and_language(site: dict[str, bytes]) -> None:
    for page in pages(site):
        assert site[page].startswith(b"<!DOCTYPE html>\n"), page
        doc = parse(site[page])
        assert doc.xpath("//head/meta[@charset='utf-8']"), page
        assert doc.xpath("//head/meta[@name='viewport']"), page
        assert doc.xpath("//head/title/text()"), page
    # Every page speaks the interface's language; an article carries its own.
    for page in pages(site):
        assert parse(site[page]).get("lang") == "en", page
    russian = parse(site[article_path(RUSSIAN)]).xpath("//article")[0]
    assert (russian.get("lang"), russian.get("dir")) == ("ru", "ltr")


def test_right_to_left_articles_get_dir_rtl(tmp_path: Path) -> None:
    persian = make_article("https://www.example.com/fa/news-1", "خبر", language="fa")
    site = render_site(make_config(tmp_path), [persian], built=BUILT, version=1)
    doc = parse(site[article_path(persian)])
    assert (doc.get("lang"), doc.get("dir")) == ("en", "ltr")
    article = doc.xpath("//article")[0]
    assert (article.get("lang"), article.get("dir")) == ("fa", "rtl")


def localized(tmp_path: Path, language: str) -> dict[str, bytes]:
    config = make_config(tmp_path)
    config = replace(config, outlet=replace(config.outlet, language=language))
    return render_site(config, ARTICLES, built=BUILT, version=3, public_key="KEY")


@pytest.mark.parametrize(
    ("language", "direction", "labels", "date"),
    [
        pytest.param("fa", "rtl", ["صفحهٔ اصلی", "بایگانی", "آینه‌ها", "اشتراک:"],
                     "20 مارس 2024", id="persian"),
        pytest.param("ru", "ltr", ["Главная", "Архив", "Зеркала", "Подписаться:"],
                     "20 марта 2024\u202fг.", id="russian"),
        pytest.param("uk", "ltr", ["Головна", "Архів", "Дзеркала", "Підписатися:"],
                     "20 березня 2024\u202fр.", id="ukrainian"),
        pytest.param("fa-IR", "rtl", ["صفحهٔ اصلی"], "20 مارس 2024", id="region-tag"),
    ],
)
def test_outlet_language_picks_labels_direction_and_dates(
        tmp_path: Path, language: str, direction: str, labels: list[str], date: str) -> None:
    site = localized(tmp_path, language)
    for page in pages(site):
        doc = parse(site[page])
        assert (doc.get("lang"), doc.get("dir")) == (language, direction), page
        assert "Home" not in doc.xpath("string(//footer)"), page
    home = parse(site["index.html"]).text_content()
    assert all(label in home for label in labels)
    assert date in parse(site["index.html"]).xpath("string(//footer//time)")
    mirrors = parse(site["mirrors.html"]).text_content()
    assert "Verify this copy" not in mirrors and "If one address" not in mirrors
    # The check page too, and the words its script shows (the page's data-messages).
    verify = parse(site["verify.html"])
    assert not re.search(r"Verify this copy|Check|signs every|Key ID", verify.text_content())
    shown = json.loads(verify.xpath("//*[@id='check']/@data-messages")[0])
    english = json.loads(parse(localized(tmp_path / "en", "en")["verify.html"]).xpath(
        "//*[@id='check']/@data-messages")[0])
    assert shown.keys() == english.keys()
    assert [k for k in shown if shown[k] == english[k]] == [], "untranslated"
    english = parse(site[article_path(ENGLISH)]).xpath("//article")[0]
    assert (english.get("lang"), english.get("dir")) == ("en", "ltr")


def test_interface_words_inside_a_foreign_article_keep_the_interfaces_lang_and_dir(
        tmp_path: Path) -> None:
    """A Persian outlet lists an English article: its date is Persian text, which inside
    the article's lang="en" dir="ltr" element the bidi algorithm scrambles
    ("1 07:00 2026 نوامبر UTC") and a screen reader reads with an English voice."""
    site = localized(tmp_path, "fa")
    for page, where in (("index.html", "//ol/li"), ("archive/0001.html", "//ul/li"),
                        (article_path(ENGLISH), "//article")):
        doc = parse(site[page])
        english = next(e for e in doc.xpath(where) if e.get("lang") == "en")
        (time,) = english.xpath(".//time")
        assert (time.get("lang"), time.get("dir")) == ("fa", "rtl"), page
    # In the interface's own language nothing is repeated.
    site = localized(tmp_path / "en", "en")
    assert parse(site[article_path(ENGLISH)]).xpath("//time/@lang") == []


def test_right_to_left_pages_keep_addresses_and_commands_left_to_right(
        tmp_path: Path) -> None:
    """In a Persian page a mirror's address "http://…/fa-a/" must not show as
    "/http://…/fa-a", nor a shell command's lines reorder."""
    site = localized(tmp_path, "fa")
    for page in ("mirrors.html", "verify.html"):
        doc = parse(site[page])
        assert doc.xpath("//pre") and all(p.get("dir") == "ltr" for p in doc.xpath("//pre"))
    urls = parse(site["mirrors.html"]).xpath("//main//a[starts-with(@href, 'http')]")
    assert len(urls) == 3 and all(a.get("dir") == "ltr" for a in urls)
    original = parse(site[article_path(RUSSIAN)]).xpath("//*[@class='original']/a")[0]
    assert original.get("dir") == "ltr"


@pytest.mark.parametrize(("url", "shown"), [
    pytest.param(RUSSIAN.url, "https://www.example.com/ru/новости/", id="cyrillic"),
    pytest.param("https://x.org/fa/%D8%B3%D9%84%D8%A7%D9%85.html", "https://x.org/fa/سلام.html",
                 id="persian"),
    pytest.param("https://x.org/a%20b%2Fc?q=%26", "https://x.org/a%20b%2Fc?q=%26",
                 id="reserved-stay-encoded"),
    pytest.param("https://x.org/%E2%80%AEgpj.exe", "https://x.org/%E2%80%AEgpj.exe",
                 id="bidi-override-stays-encoded"),
    pytest.param("https://x.org/%D0%BD%FF", "https://x.org/%D0%BD%FF", id="not-utf8"),
])
def test_the_original_link_reads_in_its_own_letters(
        site: dict[str, bytes], url: str, shown: str) -> None:
    assert readable_url(url) == shown
    original = parse(site[article_path(RUSSIAN)]).xpath("//*[@class='original']/a")[0]
    assert original.text == "https://www.example.com/ru/новости/"
    assert original.get("href") == RUSSIAN.url


@pytest.mark.parametrize(("language", "heading", "more", "signed"), [
    pytest.param("ru", "Зеркала издания «Example Times»",
                 "Другие материалы издания «Example Times»",
                 "подписанную изданием «Example Times»", id="russian"),
    pytest.param("uk", "Дзеркала видання «Example Times»",
                 "Інші матеріали видання «Example Times»",
                 "підписану виданням «Example Times»", id="ukrainian"),
])
def test_the_outlets_name_reads_naturally_in_a_declined_language(
        tmp_path: Path, language: str, heading: str, more: str, signed: str) -> None:
    """Russian and Ukrainian decline nouns, a name they cannot: "Зеркала Харвикский
    вестник" is wrong; "Зеркала издания «Харвикский вестник»" keeps the name as it is."""
    site = localized(tmp_path, language)
    mirrors = parse(site["mirrors.html"])
    assert mirrors.xpath("string(//h1)") == heading
    assert signed in mirrors.text_content()
    assert more in parse(site[article_path(ENGLISH)]).xpath("//main/p/a/text()")


def test_unknown_language_keeps_english_labels(tmp_path: Path) -> None:
    site = localized(tmp_path, "sw")
    doc = parse(site["index.html"])
    assert doc.get("lang") == "sw" and "Subscribe:" in doc.text_content()


def test_every_catalog_translates_every_label() -> None:
    """The shipped catalogs are complete for what the templates say now (extracted with
    Babel's own extractor, as ``pybabel extract -F babel.cfg`` does)."""
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    from mirrorkit.build import i18n

    method_map = [("**.html", "jinja2.ext.babel_extract")]
    options = {"**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "True",
                           "lstrip_blocks": "True"}}
    labels = {m[2] for m in extract_from_dir(str(theme_dir()), method_map, options)}
    assert len(labels) > 20
    with (i18n.locale_dir() / "messages.pot").open("rb") as f:
        assert {m.id for m in read_po(f) if m.id} == labels, "run pybabel extract"
    assert i18n.shipped() == ["fa", "ru", "uk"]
    for language in i18n.shipped():
        path = i18n.catalog_path(language)
        assert path is not None
        with path.open("rb") as f:
            catalog = read_po(f)
        done = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
        assert done == labels, (language, labels - done)
        for message in catalog:
            if message.id:  # the same placeholders and tags
                assert sorted(re.findall(r"%\(\w+\)s|<[^>]+>", message.id)) == sorted(
                    re.findall(r"%\(\w+\)s|<[^>]+>", message.string)), message.id


def test_stylesheet_has_no_physical_left_or_right() -> None:
    css = (theme_dir() / "style.css").read_text()
    assert not re.search(r"(margin|padding|border)-(left|right)|float|text-align: *(left|right)",
                         css)
    for name in ("article.html", "base.html", "index.html"):
        assert "←" not in (theme_dir() / name).read_text()


def test_article_page_shows_what_a_reader_needs(site: dict[str, bytes]) -> None:
    doc = parse(site[article_path(RUSSIAN)])
    assert doc.xpath("string(//h1)") == RUSSIAN.title
    assert "Иван Петров, Мария Смирнова" in doc.xpath("string(//*[@class='byline'])")
    assert doc.xpath("//time/@datetime") == ["2024-03-05T09:30:00Z"]
    assert doc.xpath("string(//time)") == "March 5, 2024 09:30 UTC"
    original = doc.xpath("//*[@class='original']")[0]
    assert original.text_content().startswith("Original: ")
    assert original.xpath(".//a/@href") == [RUSSIAN.url]
    assert "../../index.html" in doc.xpath("//main//a/@href")


def test_home_lists_newest_first_with_feeds_and_mirrors(site: dict[str, bytes]) -> None:
    doc = parse(site["index.html"])
    assert doc.xpath("//ol[@class='articles']/li//h2/a/@href") == [
        article_path(RUSSIAN), article_path(ENGLISH)]  # 5 March before 3 March
    assert doc.xpath("//ol/li[1]/@lang") == ["ru"]  # foreign-language titles are marked
    assert "Summary of City council votes on the budget" in doc.text_content()
    hrefs = set(doc.xpath("//a/@href"))
    assert {"rss.xml", "atom.xml", "mirrors.html"} <= hrefs
    assert "Independent news" in doc.text_content()


def test_home_shows_at_most_home_articles(tmp_path: Path) -> None:
    config = make_config(tmp_path, home_articles=1)
    site = render_site(config, ARTICLES, built=BUILT, version=1)
    assert len(parse(site["index.html"]).xpath("//ol[@class='articles']/li")) == 1
    assert article_path(ENGLISH) in site  # older articles keep their pages


def test_pointers_carry_version_and_verify_hint(site: dict[str, bytes]) -> None:
    for page in ("index.html", "mirrors.html"):
        footer = parse(site[page]).xpath("string(//footer)")
        assert "Version 7, built March 20, 2024 12:00 UTC." in footer
        assert "Other mirrors and how to verify this copy" in footer


def test_mirrors_page_tells_how_to_verify(tmp_path: Path) -> None:
    key = "untrusted comment: minisign public key ABCD\nRWQfakekeyfakekey"
    site = render_site(make_config(tmp_path), ARTICLES, built=BUILT, version=1,
                       public_key=key)
    text = parse(site["mirrors.html"]).text_content()
    assert "mirrorkit verify URL --key outlet.pub" in text
    assert "minisign -Vm manifest.json -p outlet.pub" in text
    assert key in text
    without = render_site(make_config(tmp_path), [], built=BUILT, version=1)
    assert "as published with this copy" not in without["mirrors.html"].decode()


def test_text_is_escaped_but_the_sanitized_body_is_not(tmp_path: Path) -> None:
    tricky = make_article("https://www.example.com/a", "<b>Bold</b> & co", html="<p>ok</p>")
    page = render_site(make_config(tmp_path), [tricky], built=BUILT,
                       version=1)[article_path(tricky)]
    assert b"&lt;b&gt;Bold&lt;/b&gt; &amp; co" in page
    assert b"<p>ok</p>" in page


# -- Determinism ----------------------------------------------------------------------------

def test_same_inputs_give_same_bytes(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    first = render_site(config, ARTICLES, built=BUILT, version=7)
    again = render_site(config, list(reversed(ARTICLES)), built=BUILT, version=7)
    assert first == again


def test_article_pages_do_not_change_with_build_time_or_version(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    old = render_site(config, ARTICLES, built=BUILT, version=7)
    new = render_site(config, [*ARTICLES, make_article("https://www.example.com/n", "New")],
                      built=datetime(2025, 1, 1, tzinfo=UTC), version=8)
    for article in ARTICLES:
        assert old[article_path(article)] == new[article_path(article)]
        assert b"Version" not in old[article_path(article)]
    assert style_of(old) == style_of(new)
    assert old["index.html"] != new["index.html"]


def test_article_page_matches_golden_file(tmp_path: Path) -> None:
    page = render_site(make_config(tmp_path), ARTICLES, built=BUILT,
                       version=7)[article_path(ENGLISH)]
    golden = GOLDEN / "article_en.html"
    if os.environ.get("MIRRORKIT_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(page)
    assert page == golden.read_bytes(), "rerun with MIRRORKIT_UPDATE_GOLDEN=1 if intended"


# -- Templates ------------------------------------------------------------------------------

def test_user_templates_come_before_the_packaged_theme(tmp_path: Path) -> None:
    user = tmp_path / "theme"
    user.mkdir()
    (user / "base.html").write_text(
        '<!DOCTYPE html>\n<html lang="{{ lang }}"><head><meta charset="utf-8">'
        "<title>{{ outlet.name }}</title></head>"
        "<body><p>USER BASE</p>{% block main %}{% endblock %}</body></html>\n",
        encoding="utf-8",
    )
    site = render_site(make_config(tmp_path, templates="theme"), ARTICLES, built=BUILT,
                       version=1)
    page = site[article_path(ENGLISH)].decode()
    assert "USER BASE" in page
    assert ENGLISH.title in page  # article.html still comes from the packaged theme
    assert site[style_of(site)] == (theme_dir() / "style.css").read_bytes()


def test_packaged_theme_has_every_template() -> None:
    for name in ("base.html", "index.html", "article.html", "mirrors.html", "style.css"):
        assert (theme_dir() / name).is_file(), name


def test_missing_user_template_dir_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="templates directory not found"):
        make_environment(tmp_path / "nowhere")


def test_template_mistake_is_a_one_line_build_error(tmp_path: Path) -> None:
    user = tmp_path / "theme"
    user.mkdir()
    (user / "index.html").write_text("{{ outlet.nmae }}", encoding="utf-8")
    with pytest.raises(BuildError, match=r"index\.html") as info:
        render_site(make_config(tmp_path, templates="theme"), ARTICLES, built=BUILT,
                    version=1)
    assert "\n" not in str(info.value)


# -- Paths and bodies -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("url", "slug"),
    [
        pytest.param("https://x.org/news/2024/03/city-council-votes.html",
                     "city-council-votes", id="extension-dropped"),
        pytest.param("https://x.org/news/Big_Story/", "big-story", id="trailing-slash"),
        pytest.param("https://x.org/caf%C3%A9-cr%C3%A8me", "cafe-creme", id="accents"),
        pytest.param("https://x.org/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8", "novosti",
                     id="cyrillic-transliterated"),
        pytest.param("https://x.org/fa/%D8%B3%D9%84%D8%A7%D9%85.html", "slm", id="persian"),
        pytest.param("https://x.org/news/%D0%B4%D0%B5%D0%BD%D1%8C-2-day", "2-day",
                     id="latin-kept-as-before"),
        pytest.param("https://x.org/", "article", id="no-path"),
        pytest.param("https://x.org/article.php?id=42", "article", id="query-only"),
        pytest.param("https://x.org/" + "a" * 100, "a" * 60, id="long"),
    ],
)
def test_article_path_slug(url: str, slug: str) -> None:
    article = make_article(url, "t")
    assert article_path(article) == f"articles/{slug}-{article.id}/index.html"


SAFE_PATH = re.compile(r"^articles/[a-z0-9-]+/index\.html$")


@given(st.one_of(st.text(), st.builds(lambda host, path: f"https://{host}/{path}",
                                      st.text(min_size=1), st.text())))
def test_article_path_is_safe_ascii_and_stable_for_any_url(url: str) -> None:
    article = make_article(url, "t", html="")
    path = article_path(article)
    assert SAFE_PATH.match(path), path
    name = path.split("/")[1]
    assert "--" not in name and name.strip("-") == name  # no empty parts
    assert article_path(make_article(url, "other title", html="")) == path


@given(st.text(), st.text())
def test_different_urls_get_different_paths(first: str, second: str) -> None:
    if first != second:
        assert article_path(make_article(first, "t")) != article_path(make_article(second, "t"))


def test_body_html_rewrites_only_stored_media() -> None:
    article = make_article("https://x.org/a", "t", html=(
        f'<img src="{MEDIA_SCHEME}{IMAGE}" srcset="{MEDIA_SCHEME}{IMAGE} 2x">'
        '<a href="https://x.org/media/b.png">b</a>'))
    assert body_html(article, "../../") == (
        f'<img src="../../media/{IMAGE}" srcset="../../media/{IMAGE} 2x">'
        '<a href="https://x.org/media/b.png">b</a>')
    assert f'src="https://m.example/media/{IMAGE}"' in body_html(article, "https://m.example/")


def test_every_page_links_the_verify_page_and_the_offline_zip(site: dict[str, bytes]) -> None:
    for page in pages(site):
        root = "../" * page.count("/")
        footer = parse(site[page]).xpath("//footer//a/@href")
        assert root + "verify.html" in footer, page
        assert root + "offline.zip" in footer, page
        # Marked, so the offline copy cuts it out of its own pages.
        assert re.search(rb"<!--offline-->[^!]*offline\.zip[^!]*<!--/offline-->", site[page])
    mirrors = parse(site["mirrors.html"]).xpath("//main//a/@href")
    assert "offline.zip" in mirrors and "verify.html" in mirrors


def test_the_verify_page_ships_the_key_and_works_without_javascript(
        site: dict[str, bytes]) -> None:
    from sites import PAGE_KEY

    doc = parse(site["verify.html"])
    (check,) = doc.xpath("//section[@id='check']")
    assert check.get("hidden") is not None  # shown by the script only
    assert check.get("data-key") == PAGE_KEY.to_text().splitlines()[1]
    assert check.get("data-key-id") is None  # the script reads the ID from the key itself
    assert "can change this page and its check as well" in doc.text_content()
    text = doc.text_content()
    assert "minisign -Vm manifest.json -p outlet.pub" in text
    assert "| sha256sum -c --quiet" in text
    assert PAGE_KEY.to_text().strip() in text


def test_legacy_path_is_renderer_2s_bare_id_for_non_latin_urls() -> None:
    article = make_article("https://x.org/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8", "t")
    assert legacy_article_path(article) == f"articles/article-{article.id}/index.html"
    assert article_path(article) == f"articles/novosti-{article.id}/index.html"
    assert legacy_article_path(ENGLISH) == article_path(ENGLISH)


def test_home_names_the_outlet_once_as_its_heading(site: dict[str, bytes]) -> None:
    doc = parse(site["index.html"])
    assert [h.text_content() for h in doc.xpath("//h1")] == ["Example Times"]
    assert doc.xpath("string(//body)").count("Example Times") == 1


def test_every_page_links_the_favicon_in_the_tree(site: dict[str, bytes]) -> None:
    assert site["favicon.svg"].startswith(b"<svg")
    for page in pages(site):
        icon = parse(site[page]).xpath("//head/link[@rel='icon']/@href")
        assert [posixpath.normpath(posixpath.join(posixpath.dirname(page), h))
                for h in icon] == ["favicon.svg"], page
