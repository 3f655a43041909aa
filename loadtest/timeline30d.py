"""The 30-day hourly timeline of one key: seed 30 days of rollups directly, then time the query.

ClickHouse generates the rows itself (``INSERT ... SELECT FROM numbers()``): ``keys`` keys
(the global calculation key and per-customer keys) x ``hours`` hourly buckets x the
calculation's paths, ``rows_per_slot`` times over in separate inserts (unmerged parts, as
between background merges), plus the daily rows. The documented ``timeline`` query then runs
through clickhouse-connect over HTTP, before and after ``OPTIMIZE FINAL``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from tally.loadtest.querybench import QueryTiming, round_trip_floor, time_query
from tally.loadtest.storage import optimize_final, table_size
from tally.loadtest.workloads import CALC_KEY
from tally.read.rollup_queries import QUERIES
from tally.schemas.ddl import RollupSchema, identifier

PATHS = (
    "count", "success", "failure", "skipped", "duplicate", "deleted", "inactive",
    "duration.count", "duration.sum", "duration.square", "price.count", "price.sum",
    "margin.count", "margin.sum", "margin.square", "codes.OK",
)  # fmt: skip


@dataclass(frozen=True)
class TimelineResult:
    """The seeded table and the timings."""

    database: str
    keys: int
    hours: int
    paths: int
    rows_unmerged: int
    rows: int
    bytes_on_disk: int
    seed_s: float
    buckets_returned: int
    unmerged: QueryTiming
    merged: QueryTiming
    select_1: QueryTiming


def _seed_sql(db: str, granularity: str, step_s: int) -> str:
    paths = "[" + ", ".join(f"'{p}'" for p in PATHS) + "]"
    return f"""INSERT INTO {db}.rollups (granularity, key, bucket, path, value)
SELECT '{granularity}',
       if(k = 0, '{CALC_KEY}', concat('{CALC_KEY}::customer::', toString(k))),
       toDateTime({{start:UInt32}} + {step_s} * b, 'UTC'),
       p,
       toFloat64(1 + cityHash64(k, b, p, {{copy:UInt8}}) % 1000)
FROM (SELECT number % {{keys:UInt32}} AS k, intDiv(number, {{keys:UInt32}}) AS b
      FROM numbers({{keys:UInt32}} * {{buckets:UInt32}}))
ARRAY JOIN {paths} AS p"""


def seed(client, database: str, keys: int, hours: int, rows_per_slot: int, end: int) -> float:
    """Create the schema in ``database`` and fill it; returns the seconds it took."""
    db = identifier(database)
    started = time.perf_counter()
    client.command(f"DROP DATABASE IF EXISTS {db}")
    for statement in RollupSchema(database=db).statements():
        client.command(statement)
    start_hour = end - hours * 3600
    start_day = start_hour - start_hour % 86400
    days = (end - start_day + 86399) // 86400
    for copy in range(rows_per_slot):
        for granularity, step, start, buckets in (
            ("1h", 3600, start_hour, hours),
            ("1d", 86400, start_day, days),
        ):
            client.command(
                _seed_sql(db, granularity, step),
                parameters={"start": start, "keys": keys, "buckets": buckets, "copy": copy},
            )
    return time.perf_counter() - started


def run_timeline(
    client, database: str = "tally_seed30d", keys: int = 1_000, hours: int = 720,
    rows_per_slot: int = 2, runs: int = 30,
) -> TimelineResult:  # fmt: skip
    """Seed, then time the 30-day hourly timeline of the global key, unmerged and merged."""
    end = int(time.time()) // 3600 * 3600
    seed_s = seed(client, database, keys, hours, rows_per_slot, end)
    params = {
        "key": CALC_KEY,
        "path": "count",
        "start": datetime.fromtimestamp(end - hours * 3600, UTC),
        "end": datetime.fromtimestamp(end, UTC),
    }
    sql = QUERIES["timeline"].sql(database, "1h")
    unmerged, rows = time_query(client, "timeline_30d_1h", sql, params, runs=runs, warmup=3)
    before = table_size(client, database, "rollups")
    optimize_final(client, database, "rollups")
    merged, rows = time_query(client, "timeline_30d_1h", sql, params, runs=runs, warmup=3)
    size = table_size(client, database, "rollups")
    return TimelineResult(
        database=database,
        keys=keys,
        hours=hours,
        paths=len(PATHS),
        rows_unmerged=before.rows,
        rows=size.rows,
        bytes_on_disk=size.bytes_on_disk,
        seed_s=round(seed_s, 2),
        buckets_returned=len(rows),
        unmerged=unmerged,
        merged=merged,
        select_1=round_trip_floor(client),
    )
