"""``tally series|keys|paths|sql`` output, run as the real command against ClickHouse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner, Result

from tally.cli.main import app
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

    def run(*args: str, code: int = 0, unset: tuple[str, ...] = (), **more: str) -> str:
        extra = {k: v for k, v in env.items() if k not in unset} | more
        proc = subprocess.run(
            [sys.executable, "-m", "tally.cli", *args],
            env=extra, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == code, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    run.url = clickhouse.url  # type: ignore[attr-defined]
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
    assert "calc · 1h · 2026-03-02 10:00 → 2026-03-02 14:00 UTC" in out  # the end, exclusive
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "▅▁█▁" in lines["count"] and "│   6 │" in lines["count"]
    assert "codes.(other)" in lines
    assert " 0.75 │" in lines["success / count"]  # mean of the defined points 0.5 and 1.0
    assert lines["success / count"].split("│")[3].strip() == ""  # a sum of ratios means nothing


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


def test_series_title_ends_at_the_range_end_not_one_bucket_short(tally):
    days = ["--since", "2026-03-01T00:00:00Z", "--until", "2026-03-03T00:00:00Z", "-g", "1d"]
    out = " ".join(tally("series", "calc", *days).split())  # the title wraps at the table's width
    assert "calc · 1d · 2026-03-01 00:00 → 2026-03-03 00:00 UTC" in out


def test_sql_wide_prints_long_values_whole(tally):
    query = "SELECT repeat('x', 300) AS long, 'tail-marker' AS t"
    cut = tally("sql", query)
    assert "…" in cut and "x" * 300 not in cut  # a 160-column terminal cuts the value
    whole = tally("sql", query, "--wide")
    assert "x" * 300 in whole and "tail-marker" in whole and "…" not in whole
    assert json.loads(tally("sql", query, "--json"))["rows"] == [["x" * 300, "tail-marker"]]


def test_read_commands_find_the_stack_of_their_data_dir(tally, tmp_path):
    """No URL given: the data dir's stack.json says where its ClickHouse is."""
    data = tmp_path / "moved"
    data.mkdir()
    (data / "stack.json").write_text(json.dumps({"clickhouse_url": tally.url}))
    since = ["--since", "2026-03-01T00:00:00Z", "--until", "2026-03-03T00:00:00Z"]
    no_url = ("TALLY_CLICKHOUSE_URL",)
    out = tally("keys", "calc::*", *since, unset=no_url, TALLY_DATA_DIR=str(data))
    assert "2 keys matching 'calc::*'" in out
    out = tally("series", "calc", *RANGE, unset=no_url, TALLY_DATA_DIR=str(data))
    assert "calc · 1h" in out
    # a stack that is gone is an error naming its URL, never a silent fall back to :8123
    (data / "stack.json").write_text(json.dumps({"clickhouse_url": "http://127.0.0.1:9"}))
    out = tally("keys", unset=no_url, TALLY_DATA_DIR=str(data), code=1)
    assert "127.0.0.1:9" in out
    # a URL given wins over the data dir's
    out = tally("keys", "calc::*", *since, TALLY_DATA_DIR=str(data))
    assert "2 keys matching 'calc::*'" in out


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
    up_help = " ".join(tally("up", "--help").split())  # rich wraps lines
    assert "[env var: TALLY_KAFKA_PORT; default: 9092]" in up_help
    aggregator = " ".join(tally("aggregator", "run", "--help").split())
    assert "[env var: TALLY_KAFKA_BOOTSTRAP; default: 127.0.0.1:9092]" in aggregator
    assert "aggregator run [OPTIONS]" in aggregator  # usage: tally (or python -m tally.cli) ...
    writer = " ".join(tally("trace-writer", "check", "--help").split())
    assert "[env var: TALLY_TRACE_TOPIC; default: tally.traces]" in writer


# Data is never markup: keys and paths that look like Rich markup print as written (issue #21.9).
MARKUP = [
    (
        ["markup::[/b]", "markup::[link=https://evil.example]x[/link]"],
        datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
        {"count": 1, "codes.[/b]": 1, "codes.[link=https://evil.example]y": 1},
    ),
]


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Iterator:
    """``tally`` run in-process by Typer's CliRunner against a ClickHouse holding CALC + MARKUP."""
    data_dir = tmp_path_factory.mktemp("cli-markup")
    clickhouse = start(data_dir / "clickhouse")
    apply_schema(clickhouse, RollupSchema(database="tally"))
    insert(clickhouse, "tally", CALC + MARKUP)
    env = {
        "TALLY_CLICKHOUSE_URL": clickhouse.url,
        "TALLY_CLICKHOUSE_PASSWORD": PASSWORD,
        "TALLY_DATA_DIR": str(data_dir),
        "COLUMNS": "200",
    }
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, (result.output, result.exception)
        return result

    try:
        yield run
    finally:
        clickhouse.stop()


