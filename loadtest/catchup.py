"""The aggregator alone, flat out: one fresh aggregator process replays the whole topic.

After the load, a new ``tally.aggregator`` process (its own consumer group, its own database)
reads the run's topic from the beginning, folds, inserts and commits exactly as in
production. Its Prometheus counters give events folded over time; Kafka's committed offsets
say when everything is durable. The rate is events over the time from its last idle sample
to durable completion; the per-core rate divides by the process's CPU seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from tally.embedded.kafka_node import free_ports
from tally.loadtest.endpoints import Endpoints
from tally.loadtest.lag import LagProbe
from tally.loadtest.profiler import FlameRecorder
from tally.schemas.ddl import identifier

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_METRIC = re.compile(r"^(tally_\w+_total) ([0-9.e+]+)$", re.MULTILINE)


@dataclass(frozen=True)
class CatchupSpec:
    """Where to replay from and to."""

    endpoints: Endpoints
    workdir: Path
    group: str
    database: str = "tally_catchup"
    flush_interval_s: float = 1.0
    max_s: float = 180.0
    session_timeout_ms: int = 6_000
    clickhouse_pid: int | None = None
    profile: Path | None = None  # write a py-spy flame graph of the replay here


@dataclass(frozen=True)
class CatchupResult:
    """Throughput of one aggregator replaying the topic."""

    events: int
    records: int
    complete: bool
    wall_s: float
    cpu_s: float
    events_per_s: float
    events_per_cpu_s: float
    clickhouse_cpu_s: float | None
    rows_out: int
    flushes: int
    database: str
    group: str
    log: str


def scrape(port: int) -> dict[str, float]:
    """The aggregator's counters (``tally_*_total``) from its /metrics endpoint."""
    with _DIRECT.open(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in _METRIC.findall(text)}


def command(spec: CatchupSpec, port: int) -> list[str]:
    """The aggregator's command line."""
    e = spec.endpoints
    return [
        sys.executable, "-m", "tally.aggregator", "run",
        "--bootstrap", e.bootstrap,
        "--topic", e.topic,
        "--group", spec.group,
        "--clickhouse-url", e.clickhouse_url,
        "--clickhouse-user", e.clickhouse_user,
        "--database", spec.database,
        "--flush-interval", str(spec.flush_interval_s),
        "--session-timeout-ms", str(spec.session_timeout_ms),
        "--heartbeat-ms", "500",
        "--metrics-port", str(port),
        "--initial-offset", "earliest",  # a fresh group that must count the whole topic
    ]  # fmt: skip


def run_catchup(spec: CatchupSpec) -> CatchupResult:
    """Replay the topic with one aggregator; stop it once durable or after ``max_s``."""
    client = spec.endpoints.clickhouse()
    client.command(f"DROP DATABASE IF EXISTS {identifier(spec.database)}")
    lag = LagProbe(spec.endpoints.bootstrap, spec.endpoints.topic, spec.group)
    lag.start()
    records_total = sum(lag.end_offsets().values())
    (port,) = free_ports(1)
    log_path = spec.workdir / "catchup-aggregator.log"
    spec.workdir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command(spec, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "TALLY_CLICKHOUSE_PASSWORD": spec.endpoints.clickhouse_password},
        )
    flame = FlameRecorder(proc.pid, None, spec.profile) if spec.profile else None
    try:
        return _watch(spec, proc, port, lag, records_total, str(log_path))
    finally:
        lag.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if flame is not None:
            flame.wait()


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def _watch(
    spec: CatchupSpec,
    proc: subprocess.Popen,
    port: int,
    lag: LagProbe,
    records_total: int,
    log: str,
) -> CatchupResult:
    me = psutil.Process(proc.pid)
    server = psutil.Process(spec.clickhouse_pid) if spec.clickhouse_pid else None
    started = time.monotonic()
    idle_t, idle_cpu, idle_server = started, _cpu(me), _cpu(server)
    metrics: dict[str, float] = {}
    done_t: float | None = None
    while time.monotonic() - started < spec.max_s and proc.poll() is None:
        time.sleep(0.25)
        now = time.monotonic()
        try:
            metrics = scrape(port)
        except OSError:
            continue
        if metrics.get("tally_events_in_total", 0) == 0:
            idle_t, idle_cpu, idle_server = now, _cpu(me), _cpu(server)
            continue
        if metrics.get("tally_records_in_total", 0) >= records_total and lag.lag() == 0:
            done_t = time.monotonic()
            break
    end_t = done_t or time.monotonic()
    cpu, server_cpu = _cpu(me) - idle_cpu, _cpu(server) - idle_server
    events = int(metrics.get("tally_events_in_total", 0))
    wall = max(end_t - idle_t, 1e-6)
    return CatchupResult(
        events=events,
        records=int(metrics.get("tally_records_in_total", 0)),
        complete=done_t is not None,
        wall_s=round(wall, 3),
        cpu_s=round(cpu, 3),
        events_per_s=round(events / wall),
        events_per_cpu_s=round(events / cpu) if cpu > 0 else 0.0,
        clickhouse_cpu_s=round(server_cpu, 3) if server is not None else None,
        rows_out=int(metrics.get("tally_rows_out_total", 0)),
        flushes=int(metrics.get("tally_flushes_total", 0)),
        database=spec.database,
        group=spec.group,
        log=log,
    )
