"""Time a query the way a dashboard runs it: clickhouse-connect over HTTP, parameters bound.

Besides the wall time on the client, the server's own ``elapsed`` (from the
``X-ClickHouse-Summary`` header) is kept, and ``round_trip_floor`` times ``SELECT 1``: the
difference is transport, not query work.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

from tally.loadtest.freshness import percentile


@dataclass(frozen=True)
class QueryTiming:
    """Wall time of ``runs`` executions after ``warmup`` ones, in milliseconds."""

    name: str
    rows: int
    runs: int
    p50_ms: float
    p99_ms: float
    min_ms: float
    mean_ms: float
    server_p50_ms: float | None = None
    read_rows: int | None = None


def time_query(
    client,
    name: str,
    sql: str,
    parameters: Mapping[str, object] | None = None,
    runs: int = 10,
    warmup: int = 2,
) -> tuple[QueryTiming, list[tuple]]:
    """Run ``sql`` ``warmup + runs`` times; returns the timing and the (last) result rows."""
    rows: list[tuple] = []
    read_rows = None
    for _ in range(warmup):
        client.query(sql, parameters=dict(parameters or {}))
    times: list[float] = []
    server: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        result = client.query(sql, parameters=dict(parameters or {}))
        rows = list(result.result_rows)
        times.append((time.perf_counter() - started) * 1000)
        summary = getattr(result, "summary", None) or {}
        if "read_rows" in summary:
            read_rows = int(summary["read_rows"])
        if "elapsed_ns" in summary:
            server.append(int(summary["elapsed_ns"]) / 1e6)
    ordered = sorted(times)
    server_p50 = percentile(sorted(server), 0.5)
    return (
        QueryTiming(
            name=name,
            rows=len(rows),
            runs=runs,
            p50_ms=round(percentile(ordered, 0.5) or 0.0, 2),
            p99_ms=round(percentile(ordered, 0.99) or 0.0, 2),
            min_ms=round(ordered[0], 2),
            mean_ms=round(statistics.fmean(ordered), 2),
            server_p50_ms=None if server_p50 is None else round(server_p50, 2),
            read_rows=read_rows,
        ),
        rows,
    )


def round_trip_floor(client, runs: int = 20) -> QueryTiming:
    """The cost of any query over this connection: ``SELECT 1``."""
    return time_query(client, "select_1", "SELECT 1", runs=runs, warmup=3)[0]
