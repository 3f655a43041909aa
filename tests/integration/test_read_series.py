"""The read API against exact expectations on the real ClickHouse engine (auth on)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from tally.embedded.clickhouse.process import EmbeddedClickHouse
from tally.read import (
    AsyncReader,
    BadExpression,
    BadGranularity,
    BadPattern,
    BadRange,
    Reader,
    ReadError,
    TooLarge,
)
from tally.schemas.ddl import RollupSchema
from tests.integration.readside import apply_schema, insert, settings, start, utc

pytestmark = pytest.mark.integration

CALC = [
    (
        ["calc", "calc::tenant::a"],
        utc(2026, 3, 2, 10, 5),
        {
            "count": 2, "success": 1, "codes.ok": 1, "codes.fail": 1,
            "duration.count": 2, "duration.sum": 30, "duration.square": 500,
            "tenants.a.count": 2,
        },
    ),
    (
        ["calc", "calc::tenant::b"],
        utc(2026, 3, 2, 12, 30),
        {
            "count": 4, "success": 4, "codes.ok": 3, "codes.retry": 1,
            "duration.count": 4, "duration.sum": 40, "duration.square": 400,
            "tenants.b.count": 3, "tenants.c.count": 1,
        },
    ),
    (["event::schedule::nightly"], utc(2026, 3, 2, 13, 0), {"count": 1}),
]  # fmt: skip

# Europe/Prague switches to summer time on 2026-03-29 at 01:00 UTC (02:00 -> 03:00 local).
PRAGUE = [
    (["dst"], utc(2026, 3, 28, 23, 30), {"count": 1}),  # 2026-03-29 00:30 CET
    (["dst"], utc(2026, 3, 29, 1, 10), {"count": 2}),  # 03:10 CEST (02:xx does not exist)
    (["dst"], utc(2026, 3, 29, 22, 30), {"count": 4}),  # 2026-03-30 00:30 CEST
]

RANGE = {"since": utc(2026, 3, 2, 10), "until": utc(2026, 3, 2, 14), "granularity": "1h"}


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory) -> Iterator[EmbeddedClickHouse]:
    server = start(tmp_path_factory.mktemp("read") / "clickhouse")
    try:
        apply_schema(server, RollupSchema(database="tally"))
        apply_schema(server, RollupSchema(database="prague", time_zone="Europe/Prague"))
        insert(server, "tally", CALC)
        insert(server, "prague", PRAGUE)
        yield server
    finally:
        server.stop()


@pytest.fixture
def reader(clickhouse) -> Iterator[Reader]:
    with Reader(settings(clickhouse, "tally")) as r:
        yield r


def test_values_fill_every_bucket_including_empty_ones(reader):
    v = reader.values("calc", **RANGE)
    assert v.buckets == [int(utc(2026, 3, 2, h).timestamp()) for h in (10, 11, 12, 13)]
    assert v.values[1] == {} and v.values[3] == {}
    assert v.values[0]["count"] == 2 and v.values[2]["codes.retry"] == 1
    assert v.at()[0] == utc(2026, 3, 2, 10)


def test_every_aggregator_with_slices(reader):
    s = reader.series("calc", ["count"], **RANGE)
    assert s.row("count").points == [2, 0, 4, 0]
    assert [x.values["count"] for x in s.aggregate("sum")] == [6]
    assert [x.values["count"] for x in s.aggregate("sum", slices=2)] == [2, 4]
    assert [x.values["count"] for x in s.aggregate("mean", slices=2)] == [1, 2]
    assert [x.values["count"] for x in s.aggregate("min", slices=2)] == [0, 0]
    assert [x.values["count"] for x in s.aggregate("max", slices=2)] == [2, 4]
    # 4 buckets in 3 slices: the oldest bucket is dropped, the last slice ends at `until`.
    three = s.aggregate("sum", slices=3)
    assert [x.values["count"] for x in three] == [0, 4, 0]
    assert three[-1].end == int(utc(2026, 3, 2, 14).timestamp())
    with pytest.raises(ReadError, match="cannot exceed"):
        s.aggregate("sum", slices=5)
    with pytest.raises(ReadError, match="unknown aggregator"):
        s.aggregate("median")


def test_formatters_timeline_and_category(reader):
    s = reader.series("calc", ["codes.*"], **RANGE)
    assert s.timeline()["codes.ok"] == [
        (int(utc(2026, 3, 2, h).timestamp()), v) for h, v in ((10, 1), (11, 0), (12, 3), (13, 0))
    ]
    assert [(c.name, c.value) for c in s.category()] == [
        ("codes.ok", 4), ("codes.fail", 1), ("codes.retry", 1),
    ]  # fmt: skip


def test_wildcards_with_top_n_and_other(reader):
    s = reader.series("calc", ["codes.*", "tenants.*.count"], top=1, **RANGE)
    assert [(r.name, r.kind, r.points) for r in s.rows] == [
        ("codes.ok", "match", [1, 0, 3, 0]),
        ("codes.(other)", "other", [1, 0, 1, 0]),
        ("tenants.b.count", "match", [0, 0, 3, 0]),
        ("tenants.(other).count", "other", [2, 0, 1, 0]),
    ]
    everything = reader.series("calc", ["tenants.*.count"], **RANGE)
    assert [r.name for r in everything.rows] == [
        "tenants.b.count",
        "tenants.a.count",
        "tenants.c.count",
    ]


def test_expressions_with_division_by_zero_and_stddev(reader):
    s = reader.series(
        "calc",
        ["count"],
        [
            "success / count",
            "sqrt(duration.square / duration.count - pow(duration.sum / duration.count, 2))",
            "count * 2 + 1",
        ],
        **RANGE,
    )
    assert s.row("success / count").points == [0.5, None, 1.0, None]
    stddev = s.rows[2].points
    assert stddev[0] == pytest.approx(5.0) and stddev[2] == pytest.approx(0.0)
    assert stddev[1] is None
    assert s.row("count * 2 + 1").points == [5, 1, 9, 1]


@pytest.mark.parametrize(
    ("call", "error", "reason"),
    [
        ({"expressions": ["success / "]}, BadExpression, "unexpected end"),
        ({"expressions": ["success // count"]}, BadExpression, "position"),
        ({"expressions": ["codes.* / count"]}, BadExpression, "wildcards"),
        ({"expressions": ["__import__(os)"]}, BadExpression, "unknown function"),
        ({"paths": ["count"], "granularity": "7x"}, BadGranularity, "not '<n><unit>'"),
        ({"paths": ["count"], "granularity": "2h"}, BadGranularity, "not served"),
        ({"paths": ["count"], "since": "tomorrow"}, BadRange, "not a time"),
        ({"paths": ["co*des"]}, BadPattern, "whole segment"),
    ],
)
def test_bad_requests_say_why(reader, call, error, reason):
    args = {"since": utc(2026, 3, 2, 10), "until": utc(2026, 3, 2, 14), "paths": []} | call
    with pytest.raises(error, match=reason):
        reader.series("calc", **args)


def test_reversed_and_oversized_ranges(reader):
    with pytest.raises(BadRange, match="reversed"):
        reader.series("calc", ["count"], since=utc(2026, 3, 3), until=utc(2026, 3, 2))
    with pytest.raises(BadRange, match="more than"):
        reader.series(
            "calc", ["count"], since=utc(2020, 1, 1), until=utc(2026, 1, 1), granularity="1m"
        )


def test_derived_granularities_week_and_month(reader):
    week = reader.series(
        "calc", ["count"], since=utc(2026, 2, 23), until=utc(2026, 3, 16), granularity="1w"
    )
    assert week.row("count").points == [0, 6, 0]  # Monday-start weeks
    month = reader.values("calc", since=utc(2026, 2, 1), until=utc(2026, 4, 1), granularity="1mo")
    assert [sorted(v.items())[:1] for v in month.values] == [[], [("codes.fail", 1)]]


def test_time_zone_with_dst(clickhouse):
    with Reader(settings(clickhouse, "prague")) as r:
        days = r.series(
            "dst",
            ["count"],
            since=utc(2026, 3, 27, 23),
            until=utc(2026, 3, 30, 22),
            granularity="1d",
        )
        # local midnights: CET (+1) before the change, CEST (+2) after; 29 March lasts 23 h
        assert days.buckets == [
            int(utc(2026, 3, 27, 23).timestamp()),
            int(utc(2026, 3, 28, 23).timestamp()),
            int(utc(2026, 3, 29, 22).timestamp()),
        ]
        assert days.row("count").points == [0, 3, 4]
        assert days.time_zone == "Europe/Prague"
        assert [a.hour for a in days.at()] == [0, 0, 0]
        hours = r.series(
            "dst",
            ["count"],
            since=utc(2026, 3, 28, 23),
            until=utc(2026, 3, 29, 2),
            granularity="1h",
        )
        # 00:00 CET, 01:00 CET, then 03:00 CEST: the local hour 02 does not exist
        assert [a.hour for a in hours.at()] == [0, 1, 3]
        assert hours.row("count").points == [1, 0, 2]
        weeks = r.series(
            "dst", ["count"], since=utc(2026, 3, 23), until=utc(2026, 4, 5), granularity="1w"
        )
        # Monday-start local weeks: 23 March 00:00 CET, 30 March 00:00 CEST
        assert weeks.buckets == [
            int(utc(2026, 3, 22, 23).timestamp()),
            int(utc(2026, 3, 29, 22).timestamp()),
        ]
        assert weeks.row("count").points == [3, 4]
        months = r.values("dst", since=utc(2026, 3, 15), until=utc(2026, 4, 15), granularity="1mo")
        assert months.buckets == [
            int(utc(2026, 2, 28, 23).timestamp()),  # 1 March 00:00 CET
            int(utc(2026, 3, 31, 22).timestamp()),  # 1 April 00:00 CEST
        ]
        assert months.values == [{"count": 7}, {}]


def test_key_discovery_and_paths(reader):
    keys = reader.keys("calc::*", since=utc(2026, 3, 1), until=utc(2026, 3, 3))
    assert [(k.key, k.last_seen) for k in keys] == [
        ("calc::tenant::b", utc(2026, 3, 2, 12, 30)),
        ("calc::tenant::a", utc(2026, 3, 2, 10, 5)),
    ]
    assert [
        k.key
        for k in reader.keys("event::schedule::*", since=utc(2026, 3, 1), until=utc(2026, 3, 3))
    ] == ["event::schedule::nightly"]
    assert reader.keys("calc::*", since=utc(2026, 3, 5), until=utc(2026, 3, 6)) == []
    # LIKE metacharacters in a pattern are literal
    assert reader.keys("calc_%", since=utc(2026, 3, 1), until=utc(2026, 3, 3)) == []
    paths = reader.paths("calc::tenant::a")
    assert [p.path for p in paths] == [
        "codes.fail", "codes.ok", "count", "duration.count", "duration.square", "duration.sum",
        "success", "tenants.a.count",
    ]  # fmt: skip


def test_sql_is_read_only(reader):
    result = reader.sql(
        "SELECT key, sum(value) AS v FROM tally.rollups_1d"
        " WHERE path = {p:String} GROUP BY key ORDER BY key",
        {"p": "count"},
    )
    assert result.columns == ["key", "v"]
    assert result.rows[0] == ["calc", 6.0]
    with pytest.raises(Exception, match=r"(?i)readonly|cannot execute"):
        reader.sql("INSERT INTO tally.rollups_input VALUES (['x'], now(), ['count'], [1])")


def test_wildcards_past_the_row_cap_need_top_and_top_n_is_chosen_in_clickhouse(clickhouse):
    many = [(["many"], utc(2026, 3, 2, 10, 5), {f"t.p{i:03d}": i + 1 for i in range(250)})]
    insert(clickhouse, "tally", many)
    with Reader(settings(clickhouse, "tally")) as r:
        with pytest.raises(TooLarge, match=r"'t\.\*' matches more than the 200 rows") as caught:
            r.series("many", ["t.*"], **RANGE)
        assert caught.value.field == "limit"
        s = r.series("many", ["t.*"], top=3, granularity="1w", since=RANGE["since"])
        assert [(row.name, sum(row.points)) for row in s.rows] == [
            ("t.p249", 250), ("t.p248", 249), ("t.p247", 248),
            ("t.(other)", sum(range(1, 248))),
        ]  # fmt: skip
    small = dataclasses.replace(settings(clickhouse, "tally"), max_points=20)
    with Reader(small) as r:
        assert len(r.series("many", ["t.*"], top=4, **RANGE).rows) == 5  # 5 rows x 4 buckets
        with pytest.raises(TooLarge, match=r"25 points \(5 rows x 5 buckets\), more than the"
                           r" limit of 20 points per response"):  # fmt: skip
            r.series("many", ["t.*"], top=4, since=utc(2026, 3, 2, 9), until=RANGE["until"])
        with pytest.raises(TooLarge, match="more than the limit of 20 points per response"):
            r.values("many", **RANGE)


def test_to_pandas(reader):
    frame = reader.series("calc", ["count", "success"], **RANGE).to_pandas()
    assert list(frame.columns) == ["count", "success"]
    assert frame["count"].tolist() == [2, 0, 4, 0]
    assert str(frame.index.tz) == "UTC"


async def test_async_reader_matches_sync(clickhouse, reader):
    async with AsyncReader(settings(clickhouse, "tally")) as r:
        s = await r.series("calc", ["codes.*"], ["success / count"], top=2, **RANGE)
        keys = await r.keys("calc*", since=utc(2026, 3, 1), until=utc(2026, 3, 3))
    assert s == reader.series("calc", ["codes.*"], ["success / count"], top=2, **RANGE)
    assert {k.key for k in keys} == {"calc", "calc::tenant::a", "calc::tenant::b"}


def test_key_tables_backfill_from_rollups_when_empty(tmp_path):
    server = start(tmp_path / "clickhouse")
    try:
        schema = RollupSchema(database="tally")
        apply_schema(server, schema)
        insert(server, "tally", CALC)
        with Reader(settings(server, "tally")) as r:
            # an install that predates the key tables: they are empty while rollups are not
            r._connected().command("TRUNCATE TABLE tally.keys_seen")
            r._connected().command("TRUNCATE TABLE tally.key_paths")
            assert r.keys("calc*", since=utc(2026, 3, 1), until=utc(2026, 3, 3)) == []
            apply_schema(server, schema)  # the next aggregator start
            keys = r.keys("calc*", since=utc(2026, 3, 1), until=utc(2026, 3, 3))
            assert {(k.key, k.last_seen) for k in keys} == {
                ("calc", utc(2026, 3, 2, 12)),  # hour precision from the 1h rollups
                ("calc::tenant::a", utc(2026, 3, 2, 10)),
                ("calc::tenant::b", utc(2026, 3, 2, 12)),
            }
            assert "codes.retry" in [p.path for p in r.paths("calc")]
            apply_schema(server, schema)  # not again: the tables are no longer empty
            assert len(r.keys("calc*", since=utc(2026, 3, 1), until=utc(2026, 3, 3))) == 3
    finally:
        server.stop()
