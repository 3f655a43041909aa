from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tally.schemas.granularity import Calendar, Granularity, GranularityError

UTC = ZoneInfo("UTC")
PRAGUE = ZoneInfo("Europe/Prague")
NEW_YORK = ZoneInfo("America/New_York")


def ts(y, mo, d, h=0, mi=0, s=0, tz=UTC, fold=0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=tz, fold=fold).timestamp())


@pytest.mark.parametrize(
    "text", ["1m", "5m", "15m", "1h", "6h", "1d", "1w", "1mo", "3mo", "1q", "1y"]
)
def test_parse_round_trip(text):
    assert str(Granularity.parse(text)) == text


@pytest.mark.parametrize("text", ["", "m", "7m", "5h", "2d", "2w", "5mo", "2q", "1x", "1 m", "-1m"])
def test_parse_rejects(text):
    with pytest.raises(GranularityError):
        Granularity.parse(text)


def test_utc_floors():
    cal = Calendar()
    t = ts(2026, 11, 19, 13, 47, 31)  # a Thursday
    g = Granularity.parse
    assert cal.floor(t, g("1m")) == ts(2026, 11, 19, 13, 47)
    assert cal.floor(t, g("15m")) == ts(2026, 11, 19, 13, 45)
    assert cal.floor(t, g("1h")) == ts(2026, 11, 19, 13)
    assert cal.floor(t, g("6h")) == ts(2026, 11, 19, 12)
    assert cal.floor(t, g("1d")) == ts(2026, 11, 19)
    assert cal.floor(t, g("1w")) == ts(2026, 11, 16)  # Monday
    assert cal.floor(t, g("1mo")) == ts(2026, 11, 1)
    assert cal.floor(t, g("1q")) == ts(2026, 10, 1)
    assert cal.floor(t, g("1y")) == ts(2026, 1, 1)


def test_week_start_is_configurable():
    t = ts(2026, 11, 19, 13)  # Thursday
    assert Calendar(week_start="sunday").floor(t, Granularity.parse("1w")) == ts(2026, 11, 15)
    assert Calendar(week_start="thursday").floor(t, Granularity.parse("1w")) == ts(2026, 11, 19)
    assert Calendar(week_start="friday").floor(t, Granularity.parse("1w")) == ts(2026, 11, 13)
    with pytest.raises(ValueError):
        Calendar(week_start="funday")


def test_local_day_across_spring_forward_is_23_hours():
    cal = Calendar("Europe/Prague")
    day = Granularity.parse("1d")
    # 2026-03-29: clocks jump 02:00 -> 03:00 in Prague.
    start = cal.floor(ts(2026, 3, 29, 12, tz=PRAGUE), day)
    assert start == ts(2026, 3, 29, 0, tz=PRAGUE)
    assert cal.next(start, day) - start == 23 * 3600
    assert cal.floor(ts(2026, 3, 29, 23, 59, tz=PRAGUE), day) == start


def test_local_day_across_fall_back_is_25_hours():
    cal = Calendar("Europe/Prague")
    day = Granularity.parse("1d")
    start = cal.floor(ts(2026, 10, 25, 12, tz=PRAGUE), day)
    assert cal.next(start, day) - start == 25 * 3600


def test_repeated_local_hour_gives_two_hourly_buckets():
    cal = Calendar("America/New_York")
    hour = Granularity.parse("1h")
    first = ts(2026, 11, 1, 1, 30, tz=NEW_YORK, fold=0)  # EDT
    second = ts(2026, 11, 1, 1, 30, tz=NEW_YORK, fold=1)  # EST, one hour later
    assert second - first == 3600
    b1, b2 = cal.floor(first, hour), cal.floor(second, hour)
    assert b2 - b1 == 3600
    assert b1 == first - 1800 and b2 == second - 1800


def test_half_hour_zone_hours_follow_the_local_clock():
    cal = Calendar("Asia/Kolkata")  # UTC+05:30
    t = ts(2026, 6, 1, 10, 10)  # 15:40 local
    assert cal.floor(t, Granularity.parse("1h")) == ts(2026, 6, 1, 9, 30)


def test_local_week_month_quarter_year_in_zone():
    cal = Calendar("Europe/Prague")
    t = ts(2026, 1, 1, 0, 30, tz=PRAGUE)  # still 2025-12-31 in UTC
    g = Granularity.parse
    assert cal.floor(t, g("1y")) == ts(2026, 1, 1, tz=PRAGUE)
    assert cal.floor(t, g("1q")) == ts(2026, 1, 1, tz=PRAGUE)
    assert cal.floor(t, g("1mo")) == ts(2026, 1, 1, tz=PRAGUE)
    assert cal.floor(t, g("1w")) == ts(2025, 12, 29, tz=PRAGUE)


@pytest.mark.parametrize("text", ["1m", "1h", "1d", "1w", "1mo", "1q", "1y", "15m", "6h"])
@pytest.mark.parametrize(
    "zone", ["UTC", "Europe/Prague", "America/New_York", "Australia/Lord_Howe"]
)
def test_buckets_tile_time(text, zone):
    cal = Calendar(zone)
    g = Granularity.parse(text)
    t = ts(2026, 3, 1)
    b = cal.floor(t, g)
    for _ in range(40):
        n = cal.next(b, g)
        assert n > b
        assert cal.floor(n - 1, g) == b and cal.floor(n, g) == n
        b = n
