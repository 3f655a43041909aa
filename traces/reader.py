"""``TraceReader``: the trace queries on one sync ClickHouse client, awaited off the loop."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import anyio

from tally.read.connection import connect_sync
from tally.read.settings import ReadSettings
from tally.read.timerange import resolve
from tally.traces.ddl import TraceSchema


def time_range(since: str, until: str | None) -> tuple[datetime, datetime]:
    """``since``/``until`` as the read API takes them (ISO, unix seconds, ``24h`` ago, now)."""
    start, end = resolve(since, until)
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


class TraceReader:
    """Lazily connected; safe to share between requests (one client, serialized calls)."""

    def __init__(self, settings: ReadSettings) -> None:
        self.settings = settings
        self.schema = TraceSchema(database=settings.database)
        self._client: Any = None
        self._lock = threading.Lock()

    def call(self, query: Any, *args: Any) -> Any:
        """``query(client, schema, *args)`` on this thread (connects on first use)."""
        with self._lock:
            if self._client is None:
                self._client = connect_sync(self.settings)
            return query(self._client, self.schema, *args)

    async def run(self, query: Any, *args: Any) -> Any:
        """``query(client, schema, *args)`` in a worker thread."""
        return await anyio.to_thread.run_sync(self.call, query, *args)

    def close(self) -> None:
        """Close the client."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
