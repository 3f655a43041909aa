"""The dashboard in a real browser (Debian's chromium driven by Playwright) on the real
ClickHouse with seeded job data: every built-in dashboard loads without console errors, the
numbers shown equal the API's, segments and the range picker change the data, a broken YAML
file shows its error (on a second server: the screenshots' site has none). Screenshots go to
$TALLY_TEST_SHOTS (the README's come from the demo walk) and show no error badge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tally.api.server import ServerThread
from tally.api.settings import ApiSettings
from tally.embedded.kafka_node import free_ports
from tally.web import WebSettings, web_handlers
from tally.web.traces_pages import TRACE_PAGES
from tests.integration.browser_site import chromium, seeded_clickhouse, sign_in
from tests.integration.conftest import wait_for
from tests.integration.readside import PASSWORD, insert, settings

pytestmark = pytest.mark.integration

READ = "read-token-dashboard-0123456789"
SQL = "sql-token-dashboard-0123456789"
# The README's screenshots come from `make demo` (test_demo_browser.py); these stay local.
SHOTS = Path(os.environ.get("TALLY_TEST_SHOTS", "/tmp/tally-dashboard-shots"))
BUILTINS = ("cron", "schedule", "jobs", "queues")
USER_DASHBOARD = """\
title: Calculations
key: calc::customer::{customer}
segments:
  customer: {label: customer, all: calc}
range: 7d
granularity: 1d
widgets:
  - type: kpi
    title: Calculations
    rows: [{path: count}]
  - type: timeseries
    title: Outcomes
    style: normalized
    rows: [{path: outcome.*}]
  - type: text
    text: Written by hand, kept in git.
  - type: text
    title: Notes
    text: A titled note.
"""
LAG_DASHBOARD = """\
title: Lag bands
key: event::job
widgets:
  - type: distribution
    path: total.queue_lag
"""
CALC_KEYS = [f"commodity::events::calculation::customer::{n}" for n in range(250)]
HOURLY_DASHBOARD = """\
title: Hourly
key: hourly
range: 24h
granularity: 1h
widgets:
  - type: kpi
    title: Runs
    rows: [{path: count}]
"""
BROKEN_DASHBOARD = """\
title: Broken
key: calc
widgets:
  - type: kpi
    rows: [{path: count}]
  - type: timeseries
    style: sideways
    rows: [{path: count}]
"""


@dataclass
class Site:
    url: str
    tenants: list[str]
    api: httpx.Client
    context: object
    clickhouse_url: str = ""
    dashboards: Path | None = None
    errors: list[str] = field(default_factory=list)
    api_settings: ApiSettings | None = None
    broken_dashboards: Path | None = None  # dashboards + a broken file, for its own server


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("dashboard")
    user_dir = root / "dashboards"
    user_dir.mkdir()
    (user_dir / "calc.yaml").write_text(USER_DASHBOARD)
    (user_dir / "lag.yaml").write_text(LAG_DASHBOARD)
    (user_dir / "hourly.yaml").write_text(HOURLY_DASHBOARD)
    broken_dir = root / "dashboards-broken"
    broken_dir.mkdir()
    (broken_dir / "calc.yaml").write_text(USER_DASHBOARD)
    (broken_dir / "broken.yaml").write_text(BROKEN_DASHBOARD)
    with seeded_clickhouse(root, days=30, tenants=20) as (clickhouse, tenants):
        now = time.time()
        day = 86400
        insert(
            clickhouse,
            "tally",
            [
                (
                    ["calc", f"calc::customer::{c}"],
                    _minute(now - d * day),
                    {"count": n, "outcome.ok": n - 1, "outcome.failed": 1},
                )
                for c, n in (("acme", 5), ("globex", 9))
                for d in range(1, 6)
            ],
        )
        # many keys that sort before the job keys (the demo's commodity fan-out)
        insert(clickhouse, "tally", [(CALC_KEYS, _minute(now - 3600), {"count": 1})])
        hour = now - now % 3600
        runs = [(["hourly"], _minute(hour - h * 3600), {"count": 1}) for h in range(24 * 4)]
        insert(clickhouse, "tally", runs)  # one run an hour, on the hour
        port = free_ports(1)[0]
        api_settings = ApiSettings(settings(clickhouse, "tally"), READ, SQL, port=port)
        ui = web_handlers(WebSettings(user_dir, live_refresh_s=1))
        server = ServerThread(api_settings, [*ui, *TRACE_PAGES]).start()
        url = f"http://127.0.0.1:{port}"
        try:
            with (
                chromium() as context,
                httpx.Client(base_url=url, headers={"Authorization": f"Bearer {READ}"}) as api,
            ):
                site = Site(
                    url, tenants, api, context, clickhouse.url, user_dir,
                    api_settings=api_settings, broken_dashboards=broken_dir,
                )  # fmt: skip
                sign_in(context, url, READ)
                yield site
        finally:
            server.stop()


def _minute(ts: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts - ts % 60, UTC)


def _open(site: Site, path: str):
    page = site.context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site.url + path)
    _ready(page)
    return page, errors


def _ready(page, renders: int = 1) -> None:
    page.wait_for_function(  # a function, not a string: the page's CSP forbids eval
        "(n) => document.body.dataset.state === 'ready'"
        " && Number(document.body.dataset.renders) >= n",
        arg=renders,
        timeout=60_000,
    )


def _screenshot(page, name: str) -> None:
    """``docs/screenshots/<name>.png``, only of a page without dashboard errors: the README
    shows these, and a test's deliberately broken file must not leak into them."""
    assert page.locator(".errors-link").count() == 0, page.locator(".errors-link").inner_text()
    assert page.locator(".load-error").count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=name != "index")


