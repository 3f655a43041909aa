"""Monitor evaluation cost (measured, never asserted): ``python -m tally.loadtest.bench_monitors``.

On the embedded ClickHouse, ``--tenants`` scheduler keys (``event::schedule::<tenant>``) with
two hours of minutes (count and resources per minute, written as the aggregators write), then:

1. one key-pattern monitor over every tenant (the zero condition, 12 buckets of history):
   a first tick (every segment's state written) and steady ticks (one new minute each);
2. the same with a Hampel anomaly condition (30 buckets of history);
3. ``--plain`` unsegmented monitors on one key (a threshold each): cost per monitor.

Each tick is the whole evaluation: watermark (wall clock here), fetch, frames, conditions,
state machine and the ClickHouse writes (states, history, outbox).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect

from tally.aggregator.sink import RollupSink
from tally.clickhouse.settings import ClickHouseSettings
from tally.clickhouse.sink_base import apply_ddl_once
from tally.embedded.clickhouse.process import start_clickhouse
from tally.monitors.lease import AlwaysHeld
from tally.monitors.notify import Notifier
from tally.monitors.service import MonitorService
from tally.monitors.store import Store
from tally.monitors.watermark import WallClock
from tally.read import AsyncReader, ReadSettings
from tally.schemas.ddl import RollupSchema

PASSWORD = "bench-password-0123456789"
MINUTES = 120

SEGMENTED = """
monitors:
  - name: idle
    key: "event::schedule::*"
    path: total.resources
    granularity: 1m
    condition: {type: zero, for: 3m, active: total.count}
"""
ANOMALY = """
monitors:
  - name: volume
    key: "event::schedule::*"
    path: total.resources
    granularity: 1m
    condition: {type: anomaly, history: 30, k: 5}
"""


def plain(n: int) -> str:
    body = "\n".join(
        f"""  - name: plain-{i}
    key: event::cron
    path: total.count
    granularity: 1m
    condition: {{type: threshold, below: {i % 3}}}"""
        for i in range(n)
    )
    return f"monitors:\n{body}\n"


def populate(client, start: int, tenants: int) -> None:
    rows = []
    for m in range(MINUTES):
        minute = datetime.fromtimestamp(start + 60 * m, UTC)
        rows.append([["event::cron"], minute, ["total.count"], [1.0]])
        for t in range(tenants):
            resources = 0.0 if (t % 50 == 0 and m > MINUTES - 20) else float(5 + t % 7)
            rows.append([[f"event::schedule::t{t:05d}"], minute, ["total.count",
                         "total.resources"], [1.0, resources]])  # fmt: skip
    for chunk in range(0, len(rows), 50_000):
        client.insert(
            "tally.rollups_input", rows[chunk : chunk + 50_000],
            column_names=["keys", "minute", "paths", "values"], settings={"async_insert": 0},
        )  # fmt: skip


async def measure(read: ReadSettings, path: Path, start: int, ticks: int) -> tuple:
    svc = MonitorService(
        paths=[path], reader=AsyncReader(read), store=Store(read), watermark=WallClock(5),
        notifier=Notifier({}), lease=AlwaysHeld(),
    )  # fmt: skip
    await svc.start()
    try:
        # first tick: judge minute MINUTES - ticks - 1 with no state
        first_now = start + 60 * (MINUTES - ticks) + 6
        t = time.perf_counter()
        result = await svc.tick(now=first_now)
        first = time.perf_counter() - t
        assert not result.errors, result.errors
        segments = result.segments
        steady = []
        notices = len(result.notices)
        for i in range(1, ticks + 1):
            t = time.perf_counter()
            result = await svc.tick(now=first_now + 60 * i)
            steady.append(time.perf_counter() - t)
            assert not result.errors, result.errors
            notices += len(result.notices)
        return first, steady, segments, notices
    finally:
        await svc.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--tenants", type=int, default=1000)
    p.add_argument("--plain", type=int, default=100, help="unsegmented monitors")
    p.add_argument("--ticks", type=int, default=10, help="steady ticks to time")
    args = p.parse_args(argv)
    logging.getLogger("tally.monitors.notify").setLevel(logging.ERROR)  # the log channel
    workdir = Path(tempfile.mkdtemp(prefix="tally-monitor-bench-"))
    clickhouse = start_clickhouse(workdir / "clickhouse", user="default", password=PASSWORD)
    try:
        settings = ClickHouseSettings(url=clickhouse.url, password=PASSWORD)

        asyncio.run(apply_ddl_once(RollupSink(settings, RollupSchema())))
        client = clickhouse_connect.get_client(
            host=clickhouse.host, port=clickhouse.port, password=PASSWORD
        )
        start = (int(time.time()) // 3600 - 3) * 3600
        t = time.perf_counter()
        populate(client, start, args.tenants)
        print(f"populated {args.tenants} tenants x {MINUTES} minutes in "
              f"{time.perf_counter() - t:.1f}s")  # fmt: skip
        read = ReadSettings(clickhouse=settings)
        for name, text in (("zero (12 buckets history)", SEGMENTED),
                           ("anomaly (30 buckets history)", ANOMALY),
                           (f"{args.plain} plain monitors", plain(args.plain))):  # fmt: skip
            path = workdir / f"{abs(hash(name))}.yaml"
            path.write_text(text)
            client.command("TRUNCATE TABLE IF EXISTS tally.monitor_state")
            first, steady, segments, notices = asyncio.run(measure(read, path, start, args.ticks))
            med = statistics.median(steady)
            per = med / max(segments, 1) * 1e6
            print(f"{name}: {segments} segments; first tick {first:.2f}s; steady tick median "
                  f"{med:.3f}s, max {max(steady):.3f}s ({per:.0f} us per segment); "
                  f"{notices} notices")  # fmt: skip
    finally:
        clickhouse.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
