"""A newcomer's walk through ``tally demo`` in Chromium: every built-in dashboard is full, a
click on the Jobs chart lists executions, a failed one opens with its message, and the demo's
alert (its link as the log receiver got it) opens the monitor's page. The walk's
screenshots are the README's (docs/screenshots/); the times to the backfill and to the first
full dashboard are printed (measured, not asserted)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tally.embedded.kafka_node import free_ports
from tests.integration.browser_site import CHROMIUM
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PAGES = {
    "cron": "/ui/d/cron",
    "schedule": "/ui/d/schedule",
    "jobs": "/ui/d/jobs",
    "queues": "/ui/d/queues?s.framework=rq&s.queue=resources",
}


class Demo:
    """``tally demo`` as a newcomer starts it, on ports given by TALLY_*_PORT."""

    def __init__(self, data_dir: Path) -> None:
        kafka, clickhouse, api = free_ports(3)
        self.api = f"http://127.0.0.1:{api}"
        self.data_dir = data_dir
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
        env |= {"TALLY_KAFKA_PORT": str(kafka), "TALLY_CLICKHOUSE_PORT": str(clickhouse),
                "TALLY_API_PORT": str(api), "TALLY_DEMO_DURATION": "900"}  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tally.cli", "demo", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line))

    def text(self) -> str:
        return "".join(line for _, line in self.lines)

    def seconds_to(self, needle: str) -> float:
        return next(t for t, line in self.lines if needle in line)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    running = Demo(tmp_path_factory.mktemp("demo") / "demo")
    try:
        wait_for(
            lambda: "Running live jobs" in running.text() or running.proc.poll() is not None,
            1800,  # >= 10x the usual start + backfill
            "the demo's backfill",
        )
        assert "Running live jobs" in running.text(), running.text()[-3000:]
        yield running
    finally:
        running.proc.terminate()
        running.proc.wait(120)


def _ready(page) -> None:
    page.wait_for_function(
        "() => document.body.dataset.state === 'ready'", timeout=120_000
    )  # the page's CSP forbids eval: a function, not a string


def _full(page, name: str) -> None:
    """No empty widget: KPIs with values, charts with points, tables and lists with rows."""
    assert not page.locator("#empty").is_visible(), name
    assert page.locator(".nodata").count() == 0, (name, page.locator(".nodata").all_inner_texts())
    assert page.locator(".problem").count() == 0, name
    assert "no data for" not in page.locator("main, body").first.inner_text(), name
    for kpi in page.locator(".type-kpi .kpi-item").all():
        assert kpi.get_attribute("data-value") not in (None, "", "null"), name
    for chart in page.locator(".type-timeseries").all():
        assert int(chart.get_attribute("data-buckets") or 0) > 0, name
        assert chart.locator("canvas").count() >= 1, name
    for table in page.locator(".type-table").all():
        assert table.locator("tbody tr").count() > 0, name
    for category in page.locator(".type-category").all():
        assert category.locator("li").count() > 0, name
    for gauge in page.locator(".type-gauge").all():
        assert gauge.get_attribute("data-gauge") == "last", name


def _alert_link(demo: Demo) -> str:
    """The link of the demo monitor's first firing notice, as its log receiver got it."""
    log = demo.data_dir / "logs" / "monitors.log"
    found: list[str] = []

    def fired() -> bool:
        text = log.read_text() if log.exists() else ""
        found[:] = re.findall(r"\[FIRING\] job-failure-rate .*?dashboard: (\S+)", text)
        return bool(found)

    wait_for(fired, 600, "the demo's alert")  # >= 10x a bucket, the grace and a tick
    return found[0]


