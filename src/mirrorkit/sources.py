"""Source documents to entries: feeds, sitemaps and listing pages.  Pure functions, no I/O.

The fetch stage downloads a source; this module reads it:

- :func:`parse_feed`: RSS or Atom (feedparser);
- :func:`parse_sitemap`: a sitemap ``urlset`` (with the Google News extension's title and
  publication date) or a sitemap index, whose child sitemaps the fetch stage reads in
  turn; :func:`unpack` opens ``.xml.gz`` sitemaps with a cap on the unpacked size;
- :func:`parse_listing`: the article links and the next-page link of a listing page,
  found with the source's CSS selectors.

Every entry URL passes :func:`normalize_url`: absolute, no fragment, no tracking
parameters, so one article reached from several sources (or with ``utm_*`` tags) is one
URL.  XML is parsed without entities, network access or huge trees: sources come from
outside.
"""

from __future__ import annotations

import calendar
import io
import logging
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import feedparser
import lxml.etree
import lxml.html
from lxml.cssselect import CSSSelector

from mirrorkit import extract
from mirrorkit.errors import SourceError

log = logging.getLogger(__name__)

_LONG_AGO = datetime.min.replace(tzinfo=UTC)
# Query parameters that only tell the outlet where a reader came from.
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "hsa_", "_hs")
_TRACKING = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid",
    "mkt_tok", "_ga", "_gl", "ocid", "cmpid", "ito", "ref_src", "s_cid", "at_medium",
    "at_campaign", "guccounter", "share", "smid", "sr_share",
})
_NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
# The sitemap protocol's cap on the URLs (or sitemaps) one file may name: a file naming
# more is read up to it, so that memory and time stay bounded whatever the origin sends.
MAX_SITEMAP_URLS = 50_000
# Dates of one sitemap read with dateparser (milliseconds each) when they are in no
# standard form; past that they count as absent.  Common forms cost microseconds.
MAX_SLOW_DATES = 100


@dataclass(frozen=True)
class Entry:
    """One article named by a source, with what the source says about it."""

    url: str
    title: str = ""
    authors: tuple[str, ...] = ()
    published: datetime | None = None
    updated: datetime | None = None
    summary: str = ""
    language: str | None = None


@dataclass(frozen=True)
class Sitemap:
    """A sitemap read: its pages, or (for an index) its child sitemaps with their lastmod."""

    entries: list[Entry]
    children: list[tuple[str, datetime | None]]


# -- URLs ---------------------------------------------------------------------------------

def _tracking(name: str) -> bool:
    name = name.lower()
    return name in _TRACKING or name.startswith(_TRACKING_PREFIXES)


def normalize_url(url: str) -> str:
    """``url`` without its fragment and tracking parameters (``utm_*``, ``fbclid``, ...)."""
    parts = urlsplit(url)
    query = parts.query
    if query:
        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not _tracking(k)]
        query = urlencode(kept)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


def entry_url(base: str, link: str) -> str | None:
    """``link`` made absolute and normalized, or None if it is not an http(s) URL one can read.

    One bad entry (``http://[oops/``, a port out of range) is skipped, not fatal to the
    source: urljoin and urlsplit raise ValueError on it.
    """
    link = link.strip()
    if not link:
        return None
    try:
        url = urljoin(base, link)
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        usable = usable and (parts.port is None or parts.port > 0)
    except ValueError:
        usable = False
    if not usable:
        log.warning("%s: entry skipped, not a usable URL: %r", base, link)
        return None
    return normalize_url(url)


def newest_first(entries: list[Entry]) -> list[Entry]:
    """One entry per URL (the first), newest first; undated ones keep their order, last."""
    return sorted(_unique(entries), key=lambda e: e.updated or e.published or _LONG_AGO,
                  reverse=True)


# -- feeds --------------------------------------------------------------------------------

def _struct_time(value: Any) -> datetime | None:
    if not isinstance(value, time.struct_time):
        return None
    # feedparser normalizes to UTC.
    return datetime.fromtimestamp(calendar.timegm(value), UTC)


