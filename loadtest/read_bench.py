"""Read-side benchmark (measured, never asserted): ``python -m tally.loadtest.read_bench``.

On the embedded ClickHouse (password on), with data inserted as the aggregators insert it:

1. a 30-day hourly series of one key through the Python API (sync and async), p50/p99;
2. key discovery over 100k keys (pattern, prefix, everything) and one key's paths;
3. the HTTP API (``tally api`` in its own process, uvicorn) under 50 concurrent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import httpx

from tally.aggregator.key_rows import DAY_COLUMNS, PATH_COLUMNS, WrittenKeys
from tally.aggregator.rows import FoldRows
from tally.aggregator.sink import RollupSink
from tally.clickhouse.settings import ClickHouseSettings
from tally.clickhouse.sink_base import apply_ddl_once
from tally.embedded.clickhouse.process import start_clickhouse
from tally.embedded.kafka_node import free_ports
from tally.read import AsyncReader, Reader, ReadSettings
from tally.schemas.ddl import RollupSchema

WINDOW = {"since": "30d", "granularity": "1h"}
PASSWORD = "bench-password-0123456789"
KEY = "commodity::events::product_target::calculation"
PATHS = ["count", "success", "failure", "duration.count", "duration.sum", "duration.square"]
PATHS += [f"codes.{c}" for c in ("OK", "OUT_OF_STOCK", "UNSUPPORTED", "NO_OFFERS", "PRICE_LIMIT")]


def percentiles(samples: list[float]) -> str:
    """p50/p99/max in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms (n={len(ms)})"
    )


