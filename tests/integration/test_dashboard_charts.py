"""Issue #19 items 7 and 8 in a real browser (Debian's chromium via Playwright) on the real
embedded ClickHouse: sparse data is drawn, bars and areas start at 0, one "now" per page load,
colours follow series names, KPI changes in one unit, granularities limited by range with one
page-level error, the freshness badge only for ranges ending now, YAML files re-read without
a restart, and a path matching nothing flagged with the closest known path."""

from __future__ import annotations

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
from tally.web import WebSettings, web_handlers
from tests.integration.browser_site import chromium, inked, seeded_clickhouse, sign_in
from tests.integration.readside import KindRow, insert, insert_kinds, settings
from tests.integration.test_dashboard_browser import READ, SQL, _ready

pytestmark = pytest.mark.integration

SPARSE = """\
title: Sparse
key: sparse
range: 1h
widgets:
  - type: distribution
    title: Latency
    path: latency
  - type: timeseries
    title: Count
    rows: [{path: count}]
"""
HEIGHTS = """\
title: Heights
key: heights
range: 24h
granularity: 1h
widgets:
  - type: timeseries
    title: Stacked
    style: stacked
    rows: [{path: codes.*}]
  - type: timeseries
    title: Area
    style: area
    rows: [{path: codes.a}]
  - type: timeseries
    title: Line
    rows: [{path: codes.a}]
"""
COLOURS = """\
title: Colours
key: colours::{customer}
range: 24h
granularity: 1h
widgets:
  - type: timeseries
    title: Codes
    rows: [{path: codes.*}]
"""
TYPO = """\
title: Typo
key: amounts
range: 24h
widgets:
  - type: kpi
    title: Amount
    rows: [{path: amount.summ}]
  - type: kpi
    title: Mean
    rows:
      - {expression: amount.sum / amount.cout}
  - type: timeseries
    title: Amount over time
    rows: [{path: amount.sum}]
"""
# Records every uPlot instance the page creates (window.__plots), so a test can read the
# drawn scales and series; injected before the page's scripts, which it leaves unchanged.
RECORD_PLOTS = """
(() => {
  let real;
  window.__plots = [];
  Object.defineProperty(window, "uPlot", {
    configurable: true,
    get() { return real; },
    set(U) {
      function Recorded(opts, data, target) {
        const plot = new U(opts, data, target);
        window.__plots.push(plot);
        return plot;
      }
      Object.assign(Recorded, U);
      real = Recorded;
    },
  });
})();
"""
PLOTS = """() => window.__plots.filter((p) => p.root.isConnected).map((p) => ({
  widget: p.root.closest("section").id,
  ymin: p.scales.y.min,
  labels: p.series.map((s) => s.label),
  strokes: p.series.map((s, i) => (i ? s.stroke(p, i) : null)),
  plotted: [p.bbox.left, p.bbox.top, p.bbox.width, p.bbox.height],
}))"""


@dataclass
class Site:
    url: str
    api: httpx.Client
    context: object
    dashboards: Path


def _minute(ts: float) -> datetime:
    return datetime.fromtimestamp(ts - ts % 60, UTC)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("charts")
    user_dir = root / "dashboards"
    user_dir.mkdir()
    for name, text in (("sparse", SPARSE), ("heights", HEIGHTS), ("colours", COLOURS)):
        (user_dir / f"{name}.yaml").write_text(text)
    (user_dir / "typo.yaml").write_text(TYPO)
    with seeded_clickhouse(root, days=2, tenants=4) as (clickhouse, _):
        now = time.time()
        busy = _minute(now - 20 * 60)  # one busy minute in the last hour, nothing around it
        insert(clickhouse, "tally", [(["sparse"], busy, {"count": 300})])
        samples = tuple(float(5 + i % 12) for i in range(300))
        insert_kinds(clickhouse, "tally", [KindRow(["sparse"], busy, "latency", samples)])
        hour = now - now % 3600
        heights = [  # every hour 4..9 of codes.a and 1 of codes.b: an axis from 0 is a choice
            (["heights"], _minute(hour - h * 3600), {"codes.a": 4 + h % 6, "codes.b": 1})
            for h in range(0, 26)
        ]
        colours = [
            (["colours::x"], _minute(hour - 2 * 3600), {"codes.a": 5, "codes.b": 1}),
            (["colours::y"], _minute(hour - 2 * 3600), {"codes.b": 3}),
            (["amounts"], _minute(hour - 3600), {"amount.sum": 42, "amount.count": 3}),
        ]
        insert(clickhouse, "tally", heights + colours)
        port = free_ports(1)[0]
        api_settings = ApiSettings(settings(clickhouse, "tally"), READ, SQL, port=port)
        server = ServerThread(api_settings, web_handlers(WebSettings(user_dir))).start()
        url = f"http://127.0.0.1:{port}"
        try:
            with (
                chromium() as context,
                httpx.Client(base_url=url, headers={"Authorization": f"Bearer {READ}"}) as api,
            ):
                sign_in(context, url, READ)
                yield Site(url, api, context, user_dir)
        finally:
            server.stop()


