"""``tally monitors run|check`` and ``tally api|ui run|check`` from their settings tables:
``check`` validates without starting anything, and ``tally up``'s child command line parses back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tally.monitors.settings import from_values
from tally.schemas.settings_cli import parse
from tally.up.monitors_command import MONITORS, command_line
from tally.up.read_target import read_settings_from

ROOT = Path(__file__).resolve().parents[2]
GOOD = """monitors:
  - name: cron-stopped
    key: event::cron
    path: total.count
    granularity: 1m
    condition: {type: expected, fewer_than: 1}
    for: 2m
"""
READ = "read-token-0123456789abcdef"
SQL = "sql-token-0123456789abcdef"


def tally(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """``tally ...`` in a child process without any ``TALLY_*`` variable but ``env``."""
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    return subprocess.run(
        [sys.executable, "-m", "tally.cli", *args], env={**clean, **(env or {})},
        capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
    )  # fmt: skip


def test_monitors_check_reports_file_line_errors_and_bad_settings(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    done = tally("monitors", "check", str(good), "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 1 monitors, 0 reports, 0 channels")
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("    for: 2m\n", "    for: 2m\n    bogus: 2\n"))
    done = tally("monitors", "check", str(tmp_path), "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert f"error: {bad}:8: unknown field 'bogus'" in done.stderr
    done = tally("monitors", "check", str(good), "--tick", "0", "--data-dir", str(tmp_path))
    assert done.returncode == 2 and "'--tick': must be > 0" in done.stderr
    done = tally("monitors", "check", "--data-dir", str(tmp_path))
    assert done.returncode == 2 and "Missing argument" in done.stderr


def test_tally_ups_monitor_command_line_parses_back_to_the_same_settings(tmp_path: Path) -> None:
    line = command_line(
        paths=[tmp_path / "monitors"], bootstrap="127.0.0.1:19092", topic="events",
        clickhouse_url="http://127.0.0.1:18123", clickhouse_user="tally_monitors",
        database="other", data_dir=tmp_path, base_url="", metrics_port=0,
    )  # fmt: skip
    assert line[1:6] == ["-m", "tally.cli", "monitors", "run", "--bootstrap"]
    env = {"TALLY_CLICKHOUSE_PASSWORD": "pw", "TALLY_MONITORS_NO_LEASE": "1"}
    s = parse(MONITORS, line[5:], "tally monitors run", env,
              lambda v: from_values(v, read_settings_from(v)))  # fmt: skip
    assert s.paths == (tmp_path / "monitors",) and s.bootstrap == "127.0.0.1:19092"
    assert (s.topic, s.base_url, s.metrics_port, s.lease) == ("events", "", 0, False)
    assert (s.read.clickhouse.url, s.read.clickhouse.user) == (
        "http://127.0.0.1:18123", "tally_monitors",
    )  # fmt: skip
    assert s.read.database == "other" and s.read.clickhouse.password == "pw"
    assert "pw" not in " ".join(line)


def test_api_check_needs_tokens_beyond_loopback_and_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = tally("api", "check", "--data-dir", str(data))
    assert done.returncode == 0 and done.stdout.startswith("ok: http://127.0.0.1:8700"), done
    assert not data.exists()  # run would generate the tokens; check does not
    done = tally("api", "check", "--host", "0.0.0.0", "--data-dir", str(data))
    assert done.returncode == 1 and "set TALLY_API_TOKEN and TALLY_API_SQL_TOKEN" in done.stderr
    tokens = {"TALLY_API_TOKEN": READ, "TALLY_API_SQL_TOKEN": SQL}
    done = tally("api", "check", "--host", "0.0.0.0", "--data-dir", str(data), env=tokens)
    assert done.returncode == 0, done.stderr
    same = {"TALLY_API_TOKEN": READ, "TALLY_API_SQL_TOKEN": READ}
    done = tally("api", "check", "--data-dir", str(data), env=same)
    assert done.returncode == 1 and "must differ" in done.stderr
    done = tally("api", "check", "--port", "70000", "--data-dir", str(data))
    assert done.returncode == 2 and "'--port'" in done.stderr


def test_ui_check_reports_dashboard_files_and_the_sql_user(tmp_path: Path) -> None:
    dashboards = tmp_path / "dashboards"
    dashboards.mkdir()
    (dashboards / "bad.yaml").write_text("title: x\nwidgets:\n  - bogus: 1\n")
    done = tally("ui", "check", "--dashboards", str(dashboards), "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert f"dashboard error: {dashboards / 'bad.yaml'}:3: unknown field 'bogus'" in done.stderr
    done = tally("ui", "check", "--sql-clickhouse-user", "tally_sql", "--data-dir", str(tmp_path))
    assert done.returncode == 2 and "needs its password" in done.stderr


@pytest.mark.parametrize("service", ["api", "ui"])
def test_help_lists_run_and_check_and_run_is_the_default(service: str) -> None:
    done = tally(service, "--help")
    assert done.returncode == 0 and "run" in done.stdout and "check" in done.stdout
    done = tally(service, "--port", "not-a-port")  # no command named: run's options
    assert done.returncode == 2 and "'--port'" in done.stderr


def test_api_settle_reaches_the_read_settings_and_must_be_positive(tmp_path: Path) -> None:
    from tally.cli.api import API, _read
    from tally.read.settings import DEFAULT_SETTLE_S

    data = str(tmp_path / "data")

    def settle(argv: list[str], env: dict[str, str]) -> float:
        return parse(API, ["--data-dir", data, *argv], "tally api run", env, _read).settle_s

    assert settle([], {}) == DEFAULT_SETTLE_S
    assert settle(["--settle", "25"], {}) == 25.0
    assert settle([], {"TALLY_API_SETTLE_S": "4"}) == 4.0
    done = tally("api", "check", "--settle", "0", "--data-dir", data)
    assert done.returncode == 2 and "'--settle'" in done.stderr, done
