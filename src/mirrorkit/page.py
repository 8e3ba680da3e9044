"""What an article page says beyond its text: structured data, figures, body, boilerplate.

Helpers for :func:`mirrorkit.extract.extract_page`, on an lxml tree of the whole page;
pure functions, no I/O.  They add to trafilatura what readers need and it leaves out,
and take away what it keeps and readers do not:

- :func:`structured_data`: title, authors, dates, lead image, section and canonical URL
  from JSON-LD (``NewsArticle`` and its kin, also inside ``@graph``), then Open Graph
  and ``<meta>``/``<link rel=canonical>``;
- :func:`prune_boilerplate`: removes blocks that are page chrome by their class, id or
  role (share bars, newsletter and donation prompts, related and most-read lists, cookie
  notices, comments, tags, bylines), or, for short unnamed blocks, by their words; a
  block with much text of its own is never removed that way;
- :func:`normalize_figures`: every picture with its caption becomes
  ``<figure><img><figcaption>caption <small>credit</small></figcaption></figure>``,
  whether the page wrote a ``<figure>`` or an image beside a short text in a ``<div>``;
- :func:`body_container`: the element that publishing systems and schema.org mark as
  the article body, used instead of trafilatura's guess when it holds at least as much
  of the text; :func:`restore_figures` puts the figures back into trafilatura's output
  otherwise (it keeps the ``<img>`` but drops the caption).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.etree
import lxml.html
from lxml.cssselect import CSSSelector

ARTICLE_TYPES = frozenset({
    "NewsArticle", "Article", "ReportageNewsArticle", "AnalysisNewsArticle",
    "OpinionNewsArticle", "BackgroundNewsArticle", "BlogPosting", "LiveBlogPosting",
    "Report", "ScholarlyArticle", "TechArticle",
})
# Where publishing systems put the article body (schema.org, WordPress, Drupal, Ghost,
# Arc and common hand-made names), in the order tried.
_BODY = CSSSelector(", ".join((
    "[itemprop~=articleBody]", ".entry-content", ".field--name-body", ".gh-content",
    ".post-content", ".article-body", ".article__body", ".story-body", ".c-entry-content",
    "#article-body", ".article-content", ".post-body",
)))
# Class or id words of page chrome.  A word matches if a class/id token starts with it.
_CHROME_PREFIXES = (
    "share", "sharing", "social", "newsletter", "subscri", "signup", "donat", "cookie",
    "consent", "gdpr", "related", "recommend", "comment", "promo", "advert", "sponsor",
    "paywall", "outbrain", "taboola", "breadcrumb", "sidebar", "byline",
)
_CHROME_TOKENS = frozenset({"ad", "ads", "cta", "tags", "bio", "popular", "widget", "meta"})
_CHROME_PAIRS = re.compile(r"most-?read|read-?more|more-?stories|author-?bio|further-?reading")
_CHROME_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "dialog"})
_CHROME_TEXT = re.compile(
    r"\bsign up\b.{0,60}\bnewsletter|\bnewsletter\b.{0,60}\b(sign up|subscribe)"
    r"|\bwe use cookies\b|\buses cookies\b|\bdonate (now|today)\b|\bmake a donation\b"
    r"|\bsupport (our|independent) journalism"
    r"|^\s*share( this( article| story)?)?\s*:|подпишитесь на|поддержите нас|файлы cookie",
    re.IGNORECASE,
)
_CREDIT = re.compile(r"credit|copyright|author|source|photographer", re.IGNORECASE)
_KEEP = frozenset({"html", "body", "main", "article"})
# A block with more text than this is content, whatever its class says.
_MAX_CHROME_TEXT = 1500
_MAX_CAPTION = 400
_MAX_LD = 1_000_000  # characters of one JSON-LD script read


@dataclass(frozen=True)
class StructuredData:
    title: str = ""
    authors: tuple[str, ...] = ()
    published: str = ""
    updated: str = ""
    image: str = ""
    section: str = ""
    canonical: str = ""


# -- structured data ----------------------------------------------------------------------

def _walk_ld(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        for item in value:
            yield from _walk_ld(item)
    elif isinstance(value, dict):
        yield value
        yield from _walk_ld(value.get("@graph"))


def _is_article(obj: dict[str, Any]) -> bool:
    kind = obj.get("@type")
    kinds = kind if isinstance(kind, list) else [kind]
    return any(isinstance(k, str) and k in ARTICLE_TYPES for k in kinds)


def _names(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    names = []
    for item in items:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name.strip() and "://" not in name:
            names.append(" ".join(name.split()))
    return tuple(dict.fromkeys(names))


def _first_url(value: Any) -> str:
    if isinstance(value, list):
        return next((u for u in map(_first_url, value) if u), "")
    if isinstance(value, dict):
        return _first_url(value.get("url") or value.get("contentUrl"))
    return value.strip() if isinstance(value, str) else ""


def _text(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    return " ".join(value.split()) if isinstance(value, str) else ""


def _article_ld(tree: lxml.html.HtmlElement) -> dict[str, Any]:
    for script in tree.xpath("//script[@type='application/ld+json']"):
        raw = (script.text or "")[:_MAX_LD]
        try:
            data = json.loads(raw)
            found = next((obj for obj in _walk_ld(data) if _is_article(obj)), None)
        except (ValueError, RecursionError):
            # Broken or nested past Python's recursion limit ("[[[[..."): read as
            # no structured data, as a page without any would be.
            continue
        if found is not None:
            return found
    return {}


def _meta(tree: lxml.html.HtmlElement, *names: str) -> str:
    for name in names:
        for attr in ("property", "name", "itemprop"):
            for el in tree.xpath(f"//meta[@{attr}=$n]", n=name):
                content = " ".join((el.get("content") or "").split())
                if content:
                    return content
    return ""


def structured_data(tree: lxml.html.HtmlElement, url: str) -> StructuredData:
    """What the page's JSON-LD article (else Open Graph and ``<meta>``) says about it."""
    ld = _article_ld(tree)
    canonical = next((h for h in (link.get("href") for link in
                                  tree.xpath("//link[@rel='canonical'][@href]")) if h), "")
    canonical = canonical or _meta(tree, "og:url") or _first_url(ld.get("url"))
    return StructuredData(
        title=_text(ld.get("headline")) or _meta(tree, "og:title"),
        authors=_names(ld.get("author")) or _names(
            [_meta(tree, "article:author")] if _meta(tree, "article:author") else []),
        published=_text(ld.get("datePublished")),
        updated=_text(ld.get("dateModified")),
        image=_absolute(url, _first_url(ld.get("image")) or _meta(tree, "og:image")),
        section=_text(ld.get("articleSection")) or _meta(tree, "article:section"),
        canonical=_absolute(url, canonical),
    )


