"""What every client facade over an outbox offers: flush, close, stats, a context manager."""

from __future__ import annotations

from typing import Generic, Self

from tally.ingest.outbox.outbox import Outbox
from tally.ingest.outbox.record import R
from tally.ingest.stats import TrackerStats


class OutboxFacade(Generic[R]):
    """Delegates delivery to ``self.outbox``; subclasses add what they put into it."""

    outbox: Outbox[R]

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until everything tracked so far is acknowledged (or spooled); True if done."""
        return self.outbox.flush(timeout)

    async def aflush(self, timeout: float = 30.0) -> bool:
        """``flush`` for async callers: awaits without blocking the event loop."""
        return await self.outbox.aflush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the sender thread; unsent records are spooled or counted. Idempotent."""
        return self.outbox.close(timeout)

    def stats(self) -> TrackerStats:
        """A snapshot of the counters, plus the current buffer and pending sizes."""
        return self.outbox.stats()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