def test_keys_paths_series_and_sql_print_markup_in_data_as_written(cli):
    wide = ["--since", "2026-03-01T00:00:00Z", "--until", "2026-03-03T00:00:00Z"]
    out = cli("keys", *wide).stdout
    assert "markup::[/b]" in out and "markup::[link=https://evil.example]x[/link]" in out
    assert "calc::tenant::a" in out
    out = cli("keys", "markup::[/b]*", *wide).stdout
    assert "keys matching 'markup::[/b]*'" in out
    out = cli("paths", "markup::[/b]").stdout
    assert "codes.[/b]" in out and "codes.[link=https://evil.example]y" in out
    assert "paths of 'markup::[/b]'" in out
    out = cli("series", "markup::[/b]", "-p", "codes.*", "--buckets", *RANGE).stdout
    assert "markup::[/b] · 1h" in out and out.count("codes.[/b]") == 2  # row and bucket column
    out = cli("sql", "SELECT '[/b]' AS `[b]x`, '[link=https://evil.example]z[/link]' AS y").stdout
    assert "[b]x" in out and "[/b]" in out and "[link=https://evil.example]z[/link]" in out
    assert "\x1b]8;" not in out  # no terminal hyperlink


SQL_TYPES = (
    "SELECT toIPv4('10.1.2.3') AS v4, toIPv6('2001:db8::1') AS v6,"
    " toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0') AS id, toDecimal64(1.25, 2) AS dec,"
    " toDate('2026-03-02') AS day, [1, 2] AS arr, map('m', 1) AS mp, tuple(1, 'x') AS tup,"
    " toFixedString('ab', 2) AS fixed, CAST('a', 'Enum8(\\'a\\' = 1)') AS en,"
    " NULL AS nothing, nan AS notnum, true AS yes"
)


def test_sql_prints_every_value_type_as_table_and_json(cli):
    out = cli("sql", SQL_TYPES).stdout
    for text in ("10.1.2.3", "2001:db8::1", "61f0c404-5cb3-11e7-907b-a6006ad3dba0", "2026-03-02"):
        assert text in out
    body = json.loads(cli("sql", SQL_TYPES, "--json").stdout)
    row = dict(zip(body["columns"], body["rows"][0], strict=True))
    assert row["v4"] == "10.1.2.3" and row["v6"] == "2001:db8::1"
    assert row["id"] == "61f0c404-5cb3-11e7-907b-a6006ad3dba0"
    assert row["day"] == "2026-03-02" and row["arr"] == [1, 2] and row["nothing"] is None


def _one_error_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["series", "calc", "--since", "0001-01-01"],
        ["series", "calc", "--since", "99999999999999999999d"],
        ["series", "calc", "--since", "1969-12-31T00:00:00Z", "--until", "1970-01-02T00:00:00Z"],
        ["series", "calc", "--since", "1960-01-01", "--until", "1960-01-02", "-g", "1d"],
        ["series", "calc", "--until", "9999-12-31T23:59:59+00:00", "--since", "9999-12-31"],
        ["keys", "--since", "0001-01-01"],
        ["keys", "--since", "99999999999999999999d"],
        ["keys", "--since", "1960-01-01", "--until", "1960-01-02"],
        ["series", "calc", "-e", "count / (", *RANGE],
        ["series", "calc", "-e", "count ** count ** count", *RANGE],
        ["series", "calc", "--database", "bad name", *RANGE],
        ["keys", "--database", "bad name"],
        ["sql", "SELEC 1"],
        ["sql", "SELECT nope FROM tally.rollups_1d"],
        ["sql", "SELECT 1", "--database", "bad name"],
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args):
    _one_error_line(cli(*args, code=2))


@pytest.mark.parametrize("command", [["keys"], ["paths", "calc"], ["sql", "SELECT 1"]])
def test_clickhouse_url_without_scheme_is_refused(cli, command):
    line = _one_error_line(cli(*command, "--clickhouse-url", "ch.example.com:8443", code=2))
    assert "ch.example.com:8443" in line and "http(s)://host[:port]" in line


def test_tally_up_refuses_a_clickhouse_url_without_scheme_before_starting(cli, tmp_path):
    result = cli(
        "up", "--data-dir", str(tmp_path), "--kafka-bootstrap", "127.0.0.1:9", "--no-api",
        "--clickhouse-url", "ch.example.com:8443", code=2,
    )  # fmt: skip
    assert "http(s)://host[:port]" in _one_error_line(result)
    assert not (tmp_path / "kafka").exists()


def test_unreachable_clickhouse_still_exits_1(cli):
    _one_error_line(cli("keys", "--clickhouse-url", "http://127.0.0.1:9", code=1))


def test_series_as_of_counts_only_what_happened_before_it(tally):
    day = ["--since", "2026-03-02T00:00:00Z", "--until", "2026-03-03T00:00:00Z", "-g", "1d"]
    whole = json.loads(tally("series", "calc", "--json", *day))
    assert whole["rows"][0]["points"] == [6.0] and whole["as_of"] is None
    noon = json.loads(tally("series", "calc", "--json", *day, "--as-of", "2026-03-02T12:00:00Z"))
    assert noon["rows"][0]["points"] == [2.0]  # 10:05 counted, 12:30 not yet
    assert noon["as_of"] == int(datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp())
    assert "--as-of" in tally("series", "--help")
