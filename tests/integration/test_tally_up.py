"""``tally up`` as a real process: serves, stops cleanly on Ctrl-C, keeps its data on restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tally.embedded.kafka_node import free_ports
from tally.ingest import ClientSettings, Tracker
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


class Up:
    """One ``tally up`` process with its output collected."""

    def __init__(
        self,
        data_dir: Path,
        ports: list[int] | None,
        extra: tuple[str, ...] = (),
        env: dict | None = None,
    ) -> None:
        flags: list[str] = []
        if ports is not None:
            kafka, clickhouse, api = ports
            flags = ["--kafka-port", str(kafka), "--clickhouse-port", str(clickhouse),
                     "--api-port", str(api)]  # fmt: skip
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "tally.cli", "up", "--data-dir", str(data_dir), *flags,
                "--aggregators", "1", "--partitions", "2", *extra,
            ],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("TALLY_")} | (env or {}),
        )  # fmt: skip
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def text(self) -> str:
        return "".join(self.output)

    def wait_up(self, timeout: float = 240) -> None:
        wait_for(
            lambda: "tally is up" in self.text() or self.proc.poll() is not None,
            timeout,
            "tally up",
        )
        assert "tally is up" in self.text(), self.text()

    def interrupt(self, timeout: float = 120) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)


MONITOR = """
monitors:
  - name: upcheck-silent
    key: upcheck
    path: count
    condition: {type: no_data}
    for: 1h
"""


def _send(bootstrap: str, events: int) -> None:
    tracker = Tracker(ClientSettings(bootstrap_servers=bootstrap))
    for i in range(events):
        tracker.track(["upcheck", f"upcheck::tenant::{i % 5}"], {"count": 1})
    tracker.flush(60)
    tracker.close()


def _series_count(api: str, token: str) -> float:
    response = httpx.get(
        f"{api}/api/v1/series",
        params={"key": "upcheck", "path": "count", "since": "2h", "granularity": "1h"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    if response.status_code != 200:
        return -1
    return sum(p or 0 for p in response.json()["series"]["rows"][0]["points"])


def test_restart_over_the_same_data_dir_keeps_the_data(tmp_path):
    data_dir = tmp_path / "data"
    ports = free_ports(3)
    api = f"http://127.0.0.1:{ports[2]}"
    (data_dir / "monitors").mkdir(parents=True)
    (data_dir / "monitors" / "up.yaml").write_text(MONITOR)
    up = Up(data_dir, ports)
    try:
        up.wait_up()
        token = (data_dir / "secrets" / "api-read-token").read_text().strip()
        # the monitor service runs over <data dir>/monitors and the API lists its monitors
        log = data_dir / "logs" / "monitors.log"
        wait_for(lambda: log.exists() and "loaded 1 monitors" in log.read_text(), 120,
                 "the monitor service")  # fmt: skip
        listed = httpx.get(
            f"{api}/api/v1/monitors", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ).json()
        assert [m["name"] for m in listed["monitors"]] == ["upcheck-silent"]
        for name in ("api-read-token", "api-sql-token", "clickhouse-password"):
            assert stat.S_IMODE((data_dir / "secrets" / name).stat().st_mode) == 0o600
        assert httpx.get(f"{api}/api/v1/keys").status_code == 401
        _send(f"127.0.0.1:{ports[0]}", 250)
        wait_for(lambda: _series_count(api, token) == 250, 180, "250 events in the rollups")
        assert up.interrupt() == 0
        assert "stopped cleanly" in up.text()
        password = (data_dir / "secrets" / "clickhouse-password").read_text()
        assert password.strip() not in up.text()
    finally:
        if up.proc.poll() is None:
            up.proc.kill()

    again = Up(data_dir, ports)
    try:
        again.wait_up()
        assert _series_count(api, token) == 250
        keys = httpx.get(
            f"{api}/api/v1/keys", params={"pattern": "upcheck::*"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()  # fmt: skip
        assert sorted(k["key"] for k in keys) == [f"upcheck::tenant::{i}" for i in range(5)]
        with httpx.Client(base_url=api) as browser:  # the dashboard is served too
            assert browser.post("/ui/login", data={"token": token}).status_code == 303
            assert "Widgets chosen" in browser.get("/ui/key", params={"key": "upcheck"}).text
        assert again.interrupt() == 0
    finally:
        if again.proc.poll() is None:
            again.proc.kill()


def test_a_taken_port_is_a_clear_error_before_anything_starts(tmp_path):
    kafka, clickhouse, api = free_ports(3)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", api))
        holder.listen()
        started = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable, "-m", "tally.cli", "up", "--data-dir", str(tmp_path),
                "--kafka-port", str(kafka), "--clickhouse-port", str(clickhouse),
                "--api-port", str(api),
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 2
    assert f"127.0.0.1:{api} is already in use" in proc.stderr
    assert "--api-port" in proc.stderr
    assert not (tmp_path / "clickhouse").exists()
    assert time.monotonic() - started < 60


def test_up_with_external_kafka_and_clickhouse(tmp_path, make_stack):
    external = make_stack(
        start_aggregators=False, clickhouse_user="default", clickhouse_password="ext-secret"
    )
    ports = free_ports(3)
    api = f"http://127.0.0.1:{ports[2]}"
    flags = ("--kafka-bootstrap", external.kafka.bootstrap)
    flags += ("--clickhouse-url", external.clickhouse.url)
    up = Up(tmp_path / "data", ports, flags, {"TALLY_CLICKHOUSE_PASSWORD": "ext-secret"})
    try:
        up.wait_up()
        assert f"Kafka       {external.kafka.bootstrap}" in up.text()
        assert not (tmp_path / "data" / "clickhouse").exists()
        assert not (tmp_path / "data" / "kafka").exists()
        _send(external.kafka.bootstrap, 40)
        token = (tmp_path / "data" / "secrets" / "api-read-token").read_text().strip()
        wait_for(lambda: _series_count(api, token) == 40, 180, "40 events via external parts")
        assert up.interrupt() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()


def test_ports_from_env_are_recorded_in_stack_json_and_read_commands_follow(tmp_path):
    """TALLY_*_PORT move the stack; stack.json records its URLs (no secret) and a read command
    given only the data dir reaches that stack, not whatever serves the default port."""
    data_dir = tmp_path / "data"
    kafka, clickhouse, api = free_ports(3)
    ports = {"TALLY_KAFKA_PORT": str(kafka), "TALLY_CLICKHOUSE_PORT": str(clickhouse),
             "TALLY_API_PORT": str(api)}  # fmt: skip
    up = Up(data_dir, None, ("--trace-writers", "0"), ports)
    try:
        up.wait_up()
        stack = json.loads((data_dir / "stack.json").read_text())
        assert stack == {
            "kafka_bootstrap": f"127.0.0.1:{kafka}",
            "clickhouse_url": f"http://127.0.0.1:{clickhouse}",
            "api_url": f"http://127.0.0.1:{api}",
        }
        password = (data_dir / "secrets" / "clickhouse-password").read_text().strip()
        assert password not in (data_dir / "stack.json").read_text()
        _send(f"127.0.0.1:{kafka}", 20)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
        env["TALLY_DATA_DIR"] = str(data_dir)

        def keys() -> str:
            proc = subprocess.run(
                [sys.executable, "-m", "tally.cli", "keys", "upcheck::*"],
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            return proc.stdout + proc.stderr

        wait_for(lambda: "5 keys matching" in keys(), 180, "tally keys via stack.json")
        assert up.interrupt() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
