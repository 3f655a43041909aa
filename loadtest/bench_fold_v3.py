"""Wire v3/v4 (columns) against v2 (one msgpack array per event): consume, decode, catch-up.

``python -m tally.loadtest.bench_fold_v3 [--events 400000] [--job-events 200000] [--rounds 2]``
starts the embedded stack (Kafka KRaft, ClickHouse on chDB, no aggregators) and pre-produces
the same events once per wire version (2, 3 and 4 = narrow columns; records of 2,000 events,
lz4, two partitions):

- ``mixed``: the seeds' mix (``Workload.events``: calculations, refreshes, schedules);
- ``jobs``: job runs as the job hooks report them (``job_values``: ``duration`` and
  ``queue_lag`` as ``dist(ms)``, under total, jobs.<job> and tenants.<tenant>).

Then, in one run: (a) bare consume + msgspec decode of each v2 topic, (b) bare consume + v3/v4
column read (``read_columns``: ``numpy.frombuffer`` of every column) of each v3/v4 topic, both
in this process with the aggregator's consumer settings and GC thresholds; the fold alone
(``PartitionFold.add_record`` and ``rows()`` per 40,000 events) over the records consumed;
(c)/(d) unless ``--no-catchup``, one fresh ``tally.aggregator``
process per topic replaying it from the beginning (``catchup.run_catchup``: events per
CPU-second of that process), alternating versions per round, best of ``--rounds`` by CPU. Ratios
are against (a) of the same workload, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tally.aggregator.cli import FOLD_GC_THRESHOLD
from tally.aggregator.columns import read_columns
from tally.aggregator.fold import PartitionFold
from tally.embedded.stack import StackConfig, start_stack
from tally.ingest.flatten import flatten_all
from tally.ingest.jobs.run import Run, event_values, job_values
from tally.loadtest.bare_consumer import from_the_beginning
from tally.loadtest.bench_catchup_dist import best_by_cpu, per_cpu, produce, replay_spec
from tally.loadtest.catchup import CatchupResult, run_catchup
from tally.loadtest.endpoints import Endpoints
from tally.loadtest.workloads import Cardinality, Workload
from tally.schemas.limits import Limits
from tally.schemas.wire import BatchDecoder, BatchEncoder, BatchV3
from tally.schemas.wire_columns import ColumnsEncoder

RECORD = 2_000
JOBS = [f"job_{i}" for i in range(12)]
TENANTS = [f"tenant{i}" for i in range(20)]
WORKLOADS = ("mixed", "jobs")
VERSIONS = (2, 3, 4)

Event = tuple


def mixed_events(n: int, start: int) -> list[Event]:
    """The seeds' mix, flattened as ``track`` does."""
    out = []
    for e in Workload(Cardinality(), seed=7).events(n, start, 3600):
        paths, numbers, kinds = flatten_all(e.values, Limits())
        out.append((e.at, e.keys, paths, numbers) + ((kinds,) if kinds else ()))
    return out


