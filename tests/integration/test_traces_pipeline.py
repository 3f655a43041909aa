"""Traces through the real pipeline: job -> client -> Kafka -> trace writer -> ClickHouse."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from tally.ingest.jobs import JobTracker
from tally.read.runner import run_sync
from tally.traces import SamplingPolicy, TraceRecorder, artifact, note, tag, trace
from tally.traces.ddl import TraceSchema
from tally.traces.model import Execution
from tally.traces.queries import (
    ExecutionFilter,
    JobLogFilter,
    children,
    execution_tree,
    list_executions,
    search_job_log,
    trace_lines,
)

from .conftest import wait_for
from .traces_stack import apply_trace_ddl, create_traces_topic, shipper, start_writer

pytestmark = [pytest.mark.integration]
SCHEMA = TraceSchema()


class NoMetrics:
    def track(self, *args: object, **kwargs: object) -> bool:
        return True


class Recording:
    """Ships through the real shipper and keeps what it shipped, for comparison."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.shipped: list[Execution] = []

    def ship(self, execution: Execution) -> bool:
        self.shipped.append(execution)
        return self.inner.ship(execution)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from tally.embedded.stack import StackConfig, start_stack

    workdir = tmp_path_factory.mktemp("traces")
    stack = start_stack(workdir, StackConfig(partitions=1, aggregators=0), aggregators=False)
    create_traces_topic(stack, partitions=4)
    apply_trace_ddl(stack)
    stack.workdir_traces = workdir
    yield stack
    stack.stop()


ADOPTING = JobTracker(NoMetrics(), "event::calc")  # a decorator over an RQ task


@ADOPTING(name="calc_adopted", tenant="acme")
def rq_adopted(n: int) -> int:
    if n == 2:
        raise LookupError(f"no price for item {n}")
    return n


