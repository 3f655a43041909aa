"""Issue #19 item 7 under live traffic: jobs keep flowing through the real stack (client →
Kafka → two aggregators → ClickHouse) while the Cron dashboard refreshes in Chromium, and the
widgets of every refresh agree to the unit: Runs (a KPI) = the sum of States (a category) =
the Jobs table's runs. Each refresh reads as of one settled minute T (``read/settled.py``), so
the hour in progress is summed from minutes before T instead of its still-growing 1h row
(which made them disagree by a few events: "Runs 8015, States summing to 8018, table 8019")."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tally.api.server import ServerThread
from tally.api.settings import ApiSettings
from tally.embedded.kafka_node import free_ports
from tally.ingest import ClientSettings, Tracker
from tally.read import ReadSettings
from tally.web import WebSettings, web_handlers
from tests.integration.browser_site import chromium, sign_in
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

READ = "read-token-live-dashboard-0123"
SQL = "sql-token-live-dashboard-01234"
JOBS = ("billing", "sync", "report", "cleanup")
STATES = ("success", "failure", "skipped")
REFRESH_SECONDS = 75  # long enough for T to move on by a minute at least once


@dataclass
class Traffic:
    """Cron runs tracked from a thread at ~100/s, with the time each was stamped."""

    tracker: Tracker
    stamps: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def one(self, i: int, at: float) -> None:
        job, state = JOBS[i % len(JOBS)], STATES[(i // len(JOBS)) % len(STATES)]
        run = {"count": 1, "state": {state: 1}, "resources": 2}
        run |= {"duration": {"count": 1, "sum": 10 + i % 7}}
        self.tracker.track(["event::cron"], {"total": run, "jobs": {job: run}}, at=at)
        self.stamps.append(at)

    def run(self) -> None:
        start = time.time()
        for i in range(600):  # the last three minutes first, so the first settled T has runs
            self.one(i, start - 180 + i * 0.25)
        i = 600
        while not self.stop.is_set():
            self.one(i, time.time())
            i += 1
            time.sleep(0.01)

    def before(self, t: float) -> int:
        return sum(1 for s in list(self.stamps) if s < t)


@pytest.fixture
def live(make_stack, tmp_path) -> Iterator[tuple[str, Traffic, object]]:
    stack = make_stack(partitions=4, aggregators=2)
    tracker = Tracker(ClientSettings(bootstrap_servers=stack.kafka.bootstrap))
    traffic = Traffic(tracker)
    sender = threading.Thread(target=traffic.run, daemon=True)
    sender.start()
    read = ReadSettings(clickhouse=stack.clickhouse_settings, database=stack.config.database)
    port = free_ports(1)[0]
    (tmp_path / "dashboards").mkdir()
    server = ServerThread(
        ApiSettings(read, READ, SQL, port=port),
        web_handlers(WebSettings(tmp_path / "dashboards")),
    ).start()
    url = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {READ}"}, timeout=30)
    params = {"key": "event::cron", "path": "total.count", "since": "1h", "as_of": "settled"}

    def settled_runs() -> bool:
        response = api.get("/api/v1/series", params=params)
        return (
            response.status_code == 200 and sum(response.json()["series"]["rows"][0]["points"]) > 0
        )

    try:
        wait_for(settled_runs, 180, "runs before the settled time in the rollups")  # >= 10x usual
        with chromium() as context:
            sign_in(context, url, READ, "/ui/d/cron")
            yield url, traffic, context
    finally:
        traffic.stop.set()
        sender.join(30)
        tracker.close()
        api.close()
        server.stop()


WIDGETS = """() => {
  const $ = (id) => document.getElementById(id);
  const section = (title) => [...document.querySelectorAll("section")]
    .find((s) => s.querySelector("h2") && s.querySelector("h2").textContent.trim() === title);
  const runs = section("Runs").querySelector(".kpi-item[data-name='total.count']");
  const states = [...section("States").querySelectorAll("li[data-value]")]
    .reduce((sum, li) => sum + Number(li.dataset.value), 0);
  const table = [...section("Jobs").querySelectorAll("tbody tr")]
    .reduce((sum, tr) => sum + Number(tr.children[1].textContent), 0);
  const body = document.body.dataset;
  return { runs: runs ? Number(runs.dataset.value) : null, states, table,
           asOf: Number(body.asOf || 0), label: ($("as-of") || {}).textContent,
           renders: Number(body.renders) };
}"""


def _refreshed(page, renders: int) -> dict:
    page.wait_for_function(  # a function, not a string: the page's CSP forbids eval
        "(n) => document.body.dataset.state === 'ready'"
        " && Number(document.body.dataset.renders) >= n",
        arg=renders,
        timeout=120_000,  # >= 10x a refresh on the loaded box
    )
    return page.evaluate(WIDGETS)


def test_the_widgets_of_one_refresh_agree_to_the_unit_under_live_traffic(live):
    url, traffic, context = live
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/ui/d/cron")
    seen = [_refreshed(page, 1)]
    deadline = time.monotonic() + REFRESH_SECONDS
    while True:
        # the same rows for every widget of one refresh: equal to the unit
        s = seen[-1]
        assert s["runs"] == s["states"] == s["table"], seen
        if time.monotonic() > deadline and len({x["asOf"] for x in seen}) > 1:
            break
        assert time.monotonic() < deadline + 120, f"T never moved on: {seen}"
        time.sleep(1.5)
        page.locator("#refresh").click()
        seen.append(_refreshed(page, s["renders"] + 1))
    counted = [s for s in seen if s["runs"]]
    assert len(counted) >= 5, seen  # traffic reached the rollups and most refreshes saw it
    for s in seen:
        assert s["asOf"] % 60 == 0 and s["label"].startswith("as of "), s
        # nothing at or after T is counted; everything well before T is
        assert s["runs"] <= traffic.before(s["asOf"]), (s, traffic.before(s["asOf"]))
        assert s["runs"] >= traffic.before(s["asOf"] - 60), (s, traffic.before(s["asOf"] - 60))
    assert [s["runs"] for s in seen] == sorted(s["runs"] for s in seen)  # T only moves on
    assert counted[-1]["runs"] > counted[0]["runs"], seen  # live: later refreshes show more
    assert errors == []
    page.close()
