"""Monitors end to end on the real stack (Kafka, aggregators, ClickHouse), with notifications
received by a real HTTP server and a real SMTP server. Records are stamped on an explicit clock
(as a client sending at that time would stamp them) and the service is ticked on that clock,
so minutes pass in milliseconds while the watermark reads the real committed offsets."""

from __future__ import annotations

import asyncio
import base64
import time
from email import message_from_string
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tally.api.server import ServerThread
from tally.api.settings import ApiSettings
from tally.embedded.kafka_node import free_ports
from tally.monitors.engine import iso
from tally.monitors.watermark import KafkaWatermark

from .monitors_helpers import (
    GRACE,
    Receiver,
    kinds,
    read_settings,
    send_at,
    service,
    smtp_server,
    wait_committed,
)

pytestmark = pytest.mark.integration

JOB = "billing__cron__schedule_invoices_job"
SCHED = "billing__tenants__schedule_invoices_job"


def definitions(url: str, smtp_port: int) -> str:
    return f"""
channels:
  hook: {{type: webhook, url: "{url}/alertmanager"}}
  chat: {{type: slack, url: "{url}/slack"}}
  mail: {{type: email, to: [ops@example.com], from: tally@example.com, host: 127.0.0.1,
          port: {smtp_port}}}
  digest: {{type: webhook, url: "{url}/report"}}
reports:
  - name: daily-cron
    every: 1d
    items: [{{title: cron runs, key: event::cron, path: total.count}}]
    notify: [digest]
monitors:
  - name: cron-stopped
    key: event::cron
    path: jobs.{JOB}.count
    granularity: 1m
    condition: {{type: expected, fewer_than: 1}}
    for: 2m
    labels: {{severity: page}}
    annotations: {{summary: "{{{{ monitor }}}} ran {{{{ value }}}} times in {{{{ bucket }}}}"}}
    notify: [hook, chat, mail]
ready:
  - scheduler_idle: {{job: {SCHED}, idle_for: 3m, notify: [hook]}}
"""


def cron(at: float) -> tuple[float, list[str], dict]:
    v = {"count": 1, "resources": 2, "state": {"success": 1}}
    return (at, ["event::cron"], {"total": v, "jobs": {JOB: v}})


def schedule(at: float, tenant: str, resources: int) -> tuple[float, list[str], dict]:
    v = {"count": 1, "resources": resources, "state": {"success": 1}}
    keys = ["event::schedule", f"event::schedule::{tenant}"]
    return (at, keys, {"total": v, "jobs": {SCHED: v}, "tenants": {tenant: v}})


def test_cron_stop_and_idle_tenant_fire_and_resolve_once(make_stack, tmp_path: Path) -> None:
    stack = make_stack(partitions=2, aggregators=1, flush_interval_s=0.5)
    asyncio.run(cron_and_idle(stack, tmp_path))
    # The HTTP API lists the definitions and their stored states.
    token = "read-token-0123456789abcdef"
    port = free_ports(1)[0]
    api_settings = ApiSettings(
        read_settings(stack), token, "sql-token-0123456789abcdef", port=port,
        monitor_paths=(tmp_path / "m.yaml",),
    )  # fmt: skip
    thread = ServerThread(api_settings).start()
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/monitors",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/monitors").status_code == 401
    finally:
        thread.stop()
    body = response.json()
    assert response.status_code == 200 and body["errors"] == []
    assert [m["name"] for m in body["monitors"]] == ["cron-stopped", f"scheduler-idle:{SCHED}"]
    assert body["monitors"][0]["condition"] == "expected" and body["monitors"][0]["for_s"] == 120
    states = {(s["monitor"], s["segment"]): s["state"] for s in body["states"]}
    assert states[("cron-stopped", "")] == "pending"  # minutes 12-13: no run yet
    assert states[(f"scheduler-idle:{SCHED}", "globex")] == "firing"
    assert body["deliveries"] == {"delivered": 7}


