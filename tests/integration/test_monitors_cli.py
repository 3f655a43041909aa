"""``tally monitors test|list`` run as the real command against ClickHouse, and deliveries to
real local servers (HTTP and SMTP): retries with backoff, failures counted."""

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

from tally.monitors.engine import Notice, iso
from tally.monitors.notify import Notifier
from tally.monitors.spec import Channel
from tally.schemas.ddl import RollupSchema
from tests.integration.monitors_helpers import Receiver, smtp_server
from tests.integration.readside import PASSWORD, apply_schema, insert, start

pytestmark = pytest.mark.integration
BASE = int(time.time()) // 86_400 * 86_400 - 86_400 + 10 * 3600  # yesterday 10:00 UTC

MONITORS = """
monitors:
  - name: cron-stopped
    key: event::cron
    path: total.count
    granularity: 1m
    condition: {type: expected, fewer_than: 1}
    for: 2m
  - name: idle
    key: "event::schedule::*"
    path: total.resources
    granularity: 1m
    condition: {type: zero, for: 3m, active: total.count}
  - name: broken
    key: event::cron
    path: total.count
    condition: {type: threshold}
"""


@pytest.fixture(scope="module")
def tally(tmp_path_factory) -> Iterator:
    data_dir = tmp_path_factory.mktemp("monitors-cli")
    clickhouse = start(data_dir / "clickhouse")
    apply_schema(clickhouse, RollupSchema(database="tally"))
    rows = []
    for i in range(20):  # minutes 0..19 of BASE (the 1m rollups keep 14 days); the cron skips 5-7
        minute = datetime.fromtimestamp(BASE + 60 * i, UTC)
        if not 5 <= i <= 7:
            rows.append((["event::cron"], minute, {"total.count": 1}))
        rows.append((["event::schedule::acme"], minute, {"total.count": 1, "total.resources": 3}))
        idle = 0 if 10 <= i <= 14 else 2
        rows.append((["event::schedule::globex"], minute,
                     {"total.count": 1, "total.resources": idle}))  # fmt: skip
    insert(clickhouse, "tally", rows)
    (data_dir / "m.yaml").write_text(MONITORS)
    env = {
        **os.environ,
        "TALLY_CLICKHOUSE_URL": clickhouse.url,
        "TALLY_CLICKHOUSE_PASSWORD": PASSWORD,
        "TALLY_DATA_DIR": str(data_dir),
    }

    def run(*args: str, code: int = 0) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "tally.cli", "monitors", *args],
            env=env, capture_output=True, text=True, timeout=120, check=False, cwd=data_dir,
        )  # fmt: skip
        assert proc.returncode == code, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    run.clickhouse = clickhouse  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        clickhouse.stop()


RANGE = ["--since", iso(BASE), "--until", iso(BASE + 20 * 60)]


def at(i: int) -> str:
    return iso(BASE + 60 * i)


def test_backtest_prints_when_each_monitor_would_have_fired_and_resolved(tally) -> None:
    out = tally("test", "m.yaml", *RANGE, code=2)
    assert out.splitlines() == [
        "cron-stopped (m.yaml:3): 1 firing, 2 events",
        f"  {at(6)}  firing             cron-stopped  value 0",
        f"  {at(8)}  resolved           cron-stopped  value 1",
        "idle (m.yaml:9): 1 firing, 2 events",
        f"  {at(12)}  firing             idle [globex]  value 0",
        f"  {at(15)}  resolved           idle [globex]  value 2",
        "error: m.yaml:17: a threshold needs 'above' or 'below' (at condition)",
    ]


def test_backtest_of_one_monitor_with_every_change(tally) -> None:
    out = tally("test", "m.yaml", "-m", "cron-stopped", "--all-changes", *RANGE, code=2)
    assert f"  {at(5)}  ok -> pending      cron-stopped  value 0" in out.splitlines()
    assert "idle" not in out


def test_an_unreachable_clickhouse_is_one_line_and_exit_1(tally) -> None:
    out = tally("test", "m.yaml", "-m", "idle", "--clickhouse-url", "http://127.0.0.1:9", code=1)
    assert out.splitlines()[-1].startswith("error: ClickHouse at http://127.0.0.1:9: ")
    assert "Traceback" not in out


def test_list_shows_definitions_and_errors(tally) -> None:
    out = tally("list", "m.yaml", code=2)
    assert "cron-stopped" in out and "expected" in out and "idle" in out
    assert "error: m.yaml:" in out


def notice(kind: str = "firing") -> Notice:
    return Notice("id1", "m", "", "k", kind, 1_772_445_600, 1_772_445_600, "1m", 0.0,
                  {"alertname": "m"}, {"summary": "s"}, "http://dash/d/key/k", "fp")  # fmt: skip


def test_webhook_retries_a_503_then_delivers() -> None:
    async def scenario() -> tuple[tuple[bool, int, str], Receiver]:
        receiver = Receiver(fail_first=2)
        url = await receiver.start()
        notifier = Notifier({"hook": Channel("hook", "webhook", url=f"{url}/am")}, backoff_s=0.01)
        try:
            return await notifier.deliver(notice(), "hook"), receiver
        finally:
            await notifier.close()
            await receiver.stop()

    (ok, attempts, error), receiver = asyncio.run(scenario())
    assert (ok, attempts, error) == (True, 3, "")
    assert len(receiver.bodies["/am"]) == 1


