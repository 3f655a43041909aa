"""The planner's as-of rule without services: which stored rows tile the partial bucket, where
the boundaries at T fall, the settled time, and that the statements carry T as parameters."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tally.read import queries
from tally.read.distributions import sketch_rows
from tally.read.errors import BadRange
from tally.read.plan import Walk
from tally.read.planner import ReadPlanner
from tally.read.settings import ReadSettings
from tally.read.settled import Cut, Piece, as_of_time, check_kept, cut, settled_time, tiles
from tally.read.timerange import window
from tally.schemas.ddl import RollupSchema
from tally.schemas.granularity import Calendar

STORED = ("1m", "1h", "1d")
UTC_CAL = Calendar()


def ts(*args: int, tz: str = "UTC") -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp())


def test_the_partial_bucket_is_whole_days_then_hours_then_minutes():
    start, t = ts(2026, 3, 2), ts(2026, 3, 4, 10, 30)  # a week's Monday to Wednesday 10:30
    assert tiles(UTC_CAL, STORED, start, t) == (
        Piece("1d", start, ts(2026, 3, 4)),
        Piece("1h", ts(2026, 3, 4), ts(2026, 3, 4, 10)),
        Piece("1m", ts(2026, 3, 4, 10), t),
    )
    # on an hour boundary no minute is read; at the start nothing at all
    assert tiles(UTC_CAL, STORED, ts(2026, 3, 4), ts(2026, 3, 4, 10)) == (
        Piece("1h", ts(2026, 3, 4), ts(2026, 3, 4, 10)),
    )
    assert tiles(UTC_CAL, STORED, t, t) == ()
    # only minutes stored: minutes all the way
    assert tiles(UTC_CAL, ("1m",), ts(2026, 3, 4, 10), t) == (Piece("1m", ts(2026, 3, 4, 10), t),)


def test_tiles_follow_the_local_calendar_across_dst_and_half_hour_zones():
    prague = Calendar("Europe/Prague")
    day = ts(2026, 3, 29, tz="Europe/Prague")  # 23 local hours: 02:00 -> 03:00
    t = ts(2026, 3, 29, 4, 15, tz="Europe/Prague")
    pieces = tiles(prague, STORED, day, t)
    assert pieces == (
        Piece("1h", day, ts(2026, 3, 29, 4, tz="Europe/Prague")),
        Piece("1m", ts(2026, 3, 29, 4, tz="Europe/Prague"), t),
    )
    assert pieces[0].end - pieces[0].start == 3 * 3600  # 00:00 to 04:00 is three hours that day
    kolkata = Calendar("Asia/Kolkata")  # hours start at :30 UTC
    t = ts(2026, 3, 4, 10, 45, tz="Asia/Kolkata")
    assert [
        p.granularity for p in tiles(kolkata, STORED, ts(2026, 3, 4, tz="Asia/Kolkata"), t)
    ] == [
        "1h",
        "1m",
    ]


def test_tiles_refuse_a_range_not_made_of_stored_buckets():
    with pytest.raises(BadRange, match="whole stored buckets"):
        tiles(UTC_CAL, STORED, ts(2026, 3, 4), ts(2026, 3, 4, 10, 30, 20))


def test_cut_boundaries_at_t():
    t = ts(2026, 3, 4, 10, 30)
    w = window(UTC_CAL, "1h", ts(2026, 3, 4, 8), t)
    assert w.buckets[-1] == ts(2026, 3, 4, 10) and w.end == ts(2026, 3, 4, 11)
    c = cut(UTC_CAL, STORED, w, t)
    assert c == Cut(
        t, ts(2026, 3, 4, 10), ts(2026, 3, 4, 10), (Piece("1m", ts(2026, 3, 4, 10), t),)
    )
    # T on the bucket boundary: every bucket is whole, nothing is cut
    on = ts(2026, 3, 4, 10)
    assert cut(UTC_CAL, STORED, window(UTC_CAL, "1h", ts(2026, 3, 4, 8), on), on) == Cut(
        on, on, None, ()
    )
    # a range ending long before T is read as it always was
    past = window(UTC_CAL, "1h", ts(2026, 3, 3, 8), ts(2026, 3, 3, 9, 30))
    assert cut(UTC_CAL, STORED, past, t) == Cut(t, past.end, None, ())


def test_settled_and_as_of_are_minutes():
    now = ts(2026, 3, 4, 10, 30, 9) + 0.5
    assert settled_time(UTC_CAL, STORED, now, 10) == ts(2026, 3, 4, 10, 29)
    assert settled_time(UTC_CAL, STORED, now + 1, 10) == ts(2026, 3, 4, 10, 30)
    assert as_of_time("settled", UTC_CAL, STORED, now, 10) == ts(2026, 3, 4, 10, 29)
    assert as_of_time(ts(2026, 3, 4, 9, 5, 42), UTC_CAL, STORED, now, 10) == ts(2026, 3, 4, 9, 5)
    assert as_of_time("2026-03-04T09:05:42Z", UTC_CAL, STORED, now, 10) == ts(2026, 3, 4, 9, 5)
    assert as_of_time("5m", UTC_CAL, STORED, now, 10) == ts(2026, 3, 4, 10, 25)
    with pytest.raises(BadRange):
        as_of_time("soon", UTC_CAL, STORED, now, 10)
    with pytest.raises(BadRange, match="no stored granularity"):
        settled_time(UTC_CAL, (), now, 10)


def test_check_kept_names_the_granularity_past_its_ttl():
    t = ts(2026, 3, 4, 10, 30)
    c = Cut(t, ts(2026, 3, 4, 10), ts(2026, 3, 4, 10), (Piece("1m", ts(2026, 3, 4, 10), t),))
    check_kept(c, {"1m": 14}, t + 13 * 86400)
    with pytest.raises(BadRange, match="older than the 14 days"):
        check_kept(c, {"1m": 14}, t + 15 * 86400)


def test_the_partial_bucket_is_read_from_stored_rows_by_parameters_only():
    t = ts(2026, 3, 4, 10, 30)
    c = Cut(t, ts(2026, 3, 2), ts(2026, 3, 2), tiles(UTC_CAL, STORED, ts(2026, 3, 2), t))
    scan = queries.Scan("tally", "1w", False, "calc'; DROP", ts(2026, 2, 2), ts(2026, 3, 9), c)
    sql = queries.points(scan, ["count"])
    assert "FROM tally.rollups_1w" in sql.text and "UNION ALL" in sql.text
    assert sql.text.count("granularity = {tg") == 3 and "DROP" not in sql.text
    assert sql.parameters["end"] == ts(2026, 3, 2)  # whole weeks end where the partial starts
    assert sql.parameters["partial"] == ts(2026, 3, 2)
    assert [sql.parameters[f"tg{i}"] for i in range(3)] == ["1d", "1h", "1m"]
    assert sql.parameters["te2"] == t
    for statement in (
        queries.ranking(scan, "^codes\\.", 5),
        queries.wildcard_points(scan, "x", []),
    ):
        assert statement.text.count("match(path, {regex:String})") == 2  # in both parts
    stored = queries.Scan("tally", "1d", True, "calc", ts(2026, 3, 1), ts(2026, 3, 5), c)
    one_scan = queries.points(stored, ["count"]).text  # a stored granularity: one table scan
    assert "UNION" not in one_scan and "if(granularity = {g:String}" in one_scan
    plain = queries.points(queries.Scan("tally", "1h", True, "calc", 0, 3600), None)
    assert "UNION" not in plain.text and plain.parameters["end"] == 3600
    w = window(UTC_CAL, "1w", ts(2026, 2, 2), t)
    sketches = sketch_rows("tally", "1w", "calc", "lat", w, c)
    assert "sumMap(sketch) AS merged" in sketches.text and sketches.parameters["te2"] == t


def _run(plan, answers):
    """Drive ``plan`` with canned results (one per statement); its outcome and statements."""
    walk, seen = Walk(plan), []
    while walk.sql is not None:
        seen.append(walk.sql)
        walk.feed(answers.pop(0))
    return walk.outcome, seen


class _Rows:
    def __init__(self, rows):
        self.result_rows = rows
        self.column_names: list[str] = []
        self.column_types: list[object] = []


def test_the_planner_cuts_series_at_as_of(monkeypatch):
    schema = RollupSchema(database="tally")
    tables = [("rollups", f"CREATE TABLE tally.rollups ... TTL {schema.ttl_clause()}")]
    tables += [(f"rollups_{g}", f"... WHERE granularity = '{g}' ...") for g in STORED]
    tables += [("rollups_1w", "SELECT ... toDate(bucket, 'UTC') ... toDayOfWeek(d) - 1")]
    planner = ReadPlanner(ReadSettings())
    t = ts(2026, 3, 4, 10, 30)
    monkeypatch.setattr("tally.read.planner.time.time", lambda: t + 30.0)
    built, seen = _run(
        planner.series("calc", ["count"], since=ts(2026, 3, 4, 8), granularity="1h", as_of=t),
        [_Rows(tables), _Rows([(ts(2026, 3, 4, 10), "count", 3.0)])],
    )
    s = built.step()
    assert s.buckets == [ts(2026, 3, 4, h) for h in (8, 9, 10)] and s.as_of == t
    assert s.row("count").points == [0.0, 0.0, 3.0]
    assert seen[1].parameters["partial"] == ts(2026, 3, 4, 10)
    settled, _ = _run(planner.settled(), [])
    assert settled == ts(2026, 3, 4, 10, 30)  # 30 s after T, 10 s to settle: T itself
