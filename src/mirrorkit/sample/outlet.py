"""The sample outlet: a local aiohttp site serving the sample articles like a real newsroom.

It is the origin for ``mirrorkit demo``, the tests and the benchmarks.  It serves:

- ``rss.xml`` and ``atom.xml`` (newest first), ``sitemap.xml`` and ``index.html``;
- ``articles/<slug>.html``: full pages with navigation, ads, trackers, inline scripts and
  ``onclick`` handlers around an ``<article>`` — the junk mirrorkit must strip — and
  images referenced by *relative* URLs;
- ``images/<name>.png``: deterministic PNGs, one of them shared by two articles.

Pages are really encoded as the article says: UTF-8 (charset in header and ``<meta>``),
``windows-1251`` (charset only in the Content-Type header) or ``koi8-r`` (charset only in
``<meta charset>``).  Every document has a strong ETag over its bytes, feeds and pages
also Last-Modified, and conditional requests are answered with 304.

Faults: ``latency`` seconds before every response, a seeded ``fail_rate`` of 503s, a
``down`` switch, and scripted answers for one path (:meth:`OutletState.fail_next`: the
next N requests for it get a given status and headers, e.g. 429 with Retry-After, or 500
for an image, or :data:`RESET`: the connection is reset).  Articles can be updated or
added while the server runs.  All of that lives in one thread-safe :class:`OutletState`,
so tests in the main thread can drive a :class:`SampleOutlet` that serves from a
background thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import random
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import format_datetime
from html import escape
from types import TracebackType
from urllib.parse import unquote

from aiohttp import web
from aiohttp.typedefs import Handler

from mirrorkit.sample.articles import (
    BASE_DATE,
    ENCODINGS,
    SampleArticle,
    SampleImage,
    sample_articles,
    sample_images,
)

SITE_NAME = "The Harwick Ledger"
# A scripted "status" (see OutletState.fail_next): the connection is reset (TCP RST)
# instead of answered.
RESET = 0
# Strings that only the outlet's junk contains; none may survive mirrorkit's sanitizer.
HOSTILE_MARKERS = ("tracker.invalid", "ads.invalid", "<script", "onclick", "<iframe")

_WORDS = {
    "en": {"home": "Home", "news": "News", "related": "Related", "by": "By", "and": "and"},
    "ru": {"home": "Главная", "news": "Новости", "related": "Читайте также", "by": "Авторы:",
           "and": "и"},
}


@dataclass(frozen=True)
class ServedRequest:
    method: str
    path: str
    status: int
    at: float = 0.0  # time.monotonic() when it was answered


class OutletState:
    """What a running outlet serves, and the switches tests flip from another thread."""

    def __init__(self, *, latency: float = 0.0, fail_rate: float = 0.0, seed: int = 0):
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be between 0 and 1, not {fail_rate}")
        self.latency = latency
        self.fail_rate = fail_rate
        self.down = False
        self.images: dict[str, SampleImage] = sample_images()
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._articles = {a.slug: a for a in sample_articles()}
        self._clock = BASE_DATE  # later than every sample article; advanced by each change
        self._requests: list[ServedRequest] = []
        self._scripted: dict[str, deque[tuple[int, dict[str, str]]]] = {}

    def articles(self) -> list[SampleArticle]:
        """Articles newest first (by publication time)."""
        with self._lock:
            articles = list(self._articles.values())
        return sorted(articles, key=lambda a: a.published, reverse=True)

    def article(self, slug: str) -> SampleArticle | None:
        with self._lock:
            return self._articles.get(slug)

    def article_at(self, path: str) -> SampleArticle | None:
        """The article served at ``path`` (decoded, with its query if any)."""
        with self._lock:
            return next((a for a in self._articles.values() if unquote(a.path) == path), None)

    def update_article(
        self, slug: str, *, title: str | None = None, extra_paragraph: str | None = None
    ) -> SampleArticle:
        """Change an article in place; its ``updated`` time moves past every earlier change."""
        with self._lock:
            old = self._articles[slug]
            paragraphs = old.paragraphs + ((extra_paragraph,) if extra_paragraph else ())
            new = replace(old, title=title or old.title, paragraphs=paragraphs,
                          updated=self._tick())
            self._articles[slug] = new
        return new

    def add_article(
        self,
        slug: str,
        title: str,
        paragraphs: Sequence[str],
        *,
        authors: Sequence[str] = ("Newsroom",),
        language: str = "en",
        summary: str | None = None,
        images: Sequence[str] = (),
        encoding: str = "utf-8",
        published: datetime | None = None,
    ) -> SampleArticle:
        """Publish a new article; ``published`` defaults to just after the last change."""
        if not paragraphs:
            raise ValueError("an article needs at least one paragraph")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, not {encoding!r}")
        if unknown := [name for name in images if name not in self.images]:
            raise ValueError(f"unknown sample images: {unknown}")
        with self._lock:
            if slug in self._articles:
                raise ValueError(f"article {slug!r} already exists")
            article = SampleArticle(
                slug=slug, title=title, authors=tuple(authors),
                published=published or self._tick(), language=language,
                summary=summary if summary is not None else paragraphs[0],
                paragraphs=tuple(paragraphs), images=tuple(images), encoding=encoding,
            )
            self._articles[slug] = article
        return article

    def add_filler(self, count: int, *, images: Sequence[str] = (),
                   prefix: str = "filler") -> list[SampleArticle]:
        """Publish ``count`` plain articles (``<prefix>-00000`` ...), e.g. for load tests.

        ``images`` are shared round-robin: article ``i`` shows ``images[i % len]``.
        """
        return [
            self.add_article(
                f"{prefix}-{i:05d}", f"Filler report number {i}",
                [f"Paragraph {k} of filler report {i}. " * 12 for k in range(4)],
                images=[images[i % len(images)]] if images else (),
            )
            for i in range(count)
        ]

    def fail_next(self, path: str, status: int, *, times: int = 1,
                  headers: Mapping[str, str] | None = None) -> None:
        """Answer the next ``times`` requests for ``path`` (e.g. ``/images/x.png``) with
        ``status`` and ``headers`` (after the latency, like any answer)."""
        with self._lock:
            queue = self._scripted.setdefault(path, deque())
            queue.extend([(status, dict(headers or {}))] * times)

    def clear_faults(self) -> None:
        """Forget the scripted answers not given yet."""
        with self._lock:
            self._scripted.clear()

    def scripted(self, path: str) -> tuple[int, dict[str, str]] | None:
        """The scripted answer for this request to ``path``, if one is left."""
        with self._lock:
            queue = self._scripted.get(path)
            return queue.popleft() if queue else None

    def _tick(self) -> datetime:
        self._clock += timedelta(minutes=1)
        return self._clock

    def should_fail(self) -> bool:
        if self.fail_rate <= 0.0:
            return False
        with self._lock:
            return self._random.random() < self.fail_rate

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append(ServedRequest(method, path, status, time.monotonic()))

    @property
    def requests(self) -> list[ServedRequest]:
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()


OUTLET_STATE = web.AppKey("outlet_state", OutletState)


def make_app(
    *,
    latency: float = 0.0,
    fail_rate: float = 0.0,
    seed: int = 0,
    state: OutletState | None = None,
) -> web.Application:
    """The outlet as an aiohttp app; ``app[OUTLET_STATE]`` holds its switches and content.

    Pass ``state`` to share content and switches between apps (``latency``, ``fail_rate``
    and ``seed`` are then ignored).
    """
    app = web.Application(middlewares=[_faults])
    app[OUTLET_STATE] = state or OutletState(latency=latency, fail_rate=fail_rate, seed=seed)
    app.router.add_get("/", _index)
    app.router.add_get("/index.html", _index)
    app.router.add_get("/rss.xml", _rss)
    app.router.add_get("/atom.xml", _atom)
    app.router.add_get("/sitemap.xml", _sitemap)
    app.router.add_get("/articles/{slug}.html", _article)
    app.router.add_get("/images/{name}.png", _image)
    app.router.add_get("/{path:.+}", _article_elsewhere)  # articles at their own paths
    return app


# -- serving -------------------------------------------------------------------------------


@web.middleware
async def _faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[OUTLET_STATE]
    if state.latency > 0:
        await asyncio.sleep(state.latency)
    if state.down or state.should_fail():
        state.record(request.method, request.path, 503)
        return web.Response(status=503, text="503 Service Unavailable (sample outlet fault)\n")
    scripted = state.scripted(request.path)
    if scripted is not None:
        status, headers = scripted
        state.record(request.method, request.path, status)
        if status == RESET:
            _reset(request)
        return web.Response(status=status, headers=headers,
                            text=f"{status} (sample outlet scripted fault)\n")
    try:
        response = await handler(request)
    except web.HTTPException as e:
        state.record(request.method, request.path, e.status)
        raise
    state.record(request.method, request.path, response.status)
    return response


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashing proxy does."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise asyncio.CancelledError


def _reply(
    request: web.Request, body: bytes, content_type: str, modified: datetime | None = None
) -> web.Response:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if modified is not None:
        headers["Last-Modified"] = format_datetime(modified, usegmt=True)
    if _not_modified(request, etag, modified):
        return web.Response(status=304, headers=headers)
    # Content-Type goes in as a plain header so aiohttp adds no charset of its own.
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


def _not_modified(request: web.Request, etag: str, modified: datetime | None) -> bool:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:  # takes precedence over If-Modified-Since (RFC 9110)
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    since = request.if_modified_since
    return since is not None and modified is not None and modified.replace(microsecond=0) <= since


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/"


async def _index(request: web.Request) -> web.Response:
    articles = request.app[OUTLET_STATE].articles()
    page = _index_page(articles)
    return _reply(request, page.encode(), "text/html; charset=utf-8", _latest(articles))


async def _rss(request: web.Request) -> web.Response:
    state = request.app[OUTLET_STATE]
    articles = state.articles()
    feed = _rss_feed(articles, state.images, _base(request))
    return _reply(request, feed.encode(), "application/rss+xml; charset=utf-8", _latest(articles))


async def _atom(request: web.Request) -> web.Response:
    state = request.app[OUTLET_STATE]
    articles = state.articles()
    feed = _atom_feed(articles, state.images, _base(request))
    return _reply(request, feed.encode(), "application/atom+xml; charset=utf-8",
                  _latest(articles))


async def _sitemap(request: web.Request) -> web.Response:
    articles = request.app[OUTLET_STATE].articles()
    sitemap = _sitemap_xml(articles, _base(request))
    return _reply(request, sitemap.encode(), "application/xml; charset=utf-8", _latest(articles))


async def _article(request: web.Request) -> web.Response:
    article = request.app[OUTLET_STATE].article(request.match_info["slug"])
    if article is None or article.route:
        raise web.HTTPNotFound
    return _article_response(request, article)


async def _article_elsewhere(request: web.Request) -> web.Response:
    url = request.rel_url
    path = url.path.removeprefix("/") + (f"?{url.query_string}" if url.query_string else "")
    article = request.app[OUTLET_STATE].article_at(path)
    if article is None:
        raise web.HTTPNotFound
    return _article_response(request, article)


def _article_response(request: web.Request, article: SampleArticle) -> web.Response:
    state = request.app[OUTLET_STATE]
    # Related links come from the fixed sample set, so that a page's bytes (and ETag)
    # change only when its own article does.
    related = [a for a in sample_articles()
               if a.language == article.language and a.slug != article.slug]
    page = _article_page(article, state.images, related[:3], _base(request))
    body = page.encode(article.encoding, errors="xmlcharrefreplace")
    content_type = "text/html" if article.encoding == "koi8-r" else (
        f"text/html; charset={article.encoding}")
    return _reply(request, body, content_type, article.modified)


async def _image(request: web.Request) -> web.Response:
    image = request.app[OUTLET_STATE].images.get(request.match_info["name"])
    if image is None:
        raise web.HTTPNotFound
    return _reply(request, image.data, "image/png")


# -- rendering -----------------------------------------------------------------------------


def _latest(articles: Sequence[SampleArticle]) -> datetime:
    return max((a.modified for a in articles), default=BASE_DATE)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _figure(image: SampleImage, src: str, extra: str = "") -> str:
    return (
        f'<figure><img src="{escape(src)}" alt="{escape(image.alt)}" width="320" '
        f'height="180"{extra}><figcaption>{escape(image.caption)}</figcaption></figure>'
    )


def _body_html(article: SampleArticle, images: dict[str, SampleImage], base: str) -> str:
    """The article body as a feed carries it: paragraphs and figures, absolute URLs."""
    parts = [f"<p>{escape(p)}</p>" for p in article.paragraphs]
    parts += [_figure(images[name], base + images[name].path) for name in article.images]
    return "\n".join(parts)


def _rss_feed(articles: Sequence[SampleArticle], images: dict[str, SampleImage],
              base: str) -> str:
    items = []
    for a in articles:
        link = escape(base + a.path)
        creators = "".join(f"<dc:creator>{escape(name)}</dc:creator>" for name in a.authors)
        updated = f"\n<atom:updated>{_iso(a.updated)}</atom:updated>" if a.updated else ""
        items.append(
            f"<item>\n<title>{escape(a.title)}</title>\n<link>{link}</link>\n"
            f'<guid isPermaLink="true">{link}</guid>\n'
            f"<pubDate>{format_datetime(a.published, usegmt=True)}</pubDate>{updated}\n"
            f"{creators}\n<dc:language>{a.language}</dc:language>\n"
            f"<description>{escape(a.summary)}</description>\n"
            f"<content:encoded>{escape(_body_html(a, images, base))}</content:encoded>\n"
            "</item>"
        )
    newline = "\n"
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
<title>{SITE_NAME}</title>
<link>{base}index.html</link>
<description>Independent news from Harwick and Severogorsk (fictional sample outlet)</description>
<language>en</language>
<lastBuildDate>{format_datetime(_latest(articles), usegmt=True)}</lastBuildDate>
<atom:link href="{base}rss.xml" rel="self" type="application/rss+xml"/>
{newline.join(items)}
</channel>
</rss>
"""


