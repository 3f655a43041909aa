"""How the sender turns buffered events into Kafka records and back (one codec per topic).

The sender is the same for every topic: it groups buffered items by partition, packs them
into capped records, spools, retries and splits. What a record holds is the codec's business.
A buffered item is an event tuple followed by its routing key (``(*event, route)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tally.ingest.kinds import Dist
from tally.schemas.wire import BatchDecoder, BatchEncoder, EventV2, WireError


class RecordCodec(Protocol):
    """Encodes events into one record payload and decodes them back."""

    def encode(self, events: Sequence[tuple]) -> bytes:
        """One record holding ``events`` (at least one)."""
        ...

    def decode(self, payload: bytes) -> list[tuple]:
        """The events of a record; raises ``WireError`` when it is not one."""
        ...

    def route(self, event: tuple) -> str:
        """The routing key of a decoded event (for records spooled before routing)."""
        ...


class MetricCodec:
    """The metrics topic's records: events are ``(at, keys, paths, values[, kinds])``."""

    def __init__(self, source: str) -> None:
        self._encoder = BatchEncoder(source)
        self._decoder = BatchDecoder()

    def encode(self, events: Sequence[tuple]) -> bytes:
        """A ``BatchV1`` record."""
        return self._encoder.encode(events)

    def decode(self, payload: bytes) -> list[tuple]:
        """``(at, keys, paths, values)`` per event."""
        batch = self._decoder.decode(payload)
        if not batch.events:
            raise WireError("empty", "no events")
        strings, keysets, shapes = batch.strings, batch.keysets, batch.shapes
        out: list[tuple] = []
        for event in batch.events:
            decoded: tuple = (
                event.at,
                tuple(strings[i] for i in keysets[event.keyset]),
                tuple(strings[i] for i in shapes[event.shape]),
                event.values,
            )
            if isinstance(event, EventV2) and (event.dists or event.gauges):
                # distributions and gauges travel on: a re-encoded record keeps them
                dists = [
                    (
                        strings[d.path],
                        Dist(
                            d.count, d.sum, d.square, d.min, d.max,
                            dict(zip(d.keys, d.counts, strict=True)),
                        ),
                    )
                    for d in event.dists
                ]  # fmt: skip
                gauges = [(strings[g.path], g.value, g.at_ms) for g in event.gauges]
                decoded = (*decoded, (dists, gauges))
            out.append(decoded)
        return out

    def route(self, event: tuple) -> str:
        """The last key, as ``Tracker.track`` routes by default."""
        return event[1][-1]
