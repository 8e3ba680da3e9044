"""Article pages to safe article fields: pure functions, no I/O.

The fetch stage hands this module the raw bytes of a page; it gets back the title,
authors, dates, language and a sanitized body.  Guarantees of :func:`sanitize`, which every
body passes through:

- only the tags and attributes in :data:`ALLOWED_TAGS` / :data:`ALLOWED_ATTRIBUTES` survive:
  no scripts, styles, frames, forms, event handlers, ``srcset`` or inline styles;
- URLs are absolute ``http``, ``https`` (or ``mailto`` for links); everything else,
  ``javascript:`` and ``data:`` included, is removed;
- links carry ``rel="noopener noreferrer nofollow"``.

Images still point at their origin after sanitizing.  The fetch stage downloads them and
calls :func:`localize_images`, which points each ``<img>`` at a stored copy
(``mirrorkit:media/<name>``) and removes the ones it could not store, so a page never
loads anything from another host.  That scheme is added only after sanitizing: the
sanitizer itself never lets it through, so only mirrorkit can put it into a body.
"""

from __future__ import annotations

import codecs
import copy
import email.utils
import html as html_lib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import dateparser
import lxml.html
import nh3
import trafilatura
import webencodings
from trafilatura.htmlprocessing import build_html_output
from trafilatura.settings import Document

from mirrorkit import page as page_data
from mirrorkit.models import MEDIA_SCHEME, Media

