"""Aggregator flags (help, defaults), the coordinator-loading log filter, error classes."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from tally.aggregator.settings import SETTINGS, from_args
from tally.clickhouse.errors import classify_error
from tally.engine.logs import CoordinatorLoading


def test_every_flag_has_help_with_its_variable_and_default():
    from typer.testing import CliRunner

    from tally.aggregator.cli import app

    text = " ".join(CliRunner().invoke(app, ["run", "--help"]).output.split())
    for row in SETTINGS.options:
        assert row.flag in text, row.flag
        assert row.env is None or f"env var: {row.env}" in text, row.flag
    assert "[env var: TALLY_KAFKA_BOOTSTRAP; default: 127.0.0.1:9092]" in text
    assert "default: 512.0]" in text  # --max-fold-mb
    assert "[env var: TALLY_MAX_INSERT_ATTEMPTS; default: 5]" in text
    assert "TALLY_CLICKHOUSE_PASSWORD" in text and "--clickhouse-password" not in text


def test_help_runs_from_the_console_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "tally.aggregator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--max-fold-mb" in out and "TALLY_MAX_FOLD_MB" in out and "default:" in out


def test_new_settings_from_flags_and_environment():
    s = from_args([], env={})
    assert (s.metrics_host, s.metrics_port, s.initial_offset) == ("127.0.0.1", 9464, None)
    assert s.max_fold_bytes == 512 * 2**20 and s.max_insert_attempts == 5
    s = from_args(
        ["--max-fold-mb", "64", "--initial-offset", "latest", "--metrics-port", "-1"], env={}
    )
    assert s.max_fold_bytes == 64 * 2**20
    assert s.initial_offset == "latest" and s.metrics_port is None
    with pytest.raises(SystemExit):
        from_args(["--initial-offset", "sometimes"], env={})


def test_metrics_port_in_use_is_one_clear_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tally.aggregator", "run", "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "already in use" in lines[0] and "--metrics-port 0" in lines[0]


def record(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    name = "aiokafka.consumer.group_coordinator"
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_coordinator_loading_is_info_until_it_lasts():
    now = [100.0]
    f = CoordinatorLoading(grace_s=10, quiet_s=30, clock=lambda: now[0])
    msg = "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
    first = record(msg)
    assert f.filter(first) and first.levelno == logging.INFO
    now[0] = 108
    assert f.filter(r := record(msg)) and r.levelno == logging.INFO
    now[0] = 115  # the same episode, now longer than the grace: an error again
    assert f.filter(r := record(msg)) and r.levelno == logging.ERROR
    now[0] = 200  # a new episode after a quiet spell starts a new grace
    assert f.filter(r := record(msg)) and r.levelno == logging.INFO
    other = record("Heartbeat failed: something else")
    assert f.filter(other) and other.levelno == logging.ERROR


def test_error_classes():
    assert classify_error(DataError("Unable to create Python array for DateTime")) == "data"
    assert classify_error(OverflowError("minute")) == "data"
    assert classify_error(OperationalError("connection refused")) == "transient"
    assert classify_error(ConnectionRefusedError()) == "transient"
    assert classify_error(DatabaseError("Code: 395. DB::Exception: test poison")) == "data"
    assert classify_error(DatabaseError("Code: 252. DB::Exception: Too many parts")) == "transient"
    limit = "Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100)"
    assert classify_error(DatabaseError(limit)) == "data"
