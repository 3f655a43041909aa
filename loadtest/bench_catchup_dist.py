"""The aggregator's real catch-up with ``duration`` as ``dist(ms)`` against counters, one run.

``python -m tally.loadtest.bench_catchup_dist [--events 200000] [--rounds 2]`` starts the
embedded stack (Kafka KRaft, ClickHouse on chDB, no aggregators), pre-produces the calculation
workload twice to two topics — identical except for ``duration``: count/sum/square counters or
``dist(ms)``, records of 2,000 events as ``bench_dist`` builds them, lz4 like the client — then,
per round and variant (alternating), times one fresh ``tally.aggregator`` process consuming its
topic from the beginning into its own database (``catchup.run_catchup``: events per CPU-second
of that process from psutil). Then ``OPTIMIZE FINAL`` and rollup rows and bytes per event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from aiokafka import AIOKafkaProducer

from tally.embedded.stack import StackConfig, start_stack
from tally.kafka.admin import create_topic
from tally.loadtest.bench_dist import records
from tally.loadtest.catchup import CatchupResult, CatchupSpec, run_catchup
from tally.loadtest.endpoints import Endpoints
from tally.loadtest.storage import optimize_final, table_size

VARIANTS = ("plain", "dist")
PARTITIONS = 2


async def produce(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    """Create ``topic`` and write ``payloads`` to it round-robin over its partitions."""
    await create_topic(bootstrap, topic, PARTITIONS)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type="lz4", max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        sent = [
            await producer.send(topic, p, partition=i % PARTITIONS) for i, p in enumerate(payloads)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def per_cpu(events: int, result: CatchupResult) -> float:
    """Topic events made durable per CPU-second (a replay that refolds after a lost session
    counts its events more than once in ``result.events``; this does not)."""
    return events / result.cpu_s if result.cpu_s > 0 else 0.0


def best_by_cpu(results: list[CatchupResult]) -> CatchupResult:
    """The complete replay that spent the least CPU (the least disturbed one)."""
    complete = [r for r in results if r.complete]
    if not complete:
        raise RuntimeError("no catch-up completed; raise --max-s")
    return min(complete, key=lambda r: r.cpu_s)


def replay_spec(
    base: Endpoints, topic: str, name: str, tmp: Path, args: argparse.Namespace
) -> CatchupSpec:
    """A fresh aggregator replaying ``topic`` from the beginning into its own group and database
    (``catchup_<name>``), bounded by ``--max-s`` and with ``--session-timeout-ms``."""
    return CatchupSpec(
        endpoints=replace(base, topic=topic),
        workdir=tmp / "catchup",
        group=f"catchup-{name}",
        database=f"catchup_{name}",
        max_s=args.max_s,
        session_timeout_ms=args.session_timeout_ms,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-s", type=float, default=600.0)
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=6_000,
        help="the replaying aggregator's Kafka session (the catch-up's 6 s; production: 30 s)",
    )
    args = parser.parse_args()
    now = int(time.time())
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp) / "stack", StackConfig(partitions=1), aggregators=False)
        try:
            base = Endpoints.of_stack(stack)
            for variant in VARIANTS:
                payloads = records(args.events, variant == "dist", now - 3600)
                asyncio.run(produce(base.bootstrap, f"bench.{variant}", payloads))
            print(f"load average before: {os.getloadavg()}, session {args.session_timeout_ms} ms")
            runs: dict[str, list[CatchupResult]] = {v: [] for v in VARIANTS}
            for round_ in range(args.rounds):
                for variant in VARIANTS:
                    spec = replay_spec(
                        base, f"bench.{variant}", f"{variant}_{round_}", Path(tmp), args
                    )
                    r = run_catchup(replace(spec, clickhouse_pid=stack.clickhouse.pid))
                    runs[variant].append(r)
                    print(
                        f"round {round_} {variant}: {r.events:,} events complete={r.complete} "
                        f"wall {r.wall_s:.1f} s, cpu {r.cpu_s:.1f} s, "
                        f"{r.events_per_cpu_s:,.0f} events/CPU-s, "
                        f"ClickHouse cpu {r.clickhouse_cpu_s} s, load {os.getloadavg()}"
                    )
            client = base.clickhouse()
            n = args.events
            print(f"events per variant: {n:,} (calculation workload, 4 keys per event)")
            print(
                "variant | events/CPU-s | events/s | events folded | aggregator CPU s | "
                "ClickHouse CPU s | rollup rows/event | rollup bytes/event"
            )
            best = {v: best_by_cpu(runs[v]) for v in VARIANTS}
            for variant, r in best.items():
                optimize_final(client, r.database, "rollups")
                size = table_size(client, r.database, "rollups")
                print(
                    f"{variant} | {per_cpu(n, r):,.0f} | {n / r.wall_s:,.0f} | {r.events:,} | "
                    f"{r.cpu_s:.1f} | {r.clickhouse_cpu_s} | {size.rows / n:.2f} | "
                    f"{size.bytes_on_disk / n:.1f}"
                )
            ratio = per_cpu(n, best["plain"]) / max(per_cpu(n, best["dist"]), 1)
            print(f"counters / dist events per CPU-s: {ratio:.2f}x")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
