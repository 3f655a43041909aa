"""Distributions: what they cost the aggregator, the rollups, ``track()`` and the read side.

``python -m tally.loadtest.bench_dist [--events 200000]`` runs, in one process and one
embedded ClickHouse (chDB behind its HTTP front):

1. the calculation workload (seeds-shaped, four keys per event) twice, identical except for
   ``duration``: count/sum/square counters, or ``dist(ms)``. Each variant is encoded into
   records of 2,000 events and folded by a real ``PartitionFold`` with a flush every 40,000
   events (the aggregator's per-partition work); events per CPU-second of the fold, then the
   flushes inserted with the real ``RollupSink`` (insert time measured separately), then
   ``OPTIMIZE FINAL`` and the rollup rows and bytes per event. Variants alternate, best of 2.
2. ``track()`` per call with one ``dist()`` value against the same event with counters (the
   whole call: building the values, validation, flattening, buffering; best of 3 x 50,000).
3. a 30-day hourly p95 series of one key (720 hourly sketches of 200 samples, stored at 1m, 1h
   and 1d) read with ``Reader.quantiles``: median and p99 of 200 reads.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tally.aggregator.fold import PartitionFold
from tally.aggregator.sink import RollupSink
from tally.clickhouse.settings import ClickHouseSettings
from tally.embedded.clickhouse.process import start_clickhouse
from tally.embedded.kafka_node import free_ports
from tally.ingest import ClientSettings, Dist, Tracker, dist
from tally.ingest.flatten import flatten_all
from tally.loadtest.storage import optimize_final, table_size
from tally.loadtest.workloads import Cardinality, Workload
from tally.read import Reader, ReadSettings
from tally.schemas.ddl import RollupSchema
from tally.schemas.limits import Limits
from tally.schemas.wire import BatchDecoder, BatchEncoder

PASSWORD = "bench"
RECORD = 2_000
FLUSH = 40_000
KEEP = {"1m": 40_000, "1h": 40_000, "1d": 40_000}


def records(events: int, as_dist: bool, start: int) -> list[bytes]:
    workload = Workload(Cardinality(), seed=7)
    encoder = BatchEncoder("bench")
    out, chunk = [], []
    for i in range(events):
        e = workload.calculation(start + i * 3600 // events)
        values = dict(e.values)
        if as_dist:
            values["duration"] = dist(values["duration"]["sum"])
        paths, numbers, kinds = flatten_all(values, Limits())
        chunk.append((e.at, e.keys, paths, numbers) + ((kinds,) if kinds else ()))
        if len(chunk) == RECORD:
            out.append(encoder.encode(chunk))
            chunk = []
    if chunk:
        out.append(encoder.encode(chunk))
    return out


def fold_all(payloads: list[bytes], now_ms: int) -> tuple[float, list]:
    """CPU seconds to fold ``payloads`` with a flush every ``FLUSH`` events, and the flushes."""
    fold = PartitionFold(Limits(), BatchDecoder())
    flushes = []
    t0 = time.process_time()
    for offset, payload in enumerate(payloads):
        fold.add_record(payload, offset, now_ms)
        if fold.events >= FLUSH:
            flushes.append(fold.rows())
            fold.clear()
    if fold.events:
        flushes.append(fold.rows())
    return time.process_time() - t0, flushes


async def insert(url: str, database: str, flushes: list) -> float:
    sink = RollupSink(
        ClickHouseSettings(url=url, password=PASSWORD), RollupSchema(database, ttl_days=KEEP)
    )
    await sink.start()
    try:
        await sink.apply_ddl()
        t0 = time.perf_counter()
        for i, rows in enumerate(flushes):
            await sink.insert(rows, f"{database}:0:{i}")
        return time.perf_counter() - t0
    finally:
        await sink.close()


def track_cost(calls: int) -> dict[str, float]:
    """µs per ``track()`` call (buffer only: the broker address is closed)."""
    (port,) = free_ports(1)
    keys = ["calc", "calc::customer::1", "calc::reseller::1", "calc::product::1"]
    out = {}
    variants = (
        ("counters", lambda ms: {"count": 1, "duration": {"count": 1, "sum": ms, "square": ms**2}}),
        ("one dist()", lambda ms: {"count": 1, "duration": dist(ms)}),
    )
    for name, make in variants:
        settings = ClientSettings(
            bootstrap_servers=f"127.0.0.1:{port}", buffer_events=calls * 4, close_timeout_s=0.1
        )
        tracker = Tracker(settings)  # a fresh buffer per variant: nothing is dropped
        try:
            best = float("inf")
            for _ in range(3):
                spent = 0.0
                for start in range(0, calls, 1_000):
                    t0 = time.perf_counter()
                    for i in range(start, start + 1_000):
                        assert tracker.track(keys, make(i % 900 + 5))
                    spent += time.perf_counter() - t0
                    # a live sender drains the buffer; this one cannot reach a broker, so
                    # empty it (untimed) to keep the heap (and the GC's work) realistic
                    tracker.outbox.buffer.clear()
                best = min(best, spent / calls * 1e6)
            out[name] = best
        finally:
            tracker.close(0.1)
    return out


async def series_data(url: str, database: str, now: int) -> None:
    fold = PartitionFold(Limits(max_past_seconds=40 * 86400), BatchDecoder())
    encoder = BatchEncoder("bench")
    first = (now - 30 * 86400) // 3600 * 3600
    events = []
    for h in range(720):
        samples = [((h * 7919 + i * 104729) % 5000) / 10 + 1 for i in range(200)]
        events.append(
            (first + h * 3600, ("q::one",), (), [], ([("latency", Dist.of(samples))], []))
        )
    fold.add_record(encoder.encode(events), 0, now * 1000)
    sink = RollupSink(
        ClickHouseSettings(url=url, password=PASSWORD), RollupSchema(database, ttl_days=KEEP)
    )
    await sink.start()
    try:
        await sink.apply_ddl()
        await sink.insert(fold.rows(), f"{database}:series")
    finally:
        await sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    now = int(time.time())
    with tempfile.TemporaryDirectory() as tmp:
        server = start_clickhouse(Path(tmp) / "ch", password=PASSWORD)
        try:
            import clickhouse_connect

            client = clickhouse_connect.get_client(
                host=server.host, port=server.port, password=PASSWORD
            )
            payloads = {v: records(args.events, v == "dist", now - 3600) for v in ("plain", "dist")}
            results: dict[str, dict] = {}
            for round_ in range(2):
                for variant in ("plain", "dist"):
                    cpu, flushes = fold_all(payloads[variant], now * 1000)
                    db = f"bench_{variant}_{round_}"
                    wall = asyncio.run(insert(server.url, db, flushes))
                    optimize_final(client, db, "rollups")
                    size = table_size(client, db, "rollups")
                    best = results.get(variant)
                    if best is None or cpu < best["cpu"]:
                        results[variant] = {"cpu": cpu, "insert_s": wall, "size": size,
                                            "wire": sum(map(len, payloads[variant]))}  # fmt: skip
            n = args.events
            print(f"events per variant: {n:,} (calculation workload, 4 keys per event)")
            print(
                "variant | fold events/CPU-s | insert s | rows/event | bytes/event | wire B/event"
            )
            for variant, r in results.items():
                size = r["size"]
                print(
                    f"{variant} | {n / r['cpu']:,.0f} | {r['insert_s']:.2f} | "
                    f"{size.rows / n:.2f} | {size.bytes_on_disk / n:.1f} | {r['wire'] / n:.1f}"
                )
            for name, us in track_cost(50_000).items():
                print(f"track() with {name}: {us:.2f} µs/call")
            asyncio.run(series_data(server.url, "bench_series", now))
            read = ReadSettings(
                ClickHouseSettings(url=server.url, password=PASSWORD), "bench_series"
            )
            times = []
            with Reader(read) as reader:
                for _ in range(args.reads):
                    t0 = time.perf_counter()
                    d = reader.quantiles("q::one", "latency", [0.95], "30d", None, "1h")
                    times.append(time.perf_counter() - t0)
            assert sum(1 for p in d.quantile(0.95) if p is not None) >= 700
            times.sort()
            p99 = times[int(len(times) * 0.99) - 1]
            median = statistics.median(times) * 1000
            print(
                f"30-day hourly p95 series (720 buckets): median {median:.1f} ms, "
                f"p99 {p99 * 1000:.1f} ms over {len(times)} reads"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
