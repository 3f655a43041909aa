import math
from collections import Counter

import msgspec
import pytest

from tally.aggregator.fold import FoldRows, PartitionFold
from tally.schemas.granularity import Calendar, Granularity
from tally.schemas.limits import Limits
from tally.schemas.wire import BatchDecoder, BatchEncoder

T0 = 1_763_596_800  # 2025-11-20 00:00:00 UTC
TS_MS = (T0 + 3600) * 1000


def fold() -> PartitionFold:
    return PartitionFold(Limits(), BatchDecoder())


def expand(rows: FoldRows, *grans: str, zone: str = "UTC") -> dict:
    """What ClickHouse's rollups_expand view makes of the rows (Python oracle, Calendar)."""
    cal = Calendar(zone)
    out: Counter = Counter()
    for keys, minute, paths, values in zip(*rows.columns(), strict=True):
        for g in grans:
            bucket = cal.floor(minute, Granularity.parse(g))
            for key in keys:
                for path, value in zip(paths, values, strict=True):
                    out[(g, key, bucket, path)] += value
    return dict(out)


def test_events_sum_per_key_bucket_path_and_fan_out():
    enc = BatchEncoder("s")
    payload = enc.encode(
        [
            (T0 + 10, ("calc", "calc::t1"), ("count", "duration.sum"), [1, 2.0]),
            (T0 + 20, ("calc", "calc::t2"), ("count", "duration.sum"), [1, 3.0]),
            (T0 + 70, ("calc", "calc::t1"), ("count",), [1]),
        ]
    )
    f = fold()
    assert f.add_record(payload, 0, TS_MS) == []
    assert f.events == 3
    rows = expand(f.rows(), "1m", "1h")
    assert rows[("1m", "calc", T0, "count")] == 2
    assert rows[("1m", "calc", T0 + 60, "count")] == 1
    assert rows[("1h", "calc", T0, "count")] == 3
    assert rows[("1h", "calc", T0, "duration.sum")] == 5.0
    assert rows[("1h", "calc::t1", T0, "count")] == 2
    assert rows[("1h", "calc::t2", T0, "duration.sum")] == 3.0
    assert len(rows) == 14  # 8 minute rows + 6 hour rows


def test_pre_aggregation_collapses_many_events():
    enc = BatchEncoder("s")
    events = [(T0 + i % 60, ("k",), ("count", "ok"), [1, 1]) for i in range(10_000)]
    f = fold()
    f.add_record(enc.encode(events), 0, TS_MS)
    assert len(f) == 1
    rows = f.rows()
    assert len(rows) == 1 and rows.values == [[10_000.0, 10_000.0]]
    assert rows.keys == [("k",)] and rows.paths == [("count", "ok")]


def test_buckets_use_the_calendar_zone():
    enc = BatchEncoder("s")
    # 23:30 UTC on Nov 19 is Nov 20 00:30 in Prague.
    f = fold()
    f.add_record(enc.encode([(T0 - 1800, ("k",), ("n",), [1])]), 0, TS_MS)
    rows = expand(f.rows(), "1d", zone="Europe/Prague")
    assert list(rows) == [("1d", "k", T0 - 3600, "n")]


def test_clear_forgets_everything():
    f = fold()
    f.add_record(BatchEncoder("s").encode([(T0, ("k",), ("n",), [1])]), 0, TS_MS)
    f.clear()
    assert len(f) == 0 and f.events == 0 and len(f.rows()) == 0


