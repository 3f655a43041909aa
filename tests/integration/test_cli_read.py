"""``tally series|keys|paths|sql`` output, run as the real command against ClickHouse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tally.schemas.ddl import RollupSchema
from tests.integration.readside import PASSWORD, apply_schema, insert, start
from tests.integration.test_read_series import CALC

pytestmark = pytest.mark.integration

RANGE = ["--since", "2026-03-02T10:00:00Z", "--until", "2026-03-02T14:00:00Z"]


@pytest.fixture(scope="module")
def tally(tmp_path_factory) -> Iterator:
    data_dir = tmp_path_factory.mktemp("cli")
    clickhouse = start(data_dir / "clickhouse")
    apply_schema(clickhouse, RollupSchema(database="tally"))
    insert(clickhouse, "tally", CALC)
    env = {
        **os.environ,
        "TALLY_CLICKHOUSE_URL": clickhouse.url,
        "TALLY_CLICKHOUSE_PASSWORD": PASSWORD,
        "TALLY_DATA_DIR": str(data_dir),
        "COLUMNS": "160",
    }

    def run(*args: str, code: int = 0) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "tally.cli", *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == code, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    try:
        yield run
    finally:
        clickhouse.stop()


def test_series_prints_a_table_with_sparklines(tally):
    out = tally(
        "series",
        "calc",
        "-p",
        "count",
        "-p",
        "codes.*",
        "-e",
        "success / count",
        "--top",
        "1",
        *RANGE,
    )
    assert "calc · 1h · 2026-03-02 10:00 → 2026-03-02 13:00 UTC" in out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "▅▁█▁" in lines["count"] and "│   6 │" in lines["count"]
    assert "codes.(other)" in lines
    assert " 0.75 │" in lines["success / count"]  # mean of the defined points 0.5 and 1.0


def test_series_json_and_buckets(tally):
    body = json.loads(tally("series", "calc", "-p", "count", "--json", *RANGE))
    assert body["rows"] == [
        {"name": "count", "kind": "path", "points": [2.0, 0.0, 4.0, 0.0], "source": ""}
    ]
    out = tally("series", "calc", "--buckets", *RANGE)
    assert "2026-03-02 12:00 UTC" in out


def test_keys_paths_and_sql(tally):
    out = tally(
        "keys", "calc::*", "--since", "2026-03-01T00:00:00Z", "--until", "2026-03-03T00:00:00Z"
    )
    assert "2 keys matching 'calc::*'" in out and "calc::tenant::b" in out
    keys = json.loads(
        tally(
            "keys",
            "event::*",
            "--json",
            "--since",
            "2026-03-01T00:00:00Z",
            "--until",
            "2026-03-03T00:00:00Z",
        )
    )
    assert keys == [{"key": "event::schedule::nightly", "last_seen": "2026-03-02T13:00:00Z"}]
    assert "tenants.a.count" in tally("paths", "calc::tenant::a")
    result = json.loads(
        tally(
            "sql",
            "SELECT sum(value) AS n FROM tally.rollups_1d"
            " WHERE key = {k:String} AND path = 'count'",
            "--param",
            "k=calc",
            "--json",
        )
    )
    assert result["rows"] == [[6.0]]


def test_bad_input_exits_2_with_the_reason(tally):
    out = tally("series", "calc", "-g", "3h", *RANGE, code=2)
    assert "error: granularity: granularity '3h' is not served" in out
    out = tally("series", "calc", "-e", "count /", *RANGE, code=2)
    assert "error: expression: unexpected end of expression" in out
    assert "is not name=value" in tally("sql", "SELECT 1", "--param", "oops", code=2)


def test_bad_range_and_sql_syntax_exit_2_with_one_line(tally):
    out = tally("series", "calc", "--since", "0001-01-01", code=2)
    assert out == (
        "error: range: '0001-01-01' is outside the times served (1970-01-01 to 2100-01-01 UTC)\n"
    )
    out = tally("sql", "SELEC 1", code=2)
    assert out.startswith("error: sql: Code: 62.") and "Syntax error" in out
    assert out.count("\n") == 1


def test_help_shows_defaults_and_passthrough(tally):
    assert "[default: 1h]" in tally("series", "--help")
    assert "[default: 9092]" in " ".join(tally("up", "--help").split())  # rich wraps lines
    aggregator = tally("aggregator", "run", "--help")
    assert "(TALLY_KAFKA_BOOTSTRAP) (default: 127.0.0.1:9092)" in aggregator
    assert "usage: tally aggregator run" in aggregator
