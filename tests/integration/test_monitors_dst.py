"""Monitors across both DST switches of Europe/Prague (2026-03-29, 23 h; 2026-10-25, 25 h) on the
real ClickHouse with rollups bucketed in that zone: every judged bucket is a stored one (local
hours, days and weeks), and daily timings count a 23- or 25-hour day as one day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tally.monitors.backtest import backtest
from tally.monitors.lease import AlwaysHeld
from tally.monitors.loader import load_text
from tally.monitors.notify import Notifier
from tally.monitors.service import MonitorService
from tally.monitors.store import Store
from tally.monitors.watermark import WallClock
from tally.read import AsyncReader
from tally.schemas.ddl import RollupSchema
from tests.integration.readside import apply_schema, insert, settings, start

pytestmark = pytest.mark.integration

PRAGUE = ZoneInfo("Europe/Prague")
PER_HOUR = 160  # runs per hour: 3,680 on the 23-hour day, 3,840 on a normal one, 4,000 on 25
SPRING, AUTUMN = date(2026, 3, 29), date(2026, 10, 25)
PERIODS = ((date(2026, 3, 9), date(2026, 4, 13)), (date(2026, 10, 5), date(2026, 11, 9)))


def local(d: date, hour: int = 0) -> int:
    """Unix seconds of ``hour`` o'clock on day ``d`` in Prague."""
    return int(datetime(d.year, d.month, d.day, hour, tzinfo=PRAGUE).timestamp())


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory) -> Iterator:
    ch = start(tmp_path_factory.mktemp("monitors-dst") / "clickhouse")
    try:
        apply_schema(ch, RollupSchema(database="tally", time_zone="Europe/Prague"))
        rows = []
        for first, last in PERIODS:
            t = local(first)
            while t < local(last):
                at = datetime.fromtimestamp(t, UTC)
                rows.append((["event::cron"], at, {"total.count": PER_HOUR}))
                if datetime.fromtimestamp(t, PRAGUE).date() not in (SPRING, AUTUMN):
                    rows.append((["event::gappy"], at, {"total.count": PER_HOUR}))
                t += 3600  # every real hour, whatever the wall clock does
        insert(ch, "tally", rows)
        yield ch
    finally:
        ch.stop()


def monitor(granularity: str, condition: str, key: str = "event::cron", extra: str = ""):
    text = f"""
monitors:
  - name: m-{granularity}
    key: {key}
    path: total.count
    granularity: {granularity}
    condition: {condition}
{extra}"""
    loaded = load_text(text, "m.yaml")
    assert loaded.errors == ()
    return loaded.monitors[0]


async def events(clickhouse, m, since: int, until: int) -> list[tuple[int, str, float | None]]:
    async with AsyncReader(settings(clickhouse, "tally")) as reader:
        found = await backtest(reader, m, since, until, all_changes=True)
    return [(e.bucket, e.notify or e.after, e.value) for e in found]


@pytest.mark.parametrize("switch", [SPRING, AUTUMN])
async def test_hourly_buckets_are_every_real_hour_across_a_switch(clickhouse, switch) -> None:
    m = monitor("1h", f"{{type: range, min: {PER_HOUR}, max: {PER_HOUR}}}")
    since, until = local(switch - timedelta(days=1)), local(switch + timedelta(days=2))
    assert await events(clickhouse, m, since, until) == []  # no hour read as 0 or doubled


async def test_daily_buckets_are_local_days_of_23_and_25_hours(clickhouse) -> None:
    m = monitor("1d", f"{{type: range, min: {24 * PER_HOUR}, max: {24 * PER_HOUR}}}")
    day = timedelta(days=1)
    found = []
    for switch in (SPRING, AUTUMN):
        since, until = local(switch - 3 * day), local(switch + 4 * day)
        found += await events(clickhouse, m, since, until)
    assert found == [
        (local(SPRING), "firing", 23 * PER_HOUR),
        (local(SPRING + day), "resolved", 24 * PER_HOUR),
        (local(AUTUMN), "firing", 25 * PER_HOUR),
        (local(AUTUMN + day), "resolved", 24 * PER_HOUR),
    ]  # and in between, every day read its 3,840 runs (no 0 from a bucket one hour off)


async def test_a_daily_minimum_never_fires_when_every_day_had_enough_runs(clickhouse) -> None:
    m = monitor("1d", "{type: expected, fewer_than: 3619}")
    for first, last in PERIODS:
        assert await events(clickhouse, m, local(first), local(last)) == []


async def test_weekly_buckets_are_local_weeks_of_167_and_169_hours(clickhouse) -> None:
    m = monitor("1w", f"{{type: range, min: {168 * PER_HOUR}, max: {168 * PER_HOUR}}}")
    found = []
    for first, last in PERIODS:
        found += await events(clickhouse, m, local(first), local(last))
    monday = date(2026, 3, 23), date(2026, 10, 19)
    week = timedelta(days=7)
    assert found == [
        (local(monday[0]), "firing", 167 * PER_HOUR),
        (local(monday[0] + week), "resolved", 168 * PER_HOUR),
        (local(monday[1]), "firing", 169 * PER_HOUR),
        (local(monday[1] + week), "resolved", 168 * PER_HOUR),
    ]


async def test_the_service_judges_each_local_day_once_and_for_1d_holds_on_a_short_day(
    clickhouse, tmp_path
) -> None:
    """The live path: catch-up across each switch, ``for: 1d`` met by the 23-hour day itself,
    and the next day resolves (it never stays firing on a bucket that reads 0)."""
    read = settings(clickhouse, "tally")
    day = timedelta(days=1)
    judged: list[tuple[str, int]] = []
    for switch in (SPRING, AUTUMN):
        name = f"daily-runs-{switch.month}"
        (tmp_path / "m.yaml").write_text(f"""
monitors:
  - name: {name}
    key: event::gappy
    path: total.count
    granularity: 1d
    condition: {{type: expected, fewer_than: 3619}}
    for: 1d
""")
        svc = MonitorService(
            paths=[tmp_path / "m.yaml"], reader=AsyncReader(read), store=Store(read),
            watermark=WallClock(5), notifier=Notifier({}), lease=AlwaysHeld(),
        )  # fmt: skip
        await svc.start()
        try:
            for d in (switch - 2 * day, switch + 3 * day):  # the first start, then a catch-up
                result = await svc.tick(now=local(d, 6))
                assert result.errors == []
                judged += [(n.kind, n.bucket) for n in result.notices]
            states = await svc.store.states(name)
            assert [s.last_bucket for s in states.values()] == [local(switch + 2 * day)]
        finally:
            await svc.close()
    assert judged == [
        ("firing", local(SPRING)),
        ("resolved", local(SPRING + day)),
        ("firing", local(AUTUMN)),
        ("resolved", local(AUTUMN + day)),
    ]