def raw(events, strings=("k", "n"), keysets=((0,),), shapes=((1,),), version=1):
    return msgspec.msgpack.encode(
        [version, "s", list(strings), [list(k) for k in keysets], [list(s) for s in shapes], events]
    )


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ([T0, 0, 0, ["x"]], "non_numeric"),
        ([T0, 0, 0, [True]], "non_numeric"),
        ([T0, 0, 0, [None]], "non_numeric"),
        ([T0, 0, 0, [math.nan]], "not_finite"),
        ([T0, 0, 0, [math.inf]], "not_finite"),
        ([T0, 0, 0, [2**60]], "huge_value"),
        ([T0, 0, 0, [1, 2]], "values_shape_mismatch"),
        ([T0, 5, 0, [1]], "bad_reference"),
        ([T0, -1, 0, [1]], "bad_reference"),
        ([T0, 0, 9, [1]], "bad_reference"),
        ([T0 - 30 * 86400, 0, 0, [1]], "too_old"),
        ([T0 + 30 * 86400, 0, 0, [1]], "too_far_in_future"),
        (["soon", 0, 0, [1]], "bad_timestamp"),
        ([T0, 0], "malformed_event"),
    ],
)
def test_bad_events_are_rejected_and_the_rest_is_counted(event, reason):
    good = [T0, 0, 0, [5]]
    f = fold()
    rejects = f.add_record(raw([good, event, good]), 42, TS_MS)
    assert [(r.offset, r.index, r.reason) for r in rejects] == [(42, 1, reason)]
    assert f.events == 2
    assert sum(sum(v) for v in f.rows().values) == 10


@pytest.mark.parametrize(
    ("strings", "keysets", "shapes", "reason"),
    [
        (("k" * 300, "n"), ((0,),), ((1,),), "key_too_long"),
        (("", "n"), ((0,),), ((1,),), "bad_key"),
        (("k", "a..b"), ((0,),), ((1,),), "bad_path"),
        (("k", ".".join("abcdefghij")), ((0,),), ((1,),), "too_deep"),
        (("k", "n"), ((7,),), ((1,),), "bad_reference"),
    ],
)
def test_bad_keys_and_paths_reject_their_events(strings, keysets, shapes, reason):
    f = fold()
    rejects = f.add_record(raw([[T0, 0, 0, [1]]], strings, keysets, shapes), 1, TS_MS)
    assert [r.reason for r in rejects] == [reason]
    assert f.events == 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00", "malformed_batch"),
        (b"\x00garbage", "undecodable"),
        (b"\xc1", "undecodable"),
        (raw([], version=9), "unknown_version"),
        (msgspec.msgpack.encode([1, "s", "notalist", [], [], []]), "malformed_batch"),
    ],
)
def test_bad_records_are_rejected_whole(payload, reason):
    rejects = fold().add_record(payload, 3, TS_MS)
    assert [(r.index, r.reason) for r in rejects] == [(-1, reason)]


def test_time_limits_are_relative_to_the_record_timestamp_so_replays_agree():
    f = fold()
    old = raw([[T0, 0, 0, [1]]])
    assert f.add_record(old, 0, (T0 + 3600) * 1000) == []
    assert [r.reason for r in f.add_record(old, 1, (T0 + 30 * 86400) * 1000)] == ["too_old"]


def test_tables_that_no_event_uses_are_not_kept():
    """A hostile record: 60k keysets, one event. Only the used keyset is interned."""
    strings = ["k", "count", *(f"unused{i}" for i in range(1000))]
    keysets = [[0], *([2 + (i + j) % 1000 for j in range(4)] for i in range(60_000))]
    payload = msgspec.msgpack.encode([1, "s", strings, keysets, [[1]], [[T0, 0, 0, [1]]]])
    assert 0.5 * 2**20 < len(payload) < 2**20
    f = fold()
    assert f.add_record(payload, 0, TS_MS) == []
    assert len(f.keysets) == 1 and len(f.shapes) == 1 and len(f) == 1
    assert f.nbytes < 4096, f.nbytes
    assert f.rows().keys == [("k",)]


def test_bytes_follow_the_values_held():
    """One entry of 1,024 values is ~32 KiB; sums into an existing entry add nothing."""
    enc = BatchEncoder("s")
    paths = tuple(f"p{i}" for i in range(1024))
    f = fold()
    f.add_record(enc.encode([(T0, (f"k{i}",), paths, [1] * 1024) for i in range(10)]), 0, TS_MS)
    per_entry = f.nbytes / 10
    assert 32 * 1024 <= per_entry < 40 * 1024, per_entry
    held = f.nbytes
    f.add_record(enc.encode([(T0 + 1, ("k0",), paths, [2] * 1024)]), 1, TS_MS)
    assert f.nbytes == held
    f.clear()
    assert f.nbytes == 0