def count(client, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


def test_nested_traces_round_trip_exactly(stack):
    writer = start_writer(stack, stack.workdir_traces, "writer-roundtrip")
    ship = shipper(stack)
    recording = Recording(ship)
    jobs = JobTracker(
        NoMetrics(), "event::calc", traces=TraceRecorder(recording, SamplingPolicy(every=1))
    )

    @jobs(name="calc_schedule", tenant="acme")
    def schedule(n: int) -> None:
        tag("customer", "c-42")
        with trace("Fetching main product") as block:
            note({"product": n, "name": "Ünïcode ✓"})
            block.result({"price": 12.5, "currency": "EUR"})
            with trace("Fetching offers"):
                artifact("offers.json", [{"id": i} for i in range(3)])
        try:
            with trace("Pricing"):
                raise KeyError("no price")
        except KeyError:
            pass
        for i in range(n):
            calc(i)

    @jobs(name="calc_resource", tenant="acme")
    def calc(i: int) -> int:
        with trace("Calculating"):
            if i == 1:
                raise ValueError("bad input")
        return i

    with pytest.raises(ValueError):
        schedule(3)
    assert ship.flush(60)
    client = stack.clickhouse_client()
    by_id = {e.id: e for e in recording.shipped}
    assert len(by_id) == 3  # schedule, calc(0), calc(1) failed and stopped the loop
    wait_for(
        lambda: count(client, f"SELECT count() FROM {SCHEMA.table('trace_executions')}") >= 3,
        90,
        "executions in ClickHouse",
    )
    # Each table of a flush is its own insert: the lines may land just after the executions.
    lines = sum(len(e.lines) for e in recording.shipped)
    ids = [e.id for e in recording.shipped]
    stored_lines = (
        f"SELECT count() FROM {SCHEMA.table('trace_lines')}"
        " WHERE execution_id IN {ids:Array(String)}"
    )
    wait_for(
        lambda: client.query(stored_lines, parameters={"ids": ids}).result_rows[0][0] >= lines,
        90,
        "trace lines in ClickHouse",
    )
    for execution in recording.shipped:
        stored = run_sync(client, trace_lines(SCHEMA, execution.id))
        expected = [
            (
                line.seq,
                line.parent,
                line.depth,
                line.kind,
                line.name,
                line.offset_us,
                line.duration_us,
                line.outcome,
                line.text,
                line.truncated,
                line.size,
            )
            for line in execution.lines
        ]
        assert [tuple(row) for row in stored] == expected
    parent = next(e for e in recording.shipped if e.job == "calc_schedule")
    found = run_sync(client, execution_tree(SCHEMA, parent.id))
    assert found is not None
    row, tree = found
    assert (row.state, row.error, row.tenant, row.key, row.tags) == (
        "failure", "ValueError", "acme", "event::calc", {"customer": "c-42"},
    )  # fmt: skip
    assert [n.name for n in tree] == ["Fetching main product", "Pricing"]
    assert [c.kind for c in tree[0].children] == ["note", "result", "block"]
    assert tree[0].children[2].children[0].kind == "artifact"
    assert tree[1].outcome == "KeyError"
    kids = run_sync(client, children(SCHEMA, parent.id))
    assert sorted((k.job, k.state) for k in kids) == [
        ("calc_resource", "failure"),
        ("calc_resource", "success"),
    ]
    now = datetime.now(UTC)
    bucket = ExecutionFilter("event::calc", now - timedelta(hours=1), now + timedelta(minutes=1))
    assert len(run_sync(client, list_executions(SCHEMA, bucket))) == 3
    tenant_bucket = ExecutionFilter("event::calc::acme", bucket.start, bucket.end)
    assert (
        len(run_sync(client, list_executions(SCHEMA, tenant_bucket))) == 3
    )  # the dashboard's tenant key
    other = ExecutionFilter("event::calc::beta", bucket.start, bucket.end)
    assert run_sync(client, list_executions(SCHEMA, other)) == []
    failed = ExecutionFilter(
        bucket.key, bucket.start, bucket.end, state="failure", job="calc_resource"
    )
    assert [e.execution_id for e in run_sync(client, list_executions(SCHEMA, failed))] == [
        e.id for e in recording.shipped if e.job == "calc_resource" and e.state == "failure"
    ]
    wanted = JobLogFilter(now - timedelta(hours=1), now, tag=("customer", "c-42"))
    log = run_sync(client, search_job_log(SCHEMA, wanted))
    assert sorted(e["event"] for e in log) == ["failed", "started"]
    check_cli(stack, parent.id)
    ship.close()
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(60) == 0


def check_cli(stack, execution_id: str) -> None:
    """``tally traces list|show|log`` read the same rows."""
    from typer.testing import CliRunner

    from tally.cli.main import app

    env = {"TALLY_CLICKHOUSE_PASSWORD": stack.clickhouse.password}
    where = ["--clickhouse-url", stack.clickhouse.url, "--clickhouse-user", stack.clickhouse.user]
    runner = CliRunner()
    shown = runner.invoke(app, ["traces", "show", execution_id, *where], env=env)
    assert shown.exit_code == 0, shown.output
    assert "Fetching main product" in shown.output and "KeyError" in shown.output
    assert shown.output.count("-> ") == 2  # the two resource runs it called
    listed = runner.invoke(
        app, ["traces", "list", "event::calc", "--state", "failure", "--json", *where], env=env
    )
    assert listed.exit_code == 0, listed.output
    assert {row["job"] for row in json.loads(listed.output)} == {"calc_schedule", "calc_resource"}
    logged = runner.invoke(app, ["traces", "log", "--tag", "customer=c-42", *where], env=env)
    assert logged.exit_code == 0 and "calc_schedule" in logged.output
    bad = runner.invoke(app, ["traces", "log", "--tag", "nope", *where], env=env)
    assert bad.exit_code == 2


def produce(stack, total: int, done: threading.Event, seconds: float) -> None:
    ship = shipper(stack)
    jobs = JobTracker(
        NoMetrics(), "event::kill", traces=TraceRecorder(ship, SamplingPolicy(every=1))
    )

    @jobs(name="kill_job")
    def job(i: int) -> None:
        for j in range(9):
            with trace(f"step {j}") as block:
                block.result(i * j) if j % 3 == 0 else note(f"n{i}")

    began = time.monotonic()
    for i in range(total):
        job(i)
        if i % 100 == 0:
            ahead = began + seconds * i / total - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    assert ship.flush(120)
    ship.close()
    done.set()


def test_kill_9_of_a_trace_writer_leaves_no_duplicates_and_nothing_missing(stack):
    total = 3000
    workdir = stack.workdir_traces
    writers = [start_writer(stack, workdir, f"writer-k{i}") for i in range(2)]
    done = threading.Event()
    producer = threading.Thread(target=produce, args=(stack, total, done, 20.0), daemon=True)
    producer.start()
    rng = random.Random(13)
    kills = 0
    client = stack.clickhouse_client()
    table = SCHEMA.table("trace_executions")
    where = "WHERE key = 'event::kill'"
    while not done.is_set() or kills < 3:
        time.sleep(rng.uniform(1.5, 3.5))
        victim = rng.randrange(len(writers))
        writers[victim].send_signal(signal.SIGKILL)
        writers[victim].wait()
        kills += 1
        writers[victim] = start_writer(stack, workdir, f"writer-k{victim}-{kills}")
    producer.join(120)
    assert done.is_set()
    wait_for(
        lambda: count(client, f"SELECT count() FROM {table} {where}") >= total,
        120,
        "every execution stored",
    )
    time.sleep(3)  # let any late duplicate land before counting
    assert count(client, f"SELECT count() FROM {table} {where}") == total
    assert count(client, f"SELECT uniqExact(execution_id) FROM {table} {where}") == total
    lines = SCHEMA.table("trace_lines")
    ids = f"SELECT execution_id FROM {table} {where}"
    assert (
        count(client, f"SELECT count() FROM {lines} WHERE execution_id IN ({ids})") == total * 18
    )  # 9 blocks, each with a result or a note
    log = SCHEMA.table("job_log")
    assert count(client, f"SELECT count() FROM {log} WHERE key = 'event::kill'") == total * 2
    for proc in writers:
        proc.send_signal(signal.SIGTERM)
    assert [proc.wait(60) for proc in writers] == [0, 0]


def test_traces_spooled_while_kafka_was_unreachable_arrive_later(stack, tmp_path):
    from tally.embedded.kafka_node import free_ports
    from tally.ingest import ClientSettings
    from tally.traces.transport import TraceShipper, trace_settings

    spool = tmp_path / "spool"
    closed = f"127.0.0.1:{free_ports(1)[0]}"
    offline = TraceShipper(
        trace_settings(ClientSettings(bootstrap_servers=closed, spool_dir=spool, close_timeout_s=1))
    )
    jobs = JobTracker(
        NoMetrics(), "event::spooled", traces=TraceRecorder(offline, SamplingPolicy(every=1))
    )

    @jobs(name="spooled_job")
    def job(i: int) -> None:
        with trace("work") as block:
            block.result(i)

    for i in range(20):
        job(i)
    offline.close(timeout=1)
    assert offline.stats().dropped_overflow == 0
    assert any(trace_settings(ClientSettings("x", spool_dir=spool)).spool_dir.rglob("*.rec"))
    writer = start_writer(stack, stack.workdir_traces, "writer-spool")
    online = TraceShipper(
        trace_settings(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, spool_dir=spool))
    )  # replays the spool on start (records spooled unrouted are routed by execution id)
    client = stack.clickhouse_client()
    table = SCHEMA.table("trace_executions")
    sql = f"SELECT count(), uniqExact(execution_id) FROM {table} WHERE key = 'event::spooled'"
    try:
        wait_for(lambda: client.query(sql).result_rows[0][0] >= 20, 90, "spooled executions")
        assert tuple(client.query(sql).result_rows[0]) == (20, 20)
    finally:
        online.close()
        writer.send_signal(signal.SIGTERM)
        writer.wait(60)


