"""A monitor file that is not UTF-8 costs only itself: ``file:line: reason`` in ``tally monitors
list``, ``tally monitors run`` (which keeps judging the other files), ``GET /api/v1/monitors``,
and in a running service, which reads the file again once it changes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import httpx
import pytest

from tally.api.server import ServerThread
from tally.api.settings import ApiSettings
from tally.clickhouse.settings import ClickHouseSettings
from tally.embedded.kafka_node import free_ports
from tally.monitors.lease import AlwaysHeld
from tally.monitors.notify import Notifier
from tally.monitors.service import MonitorService
from tally.monitors.store import Store
from tally.monitors.watermark import WallClock
from tally.read import AsyncReader, ReadSettings
from tally.schemas.ddl import RollupSchema
from tests.integration.readside import PASSWORD, apply_schema, start

pytestmark = pytest.mark.integration

GOOD = """monitors:
  - {name: neighbour, key: event::cron, path: total.count, condition: {type: expected, fewer_than: 1}}
"""  # noqa: E501
LATIN1 = b"""monitors:
  - {name: was-latin1, key: event::cron, path: total.count, condition: {type: threshold, above: 1}}
# caf\xe9 (Latin-1)
"""
REASON = "3: not UTF-8: byte 0xe9 at column 6 (save it as UTF-8)"


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory) -> Iterator:
    ch = start(tmp_path_factory.mktemp("monitors-files") / "clickhouse")
    try:
        apply_schema(ch, RollupSchema(database="tally"))
        yield ch
    finally:
        ch.stop()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    directory = tmp_path / "monitors"
    directory.mkdir()
    (directory / "a.yaml").write_text(GOOD)
    (directory / "b.yaml").write_bytes(LATIN1)
    return directory


def env(clickhouse) -> dict[str, str]:
    return {**os.environ, "TALLY_CLICKHOUSE_URL": clickhouse.url,
            "TALLY_CLICKHOUSE_PASSWORD": PASSWORD}  # fmt: skip


def read_settings(clickhouse) -> ReadSettings:
    return ReadSettings(clickhouse=ClickHouseSettings(url=clickhouse.url, password=PASSWORD))


def test_list_names_the_file_and_line_and_lists_the_others(clickhouse, files: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tally.cli", "monitors", "list", str(files)],
        env=env(clickhouse), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [f"error: {files / 'b.yaml'}:{REASON}"]
    assert proc.stdout.split()[0] == "neighbour"


def test_run_keeps_judging_the_other_files(clickhouse, files: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tally.cli", "monitors", "run", str(files), "--bootstrap", "",
         "--tick", "0.2", "--grace", "0"],
        env=env(clickhouse), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = clickhouse_connect.get_client(
        host=clickhouse.host, port=clickhouse.port, password=PASSWORD
    )
    judged = 0
    try:
        deadline = time.monotonic() + 60  # a judged bucket takes ~1 s; this only bounds a hang
        while time.monotonic() < deadline and proc.poll() is None and not judged:
            time.sleep(0.3)
            try:
                judged = client.query(
                    "SELECT count() FROM tally.monitor_state FINAL WHERE monitor = 'neighbour'"
                ).result_rows[0][0]
            except Exception as exc:  # the service has not created its tables yet
                assert "UNKNOWN_TABLE" in str(exc) or "doesn't exist" in str(exc), exc
    finally:
        client.close()
        running = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert running and judged == 1, err
    assert f"{files / 'b.yaml'}:{REASON}" in err
    assert "Traceback" not in err and proc.returncode == 0


def test_the_api_lists_the_error_and_the_other_monitors(clickhouse, files: Path) -> None:
    token = "read-token-0123456789abcdef"
    port = free_ports(1)[0]
    settings = ApiSettings(read_settings(clickhouse), token, "sql-token-0123456789abcdef",
                           port=port, monitor_paths=(files,))  # fmt: skip
    thread = ServerThread(settings).start()
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/monitors",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    finally:
        thread.stop()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"] == [f"{files / 'b.yaml'}:{REASON}"]
    assert [m["name"] for m in body["monitors"]] == ["neighbour"]


def test_the_service_keeps_running_and_reads_the_file_again_once_it_changes(
    clickhouse, files: Path
) -> None:
    bad = files / "b.yaml"

    async def scenario() -> None:
        read = read_settings(clickhouse)
        svc = MonitorService(
            paths=[files], reader=AsyncReader(read), store=Store(read), watermark=WallClock(0),
            notifier=Notifier({}), lease=AlwaysHeld(),
        )  # fmt: skip
        await svc.start()
        try:
            now = time.time() + 7200  # after anything the run test judged
            result = await svc.tick(now=now)
            assert result.errors == [] and list(result.judged) == ["neighbour"]
            assert svc.definitions.errors == (f"{bad}:{REASON}",)
            st = bad.stat()  # the stamp kept is the one of the version that was attempted
            assert svc.files.stamps[bad] == (st.st_mtime_ns, st.st_size)
            assert svc.reload() is False  # unchanged: not read again, its error stays listed
            assert svc.definitions.errors == (f"{bad}:{REASON}",)
            bad.write_text(LATIN1.decode("latin-1").replace("caf\xe9", "cafe now in UTF-8"))
            result = await svc.tick(now=now + 60)
            assert result.errors == [] and svc.definitions.errors == ()
            assert sorted(result.judged) == ["neighbour", "was-latin1"]
            st = bad.stat()
            assert svc.files.stamps[bad] == (st.st_mtime_ns, st.st_size)
        finally:
            await svc.close()

    asyncio.run(scenario())
