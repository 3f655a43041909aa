"""The one stop path's backoff: retries wait on the stop event and end after its grace."""

from __future__ import annotations

import asyncio
import contextlib
import time


class Stopping(Exception):
    """A stop was requested and its grace period is over: give up retrying (ranges replay)."""


class StopGate:
    """Backs off between retries; once a stop is requested, for at most ``grace_s`` in all."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.stop = asyncio.Event()
        self._deadline: float | None = None

    async def pause(self, seconds: float) -> None:
        """Back off ``seconds`` before a retry; raise ``Stopping`` once a stop's grace is over.

        Retries run under the partitions' lock, so without this a SIGTERM during an outage
        would never be served. What was not committed is replayed by the next owner.
        """
        if not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), seconds)
            return
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.grace_s
        if now >= self._deadline:
            raise Stopping()
        await asyncio.sleep(min(seconds, self._deadline - now))
