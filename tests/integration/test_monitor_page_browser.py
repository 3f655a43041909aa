"""Where an alert lands (#19.4), in a real browser (Debian's chromium driven by Playwright) on
the real ClickHouse: the link in a real notification (the monitor service's, received by a
real local HTTP receiver) opens the monitor's page, which draws the judged series, the
threshold line and the firing window shaded, and links the bucket's executions; the generic
key page groups paths by kind, never stacks unlike paths and never charts ``.square``."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tally.api.server import ServerThread
from tally.api.settings import ApiSettings
from tally.embedded.kafka_node import free_ports
from tally.monitors.lease import AlwaysHeld
from tally.monitors.notify import Notifier
from tally.monitors.service import MonitorService
from tally.monitors.store import Store
from tally.monitors.watermark import WallClock
from tally.read import AsyncReader
from tally.web import WebSettings, web_handlers
from tally.web.traces_pages import TRACE_PAGES
from tests.integration.browser_site import chromium, pixel, seeded_clickhouse, sign_in
from tests.integration.monitors_helpers import Receiver
from tests.integration.readside import insert, settings

pytestmark = pytest.mark.integration

SHOTS = Path(os.environ.get("TALLY_TEST_SHOTS", "/tmp/tally-dashboard-shots"))
READ = "read-token-monitor-page-0123456789"
SQL = "sql-token-monitor-page-0123456789"

T0 = int(time.time()) // 60 * 60 - 20 * 60  # minute 0
MONITORS = """monitors:
  - {name: alarm-high, key: event::alarm, path: total.count,
     condition: {type: threshold, above: 5}, notify: [hook]}
channels:
  hook: {type: webhook, url: "%s/hook"}
