"""Structured (JSON lines) logging for the aggregator."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import orjson

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class CoordinatorLoading(logging.Filter):
    """Demote aiokafka's GroupCoordinatorNotAvailable errors to INFO while they are brief.

    A fresh group (or one right after a broker restart) waits a moment for its coordinator to
    load; aiokafka logs that at ERROR. Only when it lasts longer than ``grace_s`` is it an error.
    An episode ends after ``quiet_s`` without such a record.
    """

    MARKERS = ("CoordinatorNotAvailable", "CoordinatorLoadInProgress")

    def __init__(
        self,
        grace_s: float = 10.0,
        quiet_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.grace_s = grace_s
        self.quiet_s = quiet_s
        self.clock = clock
        self._first: float | None = None
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka") or record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        if not any(marker in text for marker in self.MARKERS):
            return True
        now = self.clock()
        if self._first is None or now - self._last > self.quiet_s:
            self._first = now
        self._last = now
        if now - self._first <= self.grace_s:
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure(level: str = "INFO") -> None:
    """Send JSON logs to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CoordinatorLoading())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel("WARNING")