def job_events(n: int, start: int) -> list[Event]:
    """Job runs with duration and queue lag as distributions (what the job hooks send)."""
    rng = random.Random(11)
    out = []
    for i in range(n):
        job, tenant = rng.choice(JOBS), rng.choice(TENANTS)
        run = Run(job, tenant, resources=rng.randrange(50), attempt=rng.choice((1, 1, 1, 2)))
        run.duration_ms = rng.randint(1, 60_000)
        run.lag_ms = rng.randint(0, 30_000)
        values = event_values(job, tenant, job_values(run))
        paths, numbers, kinds = flatten_all(values, Limits())
        out.append((start + i * 3600 // n, ("jobs", f"jobs::{tenant}"), paths, numbers, kinds))
    return out


def encode(events: list[Event], version: int, record: int = RECORD) -> list[bytes]:
    """Records of ``record`` events in wire ``version`` (2 writes v1 for plain chunks)."""
    encoder = ColumnsEncoder("bench", version) if version >= 3 else BatchEncoder("bench")
    return [encoder.encode(events[i : i + record]) for i in range(0, len(events), record)]


@dataclass(frozen=True)
class Bare:
    """A bare consume of a topic with a per-record reader."""

    events: int
    records: int
    payload_bytes: int
    wall_s: float
    cpu_s: float
    captured: list[tuple[bytes, int]]  # (payload, timestamp_ms) in consume order

    @property
    def per_cpu_s(self) -> float:
        return self.events / self.cpu_s if self.cpu_s > 0 else 0.0


def read_v2(decoder: BatchDecoder, payload: bytes) -> int:
    """msgspec decode of a v1/v2 record: its event count."""
    return len(decoder.decode(payload).events)


def read_v3(decoder: BatchDecoder, payload: bytes) -> int:
    """msgspec decode of a v3/v4 record and ``frombuffer`` of every column: its event count."""
    batch = decoder.decode(payload)
    assert isinstance(batch, BatchV3)
    return read_columns(batch).n


async def bare_consume(
    bootstrap: str, topic: str, group: str, read: Callable[[BatchDecoder, bytes], int]
) -> Bare:
    """Consume ``topic`` from the beginning like the aggregator does, reading every record."""
    async with from_the_beginning(topic, bootstrap, group, 2_000) as (consumer, ends):
        remaining = {tp for tp, end in ends.items() if end > 0}
        decoder = BatchDecoder()
        events = records = size = 0
        captured: list[tuple[bytes, int]] = []
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while remaining:
            batches = await consumer.getmany(timeout_ms=100, max_records=2_000)
            for tp, batch in batches.items():
                for record in batch:
                    events += read(decoder, record.value)
                    size += len(record.value)
                    captured.append((record.value, record.timestamp))
                records += len(batch)
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Bare(events, records, size, wall, cpu, captured)


def fold_cpu(captured: list[tuple[bytes, int]], flush_events: int = 40_000) -> float:
    """CPU seconds of a real ``PartitionFold`` over the consumed records, ``rows()`` per flush."""
    fold = PartitionFold(Limits(), BatchDecoder())
    t0 = time.process_time()
    for offset, (payload, timestamp_ms) in enumerate(captured):
        fold.add_record(payload, offset, timestamp_ms)
        if fold.events >= flush_events:
            fold.rows()
            fold.clear()
    fold.rows()
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=400_000, help="mixed workload events")
    parser.add_argument("--job-events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-s", type=float, default=600.0)
    parser.add_argument("--session-timeout-ms", type=int, default=30_000)
    parser.add_argument(
        "--catchup", action=argparse.BooleanOptionalAction, default=True,
        help="also replay each topic with a fresh aggregator process (c, d)",
    )  # fmt: skip
    args = parser.parse_args()
    now = int(time.time())
    counts = {"mixed": args.events, "jobs": args.job_events}
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp) / "stack", StackConfig(partitions=1), aggregators=False)
        try:
            base = Endpoints.of_stack(stack)
            for workload in WORKLOADS:
                build = mixed_events if workload == "mixed" else job_events
                events = build(counts[workload], now - 3600)
                for version in VERSIONS:
                    payloads = encode(events, version)
                    print(
                        f"{workload} v{version}: {len(payloads)} records, "
                        f"{sum(map(len, payloads)) / len(events):.1f} bytes/event",
                        flush=True,
                    )
                    asyncio.run(produce(base.bootstrap, f"bench.{workload}.v{version}", payloads))
            # The bare consumers run like the aggregator: nothing else alive, its GC thresholds.
            del events, payloads
            gc.collect()
            gc.set_threshold(*FOLD_GC_THRESHOLD)
            print(f"load average before: {os.getloadavg()}")
            bare: dict[tuple[str, int], Bare] = {}
            for workload in WORKLOADS:
                for version in VERSIONS:
                    topic = f"bench.{workload}.v{version}"
                    reader = read_v3 if version >= 3 else read_v2
                    b = asyncio.run(bare_consume(base.bootstrap, topic, f"bare-{topic}", reader))
                    bare[workload, version] = b
                    print(
                        f"bare consume + {'column read' if version >= 3 else 'decode'} {topic}: "
                        f"{b.events:,} events, cpu {b.cpu_s:.2f} s, "
                        f"{b.per_cpu_s:,.0f} events/CPU-s",
                        flush=True,
                    )
            folds: dict[tuple[str, int], list[float]] = {}
            for _ in range(args.rounds):  # the fold alone, in this process, best of rounds
                for key, b in bare.items():
                    folds.setdefault(key, []).append(fold_cpu(b.captured))
            for (workload, version), cpus in folds.items():
                print(
                    f"fold only (PartitionFold) {workload} v{version}: cpu {min(cpus):.2f} s, "
                    f"{counts[workload] / min(cpus):,.0f} events/CPU-s",
                    flush=True,
                )
            runs: dict[tuple[str, int], list[CatchupResult]] = {}
            for round_ in range(args.rounds if args.catchup else 0):
                for workload in WORKLOADS:
                    for version in VERSIONS:
                        topic = f"bench.{workload}.v{version}"
                        name = f"{workload}_v{version}_{round_}"
                        spec = replay_spec(base, topic, name, Path(tmp), args)
                        r = run_catchup(replace(spec, clickhouse_pid=stack.clickhouse.pid))
                        runs.setdefault((workload, version), []).append(r)
                        print(
                            f"round {round_} {topic}: {r.events:,} events complete={r.complete} "
                            f"wall {r.wall_s:.1f} s, cpu {r.cpu_s:.2f} s, "
                            f"{per_cpu(counts[workload], r):,.0f} events/CPU-s, "
                            f"load {os.getloadavg()}",
                            flush=True,
                        )
            print(f"load average after: {os.getloadavg()}")
            print(
                "workload | what | events/CPU-s | CPU s | ratio to bare consume + v2 decode "
                "(same workload)"
            )
            for workload in WORKLOADS:
                n = counts[workload]
                limit = bare[workload, 2].per_cpu_s
                rows = [
                    ("bare consume + msgspec decode (v2)", bare[workload, 2].per_cpu_s,
                     bare[workload, 2].cpu_s),
                ] + [
                    (f"bare consume + column read (v{v})", bare[workload, v].per_cpu_s,
                     bare[workload, v].cpu_s)
                    for v in VERSIONS[1:]
                ]  # fmt: skip
                for version in VERSIONS:
                    cpu = min(folds[workload, version])
                    rows.append((f"fold only v{version}", n / cpu, cpu))
                for version in VERSIONS if args.catchup else ():
                    if not any(r.complete for r in runs[workload, version]):
                        print(f"{workload} v{version}: no catch-up completed (raise --max-s)")
                        continue
                    best = best_by_cpu(runs[workload, version])
                    rows.append((f"aggregator catch-up v{version}", per_cpu(n, best), best.cpu_s))
                for what, rate, cpu in rows:
                    print(f"{workload} | {what} | {rate:,.0f} | {cpu:.2f} | {rate / limit:.3f}")
                v2 = min(folds[workload, 2])
                for v in VERSIONS[1:]:
                    print(f"{workload}: fold v{v} / v2 = {v2 / min(folds[workload, v]):.2f}x")
                if args.catchup and all(
                    any(r.complete for r in runs[workload, v]) for v in VERSIONS
                ):
                    c2 = per_cpu(n, best_by_cpu(runs[workload, 2]))
                    for v in VERSIONS[1:]:
                        cv = per_cpu(n, best_by_cpu(runs[workload, v]))
                        print(f"{workload}: catch-up v{v} / v2 = {cv / max(c2, 1):.2f}x")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