def _series(site: Site, query: str) -> dict:
    response = site.api.get(query)
    assert response.status_code == 200, response.text
    return response.json()


def _check_numbers(site: Site, page) -> int:
    """Every KPI, category and table on the page against the API; returns values checked."""
    checked = 0
    body = page.locator("body")
    since, until, g = (body.get_attribute(f"data-{a}") for a in ("since", "until", "granularity"))
    for kpi in page.locator(".type-kpi").all():
        query = kpi.get_attribute("data-query")
        data = _series(site, query)  # /ui/api/kpi: the same cookie-free token opens it
        for item in kpi.locator(".kpi-item").all():
            name, shown = item.get_attribute("data-name"), item.get_attribute("data-value")
            row = next(r for r in data["rows"] if r["name"] == name)
            assert shown == str(row["value"]) or float(shown) == pytest.approx(row["value"])
            if not any(c in name for c in " /*("):  # a path: its total from /api/v1/series
                key, start = data["key"], data["since"]  # the first whole bucket of the range
                assert int(since) <= start and data["until"] == int(until)
                s = _series(
                    site,
                    f"/api/v1/series?key={key}&path={name}&since={start}&until={until}"
                    f"&granularity={g}",
                )
                assert float(shown) == pytest.approx(sum(s["series"]["rows"][0]["points"]))
            checked += 1
    for category in page.locator(".type-category").all():
        data = _series(site, category.get_attribute("data-query"))
        expected = {c["name"]: c["value"] for c in data["category"]}
        for li in category.locator("li").all():
            assert float(li.get_attribute("data-value")) == pytest.approx(
                expected[li.get_attribute("data-name")]
            )
            checked += 1
    for dist in page.locator(".type-distribution").all():
        if dist.get_attribute("data-distribution") != "quantiles":
            continue
        data = _series(site, dist.get_attribute("data-query"))  # /api/v1/quantiles
        last = max(i for i, n in enumerate(data["count"]) if n)
        for span in dist.locator("[data-quantile]").all():
            q = {"p50": 0.5, "p95": 0.95, "p99": 0.99}[span.get_attribute("data-quantile")]
            expected = data["quantiles"][data["qs"].index(q)][last]
            assert float(span.get_attribute("data-value")) == pytest.approx(expected)
            checked += 1
    for gauge in page.locator(".type-gauge").all():
        if gauge.get_attribute("data-gauge") != "last":
            continue
        queries = gauge.get_attribute("data-query").split(" ")
        for query, span in zip(queries, gauge.locator("[data-gauge]").all(), strict=True):
            data = _series(site, query)  # /api/v1/gauge
            readings = [v for v in data["last"] if v is not None]
            assert float(span.get_attribute("data-value")) == pytest.approx(readings[-1])
            checked += 1
    return checked


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_dashboard_loads_and_matches_the_api(site, name):
    query = "?s.framework=rq&s.queue=default" if name == "queues" else ""
    page, errors = _open(site, f"/ui/d/{name}{query}")
    checked = _check_numbers(site, page)
    _screenshot(page, name)
    assert errors == []
    assert page.locator(".problem").count() == 0, page.locator(".problem").first.inner_text()
    assert checked >= 4
    assert not page.locator("#empty").is_visible()
    if name == "queues":  # the sampler's gauges: depth, oldest age, busy/idle/stalled workers
        assert page.locator("#key").inner_text() == "event::queue::rq::default"
        gauges = page.locator(".type-gauge")
        assert gauges.count() == 3
        for i in range(3):
            assert gauges.nth(i).get_attribute("data-gauge") == "last"
        assert gauges.nth(2).locator("[data-gauge]").count() == 3
    if name == "jobs":  # duration and queue lag percentiles from /api/v1/quantiles
        dist = page.locator(".type-distribution")
        for i in range(2):
            assert dist.nth(i).get_attribute("data-distribution") == "quantiles"
            assert "/api/v1/quantiles" in dist.nth(i).get_attribute("data-query")
            assert "p95" in dist.nth(i).inner_text()
    if name == "jobs":  # tooltips: hovering a chart shows that bucket's values in its legend
        chart = page.locator(".type-timeseries .u-over").first
        box = chart.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        values = page.locator(".type-timeseries").first.locator(".u-value").all_inner_texts()
        assert any(v.strip() not in ("\u2013", "--", "") for v in values[1:]), values
    if name == "cron":  # the two hours without a run are shaded as missed
        runs = page.locator(".type-timeseries").first
        assert int(runs.get_attribute("data-missed")) == 1  # 5 h ago; not the hour in progress
        page.click("button[data-range='7d']")  # 1h buckets: still 1 expected per bucket
        _ready(page, renders=2)
        assert int(runs.get_attribute("data-missed")) == 2
        page.select_option("#granularity", "1d")  # 24 expected per day
        _ready(page, renders=3)
        assert int(runs.get_attribute("data-missed")) >= 1
    page.close()


