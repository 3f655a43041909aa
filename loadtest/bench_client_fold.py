"""Producer CPU, bytes and records per event, with client-side folding on or off.

``python -m tally.loadtest.bench_client_fold --bootstrap HOST:PORT --workload mixed|jobs
[--events N] [--no-fold]`` tracks N events as fast as one thread can (``at`` = now, as a live
job does) into a fresh 4-partition topic, flushes, and prints JSON: CPU per event on the
tracking thread (``track``) and on the other threads (the sender: drain, fold, encode, produce)
until the broker acknowledged everything, then reads the topic back for the bytes (record
values, before Kafka's lz4) and wire events per tracked event.

- ``mixed``: the seeds' mix (``Workload``: 90% calculations with four keys, refreshes,
  schedules), high-cardinality keys (a product per calculation);
- ``jobs``: what job hooks send (``ingest/jobs``: ``event::job`` keys per tenant, count,
  a ``dist`` duration, resources and state under total, jobs.<job> and tenants.<tenant>),
  20 jobs x 10 tenants.

It only uses the client API that older trees have too, so the same file measures an older
checkout: ``PYTHONPATH=<dir holding a 'tally' link to that checkout> python <this file>``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from tally.ingest import ClientSettings, Tracker
from tally.ingest.kinds import dist
from tally.kafka.admin import create_topic
from tally.loadtest.workloads import Cardinality, Workload
from tally.schemas.wire import BatchDecoder
from tally.schemas.wire_columns import event_count

PARTITIONS = 4


def events(workload: str, count: int, seed: int = 11) -> list[tuple[tuple, dict, str | None]]:
    """``count`` events (keys, values, route) of ``workload``, built before timing."""
    if workload == "mixed":
        w = Workload(Cardinality(), seed=seed)
        return [(e.keys, e.values, e.route) for e in w.events(count, 0, 60)]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        job, tenant = f"job_{rng.randrange(20)}", f"tenant_{rng.randrange(10)}"
        state = rng.choices(("success", "failure", "retry"), (94, 4, 2))[0]
        values = {
            "count": 1,
            "duration": dist(rng.randint(5, 60_000)),
            "resources": rng.randint(0, 50),
            "state": {state: 1},
        }
        fanned = {"total": values, "jobs": {job: values}, "tenants": {tenant: values}}
        out.append((("event::job", f"event::job::{tenant}"), fanned, None))
    return out


def read_back(bootstrap: str, topic: str) -> tuple[int, int, int]:
    """(records, bytes of their values, wire events) on ``topic``."""

    async def run() -> tuple[int, int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            decoder, records, size, wire = BatchDecoder(), 0, 0, 0
            async with asyncio.timeout(300):
                while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                    for batch in (await consumer.getmany(timeout_ms=500)).values():
                        for record in batch:
                            records += 1
                            size += len(record.value)
                            wire += event_count(decoder.decode(record.value))
            return records, size, wire
        finally:
            await consumer.stop()

    return asyncio.run(run())


def measure(bootstrap: str, workload: str, count: int, fold: bool) -> dict:
    """Track ``count`` events of ``workload`` and report CPU, bytes and records per event."""
    topic = f"bench-fold-{os.urandom(4).hex()}"
    asyncio.run(create_topic(bootstrap, topic, PARTITIONS))
    extra = {}
    if "fold" in {f.name for f in dataclasses.fields(ClientSettings)}:
        extra["fold"] = fold
    elif not fold:
        raise SystemExit("this tree has no client-side folding (it never folds)")
    settings = ClientSettings(
        bootstrap_servers=bootstrap, topic=topic, buffer_events=count + 10, **extra
    )
    todo = events(workload, count)
    tracker = Tracker(settings)
    try:
        tracker.track("bench::warmup", {"count": 1})
        tracker.flush(60)
        track = tracker.track
        process0, thread0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
        for keys, values, route in todo:
            track(keys, values, None, route)
        thread1 = time.thread_time()
        delivered = tracker.flush(600)
        process1, thread2 = time.process_time(), time.thread_time()
        wall = time.perf_counter() - wall0
        stats = tracker.stats()
    finally:
        tracker.close(60)
    records, size, wire = read_back(bootstrap, topic)
    track_cpu = (thread1 - thread0) / count
    sender_cpu = ((process1 - process0) - (thread2 - thread0)) / count
    return {
        "workload": workload,
        "fold": bool(extra.get("fold", False)),
        "events": count,
        "delivered": delivered,
        "sent_events": stats.sent_events - 1,
        "wall_s": round(wall, 2),
        "track_cpu_us": round(track_cpu * 1e6, 3),
        "sender_cpu_us": round(sender_cpu * 1e6, 3),
        "producer_cpu_us": round((track_cpu + sender_cpu) * 1e6, 3),
        "bytes_per_event": round(size / count, 2),
        "wire_events_per_event": round((wire - 1) / count, 4),
        "records_per_1k_events": round(records * 1000 / count, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Measure one workload and print it as JSON."""
    parser = argparse.ArgumentParser(prog="python -m tally.loadtest.bench_client_fold")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--workload", choices=("mixed", "jobs"), default="mixed")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--no-fold", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.bootstrap, args.workload, args.events, not args.no_fold)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
