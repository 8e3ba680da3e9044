"""The fetch stage: read the outlet's sources and bring new and changed articles into the store.

For each source (an RSS/Atom feed, a sitemap or sitemap index, a listing page and the
pages after it; read by :mod:`mirrorkit.sources`) this module reads the entries,
downloads the article pages that are new or may have changed, extracts and sanitizes
them (:mod:`mirrorkit.extract`), stores their images once by content
(:mod:`mirrorkit.images`) and saves the articles, each under its page's canonical URL.

Policies, each chosen to keep a re-run with nothing new down to about one request per
source, and a run with news to about one request per new or changed entry:

- **Sources** are requested with the ETag / Last-Modified saved from the last run; a 304
  ends that source.  The validators are saved only when every article of the source was
  read, so articles that failed are tried again next run.  A sitemap index's children
  are read only if dated after the last complete pass (a date alone, "2026-11-30", counts
  as its whole day, month or year) and conditionally; a listing is paged only while a
  page shows an article not yet stored, and fails if its first page has no link that
  ``links`` finds (a selector that does not fit, or no longer does).
- **One article, one URL**: entry URLs lose tracking parameters; an article is stored
  under its page's canonical URL (same host only), and the URL a source named it by is
  kept as an alias, so a source naming it that way again finds it stored.  Within a run,
  sources that name the same article (a news sitemap and the section front) share it:
  a URL is read whole once, and an article is saved and counted by the first entry that
  leads to it; a later one only adds its URL as an alias.
- **Dates**: ``updated`` is the latest of what the source (a sitemap's ``lastmod``) and
  the page say, and none if that is before ``published`` (a ``lastmod`` of "2026-11"
  is the 1st of the month).
- **Articles** are asked for in proportion to what the source says changed, never once
  per stored article (DESIGN.md invariant 9):

  - not yet stored: downloaded;
  - stored, and the entry carries a date (updated, else published; a sitemap's
    ``lastmod``): downloaded again, whole, only if that date is newer than the stored
    one.  Otherwise it is unchanged, with no request, validators or not;
  - stored, and the entry carries no date: revalidated -- a conditional request with the
    page's validators, if it gave any -- once ``REVALIDATE_AFTER`` has passed since the URL
    was last checked, and at most ``MAX_REVALIDATIONS`` per source per run, the ones
    checked longest ago first.  So a dateless sitemap of any size costs a bounded number
    of requests per run, and every page in it is still looked at again in time.

  New and re-dated entries of a source are all fetched before any of its revalidations
  start, so revalidation never holds back the news.
- **Order and convergence**: a source's articles are worked through in that order (new
  and re-dated newest first, then revalidations) by a few workers
  (:attr:`_Run.workers`), never all at once; an article's images go ahead of pages not
  yet started, so work under way is finished first.  Every planned article is tried in
  every run, so an origin of any size and latency is read whole in one run unless it
  fails; a run that is killed, or whose ``[fetch] run_budget`` runs out (no article is
  started after it; the rest is reported ``deferred``), has saved the head of the list
  (but for the few articles under way), and the next run takes up the rest right after
  anything newer.
- **Images** are downloaded once per run per URL, decoded and re-encoded (scaled to
  ``image_max_width``; their width and height go into the page), at most
  ``max_images_per_article`` and ``max_image_bytes_per_article`` per article (an image
  past the byte cap is never stored: the cap bounds the disk, not only the page); an image
  that cannot be stored (failed, too large, not JPEG/PNG/GIF/WebP/AVIF by its magic
  bytes, not decodable, a decompression bomb) is removed from the body, never left
  pointing at another host; its caption stays.  An
  image that failed only for now (429, 500, 502, 503, 504 or a dropped or reset
  connection after the retries, a timeout, a temporary DNS failure) fails its article
  instead, so the next run tries the article again -- but only for
  ``MAX_IMAGE_FAILED_RUNS`` runs in a row, counted per article URL in the store: an image
  host that never answers (or a page pointing an ``<img>`` at a tarpit) must not keep the
  article out of the mirrors for good.  The run after that saves the article without the
  image, with a warning.  A saved article clears its count.  A refused connection counts
  as failed for good.
- **Text** of every article field passes :func:`mirrorkit.extract.xml_safe` when the
  article is made: a control character from the origin would otherwise break the feeds.
- An entry whose URL cannot be parsed is skipped; the rest of its source goes on.

- **CPU**: extraction and image re-encoding run beside the downloads (:class:`_Cpu`),
  in a process pool once a run expects ``POOL_AFTER`` articles.

Safety and politeness:

- **Address guard**: unless ``[fetch] allow_private_addresses`` is true, no request goes to
  a loopback, private, link-local, site-local, multicast, reserved or unspecified
  address, nor to a 6to4 or Teredo address that embeds such an IPv4 address.  Even when
  it is true, no request goes to a link-local address or AWS's IPv6 metadata address
  (cloud metadata services, which hold the machine's credentials).  Hostnames
  are checked after resolution by :class:`GuardedResolver` (every address, so a name that
  mixes public and private addresses is refused); IP-literal hosts, which aiohttp never
  resolves, are checked before the request; redirects are followed by hand so every hop
  is checked.
- One session for the run: at most ``concurrency`` requests in flight, ``per_host`` per
  host (slots held by :class:`_Client`; the wait for one is never timed), then
  ``timeout`` seconds per attempt, ``connect_timeout`` to connect and ``read_timeout``
  per read; the configured User-Agent, and bodies streamed and cut off at
  ``max_page_size`` / ``max_image_size``.
- 429, 500, 502, 503, 504 and dropped or reset connections are retried twice with a short
  backoff, or after the server's ``Retry-After`` up to ``max_retry_after`` (only that
  request waits, holding no slot).  Timeouts and temporary DNS failures are not retried
  within the run, only marked as failed for now.
- **Full disk**: once a store write fails for lack of space (SQLITE_FULL, ENOSPC), every
  request still running is cancelled and none is started; :func:`fetch_async` raises one
  :class:`StoreError`.  What was saved before stays saved.

A source that cannot be read fails on its own (:class:`SourceResult` with ``ok=False`` and a
one-line error); the other sources go on, even when the cause is an unexpected exception
(its traceback is logged at debug level).  aiohttp errors are wrapped at this boundary;
those worth another run are marked ``retryable``.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import logging
import multiprocessing
import os
import socket
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp

from mirrorkit import aio, extract, images
from mirrorkit.addresses import GuardedResolver, blocked, refused
from mirrorkit.config import Config, FetchConfig, SourceConfig
from mirrorkit.errors import (
    BlockedAddressError,
    FetchError,
    MirrorkitError,
    SourceError,
    StoreError,
)
from mirrorkit.models import Article, Media, article_id
from mirrorkit.progress import Meter
from mirrorkit.sources import (
    Entry,
    Sitemap,
    newest_first,
    no_links,
    normalize_url,
    parse_feed,
    parse_listing,
    parse_sitemap,
    unpack,
)
from mirrorkit.store import Store, media_extension

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
_T = TypeVar("_T")

MAX_REDIRECTS = 5
RETRIES = 2
RETRY_BACKOFF = 0.2  # seconds before the first retry; doubles for the next
# (A server's Retry-After is honoured up to [fetch] max_retry_after.)
# Runs in a row an article is failed because one of its images failed for now; the run
# after saves it without that image.
MAX_IMAGE_FAILED_RUNS = 3
# A stored article whose entry carries no date is asked for again at most this often...
REVALIDATE_AFTER = timedelta(days=1)
# ...and at most this many such articles per source per run, so that the cost of a run
# does not grow with the size of a dateless sitemap.
MAX_REVALIDATIONS = 20
# Articles a run expects before extraction moves from a thread to a process pool.
POOL_AFTER = 50
MAX_ENTRIES = 50_000  # entries read from one feed or sitemap (the sitemap protocol's cap)
# Sitemaps read under one sitemap index source per run, and levels of nesting followed.
MAX_SITEMAPS = 50
MAX_SITEMAP_DEPTH = 2
# A child sitemap dated this much before the last complete pass is still read: the
# origin's clock and ours differ, and a sitemap can change while a run reads it.
_SITEMAP_SLACK = timedelta(hours=1)
# How far ahead of ours a source's or page's date may be (time zones, clocks): further
# ahead, it is ignored.
MAX_CLOCK_AHEAD = timedelta(days=1)
# Answers that say "not now": retried within the run, and only failed for now after that.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain", ""})
_CHUNK = 64 * 1024
_FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"
_HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
_LONG_AGO = datetime.min.replace(tzinfo=UTC)


# -- results ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceResult:
    """What one source gave: ``ok`` is False when the source itself could not be read."""

    source: str
    ok: bool
    error: str | None
    entries: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    failed_articles: int = 0
    # Entries not reached because the run's [fetch] run_budget ran out: the next run
    # takes them up.  Not a failure.
    deferred: int = 0


@dataclass(frozen=True)
class FetchReport:
    sources: tuple[SourceResult, ...]
    new: int
    changed: int

    @property
    def all_failed(self) -> bool:
        """Every source failed (and there was at least one)."""
        return bool(self.sources) and not any(s.ok for s in self.sources)

    @property
    def any_failed(self) -> bool:
        """A source or an article failed: the run was partial."""
        return any(not s.ok or s.failed_articles for s in self.sources)

    @property
    def deferred(self) -> int:
        """Entries left for the next run because the run budget ran out."""
        return sum(s.deferred for s in self.sources)


# -- HTTP ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Response:
    url: str  # final URL, after redirects
    status: int  # 200 or 304
    body: bytes
    content_type: str
    charset: str | None
    etag: str | None
    last_modified: str | None


# Priorities of requests waiting for a slot: lower first.  An image completes an article
# already under way; a page starts a new one.  So work started is finished first.
URGENT, NORMAL = 0, 1


class _OutOfTime(Exception):
    """The run budget ended while this page waited for its slot: it waits for next run."""


class _Slots:
    """A semaphore whose waiters are served by priority, then in order of arrival."""

    _order = itertools.count()

    def __init__(self, size: int):
        self._free = size
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []

    async def acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed the slot just as it was cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():  # a cancelled waiter's future is done: skipped
                future.set_result(None)
                return
        self._free += 1


class _Client:
    """GET with the address guard, manual redirects, retries and a size limit.

    The limits on requests in flight (``concurrency`` in all, ``per_host`` per host) are
    slots held here, not in aiohttp's connection pool (which is left unlimited): so the
    per-attempt ``timeout`` starts only once a request has its slot, and time spent
    queueing behind other requests to a slow host never makes one time out.  A retry waits
    (backoff or Retry-After) without holding a slot.  Requests marked ``URGENT`` (images
    of articles under way) get the next free slot before ``NORMAL`` ones.
    """

    def __init__(self, session: aiohttp.ClientSession, config: FetchConfig):
        self._session = session
        self._config = config
        self._all = _Slots(config.concurrency)
        self._hosts: dict[tuple[str, str, int | None], _Slots] = {}
        # The run budget's end (loop time): a page that gets its slot after it is left
        # for the next run (images of articles under way still come).
        self.deadline: float | None = None

    @asynccontextmanager
    async def _slot(self, url: str, priority: int) -> AsyncIterator[None]:
        parts = urlsplit(url)
        key = (parts.scheme, (parts.hostname or "").lower(), parts.port)
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Slots(self._config.per_host)
        # The host's slot first: a request queued for a busy host holds no global slot.
        await host.acquire(priority)
        if (priority == NORMAL and self.deadline is not None
                and asyncio.get_running_loop().time() >= self.deadline):
            host.release()
            raise _OutOfTime(url)
        try:
            await self._all.acquire(priority)
            try:
                yield
            finally:
                self._all.release()
        finally:
            host.release()

    async def get(self, url: str, *, limit: int, accept: str,
                  validators: tuple[str | None, str | None] = (None, None),
                  want_type: Callable[[str], bool] | None = None,
                  priority: int = NORMAL) -> _Response:
        headers = {"Accept": accept}
        etag, last_modified = validators
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            self._check_target(url, current)
            location, response = await self._retrying(current, headers, limit, want_type,
                                                      priority)
            if response is not None:
                return response
            current = urljoin(current, location)
        raise FetchError(f"more than {MAX_REDIRECTS} redirects", where=url)

    def _check_target(self, url: str, current: str) -> None:
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"redirected to a non-http(s) URL {current!r}", where=url)
        allow_private = self._config.allow_private_addresses
        kind = refused(parts.hostname, allow_private)
        if kind:
            raise blocked(url, parts.hostname, kind, resolved=False,
                           allow_private=allow_private)

    async def _retrying(self, url: str, headers: dict[str, str], limit: int,
                        want_type: Callable[[str], bool] | None, priority: int,
                        ) -> tuple[str, _Response | None]:
        """One hop: ``(location, None)`` for a redirect, else ``("", response)``."""
        config = self._config
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                async with (self._slot(url, priority), asyncio.timeout(config.timeout),
                            self._session.get(url, headers=headers,
                                              allow_redirects=False) as resp):
                    if resp.status not in _RETRY_STATUSES or last:
                        return await self._handle(url, resp, limit, want_type)
                    delay = _retry_delay(attempt, resp.headers, config.max_retry_after)
            except BlockedAddressError as e:
                raise BlockedAddressError(e.what, where=url, hint=e.hint) from e
            except aiohttp.ConnectionTimeoutError as e:
                raise _transient(FetchError(
                    f"no connection within {config.connect_timeout:g}s", where=url,
                    hint="raise [fetch] connect_timeout if the origin is slow")) from e
            except aiohttp.SocketTimeoutError as e:
                raise _transient(FetchError(
                    f"no data for {config.read_timeout:g}s", where=url,
                    hint="raise [fetch] read_timeout if the origin is slow")) from e
            except TimeoutError as e:
                raise _transient(FetchError(
                    f"timed out after {config.timeout:g}s", where=url,
                    hint="raise [fetch] timeout if the origin is slow")) from e
            except aiohttp.ClientError as e:
                if _dns_for_now(e):
                    raise _transient(_wrap(url, e)) from e
                if not _dropped(e):
                    raise _wrap(url, e) from e
                # The connection dropped or was reset: worth another try.
                if last:
                    raise _transient(_wrap(url, e)) from e
                delay = _retry_delay(attempt, None, config.max_retry_after)
            # Waiting holds no slot: only this request waits, the rest of the run goes on.
            log.debug("%s: retrying in %.1fs", url, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _handle(self, url: str, resp: aiohttp.ClientResponse, limit: int,
                      want_type: Callable[[str], bool] | None,
                      ) -> tuple[str, _Response | None]:
        if resp.status in _REDIRECT_STATUSES:
            location = resp.headers.get("Location")
            if not location:
                raise FetchError(f"HTTP {resp.status} redirect without a Location", where=url)
            return location, None
        if resp.status not in (200, 304):
            reason = f"HTTP {resp.status} {resp.reason or ''}".strip()
            error = FetchError(reason, where=url)
            raise _transient(error) if resp.status in _RETRY_STATUSES else error
        content_type = resp.content_type if "Content-Type" in resp.headers else ""
        body = b""
        if resp.status == 200:
            if want_type is not None and not want_type(content_type):
                raise FetchError(f"unexpected content type {content_type!r}", where=url)
            body = await _read_limited(url, resp, limit)
        return "", _Response(
            url=str(resp.url), status=resp.status, body=body, content_type=content_type,
            charset=resp.charset, etag=resp.headers.get("ETag"),
            last_modified=resp.headers.get("Last-Modified"),
        )


def _retry_delay(attempt: int, headers: Mapping[str, str] | None, cap: float) -> float:
    """Seconds before retry ``attempt + 1``: the backoff, or longer if the server asks
    (Retry-After, in seconds or as an HTTP date), but never more than ``cap``."""
    delay = RETRY_BACKOFF * (1 << attempt)
    asked = _retry_after(headers.get("Retry-After")) if headers is not None else None
    if asked is not None:
        delay = max(delay, asked)
    return min(delay, cap)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def _read_limited(url: str, resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` bytes.

    Counting decompressed bytes as they stream in also stops compression bombs.
    """
    too_big = FetchError(f"larger than the limit of {limit} bytes", where=url,
                         hint="raise [fetch] max_page_size / max_image_size if this is expected")
    if resp.content_length is not None and resp.content_length > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _dropped(e: aiohttp.ClientError) -> bool:
    """A connection that dropped or was reset (not one that was refused)."""
    if isinstance(e, aiohttp.ClientConnectorError):
        # Reset while connecting (or in the TLS handshake): someone is there.
        return isinstance(e.os_error, ConnectionResetError)
    return isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError
                      | aiohttp.ClientOSError)