def test_generic_key_page_chooses_widgets_from_paths(site):
    page, errors = _open(site, "/ui/key?key=event::job::t03")
    titles = page.locator(".widget h2").all_inner_texts()
    assert "total.count" in titles
    assert {"Counters", "Distributions", "total.duration"} <= set(titles)  # grouped by kind
    assert not any(t.startswith("mean jobs.") for t in titles)
    assert any("*" in t for t in titles)  # wildcard families: state.*, errors.*...
    _check_numbers(site, page)
    _screenshot(page, "key")
    assert errors == []
    page.close()


def test_a_click_on_a_bucket_opens_its_executions(site):
    from urllib.parse import parse_qs, urlparse

    page, errors = _open(site, "/ui/key?key=event::job::t03&range=24h&g=1h")
    over = page.locator(".widget .u-over").first
    box = over.bounding_box()
    assert box is not None
    over.hover(position={"x": box["width"] / 2, "y": box["height"] / 2})
    assert errors == []
    with page.expect_navigation():
        over.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    url = urlparse(page.url)
    assert url.path == "/traces"
    query = parse_qs(url.query)
    assert query["key"] == ["event::job::t03"]
    since = datetime.fromisoformat(query["since"][0])
    until = datetime.fromisoformat(query["until"][0])
    assert until - since == timedelta(hours=1) and since.minute == 0  # one 1h bucket
    page.close()


def _kpi(page, title: str) -> float:
    widget = page.locator(".type-kpi", has=page.locator(f"h2:text-is('{title}')"))
    return float(widget.locator(".kpi-item").first.get_attribute("data-value"))


def test_picking_a_tenant_changes_the_data_and_the_url(site):
    page, errors = _open(site, "/ui/d/jobs")
    everyone = _kpi(page, "Runs")
    tenant = site.tenants[4]
    page.select_option("#seg-tenant", tenant)
    _ready(page, renders=2)
    assert f"s.tenant={tenant}" in page.url
    assert page.locator("#key").inner_text() == f"event::job::{tenant}"
    one = _kpi(page, "Runs")
    assert 0 < one < everyone
    _check_numbers(site, page)
    # drill-down: from the global key, click a tenant in "Runs per tenant"
    page.goto(site.url + "/ui/d/schedule")
    _ready(page)
    page.locator(".type-category button.name", has_text=site.tenants[-1]).first.click()
    _ready(page, renders=2)
    assert page.locator("#key").inner_text() == f"event::schedule::{site.tenants[-1]}"
    page.go_back()
    _ready(page, renders=3)
    assert page.locator("#key").inner_text() == "event::schedule"
    assert errors == []
    page.close()