ALLOWED_TAGS = frozenset({
    "p", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd",
    "blockquote", "q", "cite", "figure", "figcaption", "img", "a",
    "em", "strong", "b", "i", "u", "s", "small", "mark", "abbr", "time",
    "br", "hr", "pre", "code", "kbd", "samp", "sub", "sup",
    "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
})
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "time": {"datetime"},
    "th": {"colspan", "rowspan", "scope"},
    "td": {"colspan", "rowspan"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"
# Elements whose *content* goes too, not just the tag: their text is code or chrome,
# never part of the article.
_DROP_WITH_CONTENT = frozenset({
    "script", "style", "template", "iframe", "frame", "frameset", "object", "embed",
    "noscript", "svg", "math", "canvas", "select", "textarea", "button",
})

_BLOCKS = frozenset({
    "p", "h2", "h3", "h4", "h5", "h6", "li", "dt", "dd", "blockquote", "figure",
    "figcaption", "pre", "table", "tr", "caption", "hr",
})
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)
# Labels the Encoding Standard maps to no text decoding Python has.
_NO_CHARSET = frozenset({"replacement", "x-user-defined"})
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))
# Per the HTML standard, a page's declared charset is searched for in its first 1024
# bytes; real pages put long <head> prologues first, so look a little further.
_PRESCAN = 4096
# What XML 1.0 cannot carry: C0 controls but tab, LF and CR; U+FFFE, U+FFFF; lone
# surrogates.  lxml refuses to write them, so one in a stored article breaks every build.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Magic bytes of the image types mirrorkit stores (AVIF is an ISO BMFF "ftyp" box).
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
                (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


@dataclass(frozen=True)
class PageContent:
    """What a page says about its article; ``html`` is sanitized, images still remote."""

    title: str
    authors: tuple[str, ...]
    published: datetime | None
    updated: datetime | None
    language: str | None
    html: str
    description: str
    # The page's own URL for itself (rel=canonical, og:url), absolute; "" if none.
    canonical: str = ""
    section: str = ""
    # Plain text of ``html`` and its images (:func:`html_to_text`, :func:`image_sources`),
    # worked out where the page is extracted (a worker process in large runs).
    text: str = ""
    images: tuple[str, ...] = ()


# -- decoding -----------------------------------------------------------------------------

def _codec(name: str | None) -> str | None:
    """The Python codec for a declared charset, by the WHATWG Encoding Standard's labels
    (what browsers accept): None for anything else, so a page declaring ``zlib``, ``rot13``
    or ``idna`` (codecs, not charsets) is decoded as if it declared nothing."""
    encoding = webencodings.lookup(name.strip().strip("\"'")) if name else None
    if encoding is None or encoding.name in _NO_CHARSET:
        return None
    return str(encoding.codec_info.name)


def decode_html(data: bytes, header_charset: str | None = None) -> str:
    """Decode a page: BOM, then the Content-Type charset, then ``<meta charset>``.

    Guessing comes last: statistical detection confuses the Cyrillic code pages
    (windows-1251 and koi8-r) on short pages, while a declared charset is exact.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(encoding, errors="replace")
    declared = _codec(header_charset)
    if declared is None:
        m = _META_CHARSET.search(data[:_PRESCAN])
        declared = _codec(m.group(1).decode("ascii")) if m else None
    # A page cannot be UTF-16 if its ASCII markup could be scanned for the declaration.
    if declared and not declared.startswith("utf-16"):
        return data.decode(declared, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return trafilatura.utils.decode_file(data)


# -- sanitizing ---------------------------------------------------------------------------

def sanitize(fragment: str, base_url: str) -> str:
    """Reduce an HTML fragment to the allow-list, with absolute URLs (see module doc)."""
    return nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        url_relative=("rewrite_with_base", base_url),
        link_rel=LINK_REL,
        strip_comments=True,
    )


# Bidi embeddings, overrides and isolates: in a one-line field (a title, an author) they
# can reorder what a reader sees around it ("Trojan Source" spoofing) and leak into the
# page or feed reader's own text.  Marks (LRM, RLM, ALM) stay: right-to-left titles
# need them and they reorder nothing.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """A one-line field as stored: XML-safe, without bidi controls, spaces collapsed."""
    return " ".join(_BIDI_CONTROLS.sub("", xml_safe(text)).split())


def xml_safe(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (see :data:`_NOT_XML`)."""
    return _NOT_XML.sub("", text)


def _xml_safe_tree(tree: lxml.html.HtmlElement) -> None:
    # trafilatura copies text into new elements, and lxml refuses to set a forbidden
    # character (a page's "&#1;" parses to one): the whole page would be discarded.
    for el in tree.iter():
        if el.text and _NOT_XML.search(el.text):
            el.text = xml_safe(el.text)
        if el.tail and _NOT_XML.search(el.tail):
            el.tail = xml_safe(el.tail)
        for name, value in el.attrib.items():
            if _NOT_XML.search(value):
                el.set(name, xml_safe(value))


def sniff_image_type(data: bytes) -> str | None:
    """The image type ``data`` really is, from its magic bytes, if mirrorkit stores it.

    PNG, JPEG, GIF, WebP or AVIF; None for anything else (an SVG or an HTML page served
    as ``image/png``), whatever its Content-Type said.
    """
    for magic, media_type in _IMAGE_MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        # size, "ftyp", major brand, minor version, then compatible brands to the box end.
        end = min(int.from_bytes(data[:4], "big"), len(data))
        brands = {data[8:12]} | {data[i:i + 4] for i in range(16, end - 3, 4)}
        if brands & _AVIF_BRANDS:
            return "image/avif"
    return None


def plain_text(fragment: str) -> str:
    """Text of an HTML fragment (a feed summary, say), whitespace collapsed."""
    stripped = nh3.clean(fragment, tags=set(), clean_content_tags=set(_DROP_WITH_CONTENT))
    return " ".join(html_lib.unescape(stripped).split())


def _fragment(html: str) -> lxml.html.HtmlElement:
    return lxml.html.fragment_fromstring(html or "", create_parent="div")


def _serialize(root: lxml.html.HtmlElement) -> str:
    parts = [html_lib.escape(root.text or "", quote=False)]
    parts += [lxml.html.tostring(child, encoding="unicode") for child in root]
    return "".join(parts)


def image_sources(html: str) -> list[str]:
    """Distinct ``http(s)`` image URLs of a sanitized body, in document order."""
    seen: dict[str, None] = {}
    for img in _fragment(html).iter("img"):
        src = (img.get("src") or "").strip()
        if src.startswith(("http://", "https://")):
            seen.setdefault(src, None)
    return list(seen)


def localize_images(html: str, stored: Mapping[str, Media]) -> str:
    """Point each ``<img>`` at its stored copy; remove those without one.

    ``stored`` maps an image URL to the stored image.  A stored image gets its width and
    height (so the page does not jump as it loads) and ``loading="lazy"``.  A
    ``<figure>`` whose image is missing keeps its caption: the text is the reporter's,
    and says what the picture showed.
    """
    root = _fragment(html)
    for img in list(root.iter("img")):
        media = stored.get((img.get("src") or "").strip())
        if media is None:
            img.drop_tree()
            continue
        img.set("src", MEDIA_SCHEME + media.name)
        for attr in ("width", "height"):
            img.attrib.pop(attr, None)
        if media.width and media.height:
            img.set("width", str(media.width))
            img.set("height", str(media.height))
        img.set("loading", "lazy")
    for figure in list(root.iter("figure")):
        if not figure.text_content().strip() and figure.find(".//img") is None:
            figure.drop_tree()
    return _serialize(root)


def html_to_text(html: str) -> str:
    """Plain text of a sanitized body: blocks separated by blank lines."""
    root = _fragment(html)
    for el in root.iter():
        if el.tag == "br":
            el.tail = "\n" + (el.tail or "")
        elif el.tag in _BLOCKS:
            el.text = "\n\n" + (el.text or "")
            el.tail = "\n\n" + (el.tail or "")
        elif el.tag in ("td", "th"):
            el.tail = "\t" + (el.tail or "")
    text = root.text_content()
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# -- extraction ---------------------------------------------------------------------------

_DATEPARSER = {
    "RETURN_AS_TIMEZONE_AWARE": True, "TIMEZONE": "UTC", "TO_TIMEZONE": "UTC",
    # W3C-DTF's reduced forms: "2024" is 2024-01-01, "2024-05" is 2024-05-01.
    "PREFER_DAY_OF_MONTH": "first", "PREFER_MONTH_OF_YEAR": "first", "DATE_ORDER": "YMD",
    # No "relative-time" ("2 hours ago", "yesterday"): a date that moves with the clock
    # would make an entry look changed at every run.
    "PARSERS": ["timestamp", "custom-formats", "absolute-time"],
}
_REDUCED_W3C = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


def parse_datetime(value: str | None, *, slow: bool = True) -> datetime | None:
    """A date or date-time as aware UTC (naive values are taken as UTC), or None.

    Every W3C datetime form (``2024``, ``2024-05``, ``2024-05-06``, with a time to
    minutes, seconds or fractions, ``Z`` or an offset), ISO 8601 and RFC 822 dates:
    ``fromisoformat`` and the standard library for those, dateparser (a few milliseconds
    a value) for the rest unless ``slow`` is False.  Relative dates ("2 hours ago") are
    refused: they would date an entry anew at every run.  A date that cannot be put in
    UTC (year 1 with a +14:00 offset) is None, never an error: one hostile value must
    not fail a whole sitemap or page.
    """
    value = (value or "").strip()
    if not value or len(value) > 64:
        return None
    parsed = _fast_datetime(value)
    if parsed is None and slow:
        try:
            parsed = dateparser.parse(value, languages=["en"], settings=_DATEPARSER)
        except (ValueError, OverflowError):
            parsed = None
    if parsed is None:
        return None
    try:
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _fast_datetime(value: str) -> datetime | None:
    """``value`` in the forms sitemaps and pages mostly use, without dateparser."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    reduced = _REDUCED_W3C.match(value)
    if reduced:
        year, month = reduced.groups()
        try:
            return datetime(int(year), int(month or 1), 1)
        except ValueError:
            return None
    if value[:1].isalpha() or value[:1].isdigit():
        try:
            return email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return None


def _meta(tree: lxml.html.HtmlElement, *names: str) -> str | None:
    """First non-empty ``<meta>`` content among ``names`` (property, name or itemprop)."""
    for name in names:
        for attr in ("property", "name", "itemprop"):
            for el in tree.xpath(f"//meta[@{attr}=$n]", n=name):
                content = (el.get("content") or "").strip()
                if content:
                    return content
    return None


def _language(tree: lxml.html.HtmlElement, detected: str | None) -> str | None:
    candidates = [detected, tree.get("lang"),
                  _meta(tree, "og:locale", "content-language", "language")]
    for el in tree.xpath("//meta[@http-equiv]"):
        if (el.get("http-equiv") or "").lower() == "content-language":
            candidates.append(el.get("content"))
    for value in candidates:
        if tag := language_tag(value):
            return tag
    return None


def language_tag(value: str | None) -> str | None:
    """``value`` as a language tag (``en-US`` for ``en_US``), or None if it is none: what
    an origin says ends up in ``lang`` and ``xml:lang`` attributes."""
    tag = (value or "").strip().replace("_", "-")
    return tag if _LANGUAGE.match(tag) else None


def _drop_title_heading(body_html: str, title: str) -> str:
    """Remove ``<h1>`` headings that repeat the title; demote the others to ``<h2>``.

    Pages render the title themselves; an ``<h1>`` in the body would repeat it.
    """
    root = _fragment(body_html)
    wanted = " ".join(title.split())
    for h1 in list(root.iter("h1")):
        if " ".join(h1.text_content().split()) == wanted:
            h1.drop_tree()
        else:
            h1.tag = "h2"
    return _serialize(root)


def extract_page(data: bytes, url: str, header_charset: str | None = None) -> PageContent | None:
    """Extract the article of a page, or None if the page holds no article text.

    ``url`` is the page's final URL (after redirects): relative links resolve against it.
    The body is the element the page marks as its article body (:mod:`mirrorkit.page`)
    when that holds at least half the text trafilatura finds, else trafilatura's; either
    way without page chrome, with figures and their captions.  Structured data (JSON-LD,
    Open Graph) goes before trafilatura's guesses for title, authors and dates.
    """
    text = decode_html(data, header_charset)
    tree = trafilatura.load_html(text)
    if tree is None:
        return None
    _xml_safe_tree(tree)
    # trafilatura prunes the tree it is given, so read what it does not return first.
    info = page_data.structured_data(tree, url)
    published = parse_datetime(info.published) or parse_datetime(_meta(
        tree, "article:published_time", "datePublished", "pubdate", "date"))
    updated = parse_datetime(info.updated) or parse_datetime(_meta(
        tree, "article:modified_time", "dateModified", "og:updated_time"))
    page_language = _language(tree, None)
    page_data.prune_boilerplate(tree)
    figures = page_data.normalize_figures(tree, url)
    container = page_data.body_container(tree)
    ours = copy.deepcopy(container) if container is not None else None
    doc = trafilatura.bare_extraction(
        tree, url=url, with_metadata=True, include_images=True, include_links=True,
        include_formatting=True, include_tables=True, include_comments=False,
    )
    if not isinstance(doc, Document) or doc.body is None:
        return None
    title = info.title or " ".join((doc.title or "").split())
    authors = info.authors or tuple(
        a.strip() for a in (doc.author or "").split(";") if a.strip())
    # build_html_output is trafilatura's own converter behind extract(output_format="html");
    # calling it on the document we already have avoids a second extraction.
    body = _fragment(build_html_output(doc))
    page_data.restore_figures(body, figures, url)
    if ours is not None and _text_length(ours) >= _text_length(body) / 2:
        ours.tag, ours.tail = "div", None
        for name in list(ours.attrib):
            del ours.attrib[name]
        body = ours
    page_data.drop_bylines(body, authors)
    if info.image and body.find(".//img") is None:
        lead = lxml.html.fragment_fromstring(f'<figure><img src="{html_lib.escape(info.image)}"'
                                             ' alt=""></figure>')
        body.insert(0, lead)
    html = _drop_title_heading(_serialize(body), title)
    clean = sanitize(html, url).strip()
    plain = html_to_text(clean)
    if not plain:
        return None
    return PageContent(
        title=title,
        authors=authors,
        published=published or parse_datetime(doc.date),
        updated=updated,
        language=_language(tree, doc.language) or page_language,
        html=clean,
        description=" ".join((doc.description or "").split()),
        canonical=info.canonical,
        section=info.section,
        text=plain,
        images=tuple(image_sources(clean)),
    )


def _text_length(el: lxml.html.HtmlElement) -> int:
    return len(" ".join(el.text_content().split()))