def _absolute(base: str, link: str) -> str:
    if not link:
        return ""
    try:
        url = urljoin(base, link.strip())
        return url if urlsplit(url).scheme in ("http", "https") else ""
    except ValueError:
        return ""


# -- boilerplate --------------------------------------------------------------------------

def _chrome_name(el: lxml.html.HtmlElement) -> bool:
    names = f"{el.get('class') or ''} {el.get('id') or ''}".lower()
    if (el.get("role") or "").lower() in _CHROME_ROLES:
        return True
    if _CHROME_PAIRS.search(names):
        return True
    for token in re.split(r"[\s_-]+", names):
        if token in _CHROME_TOKENS or (token and token.startswith(_CHROME_PREFIXES)):
            return True
    return False


def _own_text_length(el: lxml.html.HtmlElement) -> int:
    """Characters of text in ``el`` outside links: a long link list is still chrome."""
    total = len(" ".join(el.text_content().split()))
    links = sum(len(" ".join(a.text_content().split())) for a in el.iter("a"))
    return total - links


def prune_boilerplate(tree: lxml.html.HtmlElement) -> None:
    """Remove page chrome from ``tree`` in place (see the module doc)."""
    protected: set[lxml.html.HtmlElement] = set()
    for body in _BODY(tree)[:1]:
        protected.update(body.iterancestors())
        protected.add(body)
    doomed = []
    for el in tree.iter():
        if not isinstance(el.tag, str) or el.tag in _KEEP or el in protected:
            continue
        if _chrome_name(el):
            if _own_text_length(el) <= _MAX_CHROME_TEXT:
                doomed.append(el)
        elif el.tag in ("div", "aside", "section", "form", "p"):
            text = " ".join(el.text_content().split())
            acting = el.tag != "p" or bool(el.xpath(".//a|.//button|.//input"))
            if acting and len(text) <= 300 and _CHROME_TEXT.search(text):
                doomed.append(el)
    for el in doomed:
        if el.getparent() is not None:
            el.drop_tree()


# -- figures ------------------------------------------------------------------------------

def _img_src(img: lxml.html.HtmlElement) -> str:
    return (img.get("src") or img.get("data-src") or "").strip()


def _caption_parts(el: lxml.html.HtmlElement) -> tuple[str, str]:
    """Caption and credit text of a caption element (credit: a part named so)."""
    credit = ""
    for part in el.iter():
        if part is not el and isinstance(part.tag, str) and _CREDIT.search(
                f"{part.get('class') or ''} {part.get('itemprop') or ''}"):
            credit = " ".join(part.text_content().split())
            part.drop_tree()
            break
    if not credit:
        # A trailing <small> or <em> that starts like a credit line.
        for part in reversed(list(el.iter("small", "em", "i", "span"))):
            text = " ".join(part.text_content().split())
            if re.match(r"(photo|image|picture|foto|фото)\b|©", text, re.IGNORECASE):
                credit = text
                part.drop_tree()
            break
    return " ".join(el.text_content().split()), credit