def test_range_picker_changes_the_buckets(site):
    page, errors = _open(site, "/ui/d/jobs")
    chart = page.locator(".type-timeseries").first
    day = int(chart.get_attribute("data-buckets"))
    assert page.locator("body").get_attribute("data-granularity") == "1h"
    page.click("button[data-range='7d']")
    _ready(page, renders=2)
    week = int(chart.get_attribute("data-buckets"))
    assert (day, week) == (25, 169)
    assert "range=7d" in page.url
    page.keyboard.press("4")  # 30d from the keyboard
    _ready(page, renders=3)
    assert int(chart.get_attribute("data-buckets")) == 721
    page.select_option("#granularity", "1d")
    _ready(page, renders=4)
    assert int(chart.get_attribute("data-buckets")) in (30, 31)
    # the URL holds the state: a fresh tab shows the same
    again, _ = _open(site, page.url.removeprefix(site.url))
    assert again.locator("#granularity").input_value() == "1d"
    # custom range: the last 30 days' first 48 hours, hourly
    page.select_option("#granularity", "1h")
    _ready(page, renders=5)
    page.keyboard.press("5")
    _ready(page, renders=6)
    assert page.locator("#custom").is_visible() and "range=custom" in page.url
    start = page.locator("#from").input_value()  # datetime-local, browser time
    page.evaluate(
        """(start) => {
            const to = new Date(Date.parse(start) + 48 * 3600 * 1000);
            const local = new Date(to.getTime() - to.getTimezoneOffset() * 60000);
            const input = document.getElementById("to");
            input.value = local.toISOString().slice(0, 16);
            input.dispatchEvent(new Event("change"));
        }""",
        start,
    )
    _ready(page, renders=7)
    assert int(chart.get_attribute("data-buckets")) in (48, 49)
    assert errors == []
    page.close()
    again.close()


def test_live_mode_refreshes_by_itself_and_time_zone_is_in_the_url(site):
    page, errors = _open(site, "/ui/d/cron")
    page.keyboard.press("l")  # live mode from the keyboard
    _ready(page, renders=2)
    assert "live=1" in page.url
    _ready(page, renders=4)  # refreshed again with no input (1 s in this test)
    assert "live" in page.locator("#freshness").inner_text()
    assert "min ago" in page.locator("#freshness").inner_text()
    page.select_option("#tz", "UTC")
    assert "tz=UTC" in page.url
    assert errors == []
    page.close()


def test_yaml_dashboards_load_and_the_start_page_has_no_error(site):
    page, errors = _open(site, "/ui/d/calc")
    assert _kpi(page, "Calculations") == 70  # 5 days x (5 + 9)
    page.select_option("#seg-customer", "acme")
    _ready(page, renders=2)
    assert _kpi(page, "Calculations") == 25
    assert errors == []
    page.goto(site.url + "/ui/d/lag")  # percentile bands from /api/v1/quantiles
    _ready(page)
    legend = page.locator(".type-distribution .u-legend").inner_text()
    assert "p50" in legend and "p99" in legend
    page.goto(site.url + "/ui/")
    assert page.locator(".cards a", has_text="Calculations").count() == 1
    _screenshot(page, "index")
    page.close()


def _kpi_now_and_before(page, title: str) -> tuple[float, str]:
    widget = page.locator(".type-kpi", has=page.locator(f"h2:text-is('{title}')"))
    item = widget.locator(".kpi-item").first
    return float(item.get_attribute("data-value")), item.locator(".change").get_attribute("title")


def test_kpi_periods_share_no_bucket(site):
    page, errors = _open(site, "/ui/d/hourly")  # one run an hour, 24h at 1h
    value, title = _kpi_now_and_before(page, "Runs")
    assert value == 24 and title.endswith(": 24"), title
    page.goto(site.url + "/ui/d/hourly?g=1d")  # today so far against yesterday so far
    _ready(page)
    # the page reads as of a settled minute T (read/settled.py): today's runs at hh:00 before T
    as_of = datetime.fromtimestamp(int(page.locator("body").get_attribute("data-as-of")), UTC)
    runs_today = (as_of - timedelta(minutes=1)).hour + 1
    value, title = _kpi_now_and_before(page, "Runs")
    assert value == runs_today
    assert title.startswith("the same elapsed part of the previous period"), title
    # yesterday until this time of day (to the minute): as many runs, not yesterday's 24
    assert title.endswith(f": {runs_today}") or as_of.minute == 0, title
    assert "(to this time)" in page.locator(".type-kpi .change").first.inner_text()
    assert errors == []
    page.close()


