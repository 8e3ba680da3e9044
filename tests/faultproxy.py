"""A fault-injecting reverse proxy for S3 (DESIGN.md, "Test rig").

It sits between mirrorkit's boto3 client and ``moto_server`` and forwards every request
unchanged — method, path, query, headers (the Host header as the client sent it) and
body — so boto3's SigV4 signature goes through as signed (moto's server does not check
signatures unless told to).  Responses come back unchanged too.

Faults are rules, switchable while requests flow (:meth:`FaultProxy.set_rules`).  The
first rule that matches a request and fires decides what happens to it:

``slowdown``  503 with S3's ``SlowDown`` error document (nothing reaches moto)
``error``     500 with S3's ``InternalError`` document (nothing reaches moto)
``reset``     the connection is reset before anything is forwarded
``lost``      the request is forwarded and done by moto; then the connection is reset
              instead of answering (the client cannot tell whether it happened)
``stall``     wait ``seconds``, then forward (a client with a shorter read timeout has
              given up by then, and its request still lands: a late write); with
              ``forward=False`` reset the connection instead (the request never lands)
``latency``   wait ``seconds``, then forward

A rule matches by method and path regexes (``re.search`` over the path and query) and
fires on its ``nth`` matches (1-based), or with a ``probability``.  Probabilities are
decided per request *occurrence*, not by a shared random stream: the k-th time a given
method and path is seen, the decision is a hash of (seed, rule, method, path, k), so the
same run makes the same decisions whatever order the client's threads send in.
``streak`` caps how often in a row the same request is faulted (a store that fails one
request five times running is down, not flaky; being down is tested elsewhere).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from aiohttp import web

Kind = Literal["slowdown", "error", "reset", "lost", "stall", "latency"]
KINDS: tuple[Kind, ...] = ("slowdown", "error", "reset", "lost", "stall", "latency")

# Hop-by-hop headers (RFC 9110 7.6.1) and what aiohttp recomputes itself.
_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                  "te", "trailer", "transfer-encoding", "upgrade", "content-length"})

_ERROR_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
              "<Message>{message}</Message><RequestId>faultproxy</RequestId></Error>")


@dataclass
class Rule:
    """One fault: ``kind`` on requests matching ``method`` and ``path`` (regexes)."""

    kind: Kind
    path: str = ""
    method: str = ""
    probability: float | None = None
    nth: Iterable[int] | int | None = None   # fire on these matches (1-based)
    seconds: float = 0.0                     # for stall and latency
    forward: bool = True                     # for stall: forward afterwards, or reset
    streak: int | None = None                # at most this many faults in a row per request
    times: int | None = None                 # at most this many faults in all
    # Set while a stalled request of this rule waits: tests act during the stall.
    stalled: threading.Event = field(default_factory=threading.Event)
    matched: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if isinstance(self.nth, int):
            self.nth = (self.nth,)
        self.nth = frozenset(self.nth) if self.nth is not None else None
        if self.probability is None and self.nth is None:
            self.probability = 1.0
        self._path = re.compile(self.path)
        self._method = re.compile(self.method)

    def matches(self, method: str, path: str) -> bool:
        return bool(self._method.search(method) and self._path.search(path))


@dataclass(frozen=True)
class Seen:
    """One request as the proxy saw it, and the fault it got (None: forwarded as is)."""

    method: str
    path: str
    fault: Kind | None
    status: int | None  # moto's answer, if it was asked and answered


class FaultProxy:
    """The proxy, served from a thread with its own event loop; see the module doc."""

    def __init__(self, upstream: str, *, seed: int = 0, host: str = "127.0.0.1"):
        self.upstream = upstream.rstrip("/")
        self.seed = seed
        self._host = host
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._occurrences: Counter[tuple[str, str]] = Counter()
        self._streaks: Counter[tuple[int, str, str]] = Counter()
        self._seen: list[Seen] = []
        self._inflight = 0
        self._idle = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0

    # -- control, from any thread

    @property
    def endpoint(self) -> str:
        return f"http://{self._host}:{self.port}"

    def set_rules(self, rules: Sequence[Rule]) -> None:
        with self._lock:
            self._rules = list(rules)

    def clear(self) -> None:
        self.set_rules(())

    @contextmanager
    def faults(self, *rules: Rule) -> Iterator[list[Rule]]:
        self.set_rules(rules)
        try:
            yield list(rules)
        finally:
            self.clear()

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def faulted(self, kind: Kind | None = None) -> list[Seen]:
        return [s for s in self.seen if s.fault is not None and kind in (None, s.fault)]

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no request is being handled (a stalled one included)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    # -- lifecycle

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("fault proxy did not start")
        if self._error is not None:
            raise RuntimeError("fault proxy did not start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported by start()
            self._error = e
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=120),
            connector=aiohttp.TCPConnector(limit=64))
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await self._session.close()

    # -- the proxy

    def _decide(self, method: str, path: str) -> Rule | None:
        with self._lock:
            self._inflight += 1
            self._occurrences[method, path] += 1
            k = self._occurrences[method, path]
            for index, rule in enumerate(self._rules):
                if not rule.matches(method, path):
                    continue
                rule.matched += 1
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                streak_key = (index, method, path)
                if rule.streak is not None and self._streaks[streak_key] >= rule.streak:
                    self._streaks[streak_key] = 0
                    continue
                if rule.nth is not None:
                    assert isinstance(rule.nth, frozenset)
                    fire = rule.matched in rule.nth
                else:
                    assert rule.probability is not None
                    fire = _uniform(self.seed, index, method, path, k) < rule.probability
                if not fire:
                    self._streaks[streak_key] = 0
                    continue
                self._streaks[streak_key] += 1
                rule.fired += 1
                return rule
            return None

    def _done(self, seen: Seen) -> None:
        with self._idle:
            self._seen.append(seen)
            self._inflight -= 1
            self._idle.notify_all()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path_qs
        rule = self._decide(method, path)
        fault = rule.kind if rule is not None else None
        status: int | None = None
        try:
            body = await request.read()
            if rule is not None and rule.kind in ("slowdown", "error"):
                slow = rule.kind == "slowdown"
                text = _ERROR_XML.format(
                    code="SlowDown" if slow else "InternalError",
                    message="Please reduce your request rate." if slow
                    else "We encountered an internal error. Please try again.")
                return web.Response(status=503 if slow else 500, text=text,
                                    content_type="application/xml")
            if rule is not None and rule.kind == "reset":
                _reset(request)
                return web.Response()  # never written: the connection is gone
            if rule is not None and rule.kind in ("stall", "latency"):
                if rule.kind == "stall":
                    rule.stalled.set()
                try:
                    await asyncio.sleep(rule.seconds)
                finally:
                    rule.stalled.clear()
                if not rule.forward:
                    _reset(request)
                    return web.Response()
            status, headers, payload = await self._forward(request, method, body)
            if rule is not None and rule.kind == "lost":
                _reset(request)
                return web.Response()
            if method == "HEAD":
                # No body, but the object's Content-Length, as moto gave it.
                head = web.StreamResponse(status=status, headers=headers)
                await head.prepare(request)
                await head.write_eof()
                return head
            return web.Response(status=status, headers=headers, body=payload)
        finally:
            self._done(Seen(method, path, fault, status))

    async def _forward(self, request: web.Request, method: str, body: bytes,
                       ) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            method, self.upstream + request.raw_path, headers=headers,
            data=body if body or method in ("PUT", "POST") else None,
            allow_redirects=False,
            skip_auto_headers=("Content-Type", "User-Agent", "Accept", "Accept-Encoding"),
        ) as response:
            payload = await response.read()
            out = {k: v for k, v in response.headers.items()
                   if k.lower() not in _HOP or (method == "HEAD" and k.lower() == "content-length")}
            return response.status, out, payload


def _uniform(seed: int, index: int, method: str, path: str, k: int) -> float:
    digest = hashlib.sha256(f"{seed}\0{index}\0{method}\0{path}\0{k}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _reset(request: web.Request) -> None:
    """Reset the client's connection (RST, not a clean close)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
