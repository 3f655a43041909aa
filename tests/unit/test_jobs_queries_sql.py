"""The job query templates: rendering, validation and the parameters each one takes."""

from __future__ import annotations

import re

import pytest

from tally.read.job_queries import JOB_QUERIES, JobQuery
from tally.read.rollup_queries import PARAMETERS, QUERIES, Query
from tally.schemas.granularity import GranularityError

PARAMS = {
    "job_states": {"key", "group", "start", "end"},
    "state_timeline": {"key", "start", "end"},
    "limited_runs": {"key", "group", "start", "end"},
    "result_codes": {"key", "group", "start", "end"},
    "cron_runs": {"key", "start", "end", "expected", "jobs"},
    "idle_runs": {"key", "group", "start", "end"},
    "tenant_surge": {"key", "start", "current", "end", "ratio", "min_resources"},
    "failure_spread": {"key", "group", "start", "end"},
    "duration_by_bucket": {"key", "group", "start", "end"},
    "duration_trend": {"key", "group", "start", "current", "end"},
    "queue_lag": {"key", "group", "start", "end"},
}


def test_every_question_from_the_issue_has_a_query():
    assert set(JOB_QUERIES) == set(PARAMS)
    for query in JOB_QUERIES.values():
        assert isinstance(query, Query) and query.question.endswith((".", "?", ")"))


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_queries_render_with_server_side_parameters_only(name):
    sql = JOB_QUERIES[name].sql("tally", "1h")
    assert "FROM tally.rollups_1h" in sql
    assert set(re.findall(r"\{(\w+):[A-Za-z0-9()]+\}", sql)) == PARAMS[name]
    leftover = re.sub(r"\{\w+:[A-Za-z0-9()]+\}", "", sql)
    assert "{" not in leftover and "}" not in leftover


@pytest.mark.parametrize(
    ("granularity", "step"),
    [
        ("1m", "INTERVAL 1 MINUTE"),
        ("15m", "INTERVAL 15 MINUTE"),
        ("1h", "INTERVAL 1 HOUR"),
        ("1d", "INTERVAL 1 DAY"),
        ("1w", "INTERVAL 1 WEEK"),
        ("1mo", "INTERVAL 1 MONTH"),
    ],
)
def test_cron_runs_fills_gaps_one_bucket_at_a_time(granularity, step):
    sql = JOB_QUERIES["cron_runs"].sql("tally", granularity)
    assert f"STEP {step}" in sql and f"rollups_{granularity}" in sql


def test_database_and_granularity_are_validated():
    query = JOB_QUERIES["idle_runs"]
    with pytest.raises(ValueError):
        query.sql("tally; DROP TABLE x", "1h")
    with pytest.raises(GranularityError):
        query.sql("tally", "7m")
    assert isinstance(query, JobQuery)


@pytest.mark.parametrize("query", [*QUERIES.values(), *JOB_QUERIES.values()], ids=lambda q: q.name)
def test_every_parameter_of_every_query_is_documented(query):
    params = query.parameters()
    assert params and set(params) <= set(PARAMETERS)
    assert {"start", "end", "key"} <= set(params)  # every query is a range of one key