def _figure(img: lxml.html.HtmlElement, caption: str, credit: str) -> lxml.html.HtmlElement:
    figure = lxml.html.Element("figure")
    picture = lxml.etree.SubElement(figure, "img")
    picture.set("src", _img_src(img))
    for attr in ("alt", "width", "height"):
        if img.get(attr):
            picture.set(attr, img.get(attr))
    if caption or credit:
        figcaption = lxml.etree.SubElement(figure, "figcaption")
        figcaption.text = caption
        if credit:
            if caption:
                figcaption.text += " "
            lxml.etree.SubElement(figcaption, "small").text = credit
    return figure


def normalize_figures(tree: lxml.html.HtmlElement, url: str) -> dict[str, str]:
    """Rewrite captioned pictures in place as plain figures; returns ``{image URL: HTML}``.

    The map (absolute image URL to the figure's HTML) lets :func:`restore_figures` put
    captions back into an extractor's output that kept only the ``<img>``.
    """
    found: dict[str, str] = {}
    for container in list(tree.iter("figure")):
        imgs = [i for i in container.iter("img") if _img_src(i)]
        if len(imgs) != 1:
            continue
        captions = list(container.iter("figcaption"))
        caption, credit = _caption_parts(captions[0]) if captions else ("", "")
        _replace(container, _figure(imgs[0], caption, credit), url, found)
    for img in list(tree.iter("img")):
        parent = img.getparent()
        if (parent is None or not _img_src(img) or parent.tag not in ("div", "p", "span")
                or any(a.tag == "figure" for a in img.iterancestors())):
            continue
        if sum(1 for _ in parent.iter("img")) != 1 or parent.xpath(".//p|.//h2|.//h3|.//li"):
            continue
        text = " ".join(parent.text_content().split())
        if not 0 < len(text) <= _MAX_CAPTION:
            continue
        holder = lxml.html.Element("div")
        for child in list(parent):
            if child is not img:
                holder.append(child)
        holder.text = parent.text
        caption, credit = _caption_parts(holder)
        _replace(parent, _figure(img, caption, credit), url, found)
    return found


def _replace(old: lxml.html.HtmlElement, new: lxml.html.HtmlElement, url: str,
             found: dict[str, str]) -> None:
    new.tail = old.tail
    parent = old.getparent()
    if parent is not None:
        parent.replace(old, new)
    src = _absolute(url, new[0].get("src") or "")
    if src:
        found.setdefault(src, lxml.html.tostring(new, encoding="unicode", with_tail=False))


def restore_figures(root: lxml.html.HtmlElement, figures: dict[str, str], url: str) -> None:
    """Give the ``<img>`` elements of an extractor's output (``root``) their figures back.

    A paragraph that only repeats a restored caption goes: the extractor kept it as text.
    """
    captions: set[str] = set()
    for img in list(root.iter("img")):
        html = figures.get(_absolute(url, img.get("src") or ""))
        if html is None or any(a.tag == "figure" for a in img.iterancestors()):
            continue
        figure = lxml.html.fragment_fromstring(html)
        caption = figure.find("figcaption")
        if caption is not None:
            captions.add(" ".join(caption.text_content().split()))
        # An image alone in a paragraph takes the paragraph's place (no figure in a <p>).
        target = img.getparent()
        if (target is not None and target.tag == "p" and target.getparent() is not None
                and not target.text_content().strip()):
            target, img = target.getparent(), target
        figure.tail = img.tail
        if target is not None:
            target.replace(img, figure)
    for block in list(root.iter("p", "div")):
        text = " ".join(block.text_content().split())
        if text and any(text in c for c in captions) and not block.xpath(".//figure"):
            block.drop_tree()


def body_container(tree: lxml.html.HtmlElement) -> lxml.html.HtmlElement | None:
    """The element the page marks as its article body, if any."""
    found = _BODY(tree)
    return found[0] if found else None


def drop_bylines(root: lxml.html.HtmlElement, authors: tuple[str, ...]) -> None:
    """Remove short blocks that only name the authors ("By Ann Lee"): pages show them."""
    if not authors:
        return
    for block in list(root.iter("p", "div")):
        text = " ".join(block.text_content().split())
        if len(text) < 120 and re.match(r"(by|von|par|автор[ы]?:?)\s", text, re.IGNORECASE) \
                and any(a in text for a in authors):
            block.drop_tree()
