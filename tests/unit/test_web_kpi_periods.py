"""KPI periods: whole buckets, no bucket in both, as many buckets before as in the range."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tally.schemas.granularity import Calendar, Granularity
from tally.web.kpi import finer, like_for_like, periods


def ts(tz: ZoneInfo, *args: int) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp())


@pytest.mark.parametrize(
    ("zone", "g", "since", "until", "expected"),
    [
        # 24h at 1h from 10:30: 11:00 .. 10:00 next day (24 buckets), and the 24 before
        ("UTC", "1h", (2026, 3, 2, 10, 30), (2026, 3, 3, 10, 30),
         ((2026, 3, 1, 11), (2026, 3, 2, 11))),
        # aligned already: nothing moves
        ("UTC", "1h", (2026, 3, 2, 10), (2026, 3, 3, 10), ((2026, 3, 1, 10), (2026, 3, 2, 10))),
        # 24h at 1d: today so far against yesterday
        ("UTC", "1d", (2026, 3, 2, 10, 30), (2026, 3, 3, 10, 30),
         ((2026, 3, 2), (2026, 3, 3))),
        # shorter than a bucket: the bucket it ends in, against the one before
        ("UTC", "1d", (2026, 3, 3, 9), (2026, 3, 3, 10), ((2026, 3, 2), (2026, 3, 3))),
        # days across the switch to summer time (29 March has 23 hours)
        ("Europe/Prague", "1d", (2026, 3, 28, 12), (2026, 3, 30, 12),
         ((2026, 3, 27), (2026, 3, 29))),
        # months have different lengths: counted in buckets, not seconds
        ("UTC", "1mo", (2026, 2, 15), (2026, 4, 10), ((2026, 1, 1), (2026, 3, 1))),
    ],
)  # fmt: skip
def test_periods(zone, g, since, until, expected):
    tz = ZoneInfo(zone)
    calendar = Calendar(zone)
    got = periods(calendar, Granularity.parse(g), ts(tz, *since), ts(tz, *until))
    assert got == (ts(tz, *expected[0]), ts(tz, *expected[1]))


@pytest.mark.parametrize(
    ("g", "since", "until", "expected"),
    [
        # today so far (10:30) against yesterday until 10:30, not the whole of yesterday
        ("1d", (2026, 3, 2, 10, 30), (2026, 3, 3, 10, 30), (2026, 3, 2, 10, 30)),
        # a week at 1d ending mid-day: the previous week's last day cut the same way
        ("1d", (2026, 2, 24, 15), (2026, 3, 3, 15), (2026, 2, 24, 15)),
        # ends on a bucket boundary: the whole previous period
        ("1h", (2026, 3, 2, 10), (2026, 3, 3, 10), (2026, 3, 2, 10)),
    ],
)  # fmt: skip
def test_the_previous_period_is_cut_like_for_like(g, since, until, expected):
    tz = ZoneInfo("UTC")
    calendar, gran = Calendar("UTC"), Granularity.parse(g)
    _, start = periods(calendar, gran, ts(tz, *since), ts(tz, *until))
    assert like_for_like(calendar, gran, start, ts(tz, *until)) == ts(tz, *expected)


def test_the_cut_part_is_read_at_the_finest_served_granularity():
    day = Granularity.parse("1d")
    assert finer(("1m", "1h", "1d"), day, 10 * 3600) == Granularity.parse("1m")
    assert finer(("1h", "1d"), day, 10 * 3600) == Granularity.parse("1h")
    assert finer(("1d",), day, 10 * 3600) is None