def test_a_broken_file_shows_its_error_and_the_others_still_load(site):
    """On a server of its own, so that no screenshot of ``site`` shows the error badge."""
    port = free_ports(1)[0]
    ui = web_handlers(WebSettings(site.broken_dashboards))
    server = ServerThread(replace(site.api_settings, port=port), [*ui, *TRACE_PAGES]).start()
    page = site.context.new_page()  # the session cookie is per host, so it opens this port too
    try:
        page.goto(f"http://127.0.0.1:{port}/ui/")
        assert page.locator(".errors-link").inner_text() == "1 dashboard error"
        error = page.locator(".load-error")
        assert error.count() == 1
        text = error.inner_text()
        assert "broken.yaml:7" in text and "sideways" in text and "style" in text
        assert page.locator(".cards a", has_text="Calculations").count() == 1  # others load
        page.goto(f"http://127.0.0.1:{port}/ui/d/broken")
        assert "broken.yaml:7" in page.locator(".load-error").inner_text()
    finally:
        page.close()
        server.stop()


def test_the_dashboard_needs_the_token_and_its_cookie_only_reads(site):
    with httpx.Client(base_url=site.url) as anonymous:
        assert anonymous.get("/ui/d/jobs").headers["location"].startswith("/ui/login")
        back = anonymous.get("/ui/key", params={"key": "event::job"}).headers["location"]
        assert back == "/ui/login?next=%2Fui%2Fkey%3Fkey%3Devent%253A%253Ajob"  # query kept
        assert anonymous.get("/api/v1/keys").status_code == 401
        assert anonymous.post("/ui/login", data={"token": "wrong"}).status_code == 401
        response = anonymous.post("/ui/login", data={"token": READ})
        assert response.status_code == 303
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert READ not in response.headers["set-cookie"]
        assert anonymous.get("/api/v1/keys").status_code == 200  # the cookie opens reads
        assert anonymous.post("/api/v1/sql", json={"query": "SELECT 1"}).status_code == 403
        page = anonymous.get("/ui/d/jobs")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "cdn" not in page.text.lower()
    with httpx.Client(base_url=site.url) as other:
        away = other.post("/ui/login", data={"token": READ, "next": "//evil.example/"})
        assert away.headers["location"] == "/ui/"  # no open redirect


def test_time_to_a_drawn_dashboard(site):
    """Measured for BENCHMARKS.md, not asserted: 30 days of hourly data, 20 tenants; each
    dashboard loaded 3 times (median), API calls and bytes of one load."""
    results = {}
    for name in ("cron", "schedule", "jobs"):
        drawn, calls, total = [], [], []
        for _ in range(3):
            page = site.context.new_page()
            api: list[int] = []
            every: list[int] = []

            def finished(request, api=api, every=every) -> None:
                size = request.sizes()["responseBodySize"]
                every.append(size)
                if "/api/" in request.url:
                    api.append(size)

            page.on("requestfinished", finished)
            page.goto(f"{site.url}/ui/d/{name}?range=30d&g=1h")
            _ready(page)
            drawn.append(page.evaluate("window.__tallyFirstDrawMs"))
            slowest = page.evaluate(
                "() => performance.getEntriesByType('resource')"
                ".filter(e => e.name.includes('/api/'))"
                ".map(e => [Math.round(e.startTime), Math.round(e.duration), e.name.slice(-90)])"
            )
            calls.append(len(api))
            total.append((sum(api), sum(every)))
            page.close()
        results[name] = {
            "drawn_ms_median": round(sorted(drawn)[1]),
            "drawn_ms": [round(d) for d in drawn],
            "api_calls": calls[0],
            "api_bytes": total[0][0],
            "page_bytes_first_load": total[0][1],
            "api_timeline_last_load": slowest,
        }
    print("dashboard timing:", json.dumps(results))
    assert all(r["api_calls"] > 0 for r in results.values())


