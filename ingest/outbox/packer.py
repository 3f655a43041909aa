"""Packing: buffered records into encoded Kafka records under the byte cap."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic

from tally.ingest.outbox.ratelog import RateLimitedLog
from tally.ingest.outbox.record import R, RecordCodec
from tally.ingest.spool import SpooledRecord
from tally.ingest.stats import Counters

log = logging.getLogger("tally.ingest")

MIN_RECORD_BYTES = 1024


@dataclass(slots=True)
class PendingRecord:
    """An encoded record not yet acknowledged by the broker (``spooled``: its spool file)."""

    partition: int
    payload: bytes
    events: int
    born: int
    spooled: SpooledRecord | None = None
    tracked: int = -1  # tracked events it stands for (folded: may differ), -1: ``events``

    @property
    def counted(self) -> int:
        """The tracked events this record delivers (what the counters count)."""
        return self.events if self.tracked < 0 else self.tracked


# Client-side folding (``folding.RecordFolder.fold``): the records to encode and how many
# tracked events a chunk of them stands for.
Fold = Callable[[Sequence[R]], tuple[Sequence[R], Callable[[Sequence[R]], int]]]


@dataclass(eq=False)
class Packer(Generic[R]):
    """Encodes records with the codec into chunks of at most ``record_events`` and ``cap`` bytes.

    ``cap`` starts at ``record_bytes`` and is lowered when the broker refuses sizes.
    """

    codec: RecordCodec[R]
    record_events: int
    record_bytes: int
    counters: Counters
    drop_log: RateLimitedLog
    fold: Fold[R] | None = None
    cap: int = field(init=False)

    def __post_init__(self) -> None:
        self.cap = self.record_bytes

    def pack(
        self, partition: int, records: Sequence[R], born: int, fold: bool = True
    ) -> list[PendingRecord]:
        """Encode ``records`` into records of at most ``record_events`` events and the cap.

        With ``fold`` (and a folder configured), records are folded first (``folding.py``);
        records decoded back from a payload were folded when first packed. A chunk that
        encodes too large is split into proportionally smaller chunks; a single event is
        never split (``track`` refuses events that cannot fit ``record_bytes``).
        """
        weigh: Callable[[Sequence[R]], int] = len
        if fold and self.fold is not None and records:
            count = len(records)
            records, weigh = self.fold(records)
            self.counters.add("fold_events_in", count)
            self.counters.add("fold_records_out", len(records))
        step = self.record_events
        todo = [records[i : i + step] for i in range(0, len(records), step)][::-1]
        out = []
        while todo:
            chunk = todo.pop()
            try:
                payload = self.codec.encode(chunk)
            except Exception as exc:  # never lose the chunk: find the events at fault
                out.extend(self._isolate(partition, chunk, born, todo, exc, weigh))
                continue
            if len(payload) <= self.cap or len(chunk) == 1:
                out.append(PendingRecord(partition, payload, len(chunk), born, None, weigh(chunk)))
                continue
            parts = min(len(chunk), max(2, -(-len(payload) * 5 // (self.cap * 4))))
            size = -(-len(chunk) // parts)
            todo.extend(chunk[i : i + size] for i in reversed(range(0, len(chunk), size)))
        return out

    def lower_cap(self, cap: int, why: str) -> None:
        """Lower the cap (never under ``MIN_RECORD_BYTES``), and say so."""
        new_cap = max(MIN_RECORD_BYTES, min(self.cap, cap))
        if new_cap < self.cap:
            log.warning(
                "tally: the broker refused records as too large (%s); records are now capped at "
                "%d bytes. Set record_bytes below the topic's max.message.bytes.",
                why,
                new_cap,
            )
            self.cap = new_cap

    def unencodable(self, error: Exception) -> None:
        """One event the sender cannot encode or route: dropped alone, counted, logged."""
        self.counters.add("dropped_unencodable")
        self.drop_log(
            logging.ERROR,
            "tally: an event could not be encoded (%r); it was dropped, the rest of its "
            "record is sent (see TrackerStats.dropped_unencodable)",
            error,
        )

    def _isolate(
        self,
        partition: int,
        chunk: Sequence[R],
        born: int,
        todo: list[Sequence[R]],
        error: Exception,
        weigh: Callable[[Sequence[R]], int] = len,
    ) -> list[PendingRecord]:
        """``chunk`` failed to encode: drop (and count) only the events that fail alone.

        The others go back to ``todo`` to be packed again; if every event encodes alone,
        each becomes its own record. Returns the records made here.
        """
        good: list[R] = []
        alone: list[PendingRecord] = []
        for record in chunk:
            try:
                payload = self.codec.encode([record])
            except Exception as exc:
                self.unencodable(exc)
                continue
            good.append(record)
            alone.append(PendingRecord(partition, payload, 1, born, None, weigh([record])))
        if len(good) == len(chunk):  # only the whole chunk fails: one record per event
            log.error("tally: a record failed to encode (%r); sent event by event", error)
            return alone
        if good:
            todo.append(good)
        return []
