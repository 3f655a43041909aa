"""Baselines measured on the run's own topic, in a fresh process (one core, no other threads).

(a) The limit: a consumer group reading the topic from the beginning and decoding every record
    with ``BatchDecoder``, nothing else; then, on the same records in memory, decode only,
    ``PartitionFold.add_record`` only, and add_record plus ``rows()`` at the flush cadence.
(b) The naive design: the same events as raw rows (one per event, key and path) inserted into
    a plain MergeTree, and the dashboard questions timed against it and against the rollups.

CPU seconds are the process's own (``time.process_time``), so the figures hold on a machine
shared with other work; wall-clock rates are reported beside them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tally.aggregator.fold import PartitionFold
from tally.loadtest import naive
from tally.loadtest.bare_consumer import from_the_beginning
from tally.loadtest.endpoints import Endpoints
from tally.loadtest.querybench import QueryTiming, round_trip_floor, time_query
from tally.loadtest.storage import table_size
from tally.schemas.limits import Limits
from tally.schemas.wire import BatchDecoder
from tally.schemas.wire_columns import event_count

# (partition, offset, timestamp ms, events, payload)
Captured = tuple[int, int, int, int, bytes]


@dataclass(frozen=True)
class BaselineSpec:
    """What to measure and where."""

    endpoints: Endpoints
    group: str
    max_events: int = 2_000_000
    naive_events: int = 1_000_000
    flush_events: int = 50_000
    naive_database: str = "tally_naive"
    window: tuple[int, int] | None = None  # unix seconds [start, end) for the queries
    query_runs: int = 10
    insert_rows: int = 1_000_000


@dataclass(frozen=True)
class Rate:
    """Events processed, in wall and CPU seconds."""

    events: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        """Events per wall-clock second."""
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def per_cpu_s(self) -> float:
        """Events per CPU second (per core)."""
        return self.events / self.cpu_s if self.cpu_s > 0 else 0.0

    def as_dict(self) -> dict:
        """JSON-friendly, with both rates."""
        return {
            "events": self.events,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "events_per_s": round(self.per_s),
            "events_per_cpu_s": round(self.per_cpu_s),
        }


@dataclass(frozen=True)
class QueryComparison:
    """One question on the rollups and on the raw rows."""

    name: str
    rollups: QueryTiming
    naive: QueryTiming
    same_answer: bool | None


@dataclass
class BaselineResult:
    """Everything measured by ``run_baselines``."""

    records: int = 0
    payload_bytes: int = 0
    complete_topic: bool = False
    consume_decode: Rate | None = None
    decode_only: Rate | None = None
    fold_only: Rate | None = None
    fold_rows: Rate | None = None
    fold_flush_events: int = 0
    fold_rows_out: int = 0
    naive_events: int = 0
    naive_rows: int = 0
    naive_expand: Rate | None = None
    naive_insert_s: float = 0.0
    naive_total: Rate | None = None
    naive_bytes_on_disk: int = 0
    naive_covers_run: bool = False
    queries: list[QueryComparison] = field(default_factory=list)
    select_1: QueryTiming | None = None


def run_baselines(spec: BaselineSpec) -> BaselineResult:
    """Process entry point: every baseline, in order."""
    result = BaselineResult()
    try:
        import uvloop

        captured = uvloop.run(_consume_decode(spec, result))
    except ImportError:
        captured = asyncio.run(_consume_decode(spec, result))
    _decode_only(captured, result)
    _fold(spec, captured, result)
    _naive(spec, captured, result)
    return result


async def _consume_decode(spec: BaselineSpec, result: BaselineResult) -> list[Captured]:
    """Bare consume + decode, configured like the aggregator's consumer."""
    captured: list[Captured] = []
    endpoints = spec.endpoints
    async with from_the_beginning(endpoints.topic, endpoints.bootstrap, spec.group, 20_000) as (
        consumer,
        ends,
    ):
        remaining = {tp for tp, end in ends.items() if end > 0}
        decoder = BatchDecoder()
        events = size = 0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while remaining and events < spec.max_events:
            batches = await consumer.getmany(timeout_ms=100, max_records=20_000)
            for tp, records in batches.items():
                for record in records:
                    n = event_count(decoder.decode(record.value))
                    events += n
                    size += len(record.value)
                    captured.append(
                        (tp.partition, record.offset, record.timestamp, n, record.value)
                    )
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    result.records, result.payload_bytes = len(captured), size
    result.complete_topic = not remaining
    result.consume_decode = Rate(events, wall, cpu)
    return captured