def _dns_for_now(e: aiohttp.ClientError) -> bool:
    """A name lookup that failed only for now (EAI_AGAIN: the resolver did not answer).

    aiohttp >= 3.11 raises ClientConnectorDNSError, older versions ClientConnectorError;
    both carry the resolver's socket.gaierror.  A name that does not exist stays final.
    """
    if not isinstance(e, aiohttp.ClientConnectorError):
        return False
    cause = e.os_error
    return isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_AGAIN


def _transient(error: FetchError) -> FetchError:
    """Mark ``error`` as likely to go away by the next run (503, timeout, reset, DNS)."""
    error.retryable = True
    return error


def _wrap(url: str, e: aiohttp.ClientError) -> FetchError:
    if isinstance(e, aiohttp.ClientConnectorError):
        reason = e.os_error.strerror or str(e.os_error) or type(e.os_error).__name__
        return FetchError(f"cannot connect to {e.host}:{e.port}: {reason}", where=url,
                          hint="check the URL and that the origin is up")
    return FetchError(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, where=url)


def open_session(config: FetchConfig) -> aiohttp.ClientSession:
    """The run's session: timeouts, User-Agent and the address guard.

    The pool is unlimited: :class:`_Client` holds the ``concurrency`` and ``per_host``
    slots itself, so that no request ever waits inside aiohttp for a connection.  The
    attempt's ``timeout`` is :class:`_Client`'s too; aiohttp bounds connecting (name
    lookup included) and each read.
    """
    resolver = GuardedResolver(allow_private=config.allow_private_addresses)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, resolver=resolver)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, connect=config.connect_timeout,
                                      sock_connect=config.connect_timeout,
                                      sock_read=config.read_timeout),
        headers={"User-Agent": config.user_agent},
        # Proxies from the environment would resolve names where the guard cannot look.
        trust_env=False,
    )


