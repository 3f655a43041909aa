"""What reaches ClickHouse when a trace holds awkward text: real Kafka, real trace writer,
real embedded ClickHouse.

- a string that is not valid UTF-8 (a lone surrogate from ``os.fsdecode``) is escaped where
  it enters the trace, and nothing else of its batch is lost;
- an event the sender cannot encode is dropped alone and counted, the rest of its record
  is delivered;
- the trace budget is in bytes, so a trace of 4-byte characters fits Kafka's default 1 MiB
  record.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tally.ingest.jobs import JobTracker
from tally.traces import SamplingPolicy, TraceRecorder, note, trace
from tally.traces.ddl import TraceSchema
from tally.traces.model import Execution, LogEvent

from .conftest import wait_for
from .traces_stack import apply_trace_ddl, create_traces_topic, shipper, start_writer

pytestmark = [pytest.mark.integration]
SCHEMA = TraceSchema()
EXECUTIONS = SCHEMA.table("trace_executions")
LINES = SCHEMA.table("trace_lines")
JOB_LOG = SCHEMA.table("job_log")


class NoMetrics:
    def track(self, *args: object, **kwargs: object) -> bool:
        return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from tally.embedded.stack import StackConfig, start_stack

    workdir = tmp_path_factory.mktemp("traces-delivery")
    stack = start_stack(workdir, StackConfig(partitions=1, aggregators=0), aggregators=False)
    create_traces_topic(stack, partitions=2)
    apply_trace_ddl(stack)
    writer = start_writer(stack, workdir, "writer")
    yield stack
    writer.send_signal(signal.SIGTERM)
    writer.wait(60)
    stack.stop()


def count(client, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


def test_a_lone_surrogate_in_a_note_is_escaped_and_loses_nothing(stack):
    ship = shipper(stack)
    jobs = JobTracker(
        NoMetrics(), "event::utf8", traces=TraceRecorder(ship, SamplingPolicy(every=1))
    )

    @jobs(name="utf8_report", tenant="acme")
    def report(i: int) -> None:
        with trace("Writing report"):
            note(os.fsdecode(b"report-\xff.csv") if i == 150 else f"report-{i}.csv")

    for i in range(301):
        report(i)
    assert ship.flush(60)
    stats = ship.stats()
    ship.close()
    assert (stats.internal_errors, stats.sent_events) == (0, 301)
    client = stack.clickhouse_client()
    where = "WHERE key = 'event::utf8'"
    wait_for(
        lambda: count(client, f"SELECT count() FROM {JOB_LOG} {where}") >= 602,
        90,
        "the job log of every execution",
    )
    assert count(client, f"SELECT count() FROM {EXECUTIONS} {where}") == 301
    assert count(client, f"SELECT count() FROM {JOB_LOG} {where}") == 602
    ids = f"SELECT execution_id FROM {EXECUTIONS} {where}"
    notes = f"SELECT text FROM {LINES} WHERE kind = 'note' AND execution_id IN ({ids})"
    wait_for(lambda: count(client, f"SELECT count() FROM ({notes})") >= 301, 90, "the notes")
    texts = {row[0] for row in client.query(notes).result_rows}
    assert len(texts) == 301
    assert "report-\\udcff.csv" in texts  # the documented escape of the undecodable byte


def execution(n: int, job: str) -> Execution:
    now = time.time_ns() // 1000
    return Execution(
        id=f"{n:032x}", parent_id="", ref="", job=job, tenant="acme", key="event::raw",
        state="success", code="", error="", attempt=1, started_us=now, duration_us=10,
        tags={}, sampled="", lines=[], events=[LogEvent(now, "started", job, 1)],
    )  # fmt: skip


def test_an_event_the_sender_cannot_encode_is_dropped_alone_and_counted(stack):
    ship = shipper(stack)
    # Built past every edge check: only the sender can catch it.
    for n in range(60):
        assert ship.ship(execution(n, "raw\udcff" if n == 30 else "raw"))
    assert ship.flush(60)
    stats = ship.stats()
    ship.close()
    assert (stats.dropped_unencodable, stats.sent_events, stats.internal_errors) == (1, 59, 0)
    client = stack.clickhouse_client()
    where = "WHERE key = 'event::raw'"
    wait_for(
        lambda: count(client, f"SELECT count() FROM {EXECUTIONS} {where}") >= 59,
        90,
        "the executions the sender could encode",
    )
    stored = {row[0] for row in client.query(f"SELECT execution_id FROM {EXECUTIONS} {where}")
              .result_rows}  # fmt: skip
    assert stored == {f"{n:032x}" for n in range(60) if n != 30}


def test_a_trace_of_four_byte_characters_fits_kafkas_default_record(stack):
    ship = shipper(stack)
    jobs = JobTracker(
        NoMetrics(), "event::emoji", traces=TraceRecorder(ship, SamplingPolicy(every=1))
    )
    rng = random.Random(14)
    # 4 KiB of UTF-8 in 1,024 characters each, random so that lz4 cannot shrink the record
    texts = ["".join(chr(rng.randrange(0x20000, 0x2A6D0)) for _ in range(1024)) for _ in range(300)]

    @jobs(name="emoji_job")
    def job() -> None:
        for n in range(1000):
            note(texts[n % 300])

    job()
    assert ship.flush(60)
    stats = ship.stats()
    ship.close()
    assert (stats.dropped_rejected, stats.send_rejected, stats.sent_events) == (0, 0, 1)
    client = stack.clickhouse_client()
    where = "WHERE key = 'event::emoji'"
    wait_for(
        lambda: count(client, f"SELECT count() FROM {EXECUTIONS} {where}") >= 1,
        90,
        "the execution",
    )
    ids = f"SELECT execution_id FROM {EXECUTIONS} {where}"
    stored = f"SELECT count(), sum(length(text)) FROM {LINES} WHERE execution_id IN ({ids})"
    wait_for(lambda: count(client, stored) >= 1, 90, "its lines")
    lines, text_bytes = client.query(stored).result_rows[0]
    assert text_bytes <= 256 * 1024  # max_bytes counts bytes, not characters
    assert lines >= 60  # the budget's worth of 4 KiB notes (the rest dropped, counted)
    (dropped,) = client.query(f"SELECT dropped FROM {EXECUTIONS} {where}").result_rows[0]
    assert dropped == 1000 - lines
