"""Reads as of a time on the real ClickHouse engine: the bucket containing T is summed from the
stored rows before T (days, hours, minutes), never from its coarse row, and nothing at or after
T is counted; ``settled`` is a minute at least ``settle_s`` ago."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tally.embedded.clickhouse.process import EmbeddedClickHouse
from tally.read import AsyncReader, BadRange, Reader
from tally.schemas.ddl import RollupSchema
from tests.integration.readside import KindRow, apply_schema, insert, insert_kinds, settings, start

pytestmark = pytest.mark.integration


# The last Wednesday at least a day ago: 1m rows are kept 14 days (their TTL), so the days read
# here must be recent. The week starts on the Monday two days before it.
_TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
WEDNESDAY = _TODAY - timedelta(days=1 + (_TODAY.weekday() - 3) % 7)
MONDAY = WEDNESDAY - timedelta(days=2)


def utc(day: datetime, hour: int = 0, minute: int = 0) -> int:
    return int((day + timedelta(hours=hour, minutes=minute)).timestamp())


def at(day: datetime, hour: int, minute: int) -> datetime:
    return day + timedelta(hours=hour, minutes=minute)


T = utc(WEDNESDAY, 10, 30)
THURSDAY, NEXT_MONDAY = utc(WEDNESDAY + timedelta(days=1)), utc(MONDAY + timedelta(days=7))
EVENTS = [
    (["asof"], at(MONDAY, 9, 0), {"count": 1}),
    (["asof"], at(WEDNESDAY, 8, 10), {"count": 2, "codes.a": 2}),
    (["asof"], at(WEDNESDAY, 10, 5), {"count": 4, "codes.a": 3, "codes.b": 1}),
    (["asof"], at(WEDNESDAY, 10, 29), {"count": 8, "codes.b": 8}),  # the last minute before T
    (["asof"], at(WEDNESDAY, 10, 30), {"count": 16, "codes.c": 16}),  # at T: after it
    (["asof"], at(WEDNESDAY, 11, 10), {"count": 32}),
]
KINDS = [
    KindRow(["asof"], at(WEDNESDAY, 10, 5), "lat", samples=(5.0, 6.0, 7.0)),
    KindRow(["asof"], at(WEDNESDAY, 10, 45), "lat", samples=(1000.0,)),
    KindRow(["asof"], at(WEDNESDAY, 10, 5), "depth", reading=(utc(WEDNESDAY, 10, 5) * 1000, 3.0)),
    KindRow(["asof"], at(WEDNESDAY, 10, 45), "depth", reading=(utc(WEDNESDAY, 10, 45) * 1000, 9.0)),
]  # fmt: skip


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory) -> Iterator[EmbeddedClickHouse]:
    server = start(tmp_path_factory.mktemp("asof") / "clickhouse")
    try:
        apply_schema(server, RollupSchema(database="tally"))
        insert(server, "tally", EVENTS)
        insert_kinds(server, "tally", KINDS)
        yield server
    finally:
        server.stop()


@pytest.fixture
def reader(clickhouse) -> Iterator[Reader]:
    with Reader(settings(clickhouse, "tally")) as r:
        yield r


def test_the_bucket_containing_t_counts_only_minutes_before_t(reader):
    kw = {"since": utc(WEDNESDAY, 8), "until": utc(WEDNESDAY, 12), "granularity": "1h"}
    live = reader.series("asof", ["count"], **kw)
    assert live.row("count").points == [2, 0, 28, 32]  # the 10:00 row has grown past 10:30
    s = reader.series("asof", ["count"], as_of=T, **kw)
    assert s.buckets == [utc(WEDNESDAY, h) for h in (8, 9, 10)]  # nothing after T
    assert s.row("count").points == [2, 0, 12]  # 10:05 and 10:29, not 10:30
    assert s.as_of == T and live.as_of is None
    # a T that is not a minute boundary is floored to one: rows finer than 1m do not exist
    assert reader.series("asof", ["count"], as_of=T + 59, **kw) == s
    # one minute later, 10:30 is in
    later = reader.series("asof", ["count"], as_of=T + 60, **kw)
    assert later.row("count").points == [2, 0, 28]


def test_a_day_and_a_derived_week_are_tiled_from_days_hours_and_minutes(reader):
    days = reader.series("asof", ["count"], since=utc(MONDAY), until=THURSDAY,
                         granularity="1d", as_of=T)  # fmt: skip
    assert days.buckets == [utc(MONDAY + timedelta(days=d)) for d in (0, 1, 2)]
    assert days.row("count").points == [1, 0, 14]  # 08:10 + 10:05 + 10:29
    week = reader.series("asof", ["count"], since=utc(MONDAY), until=NEXT_MONDAY,
                         granularity="1w", as_of=T)  # fmt: skip
    assert week.buckets == [utc(MONDAY)] and week.row("count").points == [15]
    whole = reader.series("asof", ["count"], since=utc(MONDAY), until=NEXT_MONDAY,
                          granularity="1w")  # fmt: skip
    assert whole.row("count").points == [63]


def test_wildcards_rank_by_totals_before_t(reader):
    s = reader.series("asof", ["codes.*"], since=utc(WEDNESDAY), until=THURSDAY,
                      granularity="1d", top=1, as_of=T)  # fmt: skip
    # before T: b 9, a 5 (c's 16 came at T and would rank first without as_of)
    assert [(r.name, r.kind, r.points) for r in s.rows] == [
        ("codes.b", "match", [9]),
        ("codes.(other)", "other", [5]),
    ]
    values = reader.values("asof", since=utc(WEDNESDAY), until=THURSDAY,
                           granularity="1d", as_of=T)  # fmt: skip
    # the distribution's summed parts stop at T too: 3 samples (5 + 6 + 7), not the 10:45 one
    lat = {"lat.count": 3, "lat.sum": 18, "lat.square": 110}
    assert values.values == [{"count": 14, "codes.a": 5, "codes.b": 9, **lat}]


def test_distributions_and_gauges_stop_at_t(reader):
    kw = {"since": utc(WEDNESDAY, 10), "until": utc(WEDNESDAY, 12), "granularity": "1h"}
    d = reader.quantiles("asof", "lat", [0.5], as_of=T, **kw)
    assert d.buckets == [utc(WEDNESDAY, 10)] and d.count == [3] and d.max == [7.0]
    assert reader.quantiles("asof", "lat", [0.5], **kw).count == [4, 0]
    g = reader.gauge("asof", "depth", as_of=T, **kw)
    assert g.last == [3.0] and g.max == [3.0]
    assert reader.gauge("asof", "depth", **kw).last == [9.0, None]


def test_settled_is_a_minute_at_least_settle_s_ago(reader):
    before = time.time()
    t = reader.settled()
    after = time.time()
    assert t % 60 == 0
    assert (before - 10) // 60 * 60 <= t <= (after - 10) // 60 * 60
    s = reader.series("asof", ["count"], since="30d", granularity="1h", as_of="settled")
    assert s.as_of in (t, t + 60) and s.buckets[-1] < s.as_of


def test_a_range_after_t_is_empty_and_async_reads_agree(clickhouse, reader):
    with pytest.raises(BadRange, match="empty"):
        reader.series("asof", ["count"], since=T + 3600, until=T + 7200, as_of=T)

    async def read() -> object:
        async with AsyncReader(settings(clickhouse, "tally")) as r:
            return await r.series("asof", ["count"], since=utc(WEDNESDAY), until=T + 3600,
                                  granularity="1d", as_of=T)  # fmt: skip

    assert asyncio.run(read()) == reader.series(
        "asof", ["count"], since=utc(WEDNESDAY), until=T + 3600, granularity="1d", as_of=T
    )


def test_as_of_beyond_the_minute_rows_ttl_is_a_clear_error(reader):
    assert reader.schema().ttl_days == {"1m": 14, "1h": 400, "1d": 3650}
    old = utc(WEDNESDAY - timedelta(days=21), 10, 30)  # its 1m rows are gone
    with pytest.raises(BadRange, match=r"1m rows .* older than the 14 days"):
        reader.series("asof", ["count"], since=old - 86400, until=old, as_of=old)
    whole = reader.series("asof", ["count"], since=old - 86400, until=old - 1800, as_of=old - 1800)
    assert whole.as_of == old - 1800  # on an hour boundary: whole 1h rows, no minute needed
