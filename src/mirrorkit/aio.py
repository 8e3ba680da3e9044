"""Running mirrorkit's async work from sync code, even inside a running event loop.

The CLI has no loop, so ``asyncio.run`` is enough there; a caller that already runs one
(a notebook, a browser driver, an async application) gets the work on a worker thread
with a loop of its own instead of a "cannot be called from a running event loop" error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
