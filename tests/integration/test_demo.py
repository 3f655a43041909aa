"""``tally demo`` in a scripted run: backfill, live traffic for a few seconds, exact, stops."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tally.embedded.kafka_broker import free_ports

pytestmark = pytest.mark.integration


def test_demo_runs_for_a_duration_and_is_exact(tmp_path):
    kafka, clickhouse, api = free_ports(3)
    proc = subprocess.run(
        [
            sys.executable, "-m", "tally.cli", "demo", "--data-dir", str(tmp_path / "demo"),
            "--history-events", "5000", "--rate", "50", "--kafka-port", str(kafka),
            "--clickhouse-port", str(clickhouse), "--api-port", str(api),
        ],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "TALLY_DEMO_DURATION": "3", "COLUMNS": "200"},
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Backfilled 5,000 events over the past week" in out
    assert f"http://127.0.0.1:{api}/api/v1/schema" in out
    assert "tally series commodity::events::product_target::calculation" in out
    assert "Live traffic stopped after 150 events" in out
    assert "exact" in out and "stopped cleanly" in out


def test_demo_refuses_to_wipe_a_directory_it_did_not_make(tmp_path):
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    proc = subprocess.run(
        [sys.executable, "-m", "tally.cli", "demo", "--data-dir", str(precious)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "refusing to wipe" in proc.stdout + proc.stderr
    assert (precious / "keep.txt").read_text() == "mine"
