"""Trace benchmarks (BENCHMARKS.md, "Traces"): ``python -m tally.loadtest.bench_traces <what>``.

- ``block``: cost per traced block on the job thread, and per run (sampled, unsampled);
- ``pipeline``: N traced jobs/s of 10 lines each through Kafka and a trace writer into
  ClickHouse for S seconds; reports what arrived, the delay, and bytes stored per line;
- ``lookup``: inserts synthetic lines directly into ClickHouse, then times opening one
  execution's trace (index row + lines) by id;
- ``listing``: inserts synthetic executions of 20 keys (a tenth adopted from a hook's key)
  and times one hour's listing of a key matched on ``key`` alone (the baseline) against
  ``key`` or ``hook_key`` (what ``traces.queries`` asks since adopted runs keep both).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tally.ingest.jobs import JobTracker
from tally.traces import SamplingPolicy, TraceRecorder, note, trace
from tally.traces.model import Execution


class _NoMetrics:
    def track(self, *args: object, **kwargs: object) -> bool:
        return True


class _Queue:
    """What ``TraceShipper.ship`` does on the job thread: one bounded deque append."""

    def __init__(self) -> None:
        self.items: deque = deque(maxlen=100_000)

    def ship(self, execution: Execution) -> bool:
        self.items.append((execution, execution.id))
        return True


def _per_call(fn, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter_ns()
        fn(n)
        best = min(best, (time.perf_counter_ns() - began) / n)
    return best


def bench_block(blocks: int = 10, runs: int = 20_000) -> None:
    """Job-thread cost: a block inside a run, and a whole run with and without traces."""
    plain = JobTracker(_NoMetrics(), "bench")
    sampled = JobTracker(
        _NoMetrics(), "bench", traces=TraceRecorder(_Queue(), SamplingPolicy(every=1))
    )
    unsampled = JobTracker(
        _NoMetrics(), "bench", traces=TraceRecorder(_Queue(), SamplingPolicy(every=0))
    )
    dropped = JobTracker(
        _NoMetrics(), "bench",
        traces=TraceRecorder(_Queue(), SamplingPolicy(every=0, index_unsampled=False)),
    )  # fmt: skip

    def job_for(jobs: JobTracker):
        @jobs(name="bench_job")
        def job() -> None:
            for i in range(blocks):
                with trace("step"):
                    note(i)

        def loop(n: int) -> None:
            for _ in range(n):
                job()

        return loop

    results = {name: _per_call(job_for(j), runs) for name, j in (
        ("no traces", plain), ("sampled", sampled), ("unsampled, indexed", unsampled),
        ("unsampled, not indexed", dropped),
    )}  # fmt: skip
    base = results["no traces"]
    print(f"run of {blocks} blocks (each with a note); best of 5 x {runs} runs, ns per run:")
    for name, ns in results.items():
        extra = ns - base
        print(f"  {name:<24} {ns / 1000:8.2f} us/run   traced extra {extra / 1000:7.2f} us/run"
              f"   = {extra / blocks / 1000:6.2f} us per block (+note)")  # fmt: skip

    with_run = JobTracker(
        _NoMetrics(), "bench", traces=TraceRecorder(_Queue(), SamplingPolicy(every=0))
    )
    run = with_run.start("bench_block")
    from tally.ingest.jobs.tracking import ACTIVE_RUN

    token = ACTIVE_RUN.set(run)

    def blocks_only(n: int) -> None:
        for _ in range(n):
            with trace("step"):
                pass

    per_block = _per_call(blocks_only, 900)  # stays under max_lines (1000)
    ACTIVE_RUN.reset(token)
    with_run.finish(run)

    def outside(n: int) -> None:
        for _ in range(n):
            with trace("step"):
                pass

    print(f"  one empty block inside a run: {per_block / 1000:.2f} us;"
          f" outside any run: {_per_call(outside, 100_000) / 1000:.3f} us")  # fmt: skip


def bench_pipeline(rate: int, seconds: float, workdir: Path) -> None:
    """``rate`` jobs/s of 10 lines for ``seconds`` through Kafka + one trace writer."""
    from tally.embedded.stack import StackConfig, start_stack
    from tally.ingest import ClientSettings
    from tally.traces.transport import TraceShipper, trace_settings

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
    stack = start_stack(workdir, StackConfig(partitions=1, aggregators=0), aggregators=False)
    writer = None
    try:
        from tally.traces.setup import prepare_traces

        asyncio.run(prepare_traces(stack.kafka.bootstrap, stack.clickhouse_settings, "tally"))
        import os
        import subprocess

        from tally.traces.setup import trace_writer_command

        env = {**os.environ, "TALLY_CLICKHOUSE_PASSWORD": stack.clickhouse.password}
        log = (workdir / "writer.log").open("ab")
        writer = subprocess.Popen(
            trace_writer_command(stack.kafka.bootstrap, stack.clickhouse.url, stack.clickhouse.user,
                                 "tally", 1.0),
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        ship = TraceShipper(trace_settings(ClientSettings(bootstrap_servers=stack.kafka.bootstrap)))
        jobs = JobTracker(
            _NoMetrics(), "event::bench", traces=TraceRecorder(ship, SamplingPolicy(every=1))
        )

        @jobs(name="bench_job", tenant="acme")
        def job(i: int) -> None:
            for j in range(5):
                with trace(f"step {j}") as block:
                    block.result({"i": i, "j": j, "price": 12.5 * j})

        total = int(rate * seconds)
        began = time.monotonic()
        for i in range(total):
            job(i)
            if i % 50 == 0:
                ahead = began + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        produced = time.monotonic() - began
        ship.flush(120)
        client = stack.clickhouse_client()
        deadline = time.monotonic() + 300
        stored = lines = 0
        while time.monotonic() < deadline:
            stored = client.query(
                "SELECT count() FROM tally.trace_executions WHERE key = 'event::bench'"
            ).result_rows[0][0]
            lines = client.query("SELECT count() FROM tally.trace_lines").result_rows[0][0]
            if stored >= total and lines >= total * 10:
                break
            time.sleep(0.2)
        done = time.monotonic() - began
        client.command("OPTIMIZE TABLE tally.trace_lines FINAL")
        parts = client.query(
            "SELECT sum(data_compressed_bytes), sum(data_uncompressed_bytes), sum(rows)"
            " FROM system.parts WHERE database = 'tally' AND table = 'trace_lines' AND active"
        ).result_rows[0]
        print(f"produced {total} jobs ({total * 10} lines) in {produced:.1f}s "
              f"= {total / produced:.0f} jobs/s; stored {stored} executions and {lines} lines "
              f"{done - produced:.1f}s after the last job")  # fmt: skip
        print(f"trace_lines: {parts[0] / parts[2]:.1f} bytes/line compressed, "
              f"{parts[1] / parts[2]:.1f} uncompressed ({parts[2]} rows)")  # fmt: skip
        ship.close()
    finally:
        if writer is not None:
            writer.send_signal(signal.SIGTERM)
            writer.wait(60)
        stack.stop()


@contextmanager
def _trace_tables(workdir: Path) -> Iterator[Any]:
    """A client of an embedded ClickHouse under ``workdir`` with the trace tables (stopped on
    exit)."""
    import clickhouse_connect

    from tally.embedded.clickhouse.process import start_clickhouse
    from tally.traces.ddl import TraceSchema

    clickhouse = start_clickhouse(workdir / "clickhouse")
    try:
        client = clickhouse_connect.get_client(
            host=clickhouse.host, port=clickhouse.port, username=clickhouse.user,
            password=clickhouse.password, send_receive_timeout=3600,
        )  # fmt: skip
        for statement in TraceSchema().statements():
            client.command(statement)
        yield client
    finally:
        clickhouse.stop()


def bench_lookup(executions: int, lines_each: int, workdir: Path, lookups: int = 30) -> None:
    """Insert ``executions * lines_each`` synthetic lines directly, then open random traces."""
    from tally.read.runner import run_sync
    from tally.traces.ddl import TraceSchema
    from tally.traces.queries import execution_tree

    with _trace_tables(workdir) as client:
        schema = TraceSchema()
        n = executions * lines_each
        base = f"toDateTime64({int(time.time())}, 6, 'UTC')"  # one time base for both tables
        began = time.monotonic()
        client.command(
            f"""INSERT INTO tally.trace_executions (execution_id, parent_id, ref, job, tenant,
                key, state, code, error, attempt, started, duration_us, tags, sampled, lines,
                dropped) SELECT
                lower(hex(cityHash64(number))) || lower(hex(cityHash64(number + 1))), '', '',
                'job_' || toString(number % 50), 'tenant' || toString(number % 200), 'event::job',
                if(number % 20 = 0, 'failure', 'success'), 'OK', '', 1,
                {base} - toIntervalSecond(number % 86400), 1000 + number % 5000,
                map('customer', toString(number % 1000)), 'sample', {lines_each}, 0
              FROM numbers({executions})""",
            settings={"async_insert": 0, "max_insert_threads": 1},
        )
        client.command(
            f"""INSERT INTO tally.trace_lines SELECT
                lower(hex(cityHash64(intDiv(number, {lines_each})))) ||
                    lower(hex(cityHash64(intDiv(number, {lines_each}) + 1))),
                {base} - toIntervalSecond(intDiv(number, {lines_each}) % 86400),
                number % {lines_each} + 1, if(number % {lines_each} = 0, 0, 1),
                if(number % {lines_each} = 0, 0, 1), 'block',
                'step ' || toString(number % {lines_each}),
                (number % {lines_each}) * 100, 90, 'ok',
                '{{"price":' || toString(number % 9973) || ',"currency":"EUR"}}', false, 0
              FROM numbers({n})""",
            settings={"async_insert": 0, "max_insert_threads": 1},
        )
        inserted = time.monotonic() - began
        client.command("OPTIMIZE TABLE tally.trace_lines FINAL")
        print(f"inserted {executions} executions and {n} lines in {inserted:.1f}s")
        rng = random.Random(5)
        ids = [
            client.query(
                "SELECT lower(hex(cityHash64({k:UInt64})))"
                " || lower(hex(cityHash64({k:UInt64} + 1)))",
                parameters={"k": rng.randrange(executions)},
            ).result_rows[0][0]
            for _ in range(lookups)
        ]
        times = []
        for execution_id in ids:
            t0 = time.perf_counter()
            found = run_sync(client, execution_tree(schema, execution_id))
            times.append((time.perf_counter() - t0) * 1000)
            assert found is not None and len(found[1]) >= 1
        times.sort()
        print(f"open one execution's trace (index row + {lines_each} lines, 2 queries) by id, "
              f"{lookups} random ids: median {statistics.median(times):.1f} ms, "
              f"p90 {times[int(0.9 * len(times)) - 1]:.1f} ms, max {times[-1]:.1f} ms")  # fmt: skip


LISTING = (
    "SELECT execution_id FROM tally.trace_executions WHERE {match}"
    " AND started >= {{start:DateTime64(6)}} AND started < {{end:DateTime64(6)}}"
    " ORDER BY started DESC, execution_id DESC LIMIT 100"
)


def bench_listing(executions: int, workdir: Path, rounds: int = 30) -> None:
    """One hour's executions of a key: ``key`` alone vs ``key`` or ``hook_key``, same run."""
    from datetime import UTC, datetime, timedelta

    with _trace_tables(workdir) as client:
        now = int(time.time())
        client.command(
            f"""INSERT INTO tally.trace_executions (execution_id, job, tenant, key, state,
                started, duration_us, sampled, hook_key) SELECT
                lower(hex(cityHash64(number))) || lower(hex(cityHash64(number + 1))),
                'job_' || toString(number % 50), 'tenant' || toString(number % 200),
                'event::k' || toString(number % 20), 'success',
                toDateTime64({now}, 6, 'UTC') - toIntervalSecond(number % 86400), 1000, '',
                if(number % 10 = 0, 'event::job', '')
              FROM numbers({executions})""",
            settings={"async_insert": 0, "max_insert_threads": 1},
        )
        client.command("OPTIMIZE TABLE tally.trace_executions FINAL")
        end = datetime.fromtimestamp(now, UTC) - timedelta(hours=2)
        params = {"key": "event::k3", "start": end - timedelta(hours=1), "end": end}
        shapes = {
            "key alone (baseline)": "key = {key:String}",
            "key or hook_key": "(key = {key:String} OR hook_key = {key:String})",
        }
        times: dict[str, list[float]] = {name: [] for name in shapes}
        for _ in range(rounds):  # interleaved: both shapes see the same box
            for name, match in shapes.items():
                t0 = time.perf_counter()
                rows = client.query(LISTING.format(match=match), parameters=params).result_rows
                times[name].append((time.perf_counter() - t0) * 1000)
                assert len(rows) == 100
        base = statistics.median(times["key alone (baseline)"])
        print(f"{executions} executions over 24 h, 20 keys; one hour of one key, 100 rows:")
        for name, ms in times.items():
            median = statistics.median(ms)
            print(f"  {name}: median {median:.1f} ms ({median / base:.2f}x the baseline)")


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m tally.loadtest.bench_traces")
    p.add_argument("what", choices=["block", "pipeline", "lookup", "listing"])
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--executions", type=int, default=1_000_000)
    p.add_argument("--lines", type=int, default=10)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tally-trace-bench-") as tmp:
        if a.what == "block":
            bench_block()
        elif a.what == "pipeline":
            bench_pipeline(a.rate, a.seconds, Path(tmp))
        elif a.what == "listing":
            bench_listing(a.executions, Path(tmp))
        else:
            bench_lookup(a.executions, a.lines, Path(tmp))


if __name__ == "__main__":
    main()
