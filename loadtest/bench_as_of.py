"""What reading as of a settled time costs (measured, never asserted):
``python -m tally.loadtest.bench_as_of``.

On the embedded ClickHouse with ``read_bench``'s 30 days of one key (a row per 5 minutes, 11
paths, up to the current minute), interleaved in one run so that a busy box slows every side
alike, p50 of:

1. the points statement of a series as main wrote it (``SELECT ... FROM rollups WHERE ...``,
   the baseline), as this branch writes it without ``as_of`` (the same rows through a
   subquery), and with a cut (the bucket in progress summed from hours and minutes: ``UNION
   ALL``), for 24h at 1h, 7d at 1d and 5 weeks at 1w (a derived view);
2. the whole ``Reader.series`` (plan, statements, build) without and with ``as_of="settled"``.

Ratios are against the baseline of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect

from tally.aggregator.sink import RollupSink
from tally.clickhouse.settings import ClickHouseSettings
from tally.clickhouse.sink_base import apply_ddl_once
from tally.embedded.clickhouse.process import start_clickhouse
from tally.loadtest.read_bench import KEY, PASSWORD, populate
from tally.read import Reader, ReadSettings, queries
from tally.read.settled import cut, settled_time
from tally.read.timerange import window
from tally.schemas.ddl import RollupSchema
from tally.schemas.granularity import Calendar

CASES = (("24h", "1h"), ("7d", "1d"), ("35d", "1w"))
PATHS = ["count", "success", "failure"]


def main_points(scan: queries.Scan, paths: list[str]) -> queries.Sql:
    """The points statement as main wrote it (before reads as of a time), for the baseline."""
    params: dict[str, object] = {"key": scan.key, "start": scan.start, "end": scan.end}
    rng = queries._RANGE
    if scan.stored:
        params["g"] = scan.granularity
        t, where = (
            "toUInt32(bucket)",
            f"""FROM {scan.database}.rollups
WHERE granularity = {{g:String}} AND key = {{key:String}} AND {rng} AND vmin IS NULL""",
        )
    else:
        t = "toUInt32(toUnixTimestamp(bucket))"
        where = (
            f"FROM {scan.database}.rollups_{scan.granularity}\nWHERE key = {{key:String}} AND {rng}"
        )
    where += " AND path IN {paths:Array(String)}"
    text = f"SELECT {t} AS t, path, sum(value) AS value\n{where}\nGROUP BY t, path"
    return queries.Sql(text, {**params, "paths": paths})


def p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def interleaved(calls: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """p50 ms of each call, run in turn ``runs`` times (after one warm-up each)."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(runs):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            out[name].append(time.perf_counter() - t)
    return {name: p50(s) for name, s in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--runs", type=int, default=100, help="repetitions of each statement")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tally-bench-as-of-"))
    clickhouse = start_clickhouse(workdir / "clickhouse", user="default", password=PASSWORD)
    try:
        settings = ClickHouseSettings(url=clickhouse.url, password=PASSWORD)
        client = clickhouse_connect.get_client(
            host=clickhouse.host, port=clickhouse.port, password=PASSWORD
        )
        asyncio.run(apply_ddl_once(RollupSink(settings, RollupSchema())))
        populate(client, datetime.now(UTC).replace(second=0, microsecond=0), keys=1000)
        client.command("OPTIMIZE TABLE tally.rollups FINAL")
        calendar, stored = Calendar(), ("1m", "1h", "1d")
        print(f"runs: {args.runs} each, interleaved; p50 in ms, ratio to main's statement")
        for since, g in CASES:
            t = settled_time(calendar, stored, time.time(), 10)
            w = window(calendar, g, since, None)
            wt = window(calendar, g, since, t)
            at = cut(calendar, stored, wt, t)
            plain = queries.Scan("tally", g, g in stored, KEY, w.start, w.end)
            as_of = queries.Scan("tally", g, g in stored, KEY, wt.start, wt.end, at)
            statements = {
                "main": main_points(plain, PATHS),
                "plain": queries.points(plain, PATHS),
                "as_of": queries.points(as_of, PATHS),
            }
            pieces = " + ".join(f"{pc.granularity}" for pc in at.pieces)

            def run(sql: queries.Sql) -> Callable[[], object]:
                return lambda: client.query(sql.text, parameters=sql.parameters)

            ms = interleaved({k: run(v) for k, v in statements.items()}, args.runs)
            print(
                f"1. {since} at {g} (partial bucket from {pieces or 'nothing'}): main"
                f" {ms['main']:.2f}, plain {ms['plain']:.2f} ({ms['plain'] / ms['main']:.2f}x),"
                f" as_of {ms['as_of']:.2f} ({ms['as_of'] / ms['main']:.2f}x)"
            )
        with Reader(ReadSettings(clickhouse=settings)) as reader:
            for since, g in CASES:
                calls = {
                    "plain": lambda s=since, g=g: reader.series(KEY, PATHS, since=s, granularity=g),
                    "as_of": lambda s=since, g=g: reader.series(
                        KEY, PATHS, since=s, granularity=g, as_of="settled"
                    ),
                }
                ms = interleaved(calls, args.runs)
                print(
                    f"2. Reader.series {since} at {g}: plain {ms['plain']:.2f},"
                    f" as_of {ms['as_of']:.2f} ({ms['as_of'] / ms['plain']:.2f}x)"
                )
    finally:
        clickhouse.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