def _open(site: Site, path: str, record: bool = False):
    page = site.context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    if record:
        page.add_init_script(RECORD_PLOTS)
    page.goto(site.url + path)
    _ready(page)
    return page, errors


def test_an_isolated_bucket_is_drawn(site):
    """300 samples in one minute of the hour: the bands and the line show that minute."""
    page, errors = _open(site, "/ui/d/sparse", record=True)
    assert page.locator("body").get_attribute("data-granularity") == "1m"
    assert "p50" in page.locator("#w0 [data-quantile='p50']").inner_text()  # header has a value
    plots = {p["widget"]: p for p in page.evaluate(PLOTS)}
    for widget, series in (("w0", 1), ("w0", 3), ("w1", 1)):  # p50, p99 and the count
        colour = plots[widget]["strokes"][series]
        drawn = inked(page, f"#{widget} .uplot canvas", plots[widget]["plotted"], colour)
        assert drawn > 10, (widget, series, colour)
    assert errors == []
    page.close()


def test_bars_and_areas_start_at_zero_and_lines_fit_the_data(site):
    page, errors = _open(site, "/ui/d/heights", record=True)
    plots = {p["widget"]: p for p in page.evaluate(PLOTS)}
    assert plots["w0"]["ymin"] == 0  # stacked bars
    assert plots["w1"]["ymin"] == 0  # area
    assert plots["w2"]["ymin"] > 0  # a line keeps uPlot's fitted range (values 4..9)
    assert errors == []
    page.close()


def test_a_series_keeps_its_colour_across_views(site):
    page, errors = _open(site, "/ui/d/colours?s.customer=x", record=True)
    x = page.evaluate(PLOTS)[0]
    page.goto(site.url + "/ui/d/colours?s.customer=y")
    _ready(page)
    y = page.evaluate(PLOTS)[0]
    assert x["labels"][1:] == ["a", "b"] and y["labels"][1:] == ["b"]  # b moved from 2nd to 1st
    assert x["strokes"][2] == y["strokes"][1]
    assert x["strokes"][1] != x["strokes"][2]
    assert errors == []
    page.close()


def test_every_request_of_a_page_load_uses_one_now(site):
    page = site.context.new_page()
    untils: dict[str, str] = {}

    def seen(request) -> None:
        query = parse_qs(urlparse(request.url).query)
        if "until" in query:
            untils[request.url] = query["until"][0]

    page.on("request", seen)
    page.goto(site.url + "/ui/d/jobs")
    _ready(page)
    kinds = {urlparse(u).path for u in untils}
    assert {"/api/v1/series", "/ui/api/kpi", "/api/v1/keys", "/api/v1/quantiles"} <= kinds
    assert set(untils.values()) == {page.locator("body").get_attribute("data-until")}
    assert page.locator(".unknown-path").count() == 0  # the built-in's paths all exist
    page.close()


