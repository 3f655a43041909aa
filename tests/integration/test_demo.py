"""``tally demo`` in a scripted run: backfill, live traffic for a few seconds, exact, stops."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tally.embedded.kafka_node import free_ports

pytestmark = pytest.mark.integration


def test_demo_runs_for_a_duration_and_is_exact(tmp_path):
    kafka, clickhouse, api = free_ports(3)
    proc = subprocess.run(
        [
            sys.executable, "-m", "tally.cli", "demo", "--data-dir", str(tmp_path / "demo"),
            "--days", "0.5", "--kafka-port", str(kafka),
            "--clickhouse-port", str(clickhouse), "--api-port", str(api),
        ],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "TALLY_DEMO_DURATION": "3", "COLUMNS": "200"},
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "queue samples over the past 0.5 days" in out
    assert f"http://127.0.0.1:{api}/api/v1/schema" in out
    assert f"ClickHouse http://127.0.0.1:{clickhouse}" in out
    assert "Live jobs stopped after" in out
    assert "exact" in out and "stopped cleanly" in out


def test_demo_picks_free_ports_and_its_printed_commands_work_as_pasted(tmp_path):
    """Ports from TALLY_*_PORT; the printed `export` + `tally keys` reach this demo's stack."""
    kafka, clickhouse, api = free_ports(3)
    data_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tally.cli", "demo", "--data-dir", str(data_dir), "--days", "0.2"],
        capture_output=True, text=True, timeout=600, check=False,
        env=env | {"TALLY_DEMO_DURATION": "1", "COLUMNS": "250", "TALLY_KAFKA_PORT": str(kafka),
                   "TALLY_CLICKHOUSE_PORT": str(clickhouse), "TALLY_API_PORT": str(api)},
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"Kafka 127.0.0.1:{kafka} · ClickHouse http://127.0.0.1:{clickhouse}" in out
    stack = json.loads((data_dir / "stack.json").read_text())
    assert stack["clickhouse_url"] == f"http://127.0.0.1:{clickhouse}"
    export = next(line.strip() for line in out.splitlines() if "export TALLY_DATA_DIR=" in line)
    keys = next(line.strip() for line in out.splitlines() if " keys 'event::schedule::*'" in line)
    # the stack is stopped now: the pasted command must go to its port (and fail there),
    # never to another stack on the default 8123
    pasted = subprocess.run(
        ["bash", "-c", f"{export}; {keys}"], capture_output=True, text=True, timeout=120,
        check=False, env=env,
    )  # fmt: skip
    assert f"127.0.0.1:{clickhouse}" in pasted.stdout + pasted.stderr


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
