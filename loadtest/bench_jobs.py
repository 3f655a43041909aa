"""What job instrumentation costs the job's caller: ``python -m tally.loadtest.bench_jobs``.

Each variant is a no-op job; every call is timed alone with ``perf_counter_ns`` and compared
with the bare no-op timed the same way in the same run (interleaved in rounds, so drift and
the sender thread's GIL share hit both alike). ``overhead = variant - bare``, per percentile.

Variants: the decorator (``@jobs``), the context manager, an async decorated job (awaited in
one loop), a run with queue lag and attempt (what the framework hooks emit), and ``track()``
alone with the same event (the thin client's share of the overhead).

The tracker points at an unreachable broker with buffers big enough to hold every event
(nothing is dropped, the sender keeps encoding in the background), or at ``--bootstrap``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from tally.embedded.kafka_node import free_ports
from tally.ingest import ClientSettings, Tracker
from tally.ingest.jobs import JobTracker, Run, event_values, job_values
from tally.ingest.jobs.tracking import ACTIVE_RUN


@dataclass(frozen=True)
class Timing:
    """Per-call time of one variant and its overhead over the bare call (microseconds)."""

    name: str
    leaves: int
    median_us: float
    p99_us: float
    overhead_median_us: float
    overhead_p99_us: float


def unreachable_bootstrap() -> str:
    """A 127.0.0.1 port nothing listens on."""
    return f"127.0.0.1:{free_ports(1)[0]}"


def percentile(ordered: list[int], q: float) -> float:
    """The ``q`` quantile of sorted samples (nearest rank)."""
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def time_calls(fn: Callable[[], object], calls: int) -> list[int]:
    """Nanoseconds of each of ``calls`` calls of ``fn``."""
    clock = time.perf_counter_ns
    out = [0] * calls
    for i in range(calls):
        started = clock()
        fn()
        out[i] = clock() - started
    return out


async def time_awaits(fn: Callable[[], object], calls: int) -> list[int]:
    """Nanoseconds of each of ``calls`` awaits of ``fn()``."""
    clock = time.perf_counter_ns
    out = [0] * calls
    for i in range(calls):
        started = clock()
        await fn()  # type: ignore[misc]
        out[i] = clock() - started
    return out


def interleaved(variants: dict[str, Callable[[int], list[int]]], calls: int, rounds: int):
    """Run every variant for ``calls`` calls in ``rounds`` alternating rounds."""
    samples: dict[str, list[int]] = {name: [] for name in variants}
    per_round = max(1, calls // rounds)
    for _ in range(rounds):
        for name, measure in variants.items():
            samples[name].extend(measure(per_round))
    return samples


def build_variants(jobs: JobTracker, tracker: Tracker) -> dict[str, Callable[[int], list[int]]]:
    """The bare no-op and the instrumented variants, each as ``measure(calls) -> samples``."""

    def noop() -> None:
        return None

    async def anoop() -> None:
        return None

    decorated = jobs(name="bench.NoopJob", tenant="acme")(noop)
    adecorated = jobs(name="bench.AsyncNoopJob", tenant="acme")(anoop)
    job = jobs.name("bench.HookedJob")
    due = time.time()

    def managed() -> None:
        with jobs.run("bench.ManagedJob", "acme"):
            pass

    def hooked() -> None:  # what a framework hook does around a task
        run = jobs.start(job, "acme", due_at=due, attempt=1)
        token = ACTIVE_RUN.set(run)
        ACTIVE_RUN.reset(token)
        jobs.finish(run)

    values = event_values("bench__noop_job", "acme", job_values(Run("bench__noop_job")))
    keys = ("event::job", "event::job::acme")

    def track_only() -> None:
        tracker.track(keys, values)

    loop = asyncio.new_event_loop()

    def awaited(fn: Callable[[], object]) -> Callable[[int], list[int]]:
        return lambda n: loop.run_until_complete(time_awaits(fn, n))

    return {
        "bare no-op": lambda n: time_calls(noop, n),
        "@jobs decorator": lambda n: time_calls(decorated, n),
        "with jobs.run()": lambda n: time_calls(managed, n),
        "hook (lag+attempt)": lambda n: time_calls(hooked, n),
        "track() alone": lambda n: time_calls(track_only, n),
        "bare async no-op": awaited(anoop),
        "@jobs async": awaited(adecorated),
    }


LEAVES = {
    "@jobs decorator": 18,
    "with jobs.run()": 18,
    "hook (lag+attempt)": 36,
    "track() alone": 18,
    "@jobs async": 18,
}


def summarise(samples: dict[str, list[int]]) -> list[Timing]:
    """Median and p99 per variant, and over the bare call of the same kind (sync/async)."""
    ordered = {name: sorted(s) for name, s in samples.items()}
    out = []
    for name, values in ordered.items():
        bare = ordered["bare async no-op" if "async" in name else "bare no-op"]
        med, p99 = percentile(values, 0.5), percentile(values, 0.99)
        out.append(
            Timing(
                name,
                LEAVES.get(name, 0),
                round(med / 1000, 3),
                round(p99 / 1000, 3),
                round((med - percentile(bare, 0.5)) / 1000, 3),
                round((p99 - percentile(bare, 0.99)) / 1000, 3),
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table; exit 0."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=200_000, help="timed calls per variant")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    p.add_argument("--bootstrap", help="a real broker (default: an unreachable port)")
    args = p.parse_args(argv)
    logging.getLogger("tally").setLevel(logging.CRITICAL)  # the unreachable broker is expected
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    variants_count = len(LEAVES) + 2
    settings = ClientSettings(
        bootstrap_servers=args.bootstrap or unreachable_bootstrap(),
        buffer_events=args.calls * variants_count + 10_000,
        pending_bytes=8 * 1024**3,
        close_timeout_s=1.0 if args.bootstrap is None else 30.0,
    )
    tracker = Tracker(settings)
    jobs = JobTracker(tracker, key="event::job")
    variants = build_variants(jobs, tracker)
    interleaved(variants, max(1_000, args.calls // 20), args.rounds)  # warm up
    samples = interleaved(variants, args.calls, args.rounds)
    stats = tracker.stats()
    print(f"python {sys.version.split()[0]}, {args.calls} calls per variant, {args.rounds} rounds")
    print(f"broker: {args.bootstrap or 'unreachable (events buffered)'}")
    header = f"{'variant':<20} {'leaves':>6} {'median us':>10} {'p99 us':>9} "
    print(header + f"{'overhead med':>13} {'overhead p99':>13}")
    for t in summarise(samples):
        print(
            f"{t.name:<20} {t.leaves or '':>6} {t.median_us:>10.3f} {t.p99_us:>9.3f} "
            f"{t.overhead_median_us:>13.3f} {t.overhead_p99_us:>13.3f}"
        )
    mean = statistics.fmean(samples["@jobs decorator"]) - statistics.fmean(samples["bare no-op"])
    print(f"decorator mean overhead: {mean / 1000:.3f} us")
    print(
        f"tracker: accepted={stats.accepted} dropped={stats.dropped_overflow} "
        f"invalid={stats.invalid}; instrumentation errors={jobs.errors}"
    )
    tracker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
