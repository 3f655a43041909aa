"""Split one flush's rows into inserts ClickHouse accepts, the same way on every replay.

``rollups`` is partitioned by (granularity, month of bucket) and ClickHouse rejects an insert
block touching more than ``max_partitions_per_insert_block`` partitions (code 252). A normal
flush touches one or two months per stored granularity; a backfill (large
``--max-event-age-s``) can touch hundreds. Such a flush is split into pieces: rows sorted
(stably) by the UTC month of their minute, grouped by that month, and the groups packed in
order into pieces that touch at most ``limit`` partitions. The plan is a function of the rows,
the schema and the limit only, so a replay of the range (same records, same fold order) yields
the same pieces and tokens: ``<token>`` when one piece suffices (the rows untouched),
``<token>/<i>`` for piece ``i`` otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tally.aggregator.rows import FoldRows
from tally.schemas.ddl import RollupSchema
from tally.schemas.granularity import Calendar, Granularity

# Partitions one piece may touch: ClickHouse's default max_partitions_per_insert_block is 100
# (the sink pins it); the plan over-approximates the partitions, so it stays well below.
DEFAULT_PARTITIONS_PER_INSERT = 64
_HOUR = 3600


@dataclass(frozen=True, slots=True)
class InsertPiece:
    """One insert: its dedup token and rows."""

    token: str
    rows: FoldRows


class PartitionEstimator:
    """The (granularity, UTC yyyymm) partitions a minute fans out to (a superset, never less).

    Minute/hour/day buckets start at most a day (plus a DST hour) before their minute: both
    ends' months are counted (exact except within a day after a month starts). Weeks, months,
    quarters and years are computed exactly with the ``Calendar`` that mirrors the view's SQL.
    """

    def __init__(self, schema: RollupSchema) -> None:
        self.calendar = Calendar(schema.time_zone, schema.week_start)
        self.spans: list[tuple[str, int]] = []  # how far back a bucket can start
        self.exact: list[tuple[str, Granularity]] = []
        for name in schema.stored:
            g = Granularity.parse(name)
            if g.unit == "m":
                self.spans.append((name, 0 if g.n == 1 else g.n * 60 + _HOUR))
            elif g.unit == "h":
                self.spans.append((name, (g.n + 1) * _HOUR))
            elif g.unit == "d":
                self.spans.append((name, 26 * _HOUR))
            else:
                self.exact.append((name, g))
        self._months: dict[int, int] = {}
        self._cache: dict[int, frozenset[tuple[str, int]]] = {}

    def month(self, ts: int) -> int:
        """UTC yyyymm of unix seconds ``ts`` (what ``toYYYYMM(bucket)`` gives)."""
        day = ts // 86400
        found = self._months.get(day)
        if found is None:
            t = time.gmtime(day * 86400)
            found = self._months[day] = t.tm_year * 100 + t.tm_mon
        return found

    def partitions(self, minute: int) -> frozenset[tuple[str, int]]:
        """The partitions the rows of ``minute`` may land in."""
        found = self._cache.get(minute)
        if found is None:
            out = set()
            for name, span in self.spans:
                out.add((name, self.month(minute)))
                out.add((name, self.month(minute - span)))
            for name, g in self.exact:
                out.add((name, self.month(self.calendar.floor(minute, g))))
            found = self._cache[minute] = frozenset(out)
        return found


def plan_inserts(
    rows: FoldRows, token: str, schema: RollupSchema, limit: int = DEFAULT_PARTITIONS_PER_INSERT
) -> list[InsertPiece]:
    """The inserts for ``rows`` under ``token``; deterministic in (rows, schema, limit)."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    estimator = PartitionEstimator(schema)
    touched: set[tuple[str, int]] = set()
    for minute in set(rows.minute):
        touched |= estimator.partitions(minute)
    if len(touched) <= limit:
        return [InsertPiece(token, rows)]
    month = estimator.month
    order = sorted(range(len(rows)), key=lambda i: month(rows.minute[i]))
    pieces: list[list[int]] = []
    current: list[int] = []
    current_parts: set[tuple[str, int]] = set()
    i = 0
    while i < len(order):
        # One group: the rows of one UTC month of minute (never split across pieces).
        group_month = month(rows.minute[order[i]])
        j = i
        group_parts: set[tuple[str, int]] = set()
        while j < len(order) and month(rows.minute[order[j]]) == group_month:
            group_parts |= estimator.partitions(rows.minute[order[j]])
            j += 1
        if current and len(current_parts | group_parts) > limit:
            pieces.append(current)
            current, current_parts = [], set()
        current.extend(order[i:j])
        current_parts |= group_parts
        i = j
    if current:
        pieces.append(current)
    return [InsertPiece(f"{token}/{n}", rows.take(idx)) for n, idx in enumerate(pieces)]


def utc_month(ts: int) -> int:
    """UTC yyyymm of unix seconds ``ts`` (the month ``plan_inserts`` groups a row's minute by)."""
    t = time.gmtime(ts - ts % 86400)
    return t.tm_year * 100 + t.tm_mon


def rows_outside(rows: FoldRows, months: frozenset[int]) -> FoldRows:
    """The rows whose minute falls in none of ``months`` (UTC yyyymm), in order."""
    keep = [i for i, minute in enumerate(rows.minute) if utc_month(minute) not in months]
    return rows if len(keep) == len(rows) else rows.take(keep)