def timed(call: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def populate(client, end: datetime, keys: int) -> None:
    """30 days of minutes for KEY (one row per 5 minutes, all paths) and ``keys`` other keys."""
    rng = random.Random(1)
    start = end - timedelta(days=30)
    rows = []
    t = start
    while t < end:
        values = [float(rng.randint(0, 50)) for _ in PATHS]
        rows.append([[KEY, f"{KEY}::customer::{rng.randrange(200)}"], t, PATHS, values])
        t += timedelta(minutes=5)
    for i in range(0, keys, 1):
        day = end - timedelta(days=i % 7, minutes=rng.randrange(1, 1440))
        rows.append([[f"tenant::{i % 1000}::job::{i}"], day.replace(second=0, microsecond=0),
                     ["count"], [1.0]])  # fmt: skip
    for chunk in range(0, len(rows), 50_000):
        client.insert(
            "tally.rollups_input", rows[chunk : chunk + 50_000],
            column_names=["keys", "minute", "paths", "values"], settings={"async_insert": 0},
        )  # fmt: skip
    # the key index, as the aggregator's sink writes it (aggregator/key_rows.py)
    index = WrittenKeys().new_rows(
        FoldRows([tuple(r[0]) for r in rows], [int(r[1].timestamp()) for r in rows],
                 [tuple(r[2]) for r in rows], [r[3] for r in rows])
    )  # fmt: skip
    client.insert("tally.keys_seen", index.days, column_names=list(DAY_COLUMNS))
    client.insert("tally.key_paths", index.paths, column_names=list(PATH_COLUMNS))


SERIES_PARAMS = {"key": KEY, "path": ["count", "codes.*"], "expression": "success / count",
              "since": "30d", "granularity": "1h", "top": "3"}  # fmt: skip


async def api_load(
    url: str,
    token: str,
    clients: int,
    seconds: float,
    path: str,
    params: dict,
    distinct: bool = False,
) -> list[float]:
    """``clients`` concurrent loops of GET ``path``; latencies of the successful ones."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def one(client: httpx.AsyncClient, index: int) -> None:
        nonlocal errors
        # distinct: each client asks its own variant, so no two requests can share a query
        own = (
            {**params, "limit" if path.endswith("/keys") else "top": 1 + index}
            if distinct
            else params
        )
        while time.monotonic() < deadline:
            t = time.perf_counter()
            response = await client.get(path, params=own)
            if response.status_code == 200:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=60
    ) as client:
        await asyncio.gather(*(one(client, i) for i in range(clients)))
    if errors:
        print(f"  {errors} requests failed")
    return latencies


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--keys", type=int, default=100_000, help="distinct keys for discovery")
    p.add_argument("--runs", type=int, default=200, help="repetitions per Python measurement")
    p.add_argument("--clients", type=int, default=50, help="concurrent HTTP clients")
    p.add_argument("--seconds", type=float, default=20, help="HTTP load duration")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tally-read-bench-"))
    clickhouse = start_clickhouse(workdir / "clickhouse", user="default", password=PASSWORD)
    api_proc = None
    try:
        settings = ClickHouseSettings(url=clickhouse.url, password=PASSWORD)

        asyncio.run(apply_ddl_once(RollupSink(settings, RollupSchema())))
        client = clickhouse_connect.get_client(
            host=clickhouse.host, port=clickhouse.port, password=PASSWORD
        )
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        t = time.perf_counter()
        populate(client, end, args.keys)
        counts = client.query("SELECT count() FROM tally.keys_seen").result_rows[0][0]
        print(f"populated in {time.perf_counter() - t:.1f}s; keys_seen rows: {counts:,}")
        client.command("OPTIMIZE TABLE tally.rollups FINAL")
        read = ReadSettings(clickhouse=settings)

        with Reader(read) as reader:

            def series():
                return reader.series(
                    KEY, ["count", "codes.*"], ["success / count"], **WINDOW, top=3
                )

            s = series()
            print(f"1. 30-day hourly series ({len(s.buckets)} buckets, {len(s.rows)} rows)")
            print("   sync Reader:  " + percentiles(timed(series, args.runs)))
            values = lambda: reader.values(KEY, since="30d", granularity="1h")  # noqa: E731
            print("   sync values:  " + percentiles(timed(values, args.runs // 2)))
            one_path = lambda: reader.series(KEY, ["count"], since="30d", granularity="1h")  # noqa: E731
            print("   one path:     " + percentiles(timed(one_path, args.runs)))

            async def async_runs() -> list[float]:
                out = []
                async with AsyncReader(read) as r:
                    for _ in range(args.runs):
                        t0 = time.perf_counter()
                        await r.series(
                            KEY,
                            ["count", "codes.*"],
                            ["success / count"],
                            since="30d",
                            granularity="1h",
                            top=3,
                        )
                        out.append(time.perf_counter() - t0)
                return out

            print("   AsyncReader:  " + percentiles(asyncio.run(async_runs())))
            print(f"2. key discovery over {args.keys:,} keys")
            for label, pattern, since in (
                ("prefix 'tenant::42::*', 7d", "tenant::42::*", "7d"),
                ("pattern '*::job::99999', 7d", "*::job::99999", "7d"),
                ("everything, 7d, limit 1000", None, "7d"),
                ("prefix 'tenant::7::*', 1d", "tenant::7::*", "1d"),
            ):
                found = reader.keys(pattern, since=since)
                samples = timed(lambda p=pattern, s=since: reader.keys(p, since=s), args.runs // 4)
                print(f"   {label}: {len(found)} keys; " + percentiles(samples))
            print(
                "   paths of one key: "
                + percentiles(timed(lambda: reader.paths(KEY), args.runs // 4))
            )

        port = free_ports(1)[0]
        env = {
            **os.environ,
            "TALLY_CLICKHOUSE_URL": clickhouse.url,
            "TALLY_CLICKHOUSE_PASSWORD": PASSWORD,
            "TALLY_API_TOKEN": "bench-read-token-0123456789",
            "TALLY_API_SQL_TOKEN": "bench-sql-token-0123456789",
        }
        command = [sys.executable, "-m", "tally.cli", "api", "--port", str(port)]
        api_proc = subprocess.Popen(
            [*command, "--data-dir", str(workdir)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        print(f"3. HTTP API, {args.clients} concurrent clients, {args.seconds:.0f} s each:")
        token = env["TALLY_API_TOKEN"]
        keys_params = {"pattern": "tenant::42::*"}
        for label, path, params, distinct in (
            ("/api/v1/health (no ClickHouse)", "/api/v1/health", {}, False),
            ("/api/v1/series 30d hourly, 50 distinct requests", "/api/v1/series", SERIES_PARAMS,
             True),
            ("/api/v1/series 30d hourly, one panel for 50 viewers", "/api/v1/series",
             SERIES_PARAMS, False),
            ("/api/v1/keys prefix over 100k keys, distinct", "/api/v1/keys", keys_params, True),
        ):  # fmt: skip
            latencies = asyncio.run(
                api_load(url, token, args.clients, args.seconds, path, params, distinct)
            )
            rps = len(latencies) / args.seconds
            print(f"   {label}: {rps:.0f} req/s; " + percentiles(latencies))
    finally:
        if api_proc is not None:
            api_proc.terminate()
            api_proc.wait(10)
        clickhouse.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