def _atom_feed(articles: Sequence[SampleArticle], images: dict[str, SampleImage],
               base: str) -> str:
    entries = []
    for a in articles:
        link = escape(base + a.path)
        authors = "".join(f"<author><name>{escape(n)}</name></author>" for n in a.authors)
        entries.append(
            f'<entry xml:lang="{a.language}">\n<title>{escape(a.title)}</title>\n'
            f'<id>{link}</id>\n<link rel="alternate" type="text/html" href="{link}"/>\n'
            f"<published>{_iso(a.published)}</published>\n"
            f"<updated>{_iso(a.modified)}</updated>\n{authors}\n"
            f"<summary>{escape(a.summary)}</summary>\n"
            f'<content type="html">{escape(_body_html(a, images, base))}</content>\n'
            "</entry>"
        )
    newline = "\n"
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
<title>{SITE_NAME}</title>
<id>{base}</id>
<updated>{_iso(_latest(articles))}</updated>
<link rel="self" type="application/atom+xml" href="{base}atom.xml"/>
<link rel="alternate" type="text/html" href="{base}index.html"/>
{newline.join(entries)}
</feed>
"""


def _sitemap_xml(articles: Sequence[SampleArticle], base: str) -> str:
    urls = "\n".join(
        f"<url><loc>{escape(base + a.path)}</loc><lastmod>{_iso(a.modified)}</lastmod></url>"
        for a in articles
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
{urls}
</urlset>
"""


