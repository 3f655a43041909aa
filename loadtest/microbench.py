"""What ``track()`` costs its caller: per-call time against a bare loop calling a no-op.

The tracker is connected to a real broker (its own topic, which no aggregator reads), so its
sender thread encodes and ships in the background and competes for the GIL as in an
application. Each call is timed alone with ``perf_counter_ns``; the bare loop calls a no-op
with the same arguments, so ``track - bare`` is what the client adds to a plain call.

``python -m tally.loadtest.microbench [--bootstrap HOST:PORT] [--calls N]`` prints the timings
and the client's CPU per event (tracking thread and sender thread) as JSON; without
``--bootstrap`` it starts an embedded broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tally.ingest import ClientSettings, Tracker
from tally.loadtest.freshness import percentile
from tally.loadtest.trackers import close_in_background
from tally.loadtest.workloads import Cardinality, TrackedEvent, Workload


@dataclass(frozen=True)
class CallTiming:
    """Per-call nanoseconds summarised in microseconds."""

    calls: int
    median_us: float
    p90_us: float
    p99_us: float
    mean_us: float


@dataclass(frozen=True)
class KindResult:
    """``track`` and the bare loop for one event shape."""

    kind: str
    leaves: int
    keys: int
    track: CallTiming
    bare: CallTiming
    net_median_us: float
    accepted: int


def _timing(samples: list[int]) -> CallTiming:
    ordered = sorted(samples)

    def us(ns: float | None) -> float:
        return round((ns or 0) / 1000, 3)

    return CallTiming(
        calls=len(ordered),
        median_us=us(percentile(ordered, 0.5)),
        p90_us=us(percentile(ordered, 0.9)),
        p99_us=us(percentile(ordered, 0.99)),
        mean_us=us(statistics.fmean(ordered)),
    )


def _noop(keys, values, at=None, route=None) -> bool:
    return True


def _time_calls(call: Callable[..., bool], events: list[TrackedEvent], calls: int) -> tuple:
    clock = time.perf_counter_ns
    samples = [0] * calls
    accepted = 0
    n = len(events)
    for i in range(calls):
        e = events[i % n]
        t0 = clock()
        ok = call(e.keys, e.values, None, e.route)
        samples[i] = clock() - t0
        accepted += ok
    return samples, accepted


def _kinds(seed: int) -> dict[str, list[TrackedEvent]]:
    w = Workload(Cardinality(), seed=seed)
    calcs = [w.calculation(0) for _ in range(4_000)]
    return {
        "calculation (success, 4 keys)": [e for e in calcs if "price" in e.values][:1_000],
        "refresh (1 key)": [w.refresh(0) for _ in range(1_000)],
        "schedule (2 keys)": [
            e for e in (w.scheduling(0) for _ in range(2_000)) if len(e.keys) == 2
        ][:1_000],
        "single counter": [TrackedEvent(("jobs",), {"count": 1}, 0)],
    }


def bench_track(
    bootstrap: str, topic: str, calls: int = 50_000, seed: int = 11
) -> list[KindResult]:
    """Time ``calls`` track() calls per event shape against the bare loop."""
    tracker = Tracker(ClientSettings(bootstrap_servers=bootstrap, topic=topic, source="micro"))
    try:
        tracker.track("loadtest::micro", {"count": 1})
        tracker.flush(60)
        out = []
        for kind, events in _kinds(seed).items():
            _time_calls(_noop, events, min(calls, 5_000))  # warm up both paths
            _time_calls(tracker.track, events, min(calls, 5_000))
            tracker.flush(60)
            bare, _ = _time_calls(_noop, events, calls)
            took, accepted = _time_calls(tracker.track, events, calls)
            tracker.flush(120)
            b, t = _timing(bare), _timing(took)
            sample = events[0]
            leaves = sum(1 for _ in _leaves(sample.values))
            out.append(
                KindResult(
                    kind=kind,
                    leaves=leaves,
                    keys=len(sample.keys),
                    track=t,
                    bare=b,
                    net_median_us=round(t.median_us - b.median_us, 3),
                    accepted=accepted,
                )
            )
        return out
    finally:
        tracker.flush(60)
        close_in_background(tracker)


def _leaves(values: dict):
    for value in values.values():
        if isinstance(value, dict):
            yield from _leaves(value)
        else:
            yield value


def cpu_per_event(bootstrap: str, topic: str, events: int = 200_000, seed: int = 11) -> dict:
    """CPU ns per ``track()`` on the calling thread, and per event on the other (sender)
    threads until the broker acknowledged all of them."""
    settings = ClientSettings(
        bootstrap_servers=bootstrap, topic=topic, source="micro-cpu", buffer_events=events + 1
    )
    tracker = Tracker(settings)
    try:
        tracker.track("loadtest::micro", {"count": 1})
        tracker.flush(60)
        sample = _kinds(seed)["calculation (success, 4 keys)"]
        process0, thread0 = time.process_time(), time.thread_time()
        for i in range(events):
            e = sample[i % len(sample)]
            tracker.track(e.keys, e.values, None, e.route)
        thread1 = time.thread_time()
        delivered = tracker.flush(300)
        process1, thread2 = time.process_time(), time.thread_time()
        return {
            "events": events,
            "delivered": delivered,
            "track_cpu_ns": round((thread1 - thread0) * 1e9 / events),
            "sender_cpu_ns": round(((process1 - process0) - (thread2 - thread0)) * 1e9 / events),
        }
    finally:
        close_in_background(tracker)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the micro-benchmark and print it as JSON."""
    parser = argparse.ArgumentParser(prog="python -m tally.loadtest.microbench")
    parser.add_argument("--bootstrap", help="a broker (default: start an embedded one)")
    parser.add_argument("--topic", default="tally.loadtest.micro")
    parser.add_argument("--calls", type=int, default=50_000, help="timed calls per shape")
    parser.add_argument("--cpu-events", type=int, default=200_000)
    args = parser.parse_args(argv)
    from tally.embedded.kafka_broker import start_kafka
    from tally.kafka.admin import create_topic

    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = start_kafka(Path(tempfile.mkdtemp(prefix="tally-micro-")), partitions_default=1)
        bootstrap = broker.bootstrap
    try:
        asyncio.run(create_topic(bootstrap, args.topic, 1))
        kinds = bench_track(bootstrap, args.topic, args.calls)
        cpu = cpu_per_event(bootstrap, args.topic, args.cpu_events)
        print(json.dumps({"kinds": [asdict(k) for k in kinds], "cpu": cpu}, indent=1))
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
