"""The metrics topic's codec: records as ``BatchV1``/``BatchV2``, or as typed columns (v3, v4).

By default (``wire_version=2``) the version follows the records' types: a chunk holding any
``KindsRecord`` is written as version 2 (every event an ``EventV2``), any other chunk as version
1. With ``wire_version=4`` every chunk is written as narrow typed columns the aggregator folds
with array operations (``schemas/wire_columns.py``); ``wire_version=3`` writes the wider
version 3. Version 4 is smaller than version 2 and folds at 1.6x (mixed) and 4.8x (jobs) its
events per CPU-second in records of 2,000 events, but a column record costs the aggregator a
fixed ~0.4 ms, so in the loadtest's records of ~90-150 events it folds slower than version 2
(BENCHMARKS.md, "Session 5"): version 2 stays the default, version 4 pays for large records
(job traffic, busy producers). Aggregators read every version; one that predates version 4
dead-letters it (``unknown_version``), so upgrade the aggregators before choosing it.
Strings, keysets and shapes are interned per record (see ``schemas/wire.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from tally.ingest.kinds import Dist
from tally.ingest.records import KindsRecord, MetricRecord
from tally.schemas.wire import (
    BatchDecoder,
    BatchV1,
    BatchV2,
    BatchV3,
    DistV2,
    EventV1,
    EventV2,
    GaugeV2,
    WireError,
)
from tally.schemas.wire_columns import Event, dist_item, encode_columns, events_of

WIRE_VERSION = 2


class MetricCodec:
    """``RecordCodec`` of the metrics topic. Not thread-safe: one per sender thread."""

    def __init__(self, source: str, wire_version: int = WIRE_VERSION) -> None:
        self.source = source
        self.wire_version = wire_version
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = BatchDecoder()

    def encode(self, records: Sequence[MetricRecord]) -> bytes:
        """One record: ``BatchV2`` if any record is a ``KindsRecord``, else ``BatchV1``; at
        ``wire_version`` 3, ``BatchV3``; at 4, ``BatchV4`` (narrow columns)."""
        if self.wire_version >= 3:
            events = map(_columns_event, records)
            return encode_columns(self._encoder, self.source, events, self.wire_version >= 4)
        for record in records:
            if type(record) is KindsRecord:
                return self._encode_v2(records)
        keysets: dict[tuple[str, ...], int] = {}
        shapes: dict[tuple[str, ...], int] = {}
        events = [
            EventV1(
                r.at,
                keysets.setdefault(r.keys, len(keysets)),
                shapes.setdefault(r.paths, len(shapes)),
                r.values,
            )
            for r in records
        ]
        return self._batch(BatchV1, {}, keysets, shapes, events)

    def _encode_v2(self, records: Sequence[MetricRecord]) -> bytes:
        strings: dict[str, int] = {}  # distribution and gauge paths first, as they come
        keysets: dict[tuple[str, ...], int] = {}
        shapes: dict[tuple[str, ...], int] = {}
        events: list[EventV2] = []
        for r in records:
            if type(r) is KindsRecord:
                dist_items, gauge_items = r.kinds
                dists = [_dist(strings.setdefault(p, len(strings)), d) for p, d in dist_items]
                gauges = [
                    GaugeV2(strings.setdefault(p, len(strings)), value, at_ms)
                    for p, value, at_ms in gauge_items
                ]
            else:
                dists, gauges = [], []
            ks = keysets.setdefault(r.keys, len(keysets))
            sh = shapes.setdefault(r.paths, len(shapes))
            events.append(EventV2(r.at, ks, sh, r.values, dists, gauges))
        return self._batch(BatchV2, strings, keysets, shapes, events)

    def _batch(
        self,
        kind: type[BatchV1] | type[BatchV2],
        strings: dict[str, int],
        keysets: dict[tuple[str, ...], int],
        shapes: dict[tuple[str, ...], int],
        events: list[Any],
    ) -> bytes:
        """Intern the keys and paths after ``strings`` and encode the batch."""
        for table in (keysets, shapes):
            for names in table:
                for name in names:
                    strings.setdefault(name, len(strings))
        return self._encoder.encode(
            kind(
                source=self.source,
                strings=list(strings),
                keysets=[[strings[k] for k in keys] for keys in keysets],
                shapes=[[strings[p] for p in paths] for paths in shapes],
                events=events,
            )
        )

    def decode(self, payload: bytes) -> list[MetricRecord]:
        """The events of a record, routed by their last key (as ``track`` does by default)."""
        batch = self._decoder.decode(payload)
        if isinstance(batch, BatchV3):
            try:
                events: list[Any] = events_of(batch)
            except ValueError as exc:
                raise WireError("malformed_columns", str(exc)) from None
        else:
            events = batch.events
        if not events:
            raise WireError("empty", "no events")
        strings, keysets, shapes = batch.strings, batch.keysets, batch.shapes
        out: list[MetricRecord] = []
        for event in events:
            keys = tuple(strings[i] for i in keysets[event.keyset])
            paths = tuple(strings[i] for i in shapes[event.shape])
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
                kinds = (dists, gauges)
                out.append(KindsRecord(event.at, keys, paths, event.values, keys[-1], kinds))
            else:
                out.append(MetricRecord(event.at, keys, paths, event.values, keys[-1]))
        return out


def _columns_event(r: MetricRecord) -> Event:
    """A record as ``encode_columns`` takes it."""
    if type(r) is KindsRecord:
        dists, gauges = r.kinds
        return r.at, r.keys, r.paths, r.values, map(dist_item, dists), gauges
    return r.at, r.keys, r.paths, r.values, (), ()


def _dist(path: int, d: Dist) -> DistV2:
    """A distribution on the wire: its sketch's buckets in key order."""
    order = sorted(d.buckets)
    return DistV2(
        path, d.count, d.total, d.square, d.vmin, d.vmax, order, [d.buckets[k] for k in order]
    )
