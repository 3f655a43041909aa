"""``TraceShipper``: the thin client's machinery (buffer, sender, spool) on the traces topic."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tally.ingest.codec import RecordCodec
from tally.ingest.settings import ClientSettings
from tally.ingest.tracker import Tracker
from tally.traces.codec import TraceCodec
from tally.traces.model import Execution

TOPIC = "tally.traces"


def trace_spool_dir(spool_dir: Path) -> Path:
    """The traces' spool: a sibling of the metrics' (``<spool>-traces``), never inside it.

    Inside, the metrics spool would adopt trace records of dead processes as its own orphans.
    """
    return spool_dir.with_name(f"{spool_dir.name}-traces")


def trace_settings(settings: ClientSettings, topic: str = TOPIC) -> ClientSettings:
    """The metrics client's settings turned to the traces topic (own spool dir and source)."""
    return dataclasses.replace(
        settings,
        topic=topic,
        spool_dir=None if settings.spool_dir is None else trace_spool_dir(settings.spool_dir),
        source=f"{settings.source}/traces",
        buffer_events=min(settings.buffer_events, 20_000),
    )


class TraceShipper(Tracker):
    """Ships finished executions; ``ship`` appends to a bounded buffer and never blocks.

    Sending, retries, spooling, fork and exit handling and ``stats()`` are the ``Tracker``'s
    (a buffered item is ``(execution, route)``).
    """

    def ship(self, execution: Execution) -> bool:
        """Queue one execution; False if dropped (closed or buffer full; counted)."""
        try:
            if self._closed:
                self._counters.add("dropped_closed")
                return False
            if len(self._buffer) >= self._capacity:
                self._counters.add("dropped_overflow")
                self._warn("trace buffer full (%d executions); dropped", self._capacity)
                return False
            self._buffer.append((execution, execution.id))
            if self._sender is None:
                self._start_sender()
            return True
        except Exception as exc:
            return self._rejected(exc)

    def track(self, *args: object, **kwargs: object) -> bool:
        """Not for metrics: a trace shipper only ships executions (counted as invalid)."""
        self._counters.add("invalid")
        return False

    def track_flat(self, *args: object, **kwargs: object) -> bool:
        """Not for metrics (see ``track``)."""
        return self.track()

    def _codec(self) -> RecordCodec | None:
        return TraceCodec(self._source)
