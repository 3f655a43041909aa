"""What waits: the buffer drained into encoded records per partition, pending or spooled.

Pending records are bounded by ``pending_bytes`` (counting those in flight); past that bound
they go to the spool (when configured), and past the spool's bound they are dropped and
counted. Pending and spooled records leave oldest first (``born``), so delivery follows
arrival.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Generic

from tally.ingest.outbox.packer import Packer, PendingRecord
from tally.ingest.outbox.ratelog import RateLimitedLog
from tally.ingest.outbox.record import R
from tally.ingest.outbox.replay import UNROUTED, spooled_heads
from tally.ingest.settings import ClientSettings
from tally.ingest.spool import Spool
from tally.ingest.stats import Counters
from tally.kafka.routing import Router

BATCH_RECORDS = 256  # records handed to the producer per round
SPOOL_PEEK = 64


@dataclass(eq=False)
class Accumulator(Generic[R]):
    """Drains ``buffer`` (shared with the facade, append-only there) into pending records."""

    settings: ClientSettings
    buffer: deque[R]
    counters: Counters
    packer: Packer[R]
    spool: Spool | None
    drop_log: RateLimitedLog
    router: Router | None = field(init=False, default=None)  # set once partitions are known
    pending: deque[PendingRecord] = field(init=False, default_factory=deque)
    pending_bytes: int = field(init=False, default=0)
    in_flight_bytes: int = field(init=False, default=0)
    _last_born: int = field(init=False, default=0)

    def born(self) -> int:
        """A strictly increasing time stamp (ns) ordering records by when they were made."""
        self._last_born = max(time.time_ns(), self._last_born + 1)
        return self._last_born

    def drain(self) -> bool:
        """Move everything buffered now into encoded pending records, grouped by partition.

        Runs even while the broker is down, so memory stays bounded by ``pending_bytes``.
        True if records were added.
        """
        count = len(self.buffer)
        router = self.router
        if router is None:
            # Never reached the broker yet: keep memory bounded by spooling unrouted records.
            if self.spool is not None and count >= self.settings.buffer_events // 2:
                self.spool_unrouted()
            return False
        if not count:
            return False
        by_partition: dict[int, list[R]] = defaultdict(list)
        popleft, partition_of = self.buffer.popleft, router.partition
        for _ in range(count):
            record = popleft()
            try:
                partition = partition_of(record.route)
            except Exception as exc:  # a routing key that cannot be hashed: this event only
                self.packer.unencodable(exc)
                continue
            by_partition[partition].append(record)
        self.counters.add("drained", count)
        born = self.born()
        for partition, records in by_partition.items():
            for pending in self.packer.pack(partition, records, born):
                self.add(pending)
        return True

    def add(self, record: PendingRecord) -> None:
        """Keep ``record`` pending, or spool (or drop) it past ``pending_bytes``."""
        held = self.pending_bytes + self.in_flight_bytes
        if held + len(record.payload) > self.settings.pending_bytes:
            self.spool_or_drop(record)
            return
        self.pending.append(record)
        self.pending_bytes += len(record.payload)

    def spool_or_drop(self, record: PendingRecord) -> None:
        """Write ``record`` to the spool; count its events as dropped when that fails."""
        if record.spooled is not None:
            return  # still in the spool, where it came from
        if self.spool is not None and self.spool.put(record.partition, record.payload, record.born):
            self.counters.add("spooled_records")
            return
        reason = "dropped_spool_full" if self.spool is not None else "dropped_overflow"
        self.counters.add(reason, record.counted)
        self.drop_log(
            logging.ERROR, "tally: %s: events dropped (see TrackerStats.%s)", reason, reason
        )

    def spool_unrouted(self) -> None:
        """Events buffered without partition metadata (the broker was never reached)."""
        records = [self.buffer.popleft() for _ in range(len(self.buffer))]
        self.counters.add("drained", len(records))
        for record in self.packer.pack(UNROUTED, records, self.born()):
            self.spool_or_drop(record)

    def next_batch(self) -> list[PendingRecord]:
        """Up to ``BATCH_RECORDS`` records, merging pending and spooled ones by age."""
        spooled = self._spooled_heads()
        budget = max(self.settings.record_bytes, 8 * 1024 * 1024)
        batch: list[PendingRecord] = []
        taken, index = 0, 0
        while len(batch) < BATCH_RECORDS and taken < budget:
            from_spool = index < len(spooled)
            if from_spool and self.pending and self.pending[0].born < spooled[index].born:
                from_spool = False
            if from_spool:
                record = spooled[index]
                index += 1
            elif self.pending and (index < len(spooled) or len(spooled) < SPOOL_PEEK):
                record = self.pending.popleft()
                self.pending_bytes -= len(record.payload)
                self.in_flight_bytes += len(record.payload)
            else:
                break  # more spooled records may be older than the next pending one
            batch.append(record)
            taken += len(record.payload)
        return batch

    def _spooled_heads(self) -> list[PendingRecord]:
        if self.spool is None:
            return []
        assert self.router is not None
        return spooled_heads(self.spool, self.packer, self.router, self.counters, SPOOL_PEEK)

    def give_back(self, records: list[PendingRecord]) -> None:
        """Unsent records go back to the front of pending (spooled ones stay in the spool)."""
        for record in reversed(records):
            if record.spooled is None:
                self.in_flight_bytes = max(0, self.in_flight_bytes - len(record.payload))
                self.pending.appendleft(record)
                self.pending_bytes += len(record.payload)

    def delivered(self, record: PendingRecord) -> None:
        """The broker acknowledged ``record``: count it, free its bytes or spool file."""
        self.counters.add("sent_records")
        self.counters.add("sent_events", record.counted)
        if record.spooled is not None:
            if self.spool is not None:
                self.spool.remove(record.spooled)
            self.counters.add("unspooled_records")
        else:
            self.in_flight_bytes = max(0, self.in_flight_bytes - len(record.payload))

    def fit(self, record: PendingRecord) -> list[PendingRecord]:
        """``record`` as is, or split if it exceeds the (lowered) cap."""
        if len(record.payload) <= self.packer.cap or record.events == 1:
            return [record]
        return self.split(record)

    def split(self, record: PendingRecord) -> list[PendingRecord]:
        """Split ``record`` in two or more under the cap; a single event is dropped, counted.

        A spooled record is rewritten in the spool (nothing returned); pieces keep its age.
        """
        size = len(record.payload)
        if record.spooled is None:
            self.in_flight_bytes = max(0, self.in_flight_bytes - size)
        if record.events == 1:
            self.counters.add("dropped_rejected", record.counted)
            logging.getLogger("tally.ingest").error(
                "tally: one event of %d bytes exceeds the broker's limit; dropped", size
            )
            if record.spooled is not None and self.spool is not None:
                self.spool.remove(record.spooled)
            return []
        records = self.packer.codec.decode(record.payload)
        half = len(records) // 2
        pieces = [
            piece
            for part in (records[:half], records[half:])
            for piece in self.packer.pack(record.partition, part, record.born, fold=False)
        ]
        _share(record.counted, pieces)
        self.counters.add("split_records")
        if record.spooled is not None and self.spool is not None:
            self.spool.replace(record.spooled, [(p.partition, p.payload) for p in pieces])
            return []
        self.in_flight_bytes += sum(len(p.payload) for p in pieces)
        return pieces

    def abandon(self) -> None:
        """At stop: spool (or count) every pending and still buffered record."""
        while self.pending:
            self.spool_or_drop(self.pending.popleft())
        self.pending_bytes = 0
        self.in_flight_bytes = 0
        if self.buffer:
            self.spool_unrouted()


def _share(tracked: int, pieces: list[PendingRecord]) -> None:
    """Spread a folded record's ``tracked`` events over its pieces (each >= 0, same sum)."""
    left = tracked
    for piece in pieces:
        piece.tracked = min(piece.events, left)
        left -= piece.tracked
    if pieces:
        pieces[0].tracked += left