def test_a_newcomer_walks_the_demo(demo):
    from playwright.sync_api import sync_playwright

    out = demo.text()
    backfill = re.search(r"Backfilled [^$]*? in ([0-9.]+)s", " ".join(out.split()))
    assert backfill, out[-3000:]
    token = (demo.data_dir / "secrets" / "api-read-token").read_text().strip()
    assert demo.api in out  # the printed URLs are the moved ports
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            page.goto(f"{demo.api}/ui/")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "index.png"))
            for name, path in PAGES.items():
                page.goto(demo.api + path)
                _ready(page)
                _full(page, name)
                if name == "cron":
                    first_full = time.monotonic() - demo.started
                page.wait_for_timeout(1500)  # let the charts finish drawing (not asserted)
                _ready(page)
                page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
                if name == "cron":
                    text = page.locator(".type-timeseries").first.inner_text()
                    assert "expected 1 per hour" in text  # the demo's crons run hourly
                    assert int(page.locator(".type-timeseries").first.get_attribute(
                        "data-missed") or 0) <= 1  # fmt: skip
            # Jobs: a click on the outcomes chart lists the bucket's executions ...
            page.goto(demo.api + "/ui/d/jobs?range=24h&g=1h")
            _ready(page)
            over = page.locator(".type-timeseries .u-over").first
            box = over.bounding_box()
            assert box is not None
            with page.expect_navigation():
                over.click(position={"x": box["width"] * 0.8, "y": box["height"] / 2})
            assert page.url.startswith(f"{demo.api}/traces?")
            assert page.locator("#executions tr.execution").count() > 0
            page.screenshot(path=str(SHOTS / "executions.png"))
            # ... and the failed ones open with their message
            page.select_option("select[name=status]", "failure")
            with page.expect_navigation():
                page.click("#bucket button[type=submit]")
            failed = page.locator("#executions tr.execution")
            if failed.count() == 0:  # this hour had no failure: widen to the whole day
                page.fill("input[name=since]", "24h")
                page.fill("input[name=until]", "")
                with page.expect_navigation():
                    page.click("#bucket button[type=submit]")
            assert failed.count() > 0
            with page.expect_navigation():
                failed.first.get_by_role("link").click()
            assert page.locator("#error-message").inner_text().strip() != ""
            assert page.locator("#traceback").count() == 1
            # its blocks (if it got as far as one) last the simulated time, not 0 ms
            durations = page.locator(".duration").all_inner_texts()
            assert not durations or any(re.search(r"[1-9]", d) for d in durations), durations
            page.screenshot(path=str(SHOTS / "trace.png"), full_page=True)
            # The alert's link opens the watched series with its threshold, not the key page
            link = _alert_link(demo)
            assert link.startswith(f"{demo.api}/ui/monitors/job-failure-rate?segment=&at=")
            page.goto(link)
            _ready(page)
            assert not page.locator("#problem").is_visible()
            assert page.locator("#key").count() == 0  # the generic key page's heading
            chart = page.locator("#chart")
            assert chart.get_attribute("data-lines") == "above:0.25"
            legend = chart.locator(".u-legend .u-label").all_inner_texts()
            assert "total.state.failure / total.count" in legend and "above 0.25" in legend
            at = int(re.search(r"at=([0-9]+)", link).group(1))
            buckets, values = (
                json.loads(chart.get_attribute(f"data-{k}")) for k in ("buckets", "values")
            )
            values = dict(zip(buckets, values, strict=True))
            assert values[at] > 0.25  # the bucket that fired, above the line
            assert [w for w in json.loads(chart.get_attribute("data-windows")) if w[0] <= at]
            page.screenshot(path=str(SHOTS / "alert.png"), full_page=True)
            with page.expect_navigation():
                page.click("#executions")  # the firing bucket's executions
            assert page.url.startswith(f"{demo.api}/traces?") and "key=event" in page.url
        finally:
            browser.close()
    print(
        f"\ndemo: backfill {backfill.group(1)}s, live after "
        f"{demo.seconds_to('Running live jobs'):.0f}s, first full dashboard after "
        f"{first_full:.0f}s (from the demo's start)"
    )
