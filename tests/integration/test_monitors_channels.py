"""A misconfigured channel is caught at load and costs no notification (#19.5), on real parts:
the embedded ClickHouse (state and outbox), a real local HTTP receiver and the real CLI.

- ``tally monitors list`` names ``file:line`` of a webhook whose ``url_env`` is unset;
- its notices are held (not failed) and reach the receiver, FIRING then RESOLVED, once the
  service restarts with the variable set;
- a RESOLVED never goes to a receiver that did not get the FIRING."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tally.monitors.lease import AlwaysHeld
from tally.monitors.notify import Notifier
from tally.monitors.service import MonitorService
from tally.monitors.store import Store
from tally.monitors.watermark import WallClock
from tally.read import AsyncReader
from tally.schemas.ddl import RollupSchema
from tests.integration.monitors_helpers import Receiver, kinds
from tests.integration.readside import apply_schema, insert, settings, start

pytestmark = pytest.mark.integration

T0 = int(time.time()) // 60 * 60 - 20 * 60  # minute 0 (the 1m rollups keep 14 days)
VAR = "TALLY_TEST_HOOK_URL"


def minute(i: int) -> int:
    return T0 + 60 * i


def definitions(name: str, channel: str) -> str:
    return f"""monitors:
  - {{name: {name}, key: event::cron, path: total.count, condition: {{type: threshold, above: 5}},
     notify: [hook]}}
channels:
  hook: {channel}
"""


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory) -> Iterator:
    ch = start(tmp_path_factory.mktemp("monitors-channels") / "clickhouse")
    try:
        apply_schema(ch, RollupSchema(database="tally"))
        rows = [(["event::cron"], datetime.fromtimestamp(minute(i), UTC),
                 {"total.count": 10 if i == 5 else 1}) for i in range(10)]  # fmt: skip
        insert(ch, "tally", rows)  # fires at minute 5, resolves at minute 6
        yield ch
    finally:
        ch.stop()


def service(clickhouse, path: Path, notifier: Notifier) -> MonitorService:
    read = settings(clickhouse, "tally")
    return MonitorService(
        paths=[path], reader=AsyncReader(read), store=Store(read), watermark=WallClock(1),
        notifier=notifier, lease=AlwaysHeld(),
    )  # fmt: skip


async def fire_and_resolve(svc: MonitorService) -> list[str]:
    """Ticks judging minute 0, then 1-5 (firing), then 6 (resolved): the notice kinds."""
    notices = []
    for now in (minute(1) + 2, minute(6) + 2, minute(7) + 2):
        result = await svc.tick(now=now)
        assert result.errors == []
        notices += [n.kind for n in result.notices]
    return notices


async def outbox(clickhouse, monitor: str) -> list[tuple[str, str, str]]:
    """(kind, status, last error) of a monitor's notifications, oldest bucket first."""
    store = Store(settings(clickhouse, "tally"))
    await store.start(create=False)
    try:
        result = await store._client.query(
            f"""SELECT kind, status, last_error FROM {store.db}.monitor_notifications FINAL
WHERE monitor = {{m:String}} ORDER BY bucket""",
            parameters={"m": monitor},
        )
        return [tuple(r) for r in result.result_rows]
    finally:
        await store.close()


def test_list_names_the_file_and_line_of_an_unset_url_env(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(definitions("listed", f"{{type: webhook, url_env: {VAR}}}"))
    env = {k: v for k, v in os.environ.items() if k != VAR}
    command = [sys.executable, "-m", "tally.cli", "monitors", "list", str(path)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: {path}:5: channel 'hook': url_env {VAR} is not set"
    ]
    assert proc.stdout.split()[0] == "listed"
    proc = subprocess.run(
        command, env={**env, VAR: "http://127.0.0.1:9/hook"}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (0, "")


def test_held_notices_reach_the_receiver_once_the_variable_is_set(
    clickhouse, tmp_path: Path
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(definitions("held", f"{{type: webhook, url_env: {VAR}}}"))
    reason = f"channel 'hook': url_env {VAR} is not set"

    async def scenario() -> None:
        receiver = Receiver()
        url = await receiver.start()
        try:
            svc = service(clickhouse, path, Notifier({}, env={}, backoff_s=0.01))
            await svc.start()
            try:
                assert svc.definitions.errors == (f"{path}:5: {reason}",)
                assert await fire_and_resolve(svc) == ["firing", "resolved"]
            finally:
                await svc.close()
            assert receiver.bodies == {}
            assert await outbox(clickhouse, "held") == [
                ("firing", "held", reason), ("resolved", "held", reason),
            ]  # fmt: skip
            # Restarted with the variable set: both go out, in order, once each.
            notifier = Notifier({}, env={VAR: f"{url}/hook"}, backoff_s=0.01)
            svc = service(clickhouse, path, notifier)
            await svc.start()
            try:
                assert svc.definitions.errors == ()
                result = await svc.tick(now=minute(7) + 3)
                assert (result.notices, result.delivered) == ([], 2)
                assert (await svc.tick(now=minute(7) + 4)).delivered == 0
            finally:
                await svc.close()
        finally:
            await receiver.stop()
        assert kinds(receiver.bodies["/hook"]) == [("firing", "held", ""), ("resolved", "held", "")]
        statuses = [(k, s) for k, s, _ in await outbox(clickhouse, "held")]
        assert statuses == [("firing", "delivered"), ("resolved", "delivered")]

    asyncio.run(scenario())


def test_no_resolved_for_a_firing_the_receiver_never_got(clickhouse, tmp_path: Path) -> None:
    async def scenario() -> None:
        receiver = Receiver(fail_first=2)  # both attempts at the FIRING get a 503
        url = await receiver.start()
        path = tmp_path / "m.yaml"
        path.write_text(definitions("unseen", f'{{type: webhook, url: "{url}/hook"}}'))
        svc = service(clickhouse, path, Notifier({}, attempts=2, backoff_s=0.01))
        await svc.start()
        try:
            assert svc.definitions.errors == ()
            assert await fire_and_resolve(svc) == ["firing", "resolved"]
        finally:
            await svc.close()
            await receiver.stop()
        assert receiver.fail_first == 0  # the FIRING was tried (twice) and failed
        assert receiver.bodies == {}  # and the RESOLVED was not sent
        assert await outbox(clickhouse, "unseen") == [
            ("firing", "failed", "channel hook: HTTP 503"),
            ("resolved", "skipped", "not sent: this channel never got the firing notice"),
        ]

    asyncio.run(scenario())
