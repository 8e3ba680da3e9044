"""Extraction and sanitizing: hostile markup in, safe article fields out (no network)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorkit.extract import (
    decode_html,
    extract_page,
    html_to_text,
    image_sources,
    localize_images,
    plain_text,
    sanitize,
    sniff_image_type,
    xml_safe,
)
from mirrorkit.models import MEDIA_SCHEME, Media

BASE = "https://news.example/articles/today.html"

LOREM = (
    "The council met on Tuesday evening to debate the new budget for the coming year, "
    "and members spoke at length about the state of the city's roads and schools. "
)


def page(body: str, head: str = "", lang: str = "en") -> str:
    return (
        f"<!DOCTYPE html><html lang=\"{lang}\"><head>{head}<title>Budget vote</title></head>"
        f"<body><nav><a href=\"/\">Home</a> <a href=\"/about\">About</a></nav>"
        f"<article><h1>Budget vote</h1>{body}</article>"
        f"<footer>© News Example</footer></body></html>"
    )


# -- sanitize -----------------------------------------------------------------------------

@pytest.mark.parametrize(("dirty", "forbidden", "kept"), [
    pytest.param("<p>a<script>alert(1)</script>b</p>", ["<script", "alert"], ["<p>ab</p>"],
                 id="script-and-its-text"),
    pytest.param("<p onclick=\"steal()\" onmouseover='x'>hi</p>", ["onclick", "onmouseover",
                 "steal"], ["<p>hi</p>"], id="inline-handlers"),
    pytest.param("<a href=\"javascript:alert(1)\">x</a>", ["javascript", "href"], [">x</a>"],
                 id="javascript-url"),
    pytest.param("<a href=\" JaVaScRiPt:alert(1)\">x</a>", ["alert", "href"], [">x</a>"],
                 id="javascript-url-obfuscated"),
    pytest.param("<iframe src=\"https://evil.example/\">frame text</iframe><p>t</p>",
                 ["iframe", "evil", "frame text"], ["<p>t</p>"], id="iframe"),
    pytest.param("<style>p{color:red}</style><p style=\"color:red\">t</p>",
                 ["style", "color"], ["<p>t</p>"], id="style-element-and-attribute"),
    pytest.param("<form action=\"/x\"><input name=q><button>Go</button></form><p>t</p>",
                 ["form", "input", "button", "Go"], ["<p>t</p>"], id="form"),
    pytest.param("<img src=\"a.png\" srcset=\"big.png 2x\" alt=\"A\">", ["srcset", "big.png"],
                 ["src=\"https://news.example/articles/a.png\"", "alt=\"A\""], id="srcset"),
    pytest.param("<img src=\"data:image/png;base64,iVBORw0KGgo=\">", ["data:"], ["<img>"],
                 id="data-uri-image"),
    pytest.param("<a href=\"data:text/html,<script>x</script>\">x</a>", ["data:", "<script"],
                 [">x</a>"], id="data-uri-link"),
    pytest.param("<object data=\"x.swf\"><embed src=\"x.swf\"></object><p>t</p>",
                 ["object", "embed", "swf"], ["<p>t</p>"], id="object-embed"),
    pytest.param("<svg><script>alert(1)</script></svg><p>t</p>", ["svg", "alert"],
                 ["<p>t</p>"], id="svg-script"),
    pytest.param("<p>x</p><!-- tracking: id=123 -->", ["<!--", "tracking"], ["<p>x</p>"],
                 id="comments"),
    pytest.param("<img src=\"mirrorkit:media/forged.png\">", ["mirrorkit:"], ["<img>"],
                 id="forged-media-scheme"),
    pytest.param("<a href=\"../b.html\" target=\"_blank\" rel=\"opener\">b</a>",
                 ["target", 'rel="opener"'],
                 ["href=\"https://news.example/b.html\"",
                  "rel=\"noopener noreferrer nofollow\""], id="relative-link-absolutized"),
    pytest.param("<a href=\"mailto:desk@news.example\">mail</a>", [],
                 ["href=\"mailto:desk@news.example\""], id="mailto-kept"),
    pytest.param("<table><tr><td colspan=\"2\" bgcolor=\"red\">c</td></tr></table>",
                 ["bgcolor"], ["<td colspan=\"2\">c</td>"], id="table-kept"),
    pytest.param("<p class=\"x\" id=\"y\" data-track=\"1\">t</p>", ["class", "id=",
                 "data-track"], ["<p>t</p>"], id="no-class-id-data-attributes"),
])
def test_sanitize(dirty: str, forbidden: list[str], kept: list[str]) -> None:
    clean = sanitize(dirty, BASE)
    for text in forbidden:
        assert text.lower() not in clean.lower()
    for text in kept:
        assert text in clean


# Markup an attacker could try: tags, attribute names and URL shapes drawn at random.
_tags = st.sampled_from(["p", "a", "img", "script", "iframe", "svg", "math", "style", "div",
                         "form", "object", "table", "td", "noscript", "template", "b"])
_attrs = st.sampled_from(["href", "src", "onclick", "onerror", "onload", "style", "srcset",
                          "formaction", "xlink:href", "title", "alt"])
_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["javascript:alert(1)", "JaVaScRiPt:x", "java\tscript:x",
                     "data:text/html,x", "vbscript:x", "//evil.example/x",
                     "mirrorkit:media/x.png", "&#106;avascript:x"]),
)
_element = st.tuples(_tags, st.lists(st.tuples(_attrs, _values), max_size=3), st.text(max_size=30))


def _render(parts: list[tuple[str, list[tuple[str, str]], str]]) -> str:
    out = []
    for tag, attrs, text in parts:
        rendered = "".join(f' {name}="{value}"' for name, value in attrs)
        out.append(f"<{tag}{rendered}>{text}</{tag}>")
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(_element, max_size=6))
def test_sanitize_never_lets_active_content_through(parts: list[tuple[str, list[tuple[str, str]],
                                                                       str]]) -> None:
    clean = sanitize(_render(parts), BASE)
    lowered = clean.lower()
    assert "<script" not in lowered
    assert "<iframe" not in lowered
    assert "<style" not in lowered
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", lowered), clean
    assert not re.search(r"<[^>]*\s(?:style|srcset|formaction)\s*=", lowered), clean
    # URLs are the only attributes a browser acts on; plain text such as a title attribute
    # of "javascript:x" is inert.
    for url in re.findall(r'(?:href|src)="([^"]*)"', clean):
        assert url.startswith(("http://", "https://", "mailto:")), url


# -- images -------------------------------------------------------------------------------

def test_localize_images_rewrites_stored_and_removes_the_rest() -> None:
    html = sanitize(
        "<p>x</p><figure><img src=\"../img/a.png\" alt=\"A\"><figcaption>A</figcaption></figure>"
        "<img src=\"https://tracker.example/pixel.gif\" width=\"1\" height=\"1\">"
        "<figure><img src=\"/gone.jpg\"><figcaption>lost</figcaption></figure>"
        "<p>y <img src=\"../img/a.png\"></p>",
        BASE,
    )
    assert image_sources(html) == ["https://news.example/img/a.png",
                                   "https://tracker.example/pixel.gif",
                                   "https://news.example/gone.jpg"]
    stored = Media(name="abc.png", sha256="abc", size=3, media_type="image/png", width=640,
                   height=480)
    out = localize_images(html, {"https://news.example/img/a.png": stored})
    assert out.count(f'<img src="{MEDIA_SCHEME}abc.png" alt="A" width="640" height="480"'
                     ' loading="lazy">') == 1
    assert out.count(f'src="{MEDIA_SCHEME}abc.png"') == 2
    assert "tracker" not in out
    assert "gone" not in out
    # A picture that could not be stored leaves its caption: it says what was there.
    assert "<figure><figcaption>lost</figcaption></figure>" in out
    assert "<figcaption>A</figcaption>" in out


def test_html_to_text_separates_blocks() -> None:
    html = "<h2>Head</h2><p>One <b>two</b></p><ul><li>a</li><li>b</li></ul><p>x<br>y</p>"
    assert html_to_text(html) == "Head\n\nOne two\n\na\n\nb\n\nx\ny"


def test_plain_text_of_a_summary() -> None:
    assert plain_text("<p>Tom &amp; Jerry <script>x()</script> <b>win</b></p>") == \
        "Tom & Jerry win"


# -- decoding -----------------------------------------------------------------------------

RU_TITLE = "Городской совет утвердил бюджет"
RU_TEXT = ("Депутаты городского совета в среду утвердили бюджет на следующий год. "
           "Больше всего денег получат школы, больницы и ремонт дорог в старых районах. ")


@pytest.mark.parametrize(("encoding", "header", "meta"), [
    pytest.param("windows-1251", "windows-1251", "", id="cp1251-header-charset"),
    pytest.param("koi8-r", None, '<meta charset="koi8-r">', id="koi8r-meta-charset"),
    pytest.param("koi8-r", None,
                 '<meta http-equiv="Content-Type" content="text/html; charset=KOI8-R">',
                 id="koi8r-http-equiv"),
    pytest.param("windows-1251", "cp1251", '<meta charset="koi8-r">',
                 id="header-wins-over-meta"),
    pytest.param("utf-8", None, "", id="utf8-undeclared"),
    pytest.param("windows-1251", "no-such-charset", '<meta charset="windows-1251">',
                 id="unknown-header-charset-falls-back-to-meta"),
])
def test_decode_and_extract_russian(encoding: str, header: str | None, meta: str) -> None:
    html = page(f"<p>{RU_TEXT * 3}</p><p>{RU_TEXT}</p>", head=meta, lang="ru")
    html = html.replace("Budget vote", RU_TITLE)
    data = html.encode(encoding)
    assert RU_TITLE in decode_html(data, header)
    extracted = extract_page(data, BASE, header)
    assert extracted is not None
    assert extracted.title == RU_TITLE
    assert extracted.language == "ru"
    assert "Депутаты городского совета" in extracted.html


def test_decode_utf8_bom() -> None:
    assert decode_html("\ufeffпривет".encode()) == "привет"


# -- extract_page -------------------------------------------------------------------------

def test_extract_page_metadata_and_safe_body() -> None:
    head = (
        '<meta name="author" content="Ann Lee; Bo Chan">'
        '<meta property="article:published_time" content="2026-10-30T08:15:00+02:00">'
        '<meta property="article:modified_time" content="2026-10-31T10:00:00Z">'
        '<meta name="description" content="The council passed the budget.">'
        '<script src="https://tracker.example/t.js"></script>'
        '<link rel="stylesheet" href="https://cdn.example/x.css">'
    )
    body = (
        f"<p>{LOREM * 2}</p>"
        "<p onclick=\"x()\">Read the <a href=\"../docs/budget.pdf\">full budget</a>."
        f" {LOREM}</p>"
        "<figure><img src=\"../images/hall.png\" alt=\"City hall\"><figcaption>City hall"
        "</figcaption></figure>"
        f"<script>track()</script><iframe src=\"https://ads.example/\"></iframe><p>{LOREM}</p>"
    )
    extracted = extract_page(page(body, head).encode(), BASE)
    assert extracted is not None
    assert extracted.title == "Budget vote"
    assert extracted.authors == ("Ann Lee", "Bo Chan")
    assert extracted.published == datetime(2026, 10, 30, 6, 15, tzinfo=UTC)
    assert extracted.updated == datetime(2026, 10, 31, 10, 0, tzinfo=UTC)
    assert extracted.language == "en"
    assert extracted.description == "The council passed the budget."
    assert 'href="https://news.example/docs/budget.pdf"' in extracted.html
    assert image_sources(extracted.html) == ["https://news.example/images/hall.png"]
    for bad in ("<script", "track()", "iframe", "onclick", "<h1", "stylesheet", "Home"):
        assert bad not in extracted.html
    # The title is shown by the page template; the body does not repeat it.
    assert "Budget vote" not in extracted.html


def test_extract_page_with_control_character_references_keeps_the_article() -> None:
    # "&#1;" parses to U+0001, which lxml refuses to copy: trafilatura used to discard
    # the whole page as "no article text".
    body = f"<p>{LOREM * 2}</p><p>Bad&#1;text &#xFFFE;here</p><p>{LOREM}</p>"
    extracted = extract_page(page(body).encode(), BASE)
    assert extracted is not None
    assert "Badtext here" in extracted.html


def test_extract_page_without_article_text() -> None:
    assert extract_page(b"<html><body><script>x()</script></body></html>", BASE) is None
    assert extract_page(b"", BASE) is None


# -- XML-safe text ------------------------------------------------------------------------

@pytest.mark.parametrize(("dirty", "clean"), [
    pytest.param("Bad\x01Title", "BadTitle", id="c0-control"),
    pytest.param("a\x00b\x08c\x0bd\x0ce\x0ef\x1fg", "abcdefg", id="every-c0-range"),
    pytest.param("tab\tlf\ncr\r", "tab\tlf\ncr\r", id="tab-lf-cr-kept"),
    pytest.param("x\ufffey\uffffz", "xyz", id="noncharacters"),
    pytest.param("lone\ud800surrogate\udfff", "lonesurrogate", id="lone-surrogates"),
    pytest.param("Новости \U0001F600 \x7f", "Новости \U0001F600 \x7f", id="valid-kept"),
])
def test_xml_safe(dirty: str, clean: str) -> None:
    assert xml_safe(dirty) == clean


# -- image sniffing -----------------------------------------------------------------------

def _avif(major: bytes, *compatible: bytes) -> bytes:
    brands = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands + b"\x00\x00\x00\x08mdat"


@pytest.mark.parametrize(("data", "media_type"), [
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png", id="png"),
    pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg", id="jpeg"),
    pytest.param(b"GIF89a\x01\x00\x01\x00", "image/gif", id="gif89a"),
    pytest.param(b"GIF87a\x01\x00\x01\x00", "image/gif", id="gif87a"),
    pytest.param(b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp", id="webp"),
    pytest.param(_avif(b"avif", b"mif1", b"miaf"), "image/avif", id="avif"),
    pytest.param(_avif(b"mif1", b"avif"), "image/avif", id="avif-compatible-brand"),
    pytest.param(_avif(b"avis", b"msf1"), "image/avif", id="avif-sequence"),
    pytest.param(_avif(b"heic", b"mif1"), None, id="heic"),
    pytest.param(_avif(b"isom", b"mp41"), None, id="mp4"),
    pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                 None, id="svg-with-script"),
    pytest.param(b"<html><body>not an image</body></html>", None, id="html"),
    pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt ", None, id="riff-wave"),
    pytest.param(b"\x89PN", None, id="truncated-png"),
    pytest.param(b"", None, id="empty"),
])
def test_sniff_image_type(data: bytes, media_type: str | None) -> None:
    assert sniff_image_type(data) == media_type


# -- structure, structured data and boilerplate --------------------------------------------

def test_structured_data_goes_before_guesses() -> None:
    ld = ('{"@context": "https://schema.org", "@graph": [{"@type": "WebSite", "name": "X"},'
          ' {"@type": ["NewsArticle"], "headline": "Bridge to close for a year",'
          ' "author": [{"@type": "Person", "name": "Ann Lee"}, {"name": "Bo Chan"}],'
          ' "datePublished": "2026-10-30T08:15:00+02:00", "dateModified": "2026-10",'
          ' "articleSection": "City", "image": {"url": "/img/lead.jpg"}}]}')
    head = (f'<script type="application/ld+json">{ld}</script>'
            '<meta name="author" content="Someone Else">'
            '<link rel="canonical" href="/articles/bridge.html?utm_source=x">')
    extracted = extract_page(page(f"<p>{LOREM * 2}</p><p>{LOREM}</p>", head).encode(), BASE)
    assert extracted is not None
    assert extracted.title == "Bridge to close for a year"
    assert extracted.authors == ("Ann Lee", "Bo Chan")
    assert extracted.published == datetime(2026, 10, 30, 6, 15, tzinfo=UTC)
    assert extracted.updated == datetime(2026, 10, 1, tzinfo=UTC)
    assert extracted.section == "City"
    assert extracted.canonical == "https://news.example/articles/bridge.html?utm_source=x"
    # No picture in the body: the lead image opens it.
    assert image_sources(extracted.html) == ["https://news.example/img/lead.jpg"]


def test_structure_is_kept_and_chrome_dropped() -> None:
    body = (
        '<div id="cookie-banner"><p>We use cookies to improve your experience.</p>'
        "<button>OK</button></div>"
        f"<p>{LOREM * 2}</p>"
        '<div class="share-bar"><a href="https://fb.example/">Share on Facebook</a></div>'
        "<h2>What happens next</h2><ul><li>The vote is in May.</li><li>Works start in June."
        "</li></ul><blockquote><p>We had no choice, said the mayor.</p></blockquote>"
        '<div class="media"><img src="/img/a.jpg" alt=""><div class="caption">The old '
        'bridge at dawn. <span class="credit">Photo: Bo Chan</span></div></div>'
        "<table><tr><th>Year</th><th>Cost</th></tr><tr><td>2026</td><td>4m</td></tr></table>"
        '<div class="newsletter-signup"><p>Sign up for our newsletter</p><form>'
        "<input type=email></form></div>"
        f"<p>{LOREM}</p>"
        '<div class="related-posts"><h3>Related</h3><ul><li><a href="/x">Other story</a></li>'
        "</ul></div>"
    )
    extracted = extract_page(page(body).encode(), BASE)
    assert extracted is not None
    html = extracted.html
    for kept in ("<h2>What happens next</h2>", "<li>The vote is in May.</li>", "<blockquote>",
                 "<th>Cost</th>", "<figcaption>The old bridge at dawn. "
                 "<small>Photo: Bo Chan</small></figcaption>"):
        assert kept in html
    for dropped in ("cookies", "Share on Facebook", "newsletter", "Other story"):
        assert dropped not in html


def test_a_paragraph_that_mentions_donations_is_news_not_chrome() -> None:
    body = (f"<p>{LOREM * 2}</p><p>Residents can <a href=\"/hall\">donate</a> blankets and"
            " food at the town hall until Friday.</p>"
            '<div class="box"><p>Our reporting is free. Donate today!</p></div>'
            f"<p>{LOREM}</p>")
    extracted = extract_page(page(body).encode(), BASE)
    assert extracted is not None
    assert "blankets and food at the town hall" in extracted.html
    assert "Donate today" not in extracted.html