def _index_page(articles: Sequence[SampleArticle]) -> str:
    items = "\n".join(
        f'<li><article lang="{a.language}"><h2><a href="{a.path}">{escape(a.title)}</a></h2>'
        f'<time datetime="{_iso(a.published)}">{a.published:%Y-%m-%d %H:%M}</time>'
        f"<p>{escape(a.summary)}</p></article></li>"
        for a in articles
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{SITE_NAME}</title>
<link rel="alternate" type="application/rss+xml" title="{SITE_NAME}" href="rss.xml">
<script src="https://tracker.invalid/t.js" async></script>
</head>
<body>
<header class="site-header"><a class="logo" href="index.html">{SITE_NAME}</a></header>
<main id="news">
<h1>Latest news</h1>
<ul class="article-list">
{items}
</ul>
</main>
<footer class="site-footer"><p>© 2026 {SITE_NAME} (fictional sample outlet)</p></footer>
</body>
</html>
"""


def _article_page(
    a: SampleArticle, images: dict[str, SampleImage], related: Sequence[SampleArticle],
    base: str,
) -> str:
    words = _WORDS.get(a.language, _WORDS["en"])
    # windows-1251 pages name their charset only in the HTTP header, on purpose.
    meta_charset = "" if a.encoding == "windows-1251" else f'<meta charset="{a.encoding}">\n'
    authors = f" {words['and']} ".join(
        f"<span class=\"author\" onclick=\"track('author')\">{escape(n)}</span>"
        for n in a.authors
    )
    up = "../" * a.path.partition("?")[0].count("/")  # from this page to the site root
    figures = [_figure(images[n], f"{up}{images[n].path}", ' onclick="zoom(this)"')
               for n in a.images]
    body = [f"<p>{escape(p)}</p>" for p in a.paragraphs]
    body.insert(min(2, len(body)), '<script>loadWidget("share-bar");</script>')
    if figures:
        body.insert(1, figures[0])
        body += figures[1:]
    head_extra = "".join(
        f'<meta property="article:author" content="{escape(n)}">\n' for n in a.authors
    )
    if a.images:
        head_extra += f'<meta property="og:image" content="{base}{images[a.images[0]].path}">\n'
    if a.updated:
        head_extra += f'<meta property="article:modified_time" content="{_iso(a.updated)}">\n'
    sidebar = "\n".join(
        f'<li><a href="{up}{escape(r.path)}">{escape(r.title)}</a></li>' for r in related
    )
    newline = "\n"
    return f"""<!DOCTYPE html>
<html lang="{a.language}">
<head>
{meta_charset}<title>{escape(a.title)} — {SITE_NAME}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="description" content="{escape(a.summary)}">
<meta name="author" content="{escape(', '.join(a.authors))}">
<meta property="og:type" content="article">
<meta property="og:title" content="{escape(a.title)}">
<meta property="og:description" content="{escape(a.summary)}">
<meta property="og:url" content="{base}{a.path}">
<meta property="article:published_time" content="{_iso(a.published)}">
{head_extra}<link rel="canonical" href="{base}{a.path}">
<link rel="alternate" type="application/rss+xml" title="{SITE_NAME}" href="{up}rss.xml">
<style>body {{ font-family: Georgia, serif; }} .ad-slot {{ background: #fee; }}</style>
<script src="https://tracker.invalid/t.js" async></script>
<script>window.dataLayer = window.dataLayer || []; dataLayer.push({{"page": "{a.slug}"}});</script>
</head>
<body>
<header class="site-header">
<a class="logo" href="{up}index.html">{SITE_NAME}</a>
<nav class="site-nav"><ul>
<li><a href="{up}index.html">{words['home']}</a></li>
<li><a href="{up}index.html#news">{words['news']}</a></li>
<li><a href="{up}rss.xml">RSS</a></li>
</ul></nav>
</header>
<div class="ad-slot" id="ad-top">Advertisement
<iframe src="https://ads.invalid/banner?slot=top" width="728" height="90"></iframe></div>
<main>
<article class="story">
<h1>{escape(a.title)}</h1>
<p class="byline">{words['by']} {authors} ·
<time datetime="{_iso(a.published)}">{a.published:%Y-%m-%d %H:%M} UTC</time></p>
{newline.join(body)}
</article>
<aside class="sidebar">
<h2>{words['related']}</h2>
<ul>
{sidebar}
</ul>
<div class="ad-slot" id="ad-side">Sponsored:
<a href="https://ads.invalid/click?id=42" onclick="trackAd(42)">Win a weekend cruise!</a></div>
</aside>
</main>
<footer class="site-footer">
<p>© 2026 {SITE_NAME}. A fictional outlet made for testing mirrorkit.</p>
<p><a href="{up}sitemap.xml">Sitemap</a></p>
</footer>
<script>document.addEventListener("click", function () {{
  navigator.sendBeacon && navigator.sendBeacon("https://tracker.invalid/c"); }});</script>
</body>
</html>
"""


# -- running in a thread -------------------------------------------------------------------


class SampleOutlet:
    """Serve the sample outlet on loopback from a background thread with its own loop.

    ``with SampleOutlet() as outlet:`` starts it on a free port; ``outlet.url`` ends in
    ``/``.  After :meth:`stop`, :meth:`start` serves again on the same port with the same
    content and switches.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        fail_rate: float = 0.0,
        seed: int = 0,
        port: int = 0,
        host: str = "127.0.0.1",
    ):
        self.state = OutletState(latency=latency, fail_rate=fail_rate, seed=seed)
        self._host = host
        self._port = port
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle

    def start(self) -> SampleOutlet:
        if self._thread is not None:
            raise RuntimeError("sample outlet is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="sample-outlet", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"sample outlet could not start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None
        self._url = None

    def __enter__(self) -> SampleOutlet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        runner = web.AppRunner(make_app(state=self.state), access_log=None, shutdown_timeout=1.0)
        try:
            await runner.setup()
            await web.TCPSite(runner, self._host, self._port).start()
            host, port = runner.addresses[0][:2]
            self._port = port  # a restart keeps the URL
            self._url = f"http://{host}:{port}/"
            self._ready.set()
            await self._stopping.wait()
        except Exception as e:  # reported to start() in the calling thread
            self._error = e
        finally:
            await runner.cleanup()
            self._loop = None
            self._ready.set()

    # -- where things are

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("sample outlet is not running")
        return self._url

    @property
    def feed_url(self) -> str:
        return self.url + "rss.xml"

    @property
    def atom_url(self) -> str:
        return self.url + "atom.xml"

    @property
    def sitemap_url(self) -> str:
        return self.url + "sitemap.xml"

    @property
    def index_url(self) -> str:
        return self.url + "index.html"

    @property
    def articles(self) -> list[SampleArticle]:
        """The articles now served, newest first, with absolute ``url``."""
        return [a.at(self.url) for a in self.state.articles()]

    def article(self, slug: str) -> SampleArticle:
        article = self.state.article(slug)
        if article is None:
            raise KeyError(slug)
        return article.at(self.url)

    @property
    def images(self) -> dict[str, SampleImage]:
        return self.state.images

    # -- switches

    def set_down(self, down: bool = True) -> None:
        self.state.down = down

    def set_faults(self, *, latency: float | None = None, fail_rate: float | None = None) -> None:
        if latency is not None:
            self.state.latency = latency
        if fail_rate is not None:
            self.state.fail_rate = fail_rate

    def fail_next(self, path: str, status: int, *, times: int = 1,
                  headers: Mapping[str, str] | None = None) -> None:
        """See :meth:`OutletState.fail_next`."""
        self.state.fail_next(path, status, times=times, headers=headers)

    def clear_faults(self) -> None:
        self.state.clear_faults()

    def add_filler(self, count: int, *, images: Sequence[str] = (),
                   prefix: str = "filler") -> list[SampleArticle]:
        """See :meth:`OutletState.add_filler`."""
        return [a.at(self.url) for a in
                self.state.add_filler(count, images=images, prefix=prefix)]

    def update_article(
        self, slug: str, *, title: str | None = None, extra_paragraph: str | None = None
    ) -> SampleArticle:
        return self.state.update_article(
            slug, title=title, extra_paragraph=extra_paragraph
        ).at(self.url)

    def add_article(
        self,
        slug: str,
        title: str,
        paragraphs: Sequence[str],
        *,
        authors: Sequence[str] = ("Newsroom",),
        language: str = "en",
        summary: str | None = None,
        images: Sequence[str] = (),
        encoding: str = "utf-8",
        published: datetime | None = None,
    ) -> SampleArticle:
        return self.state.add_article(
            slug, title, paragraphs, authors=authors, language=language, summary=summary,
            images=images, encoding=encoding, published=published,
        ).at(self.url)

    @property
    def requests(self) -> list[ServedRequest]:
        """Every request answered so far, in order (503s and 404s included)."""
        return self.state.requests

    def reset_requests(self) -> None:
        self.state.reset_requests()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m mirrorkit.sample``: serve on loopback until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m mirrorkit.sample", description="Serve mirrorkit's sample outlet."
    )
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per response")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="fraction answered 503")
    parser.add_argument("--seed", type=int, default=0, help="seed for --fail-rate")
    parser.add_argument("--extra", type=int, default=0, metavar="N",
                        help="also serve N plain filler articles (for load tests)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    outlet = SampleOutlet(
        latency=args.latency, fail_rate=args.fail_rate, seed=args.seed, port=args.port
    )
    outlet.state.add_filler(args.extra, images=sorted(outlet.images))
    # The stop may come at any instant after the URL is printed, even before the wait.
    with contextlib.suppress(KeyboardInterrupt), outlet:
        # First line of output, so a script that passed --port 0 can read the URL.
        print(f"sample outlet at {outlet.url} (feed: {outlet.feed_url}); Ctrl-C to stop",
              flush=True)
        threading.Event().wait()
