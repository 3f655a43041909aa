"""Read plans driven by hand (they do no I/O): the statements they yield, what they build from
the rows they are sent, how they answer a failed statement, and the schema cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tally.read.errors import BadGranularity, BadSql, TooLarge
from tally.read.plan import Build, Walk
from tally.read.planner import ReadPlanner
from tally.read.queries import SCHEMA
from tally.read.results import Values
from tally.read.runner import run_sync
from tally.read.settings import ReadSettings
from tally.traces.ddl import TraceSchema
from tally.traces.queries import ExecutionDetail, execution_detail, key_tenants

TABLES = [
    ("rollups_1h", "CREATE VIEW ... WHERE granularity = '1h' ... toTimeZone(bucket, 'UTC')"),
    ("keys_seen", ""),
    ("key_paths", ""),
]


@dataclass
class Rows:
    """A statement's result as the runners hand it to a plan."""

    result_rows: list[Any]
    column_names: list[str] = field(default_factory=list)
    column_types: list[Any] = field(default_factory=list)


def test_values_reads_the_schema_once_then_builds_from_the_points():
    planner = ReadPlanner(ReadSettings(max_points=10))
    plan = planner.values("calc", since=7200, until=10800, granularity="1h")
    first = next(plan)
    assert first.text == SCHEMA
    points = plan.send(Rows(TABLES))
    assert points.parameters["limit"] == 11 and points.parameters["key"] == "calc"
    with pytest.raises(StopIteration) as done:
        plan.send(Rows([(7200, "count", 2.0), (7200, "count", 1.0)]))
    build = done.value.value
    assert isinstance(build, Build)
    values = build.step()
    assert isinstance(values, Values)
    assert values.buckets == [7200] and values.values == [{"count": 3.0}]
    cached = planner.values("calc", since=7200, until=10800, granularity="1h")
    assert next(cached).text != SCHEMA  # the schema is cached: straight to the points


def test_values_refuses_more_points_than_the_limit():
    planner = ReadPlanner(ReadSettings(max_points=1))
    walk = Walk(planner.values("calc", since=7200, until=10800))
    walk.feed(Rows(TABLES))
    with pytest.raises(TooLarge):
        walk.feed(Rows([(7200, "a", 1.0), (7200, "b", 1.0)]))


def test_an_unserved_granularity_reads_the_schema_again_before_refusing():
    planner = ReadPlanner(ReadSettings())
    walk = Walk(planner.values("calc", granularity="1h"))
    walk.feed(Rows(TABLES))
    walk.feed(Rows([]))
    assert walk.sql is None  # done
    walk = Walk(planner.values("calc", granularity="1d"))
    assert walk.sql is not None and walk.sql.text == SCHEMA  # refreshed, not trusted
    with pytest.raises(BadGranularity, match="not served"):
        walk.feed(Rows(TABLES))


def test_sql_answers_a_refused_statement_with_bad_sql():
    walk = Walk(ReadPlanner(ReadSettings()).sql("SELEC 1"))
    assert walk.sql is not None and walk.sql.settings["readonly"] == 2
    with pytest.raises(BadSql, match="Code: 62"):
        walk.feed(DatabaseError("Code: 62. DB::Exception: Syntax error"))


def test_key_tenants_falls_back_to_the_index_without_key_tables():
    now = datetime.now(UTC)
    walk = Walk(key_tenants(TraceSchema(), "event::calc", now, now))
    walk.feed(DatabaseError("Code: 60. Unknown table tally.keys_seen"))
    assert walk.sql is not None and "trace_executions" in walk.sql.text
    walk.feed(Rows([("acme",), ("",)]))
    assert walk.sql is None and walk.outcome == ["acme"]


class Client:
    """A client answering each statement from a list, in order (for the runner alone)."""

    def __init__(self, answers: list[list[Any]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def query(self, text: str, parameters: Any = None, settings: Any = None) -> Rows:
        self.asked.append(text)
        return Rows(self.answers.pop(0))


def test_run_sync_assembles_one_execution_with_its_tree_and_children():
    started = datetime(2026, 1, 1, tzinfo=UTC)
    row = ("e1", "", "", "job", "", "event::job", "success", "", "", 1, started, 5, {}, "s", 1, 0)
    client = Client([[row], [(1, 0, 0, "note", "", 0, 0, "", "hi", False, 2)], []])
    detail = run_sync(client, execution_detail(TraceSchema(), "e1"))
    assert isinstance(detail, ExecutionDetail)
    assert detail.execution.execution_id == "e1" and detail.children == []
    assert [n.text for n in detail.tree] == ["hi"] and len(client.asked) == 3
    assert run_sync(Client([[]]), execution_detail(TraceSchema(), "nope")) is None