def _decode_only(captured: list[Captured], result: BaselineResult) -> None:
    decoder = BatchDecoder()
    events = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for record in captured:
        events += event_count(decoder.decode(record[4]))
    result.decode_only = Rate(events, time.perf_counter() - wall0, time.process_time() - cpu0)


def _fold(spec: BaselineSpec, captured: list[Captured], result: BaselineResult) -> None:
    """add_record per partition, and rows() of every partition each ``flush_events`` events."""
    decoder, limits = BatchDecoder(), Limits()
    folds: dict[int, PartitionFold] = {}
    fold_wall = fold_cpu = rows_wall = rows_cpu = 0.0
    events = pending = rows_out = 0
    start = 0
    while start < len(captured):
        end = start
        pending = 0
        while end < len(captured) and pending < spec.flush_events:
            pending += captured[end][3]
            end += 1
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for partition, offset, timestamp, _n, payload in captured[start:end]:
            fold = folds.get(partition)
            if fold is None:
                fold = folds[partition] = PartitionFold(limits, decoder)
            fold.add_record(payload, offset, timestamp)
        fold_wall += time.perf_counter() - wall0
        fold_cpu += time.process_time() - cpu0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for fold in folds.values():
            events += fold.events
            rows_out += len(fold.rows())
            fold.clear()
        rows_wall += time.perf_counter() - wall0
        rows_cpu += time.process_time() - cpu0
        start = end
    result.fold_only = Rate(events, fold_wall, fold_cpu)
    result.fold_rows = Rate(events, fold_wall + rows_wall, fold_cpu + rows_cpu)
    result.fold_flush_events = spec.flush_events
    result.fold_rows_out = rows_out


def _naive(spec: BaselineSpec, captured: list[Captured], result: BaselineResult) -> None:
    """Raw rows for the first ``naive_events`` events: expand, insert, size, then queries."""
    if spec.naive_events <= 0:
        return
    client = spec.endpoints.clickhouse()
    for statement in naive.ddl(spec.naive_database):
        client.command(statement)
    decoder = BatchDecoder()
    events = rows = 0
    expand_wall = expand_cpu = insert_wall = 0.0
    pending = naive.RawColumns()
    for record in captured:
        if events >= spec.naive_events:
            break
        wall0, cpu0 = time.perf_counter(), time.process_time()
        events += naive.expand(decoder.decode(record[4]), pending)
        expand_wall += time.perf_counter() - wall0
        expand_cpu += time.process_time() - cpu0
        if len(pending) >= spec.insert_rows:
            rows += len(pending)
            insert_wall += _timed_insert(client, spec.naive_database, pending)
            pending = naive.RawColumns()
    if len(pending):
        rows += len(pending)
        insert_wall += _timed_insert(client, spec.naive_database, pending)
    result.naive_events, result.naive_rows = events, rows
    result.naive_expand = Rate(events, expand_wall, expand_cpu)
    result.naive_insert_s = insert_wall
    result.naive_total = Rate(events, expand_wall + insert_wall, expand_cpu)
    result.naive_bytes_on_disk = table_size(client, spec.naive_database, naive.TABLE).bytes_on_disk
    result.naive_covers_run = result.complete_topic and events >= sum(c[3] for c in captured)
    if spec.window is not None:
        result.queries = _compare_queries(spec, client, result.naive_covers_run)
        result.select_1 = round_trip_floor(client)


def _timed_insert(client, database: str, rows: naive.RawColumns) -> float:
    started = time.perf_counter()
    naive.insert(client, database, rows)
    return time.perf_counter() - started


def _compare_queries(spec: BaselineSpec, client, comparable: bool) -> list[QueryComparison]:
    assert spec.window is not None
    start, end = (datetime.fromtimestamp(t, UTC) for t in spec.window)
    out = []
    for q in naive.paired_queries(spec.endpoints.database, spec.naive_database, start, end):
        rollups, got = time_query(client, q.name, q.rollup_sql, q.parameters, spec.query_runs)
        raw, want = time_query(client, q.name, q.naive_sql, q.parameters, spec.query_runs)
        same = _same(got, want) if comparable else None
        out.append(QueryComparison(q.name, rollups, raw, same))
    return out


def _same(a: list[tuple], b: list[tuple]) -> bool:
    """Equal rows, comparing instants by value (the views return zoned datetimes)."""

    def norm(row: tuple) -> tuple:
        return tuple(v.timestamp() if isinstance(v, datetime) else v for v in row)

    return [norm(r) for r in a] == [norm(r) for r in b]