async def cron_and_idle(stack, tmp_path: Path) -> None:
    receiver = Receiver()
    url = await receiver.start()
    controller, mailbox = smtp_server()
    base = int(time.time()) // 60 * 60 - 30 * 60  # minute 0 of the explicit clock
    if base // 86_400 != (base + 15 * 60) // 86_400:  # the ticks must not cross a UTC midnight:
        base = (base + 15 * 60) // 86_400 * 86_400 - 16 * 60  # the daily digest goes out once
    minute = lambda i: base + i * 60  # noqa: E731
    (tmp_path / "m.yaml").write_text(definitions(url, controller.port))
    svc = service(stack, [tmp_path / "m.yaml"])
    await svc.start()
    watermark = svc.watermark
    assert isinstance(watermark, KafkaWatermark)
    try:
        # The cron runs in minutes 0-4 and 8-11; acme's scheduler always finds work, globex's
        # runs but touches nothing from minute 3 on.
        for i in range(12):
            events = [schedule(minute(i) + 20, "acme", 5),
                      schedule(minute(i) + 20, "globex", 0 if i >= 3 else 4)]  # fmt: skip
            if i <= 4 or i >= 8:
                events.append(cron(minute(i) + 10))
            await send_at(stack, minute(i) + 30, events)
        await wait_committed(watermark)
        fired_at: dict[tuple[str, str, str], int] = {}
        for i in range(1, 13):  # tick just after bucket i-1 is durable
            result = await svc.tick(now=minute(i) + GRACE + 1)
            assert result.errors == []
            for n in result.notices:
                fired_at[(n.kind, n.monitor, n.segment)] = i - 1
        idle = f"scheduler-idle:{SCHED}"
        # cron: minutes 5 and 6 empty -> `for: 2m` holds at bucket 6; minute 8 resolves.
        # globex: idle 3, 4, 5 -> fires at bucket 5 and stays firing; acme never fires.
        assert fired_at == {
            ("firing", "cron-stopped", ""): 6,
            ("resolved", "cron-stopped", ""): 8,
            ("firing", idle, "globex"): 5,
        }
        hook = receiver.bodies["/alertmanager"]
        assert kinds(hook) == [
            ("firing", idle, "globex"),
            ("firing", "cron-stopped", ""),
            ("resolved", "cron-stopped", ""),
        ]
        fire = hook[1]
        assert fire["version"] == "4" and fire["status"] == "firing"
        assert fire["receiver"] == "hook" and fire["externalURL"] == "http://dash"
        assert set(fire) == {
            "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
            "commonLabels", "commonAnnotations", "externalURL", "alerts",
        }  # fmt: skip
        alert = fire["alerts"][0]
        assert alert["startsAt"] == iso(minute(5))
        assert alert["endsAt"] == "0001-01-01T00:00:00Z"
        assert alert["labels"] == {"alertname": "cron-stopped", "severity": "page"}
        assert alert["annotations"]["summary"] == f"cron-stopped ran 0 times in {iso(minute(6))}"

        def link(at: int) -> str:  # the monitor's page at the judged bucket
            return f"http://dash/ui/monitors/cron-stopped?{urlencode({'segment': '', 'at': at})}"

        assert alert["generatorURL"] == link(minute(6))
        resolved = hook[2]["alerts"][0]
        assert resolved["status"] == "resolved" and resolved["endsAt"] == iso(minute(8))
        assert resolved["fingerprint"] == alert["fingerprint"]
        slack = receiver.bodies["/slack"]
        assert [b["text"].split("\n")[0] for b in slack] == [
            f"<{link(minute(6))}|[FIRING] cron-stopped>",
            f"<{link(minute(8))}|[RESOLVED] cron-stopped>",
        ]  # fmt: skip
        mails = [message_from_string(m[2]) for m in mailbox.messages]
        assert [m["Subject"] for m in mails] == ["[FIRING] cron-stopped", "[RESOLVED] cron-stopped"]
        body = mails[0].get_payload(decode=True).decode()
        assert f"dashboard: {link(minute(6))}" in body
        assert all(m[1] == ["ops@example.com"] for m in mailbox.messages)

        # A restarted service (new process state, same ClickHouse) neither repeats nor loses.
        await svc.close()
        svc = service(stack, [tmp_path / "m.yaml"])
        await svc.start()
        for i in range(12, 14):
            result = await svc.tick(now=minute(i) + GRACE + 1)
            assert result.notices == [] and result.errors == []
        assert len(receiver.bodies["/alertmanager"]) == 3
        states = await svc.store.states(idle)
        # minutes 12-13 had no scheduler run: acme has nothing to judge (no data); globex's
        # alert stays firing (only a clear bucket resolves)
        assert {s.name: st.state for s, st in states.items()} == {
            "acme": "nodata", "globex": "firing",
        }  # fmt: skip
        assert (await svc.store.delivery_counts()) == {"delivered": 7}
        # The daily digest went out once (the last complete UTC day), with a PNG chart.
        (digest,) = receiver.bodies["/report"]
        day_end = minute(0) // 86_400 * 86_400
        runs = sum(1 for i in [*range(5), *range(8, 12)] if day_end - 86_400 <= minute(i) < day_end)
        assert digest["report"] == "daily-cron" and digest["to"] == iso(day_end)
        (item,) = digest["items"]
        assert item["total"] == runs
        assert base64.b64decode(item["png_base64"]).startswith(b"\x89PNG")
    finally:
        await svc.close()
        controller.stop()
        await receiver.stop()