def test_failed_deliveries_are_counted_and_secrets_stay_out_of_errors() -> None:
    from tally.embedded.kafka_node import free_ports

    port = free_ports(1)[0]  # nothing listens there
    secret = f"http://127.0.0.1:{port}/hooks/T000/SECRET-TOKEN"

    async def scenario():
        notifier = Notifier(
            {
                "chat": Channel("chat", "slack", url_env="SLACK_URL"),
                "mail": Channel("mail", "email", to=("a@b",), port=port),
            },
            attempts=2, backoff_s=0.01, env={"SLACK_URL": secret},
        )  # fmt: skip
        try:
            return [await notifier.deliver(notice(), c) for c in ("chat", "mail")], notifier
        finally:
            await notifier.close()

    results, notifier = asyncio.run(scenario())
    assert [r[:2] for r in results] == [(False, 2), (False, 2)]
    assert all("SECRET" not in r[2] for r in results)
    assert notifier.stats.failed == 2 and notifier.stats.by_channel == {"chat": 1, "mail": 1}


def test_email_reaches_a_real_smtp_server() -> None:
    controller, mailbox = smtp_server()
    try:
        channel = Channel("mail", "email", to=("ops@example.com",), port=controller.port)
        notifier = Notifier({"mail": channel})
        ok, attempts, _ = asyncio.run(notifier.deliver(notice("resolved"), "mail"))
    finally:
        controller.stop()
    assert (ok, attempts) == (True, 1)
    ((_sender, rcpt, content),) = mailbox.messages
    assert rcpt == ["ops@example.com"] and "Subject: [RESOLVED] m" in content
    assert "dashboard: http://dash/d/key/k" in content


def test_example_monitors_load(tmp_path: Path) -> None:
    from tally.monitors.loader import load_paths

    root = Path(__file__).resolve().parents[2]
    loaded = load_paths([root / "monitors" / "examples"])
    assert loaded.errors == () and len(loaded.monitors) == 11  # 9 job monitors, 2 queue ones


def test_a_crash_between_judging_and_delivering_loses_nothing_and_repeats_nothing(
    tally, tmp_path: Path
) -> None:
    from tally.clickhouse.settings import ClickHouseSettings
    from tally.monitors.lease import AlwaysHeld
    from tally.monitors.service import MonitorService, TickResult
    from tally.monitors.store import Store
    from tally.monitors.watermark import WallClock
    from tally.read import AsyncReader, ReadSettings

    read = ReadSettings(clickhouse=ClickHouseSettings(url=tally.clickhouse.url, password=PASSWORD))

    async def scenario() -> list[dict]:
        receiver = Receiver()
        url = await receiver.start()
        (tmp_path / "m.yaml").write_text(f"""
channels:
  hook: {{type: webhook, url: "{url}/am"}}
monitors:
  - name: crash-test
    key: event::cron
    path: total.count
    condition: {{type: expected, fewer_than: 1}}
    notify: [hook]
""")

        def service() -> MonitorService:
            return MonitorService(
                paths=[tmp_path / "m.yaml"], reader=AsyncReader(read), store=Store(read),
                watermark=WallClock(5), notifier=Notifier({}, backoff_s=0.01),
                lease=AlwaysHeld(),
            )  # fmt: skip

        now = BASE + 7 * 60 + 6  # minute 6 (no cron run) is the newest durable bucket
        first = service()
        await first.start()
        (m,) = first.definitions.monitors
        await first._evaluate(m, now, TickResult())  # judged and stored, then "crashes"
        await first.close()
        assert receiver.bodies == {}
        second = service()
        await second.start()
        result = await second.tick(now=now)  # nothing new to judge; the outbox is delivered
        again = await second.tick(now=now + 1)
        await second.close()
        await receiver.stop()
        assert result.notices == [] and result.delivered == 1 and again.delivered == 0
        return receiver.bodies["/am"]

    (body,) = asyncio.run(scenario())
    assert body["status"] == "firing" and body["alerts"][0]["labels"]["alertname"] == "crash-test"


def test_daily_digest_by_email_with_png_charts(tally, tmp_path: Path) -> None:
    from email import message_from_string

    from tally.clickhouse.settings import ClickHouseSettings
    from tally.monitors.loader import load_text
    from tally.monitors.report import send_reports
    from tally.read import ReadSettings

    controller, mailbox = smtp_server()
    try:
        loaded = load_text(f"""
channels:
  mail: {{type: email, to: [ops@example.com], port: {controller.port}}}
reports:
  - name: daily
    every: 1d
    items:
      - {{title: cron runs, key: event::cron, path: total.count}}
      - {{title: idle share, key: "event::schedule::globex",
          expression: "1 - total.resources / (2 * total.count)"}}
    notify: [mail]
""", "r.yaml")  # fmt: skip
        assert loaded.errors == ()
        read = ReadSettings(
            clickhouse=ClickHouseSettings(url=tally.clickhouse.url, password=PASSWORD)
        )
        now = BASE + 86_400  # the report covers the day of BASE
        lines = asyncio.run(
            send_reports(read, loaded.channels, list(loaded.reports), out=tmp_path, now=now)
        )
    finally:
        controller.stop()
    assert lines == ["sent daily to mail"]
    ((_, rcpt, content),) = mailbox.messages
    message = message_from_string(content)
    assert rcpt == ["ops@example.com"] and message["Subject"].startswith("tally report daily")
    parts = list(message.walk())
    text = next(p for p in parts if p.get_content_type() == "text/plain").get_payload(decode=True)
    assert b"cron runs: 17 (previous period 0" in text
    pngs = [p.get_payload(decode=True) for p in parts if p.get_content_type() == "image/png"]
    assert len(pngs) == 2 and all(png.startswith(b"\x89PNG") for png in pngs)
    assert (tmp_path / "daily.txt").read_text().startswith("tally report daily")
