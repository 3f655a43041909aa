"""One receiver that hangs stops nothing else: the running service (real ClickHouse, real local
HTTP receivers: one that accepts and never answers, one healthy) keeps evaluating while the
hung deliveries are retried within their budget, the healthy receiver gets its notice at once,
and ``/metrics`` (scraped over HTTP) shows evaluation lag, outbox depth and failed deliveries."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tally.monitors.lease import AlwaysHeld
from tally.monitors.notify import Notifier
from tally.monitors.service import MonitorService
from tally.monitors.store import Store
from tally.monitors.watermark import WallClock
from tally.read import AsyncReader
from tally.schemas.ddl import RollupSchema
from tests.integration.monitors_helpers import Hanging, Receiver, kinds
from tests.integration.readside import apply_schema, insert, settings, start

pytestmark = pytest.mark.integration

T0 = int(time.time()) // 60 * 60 - 20 * 60  # minute 0 (the 1m rollups keep 14 days)
TIMEOUT_S, BUDGET_S = 3.0, 8.0  # per attempt; per delivery, its retries included
# Healthy: judged and delivered within one or two 0.1 s ticks (~0.3 s); the bound is > 10x
# that, and far below what two hung deliveries cost when run inline (2 x 5 x 3 s).
HEALTHY_BOUND_S = 6.0


def minute(i: int) -> int:
    return T0 + 60 * i


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory) -> Iterator:
    ch = start(tmp_path_factory.mktemp("monitors-delivery") / "clickhouse")
    try:
        apply_schema(ch, RollupSchema(database="tally"))
        rows = [(["event::cron"], datetime.fromtimestamp(minute(i), UTC),
                 {"total.count": 10 if i == 5 else 1}) for i in range(10)]  # fmt: skip
        insert(ch, "tally", rows)
        yield ch
    finally:
        ch.stop()


def definitions(dead: str, healthy: str) -> str:
    rule = "key: event::cron, path: total.count"
    return f"""
channels:
  dead: {{type: webhook, url: "{dead}/hook"}}
  healthy: {{type: webhook, url: "{healthy}/hook"}}
monitors:
  - {{name: to-dead-1, {rule}, condition: {{type: expected, fewer_than: 1000}}, notify: [dead]}}
  - {{name: to-dead-2, {rule}, condition: {{type: expected, fewer_than: 1000}}, notify: [dead]}}
  - {{name: to-healthy, {rule}, condition: {{type: threshold, above: 5}}, notify: [healthy]}}
"""


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``predicate`` holds; fails after ``timeout`` (a hang bound, not a speed
    assertion)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"no {what} within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def scrape(port: int) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    samples = {}
    for line in response.text.splitlines():
        if m := re.match(r"^(tally_monitor_[a-z_]+(?:\{[^}]*\})?) (\S+)$", line):
            samples[m.group(1)] = float(m.group(2))
    return samples


def test_a_hung_receiver_delays_only_itself(clickhouse, tmp_path: Path) -> None:
    asyncio.run(scenario(clickhouse, tmp_path))


async def scenario(clickhouse, tmp_path: Path) -> None:
    dead, healthy = Hanging(), Receiver()
    (tmp_path / "m.yaml").write_text(definitions(await dead.start(), await healthy.start()))
    now = [float(minute(1) + 2)]  # minute 0 is the newest durable bucket
    read = settings(clickhouse, "tally")
    svc = MonitorService(
        paths=[tmp_path / "m.yaml"], reader=AsyncReader(read), store=Store(read),
        watermark=WallClock(1), lease=AlwaysHeld(), tick_s=0.1, clock=lambda: now[0],
        notifier=Notifier({}, timeout_s=TIMEOUT_S, backoff_s=0.05), budget_s=BUDGET_S,
        metrics_port=0,
    )  # fmt: skip
    await svc.start()
    port = svc.metrics_port
    assert port
    stop = asyncio.Event()
    running = asyncio.create_task(svc.run(stop))
    try:
        # Both dead notices are judged at minute 0; the first delivery hangs.
        await until(lambda: dead.requests >= 1, 30, "request to the hung receiver")
        before = (await scrape(port))["tally_monitor_evaluations_total"]
        now[0] = minute(6) + 2  # minutes 1-5 become durable: to-healthy fires at minute 5
        took = await until(lambda: "/hook" in healthy.bodies, HEALTHY_BOUND_S, "healthy notice")
        assert kinds(healthy.bodies["/hook"]) == [("firing", "to-healthy", "")]
        assert "dead" in svc.dispatcher.busy(), took  # still hung there meanwhile
        await until(lambda: dead.requests >= 2, 30, "retry to the hung receiver")
        metrics = await scrape(port)
        assert metrics["tally_monitor_evaluations_total"] >= before + 2  # ticks went on
        lag = 'tally_monitor_evaluation_lag_seconds{monitor="to-healthy"}'
        assert metrics[lag] == 2.0  # now is 2 s after the end of minute 5, the newest judged
        assert metrics['tally_monitor_outbox_pending{channel="dead"}'] == 2.0
        assert metrics['tally_monitor_deliveries_total{channel="healthy",outcome="delivered"}'] == 1
        failed = 'tally_monitor_deliveries_total{channel="dead",outcome="failed"}'
        assert failed not in metrics  # the first dead delivery is still inside its budget
        labels = {"channel": "dead", "outcome": "failed"}
        sample = svc.metrics.registry.get_sample_value
        gave_up = lambda: (sample("tally_monitor_deliveries_total", labels) or 0) >= 1  # noqa: E731
        await until(gave_up, BUDGET_S * 10, "the hung delivery to give up")
        metrics = await scrape(port)
        assert metrics[failed] == 1.0
        assert metrics[lag] == 2.0 and not stop.is_set() and not running.done()
    finally:
        stop.set()
        await running
        await svc.close()
        await dead.stop()
        await healthy.stop()
    counts = await outbox_counts(read)
    assert counts["failed"] >= 1 and counts["delivered"] == 1


async def outbox_counts(read) -> dict[str, int]:
    store = Store(read)
    await store.start(create=False)
    try:
        return await store.delivery_counts()
    finally:
        await store.close()