def test_tally_ui_serves_the_dashboard_over_an_existing_clickhouse(site, tmp_path):
    """``tally ui`` as a real process over the test's ClickHouse (as over a production one)."""
    port = free_ports(1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")} | {
        "TALLY_CLICKHOUSE_PASSWORD": PASSWORD,
        "TALLY_API_TOKEN": READ,
        "TALLY_API_SQL_TOKEN": SQL,
    }
    command = [
        sys.executable, "-m", "tally.cli", "ui", "--port", str(port),
        "--clickhouse-url", site.clickhouse_url, "--dashboards", str(site.broken_dashboards),
        "--data-dir", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url) or proc.poll() is not None, 60, "tally ui")
        with httpx.Client(base_url=url) as browser:
            assert browser.get("/ui/d/jobs").status_code == 302  # to the login form
            assert browser.post("/ui/login", data={"token": READ}).status_code == 303
            page = browser.get("/ui/d/jobs")
            assert page.status_code == 200 and "event::job" in page.text
            assert browser.get("/ui/static/vendor/uPlot.iife.min.js").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert "broken.yaml:7" in stderr  # the broken file is reported at start


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_key_index_api_searches_pages_by_cursor_and_lists_job_keys_first(site):
    every = {k["key"] for k in _series(site, "/api/v1/keys?since=30d&limit=10000")}
    assert len(every) > len(CALC_KEYS)
    seen: list[str] = []
    cursor, pages = "", 0
    while True:
        body = _series(site, f"/api/v1/key-index?limit=100&cursor={cursor}")
        assert body["total"] == len(every)
        seen += [k["key"] for k in body["keys"]]
        pages += 1
        if body["next"] is None:
            break
        cursor = body["next"]
        assert pages < 20, "the cursor does not advance"
    assert len(seen) == len(set(seen)) and set(seen) == every  # nothing twice, nothing lost
    assert seen[:4] == ["event::cron", "event::job", "event::queue", "event::schedule"]
    first_other = next(i for i, k in enumerate(seen) if not k.startswith("event::"))
    assert all(k.startswith("event::") for k in seen[:first_other])  # tenant keys next
    assert not any(k.startswith("event::") for k in seen[first_other:])
    prefix = _series(site, "/api/v1/key-index?search=event::job")
    assert prefix["total"] == 1 + len(site.tenants) and prefix["keys"][0]["key"] == "event::job"
    pattern = _series(site, "/api/v1/key-index?search=*::customer::1*&limit=200")
    assert pattern["total"] == 111 and pattern["next"] is None  # 1, 10-19, 100-199
    odd = _series(site, "/api/v1/key-index?search=x' OR 1=1 --")  # a value, never SQL
    assert odd["total"] == 0 and odd["keys"] == []
    bad = site.api.get("/api/v1/key-index", params={"cursor": "garbage"})
    assert bad.status_code == 400 and "cursor" in bad.text


def test_index_lists_keys_with_n_of_m_search_and_next(site):
    page = site.context.new_page()
    page.goto(f"{site.url}/ui/")
    total = _series(site, "/api/v1/key-index")["total"]
    assert page.locator("#key-count").inner_text().startswith(f"100 of {total} keys")
    rows = page.locator("table.keys tbody td:first-child")
    assert rows.all_inner_texts()[:2] == ["event::cron", "event::job"]
    first = set(rows.all_inner_texts())
    page.locator("a#next").click()
    page.wait_for_load_state()
    assert page.locator("#key-count").inner_text().startswith(f"100 of {total}")
    assert not first & set(rows.all_inner_texts())
    page.fill("#key-search input[name=q]", "*::customer::2*")
    page.locator("#key-search button").click()
    page.wait_for_load_state()
    assert page.locator("#key-count").inner_text().startswith("61 of 61 keys")  # 2, 20s, 200s
    assert page.locator("a#next").count() == 0
    page.close()


def test_pages_fit_a_phone_follow_dark_mode_and_have_an_icon(site):
    browser = site.context.browser
    state = site.context.storage_state()  # the signed-in cookie
    light = site.context.new_page()
    light.goto(f"{site.url}/ui/")
    assert light.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
    light.close()
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, color_scheme="dark", storage_state=state
    )
    try:
        for path in ("/ui/", "/ui/d/jobs", "/ui/d/calc", "/ui/key?key=event::job::t03"):
            page = phone.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.goto(site.url + path)
            if path != "/ui/":
                _ready(page)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (path, width)  # wide tables scroll inside their own box
            dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert dark == "rgb(18, 22, 28)", path
            assert page.locator("link[rel=icon]").get_attribute("href") == "/favicon.ico"
            assert errors == []
            page.close()
    finally:
        phone.close()
    icon = httpx.get(f"{site.url}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
    assert b"<svg" in icon.content


def test_a_text_widget_shows_its_yaml_title_or_none(site):
    page, errors = _open(site, "/ui/d/calc")
    text = page.locator(".type-text")
    assert text.count() == 2
    assert "Written by hand" in text.first.inner_text()
    assert text.first.locator("h2").count() == 0  # no title in the YAML: none, never "text"
    assert text.nth(1).locator("h2").inner_text() == "Notes"
    assert "text" not in page.locator(".widget h2").all_inner_texts()
    assert errors == []
    page.close()