LATE = f"""
monitors:
  - name: cron-late
    key: event::cron
    path: jobs.{JOB}.count
    granularity: 1m
    condition: {{type: expected, fewer_than: 1}}
"""


def test_late_data_from_a_stopped_aggregator_is_not_a_false_alarm(
    make_stack, tmp_path: Path
) -> None:
    stack = make_stack(partitions=2, aggregators=1, flush_interval_s=0.5)
    asyncio.run(late_data(stack, tmp_path))


async def late_data(stack, tmp_path: Path) -> None:
    from tally.monitors.evaluate import frames, verdict_at
    from tally.monitors.source import fetch

    base = int(time.time()) // 60 * 60 - 30 * 60
    minute = lambda i: base + i * 60  # noqa: E731
    (tmp_path / "m.yaml").write_text(LATE)
    svc = service(stack, [tmp_path / "m.yaml"])
    await svc.start()
    watermark = svc.watermark
    try:
        for i in range(3):
            await send_at(stack, minute(i) + 30, [cron(minute(i) + 10)])
        await wait_committed(watermark)
        for i in range(1, 4):
            result = await svc.tick(now=minute(i) + GRACE + 1)
            assert result.judged == {"cron-late": 1} and result.notices == []
        # The aggregator stops; the cron keeps running on time in minutes 3-5, but nothing
        # reaches ClickHouse for three minutes of the evaluation clock.
        stack.stop_aggregators()
        for i in range(3, 6):
            await send_at(stack, minute(i) + 30, [cron(minute(i) + 10)])
        for i in range(4, 7):
            result = await svc.tick(now=minute(i) + GRACE + 1)
            assert result.judged == {} and result.notices == [], i
        # A wall-clock evaluator would have judged minute 3 from what ClickHouse has now: a
        # breach ("the cron did not run").
        (m,) = svc.definitions.monitors
        fetched = await fetch(svc.reader, m, [minute(3)], minute(4))
        (frame,) = frames(m, fetched).frames.values()
        assert verdict_at(m, frame, 0).breach is True
        # The aggregator comes back: the late minutes become durable and are judged, correctly.
        stack.start_aggregator()
        await wait_committed(watermark)
        result = await svc.tick(now=minute(6) + GRACE + 1)
        assert result.judged == {"cron-late": 3} and result.notices == []
        history = await svc.store.history("cron-late")
        assert [h[4] for h in history] == []  # no transition at all: ok throughout
        states = await svc.store.states("cron-late")
        assert [(st.state, st.last_bucket) for st in states.values()] == [("ok", minute(5))]
    finally:
        await svc.close()