def parse_feed(data: bytes, url: str, content_type: str = "") -> list[Entry]:
    """Entries of an RSS or Atom feed, newest first; links resolved against ``url``."""
    # Always a stream: feedparser takes a short bytes body for a file name or URL to open
    # (a body "/dev/zero" would read forever, one naming a local feed would be stored).
    try:
        parsed = feedparser.parse(io.BytesIO(data), response_headers={
            "content-type": content_type, "content-location": url})
    except (ValueError, LookupError) as e:
        # An encoding name feedparser cannot take (a NUL or a stray byte in it; fuzzed).
        raise SourceError(f"not a valid RSS or Atom feed: {str(e)[:200]}", where=url) from e
    language = extract.language_tag(parsed.feed.get("language"))
    entries = []
    for item in parsed.entries:
        link = entry_url(url, item.get("link") or "")
        if link is None:
            continue
        authors = tuple(a.get("name", "").strip() for a in item.get("authors", [])
                        if a.get("name", "").strip())
        if not authors and item.get("author"):
            authors = (item["author"].strip(),)
        entries.append(Entry(
            url=link,
            title=" ".join((item.get("title") or "").split()),
            authors=authors,
            published=_struct_time(item.get("published_parsed")),
            # dict.get: feedparser's own get() falls back from updated to published
            # (with a DeprecationWarning), which would fake an update time.
            updated=_struct_time(dict.get(item, "updated_parsed")),
            summary=extract.plain_text(item.get("summary") or ""),
            language=language,
        ))
    # feedparser recovers what it can from broken XML; that is accepted as long as it
    # yields articles.  A feed that is empty *and* broken (or not a feed at all) fails.
    if not entries and (parsed.bozo or not parsed.get("version")):
        if _is_html(data):
            raise _html_instead(url, "an RSS or Atom feed")
        reason = parsed.get("bozo_exception") or "no RSS or Atom content"
        raise SourceError(f"not a valid RSS or Atom feed: {reason}", where=url,
                          hint="check the source URL")
    return newest_first(entries)


