"""Replay from the spool: its oldest records, validated, routed first if spooled unrouted."""

from __future__ import annotations

from collections import defaultdict

from tally.ingest.outbox.packer import Packer, PendingRecord
from tally.ingest.outbox.record import R
from tally.ingest.spool import Spool, SpooledRecord
from tally.ingest.stats import Counters
from tally.kafka.routing import Router
from tally.schemas.wire import WireError

UNROUTED = 0xFFFFFFFF  # spooled before the partition count was known; routed on replay


def spooled_heads(
    spool: Spool, packer: Packer[R], router: Router, counters: Counters, limit: int
) -> list[PendingRecord]:
    """The oldest spooled records, validated; unrouted ones are routed first (on disk).

    Files that are not records, or name a partition the topic lacks, are quarantined.
    """
    heads: list[PendingRecord] = []
    while len(spool) and not heads:
        routed = False
        for spooled in spool.peek(limit):
            try:
                records = packer.codec.decode(spooled.payload)
            except WireError as exc:
                spool.quarantine(spooled.path, f"not a record ({exc})")
                continue
            if spooled.partition == UNROUTED:
                _route(spool, spooled, records, packer, router)
                routed = True
                break
            if spooled.partition >= router.partitions:
                spool.quarantine(spooled.path, f"no partition {spooled.partition}")
                continue
            heads.append(
                PendingRecord(
                    spooled.partition, spooled.payload, len(records), spooled.born, spooled
                )
            )
        counters.add("spool_quarantined", spool.take_quarantined())
        if heads and routed:
            heads = []  # re-read: the routed pieces may be older than what follows
        if not routed:
            break
    return heads


def _route(
    spool: Spool, spooled: SpooledRecord, records: list[R], packer: Packer[R], router: Router
) -> None:
    """Rewrite a record spooled before routing was known as per-partition records."""
    by_partition: dict[int, list[R]] = defaultdict(list)
    for record in records:
        by_partition[router.partition(record.route)].append(record)
    pieces = [
        (pending.partition, pending.payload)
        for partition, part in by_partition.items()
        for pending in packer.pack(partition, part, spooled.born, fold=False)
    ]
    spool.replace(spooled, pieces)