def test_an_rq_run_a_decorator_adopted_is_listed_under_both_keys(stack, tmp_path):
    """The Jobs dashboard links ``/traces?key=event::job`` (the hook's key), the decorator's
    dashboard ``event::calc``: a decorated job run by a real RQ worker is in both lists."""
    import redis
    from rq import Queue

    from tally.embedded.redis_server import start_redis
    from tally.ingest.jobs import instrumented_rq_worker

    writer = start_writer(stack, stack.workdir_traces, "writer-adopted")
    ship = shipper(stack)
    recording = Recording(ship)
    server = start_redis(tmp_path / "redis")
    try:
        queue = Queue("adopted", connection=redis.Redis.from_url(f"{server.url}/4"))
        refs = {queue.enqueue(rq_adopted, n).id for n in (1, 2)}
        worker = instrumented_rq_worker(
            [queue], NoMetrics(), key="event::job", connection=queue.connection,
            traces=TraceRecorder(recording, SamplingPolicy(every=1)),
        )  # fmt: skip
        worker.work(burst=True)
    finally:
        server.stop()
    assert ship.flush(60)
    assert {e.ref for e in recording.shipped} == refs
    assert {(e.key, e.hook_key) for e in recording.shipped} == {("event::calc", "event::job")}
    client = stack.clickhouse_client()
    now = datetime.now(UTC)

    def listed(key: str, **narrow: str) -> set[str]:
        f = ExecutionFilter(key, now - timedelta(hours=1), now + timedelta(minutes=1), **narrow)
        return {e.ref for e in run_sync(client, list_executions(SCHEMA, f))} & refs

    wait_for(lambda: listed("event::calc") == refs, 90, "the adopted executions in ClickHouse")
    assert listed("event::job") == refs  # the Jobs dashboard's link
    assert listed("event::job::acme") == refs  # its tenant key
    assert listed("event::job", state="failure") == {
        e.ref for e in recording.shipped if e.state == "failure"
    }  # fmt: skip
    assert listed("event::job::beta") == set() and listed("event::other") == set()
    ship.close()
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(60) == 0
