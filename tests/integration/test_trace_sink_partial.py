"""TraceSink against the real ClickHouse engine: a table rejected after another one landed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tally.clickhouse.settings import ClickHouseSettings
from tally.clickhouse.sink_base import PartlyInserted
from tally.embedded.clickhouse.process import EmbeddedClickHouse, start_clickhouse
from tally.traces.codec import TraceCodec, TraceRecord
from tally.traces.ddl import EXECUTIONS, JOB_LOG, LINES, TraceSchema
from tally.traces.fold import TraceFold
from tally.traces.model import Execution, Line, LogEvent
from tally.traces.sink import TraceSink

pytestmark = pytest.mark.integration

USER, PASSWORD = "tally", "trace-sink-secret"


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    with start_clickhouse(tmp_path_factory.mktemp("chdb"), user=USER, password=PASSWORD) as server:
        yield server


def execution(i: int, name: str) -> Execution:
    started = int(time.time() * 1_000_000) + i
    return Execution(
        id=f"{i:032x}", parent_id="", ref=f"task-{i}", job="calc", tenant="acme",
        key="event::calc", state="success", code="OK", error="", attempt=1, started_us=started,
        duration_us=1500, tags={}, sampled="sample",
        lines=[Line(1, 0, 0, "block", name, 10, 5, "ok")],
        events=[LogEvent(started, "started", "calc", 1, "[1]")],
    )  # fmt: skip


async def count(sink: TraceSink, table: str) -> int:
    result = await sink.client().query(f"SELECT count() FROM {sink.schema.table(table)}")
    return int(result.result_rows[0][0])


async def test_a_table_rejected_after_another_landed_is_reported_and_left_out(clickhouse):
    """Isolation re-inserts parts of a rejected range under new tokens: the tables written
    before the rejected one must be named (``PartlyInserted.landed``) and left out."""
    schema = TraceSchema(database="trace_partial")
    sink = TraceSink(ClickHouseSettings(url=clickhouse.url, user=USER, password=PASSWORD), schema)
    await sink.start()
    try:
        await sink.apply_ddl()
        await sink.client().command(
            f"ALTER TABLE {schema.table(LINES)} ADD CONSTRAINT no_poison CHECK name != 'poison'"
        )
        codec = TraceCodec("host:1")
        fold = TraceFold()
        records = [TraceRecord.of(execution(1, "fine")), TraceRecord.of(execution(2, "poison"))]
        assert fold.add_record(codec.encode(records), 1, 0) == []
        rows = fold.rows()
        with pytest.raises(PartlyInserted) as info:
            await sink.insert(rows, "traces:0:1-1")
        rejected = info.value
        assert sink.classify(rejected) == "data"
        assert (rejected.failed, rejected.landed) == (LINES, {EXECUTIONS})
        assert sink.rejection(rejected) == sink.rejection(rejected)  # stable across attempts
        assert await count(sink, EXECUTIONS) == 2
        rest = sink.exclude(rows, rejected.landed)
        assert (len(rest.executions), len(rest.lines), len(rest.job_log)) == (0, 2, 2)
        good = TraceFold()
        assert good.add_record(codec.encode([TraceRecord.of(execution(1, "fine"))]), 1, 0) == []
        await sink.insert(sink.exclude(good.rows(), rejected.landed), "traces:0:1-1/part")
        assert await count(sink, EXECUTIONS) == 2  # never written twice
        assert (await count(sink, LINES), await count(sink, JOB_LOG)) == (1, 1)
    finally:
        await sink.close()
