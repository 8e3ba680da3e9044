"""Per-mirror RSS 2.0 and Atom 1.0 feeds with the full text of the newest articles.

A feed served by a mirror links to that mirror's own copies with absolute URLs (item
links, images in the content, the self link), because feed readers resolve nothing
relative reliably.  Item ids do not name a mirror or a version,
``urn:mirrorkit:<outlet>:<article id>``, so a reader who switches mirrors, or
reads after a rebuild, sees no duplicates.

Each feed's title names its mirror (``Example Times (pub-1234.r2.dev)``), so a reader
subscribed to two mirrors tells them apart; each entry carries its article's language
(``xml:lang`` in Atom, ``dc:language`` in RSS) and its lead image as an enclosure.

The bytes depend only on the inputs: feedgen's own clock (lastBuildDate, updated) is
replaced by the build time.

An article feedgen (lxml) cannot write, such as one with a control character that slipped
into the store, ends the build with a one-line :class:`~mirrorkit.errors.BuildError`
naming the article, not with a traceback.

Titles and summaries are plain text, and RSS readers take ``<title>`` and
``<description>`` for HTML: in RSS they are written HTML-escaped (:func:`_text`), so an
article that shows ``<img onerror=…>`` as text stays text in every reader.  Atom says
``type="text"`` and needs no escaping.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import lxml.etree
from feedgen.feed import FeedGenerator

from mirrorkit.build.render import article_path, body_html, newest_first, summary_text, utc
from mirrorkit.config import Config, MirrorConfig
from mirrorkit.errors import BuildError
from mirrorkit.models import Article

RSS_NAME = "rss.xml"
ATOM_NAME = "atom.xml"
_ATOM_ENTRY = "{http://www.w3.org/2005/Atom}entry"
_ATOM_LINK = "{http://www.w3.org/2005/Atom}link"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# A stored image's (size, media type), for enclosures; None when unknown.
MediaInfo = Callable[[str], "tuple[int, str] | None"]


def item_id(outlet_id: str, article: Article) -> str:
    """The id (Atom) and guid (RSS) of an article: the same on every mirror and version."""
    return f"urn:mirrorkit:{outlet_id}:{article.id}"


def render_feeds(config: Config, articles: Sequence[Article], mirror: MirrorConfig, *,
                 built: datetime, media: MediaInfo | None = None) -> dict[str, bytes]:
    """``{"rss.xml": ..., "atom.xml": ...}`` for ``mirror``."""
    items = newest_first(articles)[: config.build.feed_items]
    rss = _feed(config, items, mirror, built, RSS_NAME, "application/rss+xml", media)
    atom = _feed(config, items, mirror, built, ATOM_NAME, "application/atom+xml", media)
    return {
        RSS_NAME: _serialize(rss, items, RSS_NAME),
        ATOM_NAME: _atom_extras(_serialize(atom, items, ATOM_NAME), items,
                                config.outlet.language, mirror.public_url, media),
    }


def feed_title(outlet_name: str, mirror: MirrorConfig) -> str:
    where = urlsplit(mirror.public_url)
    return f"{outlet_name} ({where.netloc}{where.path.rstrip('/')})"


def _atom_extras(atom: bytes, items: Sequence[Article], default: str, base: str,
                 media: MediaInfo | None) -> bytes:
    """What feedgen cannot write in Atom: ``xml:lang`` on each entry in another language
    than the feed, and the enclosure link (feedgen drops its ``rel``)."""
    root = lxml.etree.fromstring(atom)
    for entry, article in zip(root.iter(_ATOM_ENTRY), items, strict=True):
        if article.language and article.language != default:
            entry.set(_XML_LANG, article.language)
        lead = media(article.media[0]) if media and article.media else None
        if lead is not None:
            lxml.etree.SubElement(entry, _ATOM_LINK, {
                "rel": "enclosure", "href": f"{base}media/{article.media[0]}",
                "type": lead[1], "length": str(lead[0])})
    return bytes(lxml.etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                     pretty_print=True))


def _serialize(fg: Any, items: Sequence[Article], name: str) -> bytes:
    rss = name == RSS_NAME
    try:
        return bytes(fg.rss_str(pretty=True) if rss else fg.atom_str(pretty=True))
    except ValueError as e:
        # feedgen builds the XML only here; find the entry lxml refused, to name it.
        for entry, article in zip(fg.entry(), items, strict=True):
            try:
                _ = entry.rss_entry() if rss else entry.atom_entry()
            except ValueError:
                raise _error(name, article.url, e) from e
        raise BuildError(f"cannot write {name}: {e}", where="feeds") from e


def _error(name: str, url: str, e: ValueError) -> BuildError:
    return BuildError(f"cannot write {name}: {e}", where=url,
                      hint="remove the article from the store; if it was fetched just now,"
                      " report a bug")


def _feed(config: Config, items: Sequence[Article], mirror: MirrorConfig, built: datetime,
          self_name: str, self_type: str, media: MediaInfo | None) -> Any:
    outlet = config.outlet
    base = mirror.public_url
    text = _text(self_name)
    fg = FeedGenerator()
    # RSS <author> must be an e-mail address; dc:creator carries plain names.
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(f"urn:mirrorkit:{outlet.id}")
    fg.title(text(feed_title(outlet.name, mirror)))
    fg.description(text(outlet.description or outlet.name))
    fg.language(outlet.language)
    # Atom needs an author on the feed unless every entry has one.
    fg.author({"name": outlet.name})
    # feedgen takes the RSS <link> from the last link given: the home page, not the feed.
    fg.link(href=base + self_name, rel="self", type=self_type)
    fg.link(href=base + "index.html", rel="alternate", type="text/html")
    fg.generator("mirrorkit")
    fg.updated(utc(built))  # also RSS lastBuildDate, which feedgen would set to now
    for article in items:
        try:
            _add_entry(fg, outlet.id, article, base, built,
                       media if self_name == RSS_NAME else None, text)
        except ValueError as e:
            raise _error(self_name, article.url, e) from e
    return fg


def _text(name: str) -> Callable[[str], str]:
    """How plain text goes into ``name``'s text elements: HTML-escaped in RSS."""
    return (lambda s: html.escape(s, quote=False)) if name == RSS_NAME else str


def _add_entry(fg: Any, outlet_id: str, article: Article, base: str,
               built: datetime, media: MediaInfo | None,
               text: Callable[[str], str]) -> None:
    entry = fg.add_entry(order="append")  # feedgen prepends by default
    entry.id(item_id(outlet_id, article))  # also the RSS guid, isPermaLink="false"
    entry.title(text(article.title))
    entry.link(href=base + article_path(article), rel="alternate", type="text/html")
    if article.authors:
        entry.author([{"name": name} for name in article.authors])
        entry.dc.dc_creator(list(article.authors))
    if article.language:
        entry.dc.dc_language(article.language)
    lead = media(article.media[0]) if media and article.media else None
    if lead is not None:
        size, kind = lead
        entry.enclosure(f"{base}media/{article.media[0]}", str(size), kind)
    # summary() before content(): RSS then gets <description> plus <content:encoded>.
    entry.summary(text(summary_text(article)))
    entry.content(body_html(article, base), type="html")
    published = article.published or article.updated
    if published is not None:
        entry.published(utc(published))
    # Atom requires <updated>; an undated article is at least no older than this build.
    entry.updated(utc(article.updated or published or built))