def test_kpi_change_is_points_for_percent_and_percent_otherwise(site):
    page, errors = _open(site, "/ui/d/jobs")
    rate = page.locator(".type-kpi", has=page.locator("h2:text-is('Success rate')"))
    text = rate.locator(".change").inner_text()
    assert " pp vs previous" in text and "%" not in text, text
    runs = page.locator(".type-kpi", has=page.locator("h2:text-is('Runs')"))
    data = site.api.get(runs.get_attribute("data-query")).json()
    row = next(r for r in data["rows"] if r["name"] == "total.count")
    pct = 100 * (row["value"] - row["previous"]) / row["previous"]
    arrow = "▲" if pct >= 0 else "▼"
    like = " (to this time)" if data["previous_until"] < data["since"] else ""
    assert runs.locator(".change").inner_text() == f"{arrow} {abs(pct):.1f}% vs previous{like}"
    assert errors == []
    page.close()


def test_a_granularity_too_fine_for_the_range_is_off_and_said_once(site):
    page = site.context.new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/" in r.url else None)
    page.goto(site.url + "/ui/d/jobs?range=30d&g=1m")
    _ready(page)
    assert page.locator("#granularity option[value='1m']").is_disabled()
    assert not page.locator("#granularity option[value='1h']").is_disabled()
    error = page.locator("#page-error")
    assert error.is_visible()
    assert "30d at 1m" in error.inner_text() and "choose 1h" in error.inner_text()
    assert page.locator(".problem").count() == 0  # not repeated on every widget
    assert not [u for u in asked if "granularity=1m" in u]  # nothing asked that must fail
    page.select_option("#granularity", "1h")
    _ready(page, renders=2)
    assert not error.is_visible()
    assert page.locator(".problem").count() == 0
    page.close()


def test_freshness_badge_is_about_now_only_when_the_range_ends_now(site):
    now = int(time.time())
    until = now - 20 * 3600
    page, errors = _open(site, f"/ui/d/jobs?range=custom&from={until - 12 * 3600}&to={until}")
    badge = page.locator("#freshness")
    assert "min ago" not in badge.inner_text() and "last write" not in badge.inner_text()
    assert badge.inner_text().startswith("range ends")
    assert "stale" not in (badge.get_attribute("class") or "")
    page.goto(site.url + "/ui/d/jobs")  # 24h to now: how late the key is matters
    _ready(page)
    assert "last write" in badge.inner_text()
    assert errors == []
    page.close()


def test_an_edited_yaml_file_shows_on_reload_without_a_restart(site):
    file = site.dashboards / "later.yaml"
    page = site.context.new_page()
    assert page.goto(site.url + "/ui/d/later").status == 404
    file.write_text("title: Written later\nkey: amounts\nwidgets:\n  - type: text\n    text: one\n")
    page.goto(site.url + "/ui/d/later")
    _ready(page)
    assert page.locator("h1").inner_text() == "Written later"
    assert page.locator("nav a", has_text="Written later").count() == 1
    file.write_text(
        "title: Edited\nkey: amounts\nwidgets:\n"
        "  - type: kpi\n    title: Sum\n    rows: [{path: amount.sum}]\n"
    )
    page.reload()
    _ready(page)
    assert page.locator("h1").inner_text() == "Edited"
    assert float(page.locator(".kpi-item").first.get_attribute("data-value")) == 42
    file.write_text("title: Broken now\nkey: amounts\nwidgets: 7\n")
    assert page.reload().status == 404  # a broken edit shows its error, as at start
    assert "later.yaml" in page.locator(".load-error").inner_text()
    file.unlink()
    assert page.reload().status == 404
    assert page.locator(".load-error").count() == 0
    page.close()


def test_a_path_matching_nothing_is_flagged_with_the_closest_path(site):
    page, errors = _open(site, "/ui/d/typo")
    amount = page.locator("#w0")
    flag = amount.locator(".unknown-path")
    assert flag.inner_text() == "no data for amount.summ — did you mean amount.sum?"
    assert amount.locator(".kpi-item").count() == 0  # no "0 ▲ 0" beside it
    mean = page.locator("#w1 .unknown-path")
    assert mean.inner_text() == "no data for amount.cout — did you mean amount.count?"
    assert page.locator("#w2 .unknown-path").count() == 0  # amount.sum exists
    assert page.locator("#w2 canvas").count() > 0
    assert errors == []
    page.close()
