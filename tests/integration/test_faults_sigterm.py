"""SIGTERM to a job process: its buffered events are delivered, or spooled and delivered later."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tally.ingest import ClientSettings, Tracker

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SCRIPT = Path(__file__).with_name("client_process.py")


def run_client(bootstrap: str, count: int, spool: Path | None, at: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), bootstrap, str(count), str(spool or ""), str(at)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def sig_total(stack) -> float:
    client = stack.clickhouse_client()
    query = "SELECT sum(value) FROM tally.rollups_1m WHERE key = 'sig' AND path = 'count'"
    return client.query(query).result_rows[0][0] or 0


def test_sigterm_delivers_what_the_job_buffered(make_stack):
    stack = make_stack(partitions=4, aggregators=1)
    proc = run_client(stack.kafka.bootstrap, 50_000, None, int(time.time()))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == -signal.SIGTERM  # still dies of SIGTERM, after closing the tracker
    wait_for(lambda: sig_total(stack) >= 50_000, 60, "50k events")
    time.sleep(2)
    assert sig_total(stack) == 50_000


def test_sigterm_during_a_broker_outage_spools_and_a_later_process_delivers(make_stack, tmp_path):
    stack = make_stack(partitions=4, aggregators=1)
    spool = tmp_path / "spool"
    stack.kafka.stop()  # the job never reaches the broker: nothing is routed yet
    proc = run_client(stack.kafka.bootstrap, 30_000, spool, int(time.time()))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == -signal.SIGTERM
    assert list(spool.rglob("*.rec")), "nothing was spooled"
    stack.kafka.restart()
    # A new process (say the restarted worker) adopts the orphaned spool and sends it.
    successor = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap, spool_dir=spool))
    assert successor.flush(120)
    successor.close()
    wait_for(lambda: sig_total(stack) >= 30_000, 90, "30k events")
    time.sleep(2)
    assert sig_total(stack) == 30_000
    assert not list(spool.rglob("*.rec"))