def _is_html(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<!doctype html") or b"<html" in head


def _html_instead(url: str, wanted: str) -> SourceError:
    """A web page where a feed or a sitemap was expected: the commonest wrong URL."""
    return SourceError(f"an HTML page, not {wanted}", where=url,
                       hint='check the source URL; for a section page use type = "listing"')


# -- sitemaps -----------------------------------------------------------------------------

def unpack(data: bytes, url: str, limit: int) -> bytes:
    """``data`` gunzipped if it is gzip (a ``.xml.gz`` sitemap), refused past ``limit`` bytes.

    Stops as soon as the limit is passed, so a small bomb never becomes a large buffer.
    """
    if not data.startswith(b"\x1f\x8b"):
        return data
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as e:
        raise SourceError(f"not a valid gzip file: {e}", where=url) from e
    if len(out) > limit:
        raise SourceError(f"unpacks to more than the limit of {limit} bytes", where=url,
                          hint="raise [fetch] max_page_size if this is expected")
    return out


def _text(node: Any, *names: str) -> dict[str, str]:
    """Text of the children (at any depth) of ``node`` named ``names``, by local name."""
    found: dict[str, str] = {}
    for child in node.iter():
        if not isinstance(child.tag, str):
            continue
        name = lxml.etree.QName(child).localname
        if name in names and name not in found:
            ns = lxml.etree.QName(child).namespace
            key = f"news:{name}" if ns == _NEWS_NS else name
            found.setdefault(key, " ".join((child.text or "").split()))
    return found


def parse_sitemap(data: bytes, url: str) -> Sitemap:
    """A sitemap ``urlset`` (newest first) or a sitemap index (its children in order)."""
    # No entities, no network, no huge trees: sitemaps come from outside.
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = lxml.etree.fromstring(data, parser)
    except lxml.etree.XMLSyntaxError as e:
        if _is_html(data):
            raise _html_instead(url, "a sitemap") from e
        raise SourceError(f"not a valid sitemap: {e}", where=url) from e
    kind = lxml.etree.QName(root).localname
    if kind == "html":
        raise _html_instead(url, "a sitemap")
    if kind not in ("urlset", "sitemapindex"):
        raise SourceError(f"not a sitemap (root element <{root.tag}>)", where=url,
                          hint="name a sitemap urlset or a sitemap index")
    child_tag = "url" if kind == "urlset" else "sitemap"
    entries: list[Entry] = []
    children: list[tuple[str, datetime | None]] = []
    slow_left = MAX_SLOW_DATES

    def date(value: str | None) -> datetime | None:
        nonlocal slow_left
        parsed = extract.parse_datetime(value, slow=False)
        if parsed is None and value and slow_left > 0:
            slow_left -= 1
            parsed = extract.parse_datetime(value)
        return parsed

    for node in root:
        if len(entries) + len(children) >= MAX_SITEMAP_URLS:
            log.warning("%s: names more than %d URLs; the rest are left out", url,
                        MAX_SITEMAP_URLS)
            break
        if not isinstance(node.tag, str) or lxml.etree.QName(node).localname != child_tag:
            continue
        fields = _text(node, "loc", "lastmod", "title", "publication_date")
        page = entry_url(url, fields.get("loc", ""))
        if page is None:
            continue
        if kind == "sitemapindex":
            children.append((page, _latest(fields.get("lastmod"), date)))
            continue
        lastmod = date(fields.get("lastmod"))
        entries.append(Entry(
            url=page, title=fields.get("news:title", ""), updated=lastmod,
            published=date(fields.get("news:publication_date")),
        ))
    return Sitemap(entries=newest_first(entries), children=children)


# A date without a time ("2026-11-30", "2026-11", "2026") and its period's end.
_PERIOD = re.compile(r"(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?")
# A day ends this long after its end in UTC in the latest time zone (UTC-12).
_LAST_ZONE = timedelta(hours=12)


def _latest(value: str | None,
            parse: Callable[[str | None], datetime | None]) -> datetime | None:
    """The latest time a ``lastmod`` can mean.  A date alone names a whole day, month
    or year: a sitemap dated "today" may still change today, and must not be taken as
    unchanged since midnight (which would skip it for the rest of the period)."""
    m = _PERIOD.fullmatch((value or "").strip())
    if m is None:
        return parse(value)
    year, month, day = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    try:
        start = datetime(year, month or 1, day or 1, tzinfo=UTC)
        if day:
            end = start + timedelta(days=1)
        elif month:
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        else:
            end = datetime(year + 1, 1, 1, tzinfo=UTC)
        return end + _LAST_ZONE
    except (ValueError, OverflowError):  # "2026-02-30", "9999"
        return None


# -- listing pages ------------------------------------------------------------------------

# An XHTML page's XML declaration: lxml refuses one that names an encoding in a str.
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*\?>")


def parse_listing(data: bytes, url: str, charset: str | None, links: str,
                  next_page: str) -> tuple[list[Entry], str | None]:
    """The article links of a listing page, in page order, and the next page's URL."""
    text = _XML_DECLARATION.sub("", extract.decode_html(data, charset), count=1)
    try:
        tree = lxml.html.document_fromstring(text or "<html></html>")
    except (lxml.etree.ParserError, ValueError) as e:
        raise SourceError(f"not an HTML page: {e}", where=url) from e
    # No titles from the links: a listing's link text is often a teaser; the page says.
    entries = [Entry(url=page) for page in (entry_url(url, _href(el))
                                            for el in CSSSelector(links)(tree)) if page]
    following = None
    if next_page:
        for el in CSSSelector(next_page)(tree):
            following = entry_url(url, _href(el))
            if following:
                break
    return _unique(entries), following


def no_links(url: str, links: str) -> SourceError:
    """A listing's first page without one link its selector finds: a selector that does
    not fit the page (or no longer does) would otherwise bring nothing, silently."""
    return SourceError(f"links = {links!r} matches no link on the page", where=url,
                       hint="check the selector against the page's HTML, which a redesign"
                            " changes")


def _unique(entries: list[Entry]) -> list[Entry]:
    """The first entry for each URL, in order."""
    first: dict[str, Entry] = {}
    for entry in entries:
        first.setdefault(entry.url, entry)
    return list(first.values())


def _href(el: Any) -> str:
    """The link of ``el``: its own href, else that of the first link inside it."""
    if el.get("href"):
        return str(el.get("href"))
    for a in el.iter("a"):
        if a.get("href"):
            return str(a.get("href"))
    return ""
