"""A small static HTTP server for previewing a bundle or mirror directory on loopback.

It serves files exactly as an object store would, plus ``/`` → ``/index.html`` for
convenience; it never lists directories and never serves outside its root.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from mirrorkit.bundle import SiteSource
from mirrorkit.errors import UsageError
from mirrorkit.manifest import check_path, media_type

log = logging.getLogger("mirrorkit")


def make_app(root: Path) -> web.Application:
    root = root.resolve()

    async def handle(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"] or "index.html"
        try:
            path = root / rel
            if path.is_dir():
                path = path / "index.html"
            # Resolved last, index.html included: a link anywhere on the way that leads
            # out of the root is not served.
            path = path.resolve()
            found = path.is_relative_to(root) and path.is_file()
        except (ValueError, OSError):  # a NUL byte, a name too long, a loop of links
            found = False
        if not found:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": media_type(rel)})

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)
    return app


def make_source_app(source: SiteSource) -> web.Application:
    """Serve a built version straight from the store, as its mirror will."""

    async def handle(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        rel = rel + "index.html" if not rel or rel.endswith("/") else rel
        try:
            data = source.lookup(check_path(rel))
        except ValueError as e:
            raise web.HTTPNotFound() from e
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, headers={"Content-Type": media_type(rel)})

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)
    return app


async def serve_many(sites: Sequence[tuple[Path | SiteSource, int]],
                     host: str = "127.0.0.1") -> None:
    runners = []
    try:
        for root, port in sites:
            app = make_app(root) if isinstance(root, Path) else make_source_app(root)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as e:
                await runner.cleanup()
                raise UsageError(f"cannot serve on {host}:{port}: {e.strerror}",
                                 hint="give another port with --port N") from e
            runners.append(runner)
            log.info("serving %s at http://%s:%d/",
                     root if isinstance(root, Path) else root.label, host, port)
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def serve_forever(sites: Sequence[tuple[Path | SiteSource, int]],
                  host: str = "127.0.0.1") -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_many(sites, host))