# -- the run ------------------------------------------------------------------------------

class _Cpu:
    """Runs the CPU-bound steps (extraction, image re-encoding) beside the downloads.

    In a thread while the run is small; once a run expects ``POOL_AFTER`` articles, in a
    pool of one process per core, started then (from a forkserver that has imported the
    extractor once): threads share one core under the GIL, and extraction of a large
    batch costs more CPU than its downloads take time.

    Either way at most one step per core runs at a time: a small PNG can decode to
    hundreds of megabytes of pixels, and threads (which Pillow runs in parallel) would
    otherwise hold one such image each.
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._expected = 0
        self._running: asyncio.Semaphore | None = None

    def expect(self, articles: int) -> None:
        self._expected += articles
        cores = os.cpu_count() or 1
        if self._pool is None and self._expected >= POOL_AFTER and cores > 1:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["mirrorkit.extract", "mirrorkit.images"])
            self._pool = ProcessPoolExecutor(max_workers=cores, mp_context=context)

    async def __call__(self, func: Callable[..., _T], *args: Any) -> _T:
        if self._running is None:
            self._running = asyncio.Semaphore(os.cpu_count() or 1)
        async with self._running:
            if self._pool is None:
                return await asyncio.to_thread(func, *args)
            return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_Image = Media | images.Picture | MirrorkitError

# Why an entry's page is asked for: not stored, dated later than stored, or due a recheck.
_Why = Literal["new", "redated", "revalidate"]
_Job = tuple[Entry, _Why]


@dataclass
class _Tally:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    deferred: int = 0


@dataclass
class _Run:
    config: Config
    store: Store
    client: _Client
    progress: Progress
    # Counts articles done, for progress bars and lines.
    meter: Meter = field(default_factory=Meter)
    # loop.time() after which no new article is started (the run budget), or None.
    deadline: float | None = None
    # The write that failed for lack of space; once set, the run stops (see _disk_full).
    full: StoreError | None = None
    saved: int = 0
    tasks: list[asyncio.Task[SourceResult]] = field(default_factory=list)
    cpu: _Cpu = field(default_factory=lambda: _Cpu())
    # Images of the run by URL: being read, re-encoded but not stored, stored, or failed.
    _images: dict[str, asyncio.Future[_Image]] = field(default_factory=dict)
    # Sources run side by side and often name the same article (a news sitemap and the
    # section front): the entry URLs read whole in this run, and the articles (canonical
    # URLs) a page was made for, each set once that is done; and the articles new in this
    # run.  So each is requested, saved and counted once (see _other_entry).
    _reading: dict[str, asyncio.Event] = field(default_factory=dict)
    _made: dict[str, asyncio.Event] = field(default_factory=dict)
    _new: set[str] = field(default_factory=set)
    _saved: set[str] = field(default_factory=set)

    @property
    def workers(self) -> int:
        """Articles in progress at once per source: enough to keep every slot busy while
        others are being extracted, saved or wait to retry, few enough that work goes in
        order and a run stopped by its budget or a full disk stops soon."""
        return 4 * max(self.config.fetch.concurrency, self.config.fetch.per_host)

    def _out_of_time(self) -> bool:
        return self.deadline is not None and asyncio.get_running_loop().time() >= self.deadline

    def _stop_if_full(self, error: BaseException) -> bool:
        """If ``error`` is a write that failed for lack of space, stop the whole run.

        Every later write would fail the same way (and the build after it): so no more
        requests are made, and :func:`fetch_async` reports the one error.
        """
        if not _disk_full(error):
            return False
        if self.full is None:
            self.full = error if isinstance(error, StoreError) else StoreError(
                str(error), where=str(self.store.dir))
            for task in self.tasks:
                task.cancel()
            for image in self._images.values():
                image.cancel()
        return True

    async def source(self, source: SourceConfig) -> SourceResult:
        try:
            return await self._source(source)
        except MirrorkitError as e:
            if self._stop_if_full(e):
                raise asyncio.CancelledError from e
            error = str(e)
        except Exception as e:  # a bug on one source must not stop the rest
            if self._stop_if_full(e):
                raise asyncio.CancelledError from e
            log.debug("%s: unexpected error", source.url, exc_info=True)
            error = _unexpected(source.url, e)
        # Not a progress line: the caller reports the failed source once, from the report.
        return SourceResult(source=source.name, ok=False, error=error)

    async def _read(self, url: str, *, conditional: bool = True,
                    accept: str = _FEED_ACCEPT) -> _Response:
        """A source document (feed, sitemap, listing page); its failures fail the source."""
        try:
            return await self.client.get(
                url, limit=self.config.fetch.max_page_size, accept=accept,
                validators=self.store.validators(url) if conditional else (None, None),
            )
        except FetchError as e:
            if isinstance(e, SourceError | BlockedAddressError):
                raise
            raise SourceError(e.what, where=e.where, hint=e.hint) from e

    async def _source(self, source: SourceConfig) -> SourceResult:
        listing = source.type == "listing"
        response = await self._read(source.url, accept=_HTML_ACCEPT if listing else _FEED_ACCEPT)
        if response.status == 304:
            self.progress(f"{source.type} {source.url}: not modified")
            return SourceResult(source=source.name, ok=True, error=None)
        # Validators of the documents read besides the source's own (child sitemaps),
        # saved with it after a complete pass.
        read: list[_Response] = [response]
        failed_parts = 0
        if source.type == "sitemap":
            entries, failed_parts = await self._sitemap_entries(source, response, read)
        elif listing:
            entries = await self._listing_entries(source, response)
        else:
            entries = parse_feed(response.body, response.url, response.content_type)
        # A sitemap lists at most 50,000 URLs by protocol; a feed far fewer.
        entries = [_plausible_entry(e) for e in entries[:MAX_ENTRIES]]

        fetch_now, revalidate, unchanged = self._plan(source, entries)
        self.cpu.expect(len(fetch_now) + len(revalidate))
        # New and re-dated articles beyond the per-run cap wait for the next runs, newest
        # first: the source is read again (its validators are not saved) until all came.
        cap = self.config.fetch.max_articles_per_source
        capped = max(0, len(fetch_now) - cap)
        tally = _Tally(unchanged=unchanged, deferred=capped, failed=failed_parts)
        fetch_now = fetch_now[:cap]
        # One wave after the other: revalidating old pages must never delay the news.
        for wave in (fetch_now, revalidate):
            await self._work(source, wave, tally)
        if not tally.failed and not tally.deferred:
            # Saved last, and only after a complete pass: a run that died, ran out of
            # time or lost an article re-reads the source next time instead of trusting
            # a 304.
            for document in read:
                await asyncio.to_thread(self.store.set_validators, document.url,
                                        document.etag, document.last_modified)
        self.progress(f"{source.type} {source.url}: {tally.new} new, {tally.changed} changed"
                      + (f", {tally.failed} failed" if tally.failed else "")
                      + (f", {tally.deferred} left for the next run ("
                         + " and ".join(why for why, n in (
                             (f"max_articles_per_source = {cap}", capped),
                             ("run_budget used up", tally.deferred - capped)) if n)
                         + ")" if tally.deferred else ""))
        return SourceResult(source=source.name, ok=True, error=None, entries=len(entries),
                            new=tally.new, changed=tally.changed, unchanged=tally.unchanged,
                            failed_articles=tally.failed, deferred=tally.deferred)

    async def _sitemap_entries(self, source: SourceConfig, response: _Response,
                               read: list[_Response]) -> tuple[list[Entry], int]:
        """The pages of a sitemap, or of every sitemap under an index, and the sitemaps
        that could not be read.

        An index's children are read a level at a time, at most ``MAX_SITEMAPS`` in all
        and ``MAX_SITEMAP_DEPTH`` levels down.  A child whose ``lastmod`` is older than the
        last complete pass over the source (less an hour for clocks) is skipped without
        a request, and every child is asked for conditionally: so a run with nothing
        new reads the index alone.  Each read child is added to ``read``.
        """
        limit = self.config.fetch.max_page_size
        checked = self.store.checked_at(source.url)
        since = checked - _SITEMAP_SLACK if checked else None
        entries: list[Entry] = []
        seen = {response.url, source.url}
        level, failed = [response], 0
        for depth in range(MAX_SITEMAP_DEPTH + 1):
            children: list[str] = []
            for document in level:
                # Off the event loop: a large sitemap takes a second or more to read.
                sitemap = await asyncio.to_thread(_read_sitemap, document, limit)
                entries += sitemap.entries
                if len(entries) > MAX_ENTRIES:
                    # Memory stays bounded across 50 sitemaps of 50,000 URLs: the newest.
                    entries = newest_first(entries)[:MAX_ENTRIES]
                for child, lastmod in sitemap.children:
                    if child in seen or (since and lastmod and lastmod < since):
                        continue
                    seen.add(child)
                    children.append(child)
            if not children:
                break
            room = MAX_SITEMAPS - (len(read) - 1)
            if depth == MAX_SITEMAP_DEPTH or len(children) > room:
                self.progress(f"  {source.url}: sitemap index nests deeper than"
                              f" {MAX_SITEMAP_DEPTH} levels or names more than {MAX_SITEMAPS}"
                              " sitemaps; the rest are left out")
                children = [] if depth == MAX_SITEMAP_DEPTH else children[:room]
            level = []
            for child, got in zip(children, await asyncio.gather(
                    *(self._read(c) for c in children), return_exceptions=True), strict=True):
                if isinstance(got, MirrorkitError):
                    self.progress(f"  {got}")
                    failed += 1
                elif isinstance(got, BaseException):
                    raise got
                elif got.status != 304:
                    read.append(got)
                    level.append(got)
                else:
                    log.debug("%s: not modified", child)
        return newest_first(entries), failed

    async def _listing_entries(self, source: SourceConfig, response: _Response) -> list[Entry]:
        """The article links of a listing, following its next-page links.

        Paging stops after ``max_pages`` pages, or at a page with no link not already
        stored: what follows it is older, and was read before.
        """
        entries: list[Entry] = []
        page, pages, seen = response, 1, {response.url, source.url}
        while True:
            found, following = parse_listing(page.body, page.url, page.charset,
                                             source.links, source.next)
            if not found and pages == 1:
                raise no_links(page.url, source.links)
            entries += found
            fresh = any(self.store.article_times(e.url) is None for e in found)
            if not fresh or following is None or following in seen or pages >= source.max_pages:
                return entries
            seen.add(following)
            page = await self._read(following, conditional=False, accept=_HTML_ACCEPT)
            pages += 1

    async def _work(self, source: SourceConfig, jobs: list[_Job], tally: _Tally) -> None:
        """Do ``jobs`` in order with a few workers, never all at once.

        Started in order, they finish roughly in order: whatever a run does not reach
        (killed, or out of its run budget) is the oldest part of the backlog, and the
        next run takes it up right after anything newer.  Once the budget has run out,
        no job is started; the ones left are counted ``deferred``.
        """
        queue = deque(jobs)
        self.meter.add_total(len(jobs))

        async def worker() -> None:
            while queue and self.full is None:
                if self._out_of_time():
                    tally.deferred += len(queue)
                    self.meter.add_total(-len(queue))
                    queue.clear()
                    return
                entry, why = queue.popleft()
                outcome = await self._article(source, entry, why)
                setattr(tally, outcome, getattr(tally, outcome) + 1)
                self.meter.advance()

        await asyncio.gather(*(worker() for _ in range(min(self.workers, len(queue)))))

    def _plan(self, source: SourceConfig,
              entries: list[Entry]) -> tuple[list[_Job], list[_Job], int]:
        """Which entries to fetch now, which to revalidate after them, and how many to leave.

        See the module doc ("Articles") for the rules.
        """
        fetch_now: list[_Job] = []
        due: list[tuple[datetime, Entry]] = []
        left = 0
        checked_before = datetime.now(UTC) - REVALIDATE_AFTER
        for entry in entries:
            stored = self.store.article_times(entry.url)
            if stored is None:
                fetch_now.append((entry, "new"))
            elif entry.updated or entry.published:
                if _newer(entry, stored):
                    fetch_now.append((entry, "redated"))
                else:
                    left += 1
            else:
                checked = self.store.checked_at(entry.url) or _LONG_AGO
                if checked <= checked_before:
                    due.append((checked, entry))
                else:
                    left += 1
        due.sort(key=lambda d: d[0])
        if len(due) > MAX_REVALIDATIONS:
            log.debug("%s: %d dateless entries due for revalidation, %d this run",
                      source.url, len(due), MAX_REVALIDATIONS)
        revalidate: list[_Job] = [(e, "revalidate") for _, e in due[:MAX_REVALIDATIONS]]
        return fetch_now, revalidate, left + len(due) - len(revalidate)

    async def _article(self, source: SourceConfig, entry: Entry, why: _Why) -> str:
        """Fetch one article; returns the name of its tally: new, changed, unchanged, failed."""
        try:
            return await self._fetch_article(source, entry, why)
        except _OutOfTime:
            return "deferred"
        except MirrorkitError as e:
            if self._stop_if_full(e):
                return "failed"  # not reported here: fetch_async reports it once
            error = str(e)
        except Exception as e:  # nor a bug on one article the rest of its source
            if self._stop_if_full(e):
                return "failed"
            log.debug("%s: unexpected error", entry.url, exc_info=True)
            error = _unexpected(entry.url, e)
        self.progress(f"  {error}")
        return "failed"

    def _article_url(self, url: str, canonical: str) -> tuple[str, bool]:
        """The URL an article is stored under, and whether this page may write it.

        The page's canonical URL, so that one article reached by several URLs (sources,
        tracking tags) is stored once.  Only a canonical URL on the page's own host
        counts (a page cannot claim another site's article), and an article already
        stored under the entry's URL keeps it.

        A page never overwrites an article stored before under another URL: a new URL
        whose page names a stored article as canonical only becomes its alias, and an
        alias may update its article only while that article's own URL is not read as
        an entry (which then is what updates it).  So a page cannot take over another
        article by naming it as canonical, neither at once nor when re-dated later.
        """
        stored = self.store.stored_url(url)
        if stored is not None:
            return stored, stored == url or self.store.checked_at(stored) is None
        canonical = normalize_url(canonical) if canonical else url
        same_host = (urlsplit(canonical).hostname or "") == (urlsplit(url).hostname or "")
        if not same_host or canonical == url:
            return url, True
        claimed = self.store.stored_url(canonical)
        return (canonical, True) if claimed is None else (claimed, False)

    def _alias_only(self, entry: Entry, url: str, response: _Response) -> None:
        """Record ``entry`` as another name of the stored article ``url``, unchanged."""
        with self.store.transaction():
            self.store.add_alias(entry.url, url)
            self.store.set_validators(entry.url, response.etag, response.last_modified)
            self._succeeded(entry.url)

    async def _other_entry(self, claims: dict[str, asyncio.Event], url: str,
                           entry: Entry) -> bool:
        """Whether ``entry`` is done by another of this run that read or made ``url``.

        It waits for that one to finish.  If ``entry`` dates the article later than
        what was saved (a sitemap's ``lastmod`` beside an undated listing link), the
        article, just read, takes its dates without another request.
        """
        claim = claims.get(url)
        if claim is None:
            return False
        await claim.wait()
        return await asyncio.to_thread(self._dated_by, url, entry)

    def _dated_by(self, url: str, entry: Entry) -> bool:
        stored_url = self.store.stored_url(url)
        if stored_url is None or stored_url not in self._saved:
            return False  # failed, or not read in this run: read it for this entry
        # Only an entry naming the article by its own URL may change it (see _article_url).
        article = self.store.article(stored_url) if stored_url == entry.url else None
        if article is not None and _newer(entry, (article.published, article.updated)):
            published = entry.published or article.published
            self.store.save_article(replace(
                article, published=published,
                updated=_updated(published, entry.updated, article.updated)))
        return True

    async def _fetch_article(self, source: SourceConfig, entry: Entry, why: _Why) -> str:
        claims: list[asyncio.Event] = []
        try:
            return await self._fetch_claimed(source, entry, why, claims)
        finally:
            for claim in claims:
                claim.set()

    def _claim(self, claims: dict[str, asyncio.Event], url: str, why: _Why,
               mine: list[asyncio.Event]) -> None:
        # Only a whole read claims: a revalidation must never hold back a re-dated entry
        # of another source.
        if why != "revalidate" and url not in claims:
            claims[url] = asyncio.Event()
            mine.append(claims[url])

    async def _fetch_claimed(self, source: SourceConfig, entry: Entry, why: _Why,
                             mine: list[asyncio.Event]) -> str:
        url = entry.url
        if await self._other_entry(self._reading, url, entry):
            return "unchanged"
        self._claim(self._reading, url, why, mine)
        # Only a revalidation is conditional.  A re-dated entry is read whole: after a 304
        # the stored date would stay behind, and the entry would look re-dated every run.
        validators = self.store.validators(url) if why == "revalidate" else (None, None)
        response = await self.client.get(
            url, limit=self.config.fetch.max_page_size,
            accept=_HTML_ACCEPT, validators=validators, want_type=lambda t: t in _HTML_TYPES,
        )
        if response.status == 304:
            # Saved again to mark the URL checked: its next turn is REVALIDATE_AFTER away.
            self.store.set_validators(url, response.etag or validators[0],
                                      response.last_modified or validators[1])
            self._succeeded(url)
            return "unchanged"
        # Extraction is CPU work: it runs beside the downloads (see _Cpu).
        page = await self.cpu(extract.extract_page, response.body, response.url,
                              response.charset)
        if page is None:
            raise FetchError("no article text found in the page", where=url)
        # Store reads wait for the store's lock, which a commit elsewhere may hold while it
        # syncs to disk: never on the event loop.
        url, writable = await asyncio.to_thread(self._article_url, url, page.canonical)
        if not writable:
            log.info("%s: names %s as its canonical URL, stored before under that URL:"
                     " kept as another name of it, not saved over it", entry.url, url)
            await asyncio.to_thread(self._alias_only, entry, url, response)
            return "unchanged"
        if url in self._made and entry.url == url:
            # The article's own URL: what it says wins over a page that named it as
            # canonical in this run (see _article_url), once that one is done.
            await self._made[url].wait()
        elif url in self._made:
            # Another entry of this run led to the same article, not yet saved when this
            # one began: it is saved by the first; this URL is another name of it.
            if await self._other_entry(self._made, url, entry):
                await asyncio.to_thread(self._alias_only, entry, url, response)
                return "unchanged"
            url, writable = await asyncio.to_thread(self._article_url, entry.url,
                                                    page.canonical)
            if not writable:
                await asyncio.to_thread(self._alias_only, entry, url, response)
                return "unchanged"
        self._claim(self._made, url, why, mine)
        images, transient = await self._store_images(page.images, url)
        if transient:
            self._image_failed_for_now(entry.url, transient)
        saved = await asyncio.to_thread(self._save, source, entry, page, url, images, response)
        self._saved.add(url)
        if not saved or url in self._new:  # new in this run: counted once, as new
            return "unchanged"
        self.saved += 1
        if why == "new":
            self._new.add(url)
            return "new"
        return "changed"

    def _save(self, source: SourceConfig, entry: Entry, page: extract.PageContent, url: str,
              images: dict[str, Media], response: _Response) -> bool:
        """Make the article (under ``url``) and store it with its page's validators.

        One transaction: one sync to disk per article, not one per statement.
        """
        html = extract.localize_images(page.html, images)
        # Every text field passes xml_safe here, the one place an Article is made: a
        # control character stored from a feed or page would break every later build.
        safe, line = extract.xml_safe, extract.one_line
        published = entry.published or _plausible(page.published)
        article = Article(
            id=article_id(url), url=url, source=source.name,
            title=line(entry.title) or line(page.title) or url,
            authors=tuple(a for a in map(line, entry.authors or page.authors) if a),
            published=published,
            updated=_updated(published, entry.updated, _plausible(page.updated)),
            language=safe(page.language or entry.language or self.config.outlet.language),
            # The text of the body before its images were stored: the same words.
            text=safe(page.text), html=safe(html),
            media=tuple(dict.fromkeys(m.name for m in images.values())),
            summary=safe(entry.summary or page.description),
        )
        with self.store.transaction():
            saved = self.store.save_article(article, entry.url)
            self.store.set_validators(entry.url, response.etag, response.last_modified)
            self._succeeded(entry.url)
        return saved

    def _image_failed_for_now(self, url: str, transient: list[MirrorkitError]) -> None:
        """Fail the article at ``url`` for another run, or let it be saved without the images.

        Saved without an image, the article would not be read again unless it changed: the
        image would be gone for good.  So the article fails, and is tried again next run,
        for up to MAX_IMAGE_FAILED_RUNS runs in a row; then it is saved without them.
        """
        failed_runs = self.store.attempts(url)
        if failed_runs < MAX_IMAGE_FAILED_RUNS:
            self.store.record_attempt(url, str(transient[0]))
            raise _transient(FetchError(
                f"not saved, an image failed for now: {transient[0]}", where=url,
                hint=f"failed run {failed_runs + 1} of {MAX_IMAGE_FAILED_RUNS};"
                     " tried again next run"))
        for error in transient:
            log.warning("%s: saved without an image that failed for now %d runs in a row"
                        " and again in this one: %s", url, failed_runs, error)

    def _succeeded(self, url: str) -> None:
        """The article at ``url`` is stored and current: its failed runs are forgotten."""
        if self.store.attempts(url):
            self.store.clear_attempts(url)

    async def _store_images(self, sources: tuple[str, ...], url: str,
                        ) -> tuple[dict[str, Media], list[MirrorkitError]]:
        """The images of an article stored, by URL, and those that failed for now.

        Images past ``max_images_per_article`` are not downloaded; those past
        ``max_image_bytes_per_article`` (stored sizes, in page order) are left out.
        Either way their captions stay.
        """
        config = self.config.fetch
        urls = list(sources)
        if len(urls) > config.max_images_per_article:
            self.progress(f"  {url}: {len(urls) - config.max_images_per_article} of"
                          f" {len(urls)} images left out (max_images_per_article ="
                          f" {config.max_images_per_article})")
            urls = urls[:config.max_images_per_article]
        futures = [self._image(u) for u in urls]
        got = await asyncio.gather(*futures)
        kept: dict[str, Media] = {}
        total = 0
        # Stored only once within the cap: an image left out must not fill the disk.
        for image_url, item in zip(urls, got, strict=True):
            if isinstance(item, MirrorkitError):
                continue
            total += item.size if isinstance(item, Media) else len(item.data)
            if total > config.max_image_bytes_per_article:
                self.progress(f"  {url}: images from {image_url} on left out"
                              f" (max_image_bytes_per_article ="
                              f" {config.max_image_bytes_per_article})")
                break
            if isinstance(item, images.Picture):
                item = await self._put_picture(image_url, item)
            kept[image_url] = item
        for image_url, future in zip(urls, futures, strict=True):
            if (self._images.get(image_url) is future and image_url not in kept
                    and isinstance(future.result(), images.Picture)):
                # Not held for the rest of the run: an article needing it reads it again.
                del self._images[image_url]
        transient = [m for m in got if isinstance(m, MirrorkitError) and m.retryable]
        return kept, transient

    async def _put_picture(self, url: str, picture: images.Picture) -> Media:
        """Store ``picture`` (read from ``url``); articles sharing it find it stored."""
        media = await asyncio.to_thread(self.store.put_media, picture.data,
                                        picture.media_type)
        media = replace(media, width=picture.width, height=picture.height)
        done: asyncio.Future[_Image] = asyncio.get_running_loop().create_future()
        done.set_result(media)
        self._images[url] = done
        return media

    def _image(self, url: str) -> asyncio.Future[_Image]:
        # One download per URL: articles sharing an image wait for the same one.
        future = self._images.get(url)
        if future is None:
            future = self._images[url] = asyncio.create_task(self._download_image(url))
        return future

    async def _download_image(self, url: str) -> _Image:
        """The image re-encoded (not stored yet), or why it was left out (``retryable``
        if only for now)."""
        try:
            response = await self.client.get(
                url, limit=self.config.fetch.max_image_size,
                accept="image/avif, image/webp, image/png, image/jpeg, image/gif",
                want_type=lambda t: media_extension(t) is not None, priority=URGENT,
            )
            # The bytes decide, not the Content-Type: an SVG with a script served as
            # image/png must not be stored, nor served back, as an image.
            if extract.sniff_image_type(response.body) is None:
                raise FetchError("not a PNG, JPEG, GIF, WebP or AVIF image (served as"
                                 f" {response.content_type!r})", where=url)
            # Decoded and written again: proves it is an image, drops its metadata.
            return await self.cpu(images.reencode, response.body, url,
                                  self.config.fetch.image_max_width)
        except MirrorkitError as e:
            log.warning("image left out: %s", e)
            return e


def _read_sitemap(document: _Response, limit: int) -> Sitemap:
    return parse_sitemap(unpack(document.body, document.url, limit), document.url)


def _disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) is a write refused for lack of space:
    SQLite's SQLITE_FULL ("database or disk is full") or ENOSPC / EDQUOT from a file."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(error, sqlite3.Error) and (
                getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                or "database or disk is full" in str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def _unexpected(where: str, e: Exception) -> str:
    """One line for an error mirrorkit did not foresee; the traceback goes to the debug log."""
    what = f"unexpected {type(e).__name__}: {e}" if str(e) else f"unexpected {type(e).__name__}"
    return str(MirrorkitError(what, where=where, hint="run with -v for the traceback"))


def _plausible(when: datetime | None) -> datetime | None:
    """``when``, unless it is further ahead than clocks differ (then None).

    A date in the future would pin an article atop the pages and feeds and, stored,
    make every later (true) date look older: the article would never be updated again.
    """
    if when is not None and when > datetime.now(UTC) + MAX_CLOCK_AHEAD:
        return None
    return when


def _plausible_entry(entry: Entry) -> Entry:
    published, updated = _plausible(entry.published), _plausible(entry.updated)
    if (published, updated) == (entry.published, entry.updated):
        return entry
    log.debug("%s: a date in the future was ignored", entry.url)
    return replace(entry, published=published, updated=updated)


def _updated(published: datetime | None, *claims: datetime | None) -> datetime | None:
    """When the article last changed: the latest the source and the page say, but never
    before it was published -- a sitemap's ``lastmod`` may be only a month ("2026-11",
    the 1st), which says nothing about an article published later that month."""
    latest = max((d for d in claims if d is not None), default=None)
    if latest is None or (published is not None and latest < published):
        return None
    return latest


def _newer(entry: Entry, stored: tuple[datetime | None, datetime | None]) -> bool:
    """Whether the source dates the entry later than the stored article."""
    seen = entry.updated or entry.published
    known = stored[1] or stored[0]
    return seen is not None and (known is None or seen > known)


# -- entry points -------------------------------------------------------------------------

async def fetch_async(config: Config, store: Store, progress: Progress | None = None,
                      meter: Meter | None = None) -> FetchReport:
    """Fetch every source of ``config`` into ``store``; see the module doc for policies.

    Raises :class:`StoreError` if a write failed for lack of disk space: the run stops
    at once (what was saved before stays saved).
    """
    budget = config.fetch.run_budget
    async with open_session(config.fetch) as session:
        run = _Run(config, store, _Client(session, config.fetch), progress or _quiet,
                   meter or Meter())
        if budget is not None:
            run.deadline = asyncio.get_running_loop().time() + budget
            run.client.deadline = run.deadline
        run.tasks = [asyncio.create_task(run.source(s)) for s in config.sources]
        try:
            results = await asyncio.gather(*run.tasks, return_exceptions=True)
        finally:
            run.cpu.close()
    if run.full is not None:
        full = run.full
        raise StoreError(f"out of disk space, fetching stopped after {run.saved} new or"
                         f" changed articles were saved: {full.what}", where=full.where,
                         hint="free disk space, then run again") from full
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return _report(r for r in results if isinstance(r, SourceResult))


def fetch(config: Config, store: Store, *, progress: Progress | None = None,
          meter: Meter | None = None) -> FetchReport:
    """Synchronous :func:`fetch_async`, for the CLI and the pipeline."""
    return aio.run(fetch_async(config, store, progress, meter))


def _report(results: Iterable[SourceResult]) -> FetchReport:
    sources = tuple(results)
    return FetchReport(sources=sources, new=sum(s.new for s in sources),
                       changed=sum(s.changed for s in sources))


def _quiet(_line: str) -> None:
    pass



def probe_sources(config: Config) -> list[tuple[SourceConfig, int | MirrorkitError]]:
    """Whether each source answers, for ``mirrorkit doctor``: the entries it lists, or
    the error.  Each source is read once, with the guard and limits of a run; nothing is
    stored."""

    async def probe() -> list[tuple[SourceConfig, int | MirrorkitError]]:
        async with open_session(config.fetch) as session:
            client = _Client(session, config.fetch)

            async def one(source: SourceConfig) -> tuple[SourceConfig, int | MirrorkitError]:
                try:
                    limit = config.fetch.max_page_size
                    listing = source.type == "listing"
                    response = await client.get(
                        source.url, accept=_HTML_ACCEPT if listing else _FEED_ACCEPT,
                        limit=limit)
                    if source.type == "sitemap":
                        # Pages, or for a sitemap index the sitemaps it names.
                        sitemap = parse_sitemap(unpack(response.body, response.url, limit),
                                                response.url)
                        return source, len(sitemap.entries) + len(sitemap.children)
                    if listing:
                        found, _ = parse_listing(response.body, response.url, response.charset,
                                                 source.links, source.next)
                        if not found:
                            raise no_links(response.url, source.links)
                        return source, len(found)
                    return source, len(parse_feed(response.body, response.url,
                                                  response.content_type))
                except MirrorkitError as e:
                    return source, e

            return list(await asyncio.gather(*(one(s) for s in config.sources)))

    return aio.run(probe())