"""


def minute(i: int) -> int:
    return T0 + 60 * i


@dataclass
class Site:
    url: str
    context: object
    alerts: list[dict]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("monitor-page")
    with seeded_clickhouse(root, days=2, tenants=4) as (clickhouse, _):
        rows = [(["event::alarm"], datetime.fromtimestamp(minute(i), UTC),
                 {"total.count": 10 if i == 5 else 1}) for i in range(12)]  # fmt: skip
        insert(clickhouse, "tally", rows)  # fires at minute 5, resolves at minute 6
        port = free_ports(1)[0]
        url = f"http://127.0.0.1:{port}"
        alerts = asyncio.run(_notify(clickhouse, root, url))
        api = ApiSettings(settings(clickhouse, "tally"), READ, SQL, port=port,
                          monitor_paths=(root / "m.yaml",))  # fmt: skip
        server = ServerThread(api, [*web_handlers(WebSettings(None)), *TRACE_PAGES]).start()
        try:
            with chromium(width=1280) as context:
                sign_in(context, url, READ)
                yield Site(url, context, alerts)
        finally:
            server.stop()


async def _notify(clickhouse, root: Path, url: str) -> list[dict]:
    """Run the monitor service over minutes 0-6 with a real receiver: its alerts."""
    receiver = Receiver()
    hook = await receiver.start()
    (root / "m.yaml").write_text(MONITORS % hook)
    read = settings(clickhouse, "tally")
    svc = MonitorService(
        paths=[root / "m.yaml"], reader=AsyncReader(read), store=Store(read),
        watermark=WallClock(1), notifier=Notifier({}, external_url=url), lease=AlwaysHeld(),
        base_url=url,
    )  # fmt: skip
    await svc.start()
    try:
        for now in (minute(1) + 2, minute(6) + 2, minute(7) + 2):
            assert (await svc.tick(now=now)).errors == []
    finally:
        await svc.close()
        await receiver.stop()
    return [a for body in receiver.bodies["/hook"] for a in body["alerts"]]


def _open(site: Site, url: str):
    page = site.context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function(
        "() => document.body.dataset.state === 'ready'"
        " && (!document.body.dataset.renders || Number(document.body.dataset.renders) >= 1)",
        timeout=60_000,
    )
    return page, errors


def _iso(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def test_the_alert_link_opens_the_monitor_page(site: Site) -> None:
    firing = next(a for a in site.alerts if a["status"] == "firing")
    link = urlparse(firing["generatorURL"])
    assert link.path == "/ui/monitors/alarm-high"
    assert parse_qs(link.query, keep_blank_values=True) == {
        "segment": [""], "at": [str(minute(5))],
    }  # fmt: skip
    page, errors = _open(site, firing["generatorURL"])
    assert errors == [] and not page.locator("#problem").is_visible()
    chart = page.locator("#chart")
    buckets = json.loads(chart.get_attribute("data-buckets"))
    values = json.loads(chart.get_attribute("data-values"))
    assert values[buckets.index(minute(5))] == 10.0 and values[buckets.index(minute(4))] == 1.0
    assert chart.get_attribute("data-lines") == "above:5"
    assert json.loads(chart.get_attribute("data-windows")) == [[minute(5), minute(6)]]
    legend = chart.locator(".u-legend .u-label").all_inner_texts()
    assert "total.count" in legend and "above 5" in legend
    plot, under = (chart.locator(s).bounding_box() for s in ("canvas", ".u-legend"))
    assert under["y"] >= plot["y"] + plot["height"] - 1  # uPlot's stylesheet is loaded
    # The firing window is painted: red inside it, nothing outside (pixels of the canvas).
    ((x0, x1, top, _height),) = json.loads(chart.get_attribute("data-shaded"))
    inside = pixel(page, "#chart canvas", x0 + 0.75 * (x1 - x0), top + 2)
    outside = pixel(page, "#chart canvas", x0 - 2.5 * (x1 - x0), top + 2)
    assert inside[3] > 0 and inside[0] > inside[1] + 50, inside
    assert outside[3] == 0 or abs(outside[0] - outside[1]) < 10, outside
    assert page.locator("#windows li").count() == 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "monitor.png"), full_page=True)
    # The bucket's executions.
    with page.expect_navigation():
        page.click("#executions")
    url = urlparse(page.url)
    query = parse_qs(url.query)
    assert url.path == "/traces" and query["key"] == ["event::alarm"]
    since, until = (datetime.fromisoformat(query[k][0]) for k in ("since", "until"))
    assert (since, until) == (_iso(minute(5)), _iso(minute(6)))
    page.close()


def test_the_monitor_api_reads_one_monitor(site: Site) -> None:
    with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {READ}"}) as api:
        body = api.get("/api/v1/monitors/alarm-high", params={"at": minute(5)}).json()
        assert api.get("/api/v1/monitors/nope").status_code == 404
    assert (body["segment"], body["key"], body["at"]) == ("", "event::alarm", minute(5))
    assert body["windows"] == [{"since": minute(5), "fired": minute(5), "resolved": minute(6)}]
    assert body["lines"] == [{"label": "above", "value": 5.0, "breach": "above"}]
    assert [(s["segment"], s["state"]) for s in body["segments"]] == [("", "resolved")]
    judged = dict(zip(body["judged"]["buckets"], body["judged"]["breach"], strict=True))
    assert (judged[minute(4)], judged[minute(5)], judged[minute(6)]) == (False, True, False)


def test_the_generic_key_page_groups_paths_by_kind(site: Site) -> None:
    page, errors = _open(site, f"{site.url}/ui/key?key=event::job::t03")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    assert errors == [] and page.locator(".problem").count() == 0
    groups: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for section in page.locator(".widget").all():
        kind = next(c[5:] for c in section.get_attribute("class").split() if c[:5] == "type-")
        title = section.locator("h2").inner_text()
        if kind == "text":
            current = title
            continue
        groups.setdefault(current, []).append((kind, title))
    assert list(groups) == ["Counters", "Distributions"]
    assert {k for k, _ in groups["Counters"]} <= {"kpi", "timeseries", "category", "table"}
    assert groups["Distributions"] == [
        ("distribution", "total.duration"), ("distribution", "total.queue_lag"),
    ]  # fmt: skip
    for dist in page.locator(".type-distribution").all():
        assert dist.get_attribute("data-distribution") == "quantiles"
    titles = [t for g in groups.values() for _, t in g]
    assert not [t for t in titles if t.startswith("mean jobs.") or t.startswith("mean tenants.")]
    spec = json.loads(page.locator("#page-data").text_content())["dashboard"]
    drawn = [r.get("path") or r.get("expression", "") for w in spec["widgets"]
             for r in w.get("rows", [])]  # fmt: skip
    assert drawn and not [p for p in drawn if p.endswith(".square")]
    stacked = [w["rows"][0]["path"] for w in spec["widgets"] if w.get("style") == "stacked"]
    assert stacked and "total.*" not in stacked
    measures = {"count", "sum", "square", "retries", "duration", "queue_lag"}
    for w in page.locator(".type-timeseries").all():
        labels = set(w.locator(".u-legend .u-label").all_inner_texts())
        assert not [p for p in labels if p.endswith(".square")]
        if w.locator("h2").inner_text() in stacked:
            assert not labels & measures, labels  # like paths only: jobs, tenants, states...
    page.close()
