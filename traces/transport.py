"""``TraceShipper``: a facade over the client outbox on the traces topic."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tally.ingest.outbox import DropMessages, Outbox, OutboxFacade
from tally.ingest.settings import ClientSettings
from tally.kafka.settings import TRACES_TOPIC
from tally.traces.codec import TraceCodec, TraceRecord
from tally.traces.model import Execution

TOPIC = TRACES_TOPIC
DROPS = DropMessages(full="trace buffer full (%d executions); dropped")


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


class TraceShipper(OutboxFacade[TraceRecord]):
    """Ships finished executions; ``ship`` appends to a bounded buffer and never blocks.

    Sending, retries, spooling, fork and exit handling, ``flush``, ``close`` and ``stats()``
    are the outbox's, with a ``TraceCodec``.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.outbox: Outbox[TraceRecord] = Outbox(settings, TraceCodec, DROPS)

    def ship(self, execution: Execution) -> bool:
        """Queue one execution; False if dropped (closed or buffer full; counted)."""
        try:
            return self.outbox.put(TraceRecord.of(execution))
        except Exception as exc:
            self.outbox.counters.add("internal_errors")
            if self.settings.strict:
                raise
            self.outbox.warn("tally track failed: %r", exc)
            return False

    def track(self, *args: object, **kwargs: object) -> bool:
        """Not for metrics: a trace shipper only ships executions (counted as invalid)."""
        self.outbox.counters.add("invalid")
        return False

    def track_flat(self, *args: object, **kwargs: object) -> bool:
        """Not for metrics (see ``track``)."""
        return self.track()
