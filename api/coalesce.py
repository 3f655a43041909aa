"""Identical requests in flight at the same time share one ClickHouse query (single-flight).

Dashboards ask the same panel for many viewers at once; each waiter gets the result of the
query already running for the same handler, parameters and second, so nothing is served that
is older than the request. Nothing is cached after the query ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class Coalescer:
    """Share in-flight calls by key; one per app (no global state)."""

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}
        self.shared = 0

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """The result of ``call()``, or of the identical call already in flight."""
        key = (key, int(time.time()))  # relative ranges ("24h") resolve per second
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(call())
            self._inflight[key] = future
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        else:
            self.shared += 1
        # shield: a client that disconnects does not cancel the query others wait for
        return await asyncio.shield(future)

    async def once(self, read: Callable[..., Awaitable[T]], *args: Hashable) -> T:
        """``read(*args)``, shared with the identical call in flight (by its name and args)."""
        return await self.run((read.__name__, *args), lambda: read(*args))
