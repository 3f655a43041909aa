"""A log that says the same kind of thing at most once per interval."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("tally.ingest")


class RateLimitedLog:
    """Logs a message unless one was logged through this instance in the last ``interval`` s."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last = 0.0

    def __call__(self, level: int, message: str, *args: object) -> None:
        """Log ``message % args`` at ``level`` if the interval has passed."""
        now = time.monotonic()
        if now - self._last > self.interval:
            self._last = now
            log.log(level, message, *args)
