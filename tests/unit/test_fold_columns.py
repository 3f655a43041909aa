"""The column fold (wire v3) against the event-by-event fold (wire v2): the same rows, the
same rejections and counts, for random events valid and invalid, mixed versions in one fold
and any reduce batch size; the column state's memory is its arrays."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.aggregator import column_state, vfold
from tally.aggregator import fold as fold_module
from tally.aggregator.columns import read_varints
from tally.aggregator.fold import PartitionFold
from tally.aggregator.fold_bytes import ENTRY_BYTES, VALUE_BYTES
from tally.aggregator.rows import FoldRows
from tally.ingest.kinds import Dist
from tally.schemas.limits import Limits
from tally.schemas.wire import COLUMN_TYPES, BatchDecoder, BatchEncoder
from tally.schemas.wire_columns import ColumnsEncoder, batch_events, varints
from tally.schemas.wire_columns import read_varints as read_varints_py

NOW = 1_763_600_000
TS_MS = NOW * 1000
LIMITS = Limits(ttl_seconds=(("1m", 3 * 86400),))

GOOD_NUMBER = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 3)),
)
BAD_NUMBER = st.sampled_from([math.nan, math.inf, -math.inf, 2.0**60, -(2.0**60)])
SAMPLE = st.one_of(st.just(0.0), st.just(1.0), st.floats(1e-3, 1e6), st.integers(1, 10**5))
SHAPES = [("x",), ("x", "y"), ("y", "z.w"), (), ("lat",)]  # "lat" summed: a kind conflict
KEYS = [("k",), ("k", "t::1"), ("u",), ("", "k"), ("k" * 300,)]


@st.composite
def dists(draw) -> Dist:
    samples = draw(st.lists(SAMPLE, min_size=1, max_size=4))
    d = Dist.of(samples)
    broken = draw(st.sampled_from(["", "", "", "count", "negative", "bucket", "min", "nan"]))
    if broken == "count":
        return Dist(d.count + 1, d.total, d.square, d.vmin, d.vmax, d.buckets)
    if broken == "negative":
        return Dist(d.count, d.total, d.square, -1.0, d.vmax, d.buckets)
    if broken == "bucket":
        return Dist(d.count, d.total, d.square, d.vmin, d.vmax, {40_000: d.count})
    if broken == "min":
        return Dist(d.count, d.total, d.square, d.vmin * 0.5 + 1e-3, d.vmax, d.buckets)
    if broken == "nan":
        return Dist(d.count, math.nan, d.square, d.vmin, d.vmax, d.buckets)
    return d


@st.composite
def events(draw) -> tuple:
    good = draw(st.integers(0, 9)) < 8
    at = NOW - draw(st.integers(0, 4 * 86400)) if good else draw(
        st.sampled_from([NOW - 30 * 86400, NOW + 86400, 0, NOW - 5 * 86400])
    )  # fmt: skip
    keys = KEYS[draw(st.integers(0, 2 if good else 4))]
    paths = SHAPES[draw(st.integers(0, 3 if good else 4))]
    number = GOOD_NUMBER if good else st.one_of(GOOD_NUMBER, BAD_NUMBER)
    values = [draw(number) for _ in paths]
    dist_paths = draw(
        st.lists(st.sampled_from(["lat", "q"] if good else ["lat", "x", "g"]), max_size=2)
    )
    gauge_paths = draw(st.lists(st.sampled_from(["g", "h"] if good else ["g", "lat"]), max_size=2))
    if good:  # one path once per event
        dist_paths = list(dict.fromkeys(dist_paths))
        gauge_paths = list(dict.fromkeys(gauge_paths))
    ds = [
        (p, draw(dists()) if not good else Dist.of(draw(st.lists(SAMPLE, min_size=1, max_size=4))))
        for p in dist_paths
    ]
    gs = [
        (p, float(draw(GOOD_NUMBER if good else number)), at * 1000 + draw(st.integers(-2, 2)))
        for p in gauge_paths
    ]
    if not paths and not ds and not gs and good:
        gs = [("g", 1.0, at * 1000)]
    return (at, keys, paths, values, (ds, gs))


def fold_all(
    records: list[list[tuple]], versions: list[int], flush_rows: int = 500_000
) -> tuple[PartitionFold, list]:
    fold = PartitionFold(LIMITS, BatchDecoder(), flush_rows)
    rejected = []
    for offset, (record, version) in enumerate(zip(records, versions, strict=True)):
        encoder = ColumnsEncoder("s", version) if version >= 3 else BatchEncoder("s")
        got = fold.add_record(encoder.encode(record), offset, TS_MS)
        rejected += [(r.offset, r.index, r.reason) for r in got]
    return fold, rejected


def canonical(rows: FoldRows) -> dict[tuple, tuple]:
    """Rows by (keys, minute, paths, kind, path): a fold's rows are a set (their order is
    deterministic per fold but differs between the event state and the column state)."""
    n = len(rows)
    kinds = rows.has_kinds
    out = {}
    for i in range(n):
        key = (rows.keys[i], rows.minute[i], rows.paths[i])
        key += (rows.kind[i], rows.path[i]) if kinds else (0, "")
        rest = (
            (rows.sketch_keys[i], rows.sketch_counts[i], rows.stats[i], rows.vmin[i],
             rows.vmax[i], rows.last[i])
            if kinds else ()
        )  # fmt: skip
        assert key not in out, f"two rows for {key}"
        out[key] = ([float(v) for v in rows.values[i]], *rest)
    return out


def close(a, b) -> bool:
    """Equal, numbers exactly when integral (the 2**53 rule), else to float rounding."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if float(a).is_integer() and float(b).is_integer():
            return a == b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def same_rows(*folds: FoldRows) -> bool:
    first = canonical(folds[0])
    for other in map(canonical, folds[1:]):
        assert first.keys() == other.keys()
        for key, row in first.items():
            assert close(row, other[key]), (key, row, other[key])
    return True


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(events(), min_size=1, max_size=12), min_size=1, max_size=4), st.data())
def test_columns_fold_to_the_same_rows_as_events(records, data):
    versions = data.draw(
        st.lists(st.sampled_from([2, 3, 4]), min_size=len(records), max_size=len(records))
    )
    pending = data.draw(st.sampled_from([1, 5, vfold.PENDING_ROWS]))  # reduce often or not
    by_events, rejected_2 = fold_all(records, [2] * len(records))
    saved, vfold.PENDING_ROWS = vfold.PENDING_ROWS, pending
    try:
        by_columns, rejected_3 = fold_all(records, [3] * len(records), flush_rows=1)
        narrow, rejected_4 = fold_all(records, [4] * len(records))
        mixed, rejected_m = fold_all(records, versions)
    finally:
        vfold.PENDING_ROWS = saved
    assert rejected_3 == rejected_2 == rejected_4 == rejected_m
    assert by_columns.events == by_events.events == narrow.events == mixed.events
    assert by_columns.expired == by_events.expired == narrow.expired
    assert by_columns.nbytes >= by_columns.cols.nbytes
    assert same_rows(by_events.rows(), by_columns.rows(), narrow.rows(), mixed.rows())
    assert len(by_columns.rows()) <= len(by_columns)  # ``len`` bounds the rows a flush makes


def test_valid_records_take_the_column_path(monkeypatch):
    calls = []
    original = PartitionFold._fold
    monkeypatch.setattr(
        PartitionFold, "_fold", lambda self, *a: calls.append(1) or original(self, *a)
    )
    record = [
        (
            NOW - i,
            ("k", "t::1"),
            ("x", "y"),
            [i, 0.5],
            ([("lat", Dist.of([i + 1.0]))], [("g", 1.0, TS_MS)]),
        )
        for i in range(50)
    ]
    fold, rejected = fold_all([record, record], [3, 3])
    assert rejected == [] and calls == [] and fold.events == 100
    assert not fold.acc and not fold.dacc and not fold.gacc and fold.cols.nbytes > 0
    rows = canonical(fold.rows())
    assert rows[(("k", "t::1"), NOW - NOW % 60, (), 1, "lat")][3][0] == sum(
        1 for r in record * 2 if r[0] >= NOW - NOW % 60
    )
    assert same_rows(fold.rows(), fold_all([record, record], [2, 2])[0].rows())
    assert fold_module.PartitionFold is PartitionFold


@pytest.mark.parametrize("version", [3, 4])
def test_integer_sums_are_exact_below_2_to_the_53(version):
    big = 2**52 - 1  # partial sums stay below 2**53 only pairwise: each row holds two
    record = [(NOW, ("k",), ("x", "y"), [big if i % 2 else 1, i], ([], [])) for i in range(2)]
    by_events = fold_all([record], [2])[0].rows()
    by_columns = fold_all([record], [version])[0].rows()
    assert by_columns.values == [[big + 1.0, 1.0]] and by_events.values == [[big + 1, 1]]
    many = [(NOW - i % 120, ("k",), ("x",), [2**40 + i], ([], [])) for i in range(5_000)]
    want = canonical(fold_all([many] * 3, [2] * 3)[0].rows())
    assert canonical(fold_all([many] * 3, [version] * 3)[0].rows()) == want


def test_integers_beyond_2_to_the_53_in_a_narrow_column_are_rejected_exactly():
    record = [(NOW, ("k",), ("x",), [v], ([], [])) for v in (1, 2**53, 2**53 + 1, -(2**60))]
    fields = v3_fields(record, 4)
    at = {name: 6 + i for i, (name, _) in enumerate(COLUMN_TYPES)}
    fields[at["values"]] = b"".join(v.to_bytes(8, "little", signed=True) for v in
                                    (1, 2**53, 2**53 + 1, -(2**60)))  # fmt: skip
    fields[-1] = fields[-1][:4] + "q" + fields[-1][5:]  # values as int64
    fold = PartitionFold(LIMITS, BatchDecoder())
    rejected = fold.add_record(msgspec.msgpack.encode(fields), 0, TS_MS)
    assert [(r.index, r.reason) for r in rejected] == [(2, "huge_value"), (3, "huge_value")]
    assert fold.rows().values == [[1 + 2**53]] and fold.events == 2


def test_narrow_columns_are_smaller_and_say_their_types():
    record = [
        (NOW - i, ("k", f"t::{i % 7}"), ("x", "y"), [i % 100, 2.5], ([], [("g", 1.0, TS_MS)]))
        for i in range(1_000)
    ]
    v3, v4 = ColumnsEncoder("s", 3).encode(record), ColumnsEncoder("s", 4).encode(record)
    assert len(v4) < len(v3) * 0.6
    dtypes = msgspec.msgpack.decode(v4)[-1]
    types = dict(zip([name for name, _ in COLUMN_TYPES], dtypes, strict=True))
    assert types["at"] == "i" and types["keyset"] == "b" and types["values"] == "d"
    assert types["gauge_value"] == "b" and types["gauge_at_ms"] == "q"
    assert types["value_offsets"] == "B" and types["dist_sum"] == "B"  # empty: implied, none
    decoded = BatchDecoder().decode(v4)
    assert batch_events(decoded) == batch_events(BatchDecoder().decode(v3))
    decoded = BatchDecoder().decode(v4)
    assert batch_events(decoded) == batch_events(BatchDecoder().decode(v3))
    skewed = [(NOW, ("k",), ("x", "y"), [i % 50, 10**6 * (i % 3 == 0)], ([], [])) for i in
              range(300)]  # fmt: skip
    fields = msgspec.msgpack.decode(ColumnsEncoder("s", 4).encode(skewed))
    assert fields[-1][[name for name, _ in COLUMN_TYPES].index("values")] == "v"
    assert len(fields[6 + 4]) < 300 * 2 * 2  # under two bytes a value
    folded = fold_all([skewed], [4])[0].rows().values
    assert folded == [[sum(i % 50 for i in range(300)), 10**6 * 100]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**53), 2**53), max_size=50))
def test_varints_read_back_the_same_with_and_without_numpy(ints):
    packed = varints(ints)
    assert read_varints_py(packed) == ints
    assert read_varints(memoryview(packed)).tolist() == ints


def test_the_column_state_counts_its_arrays_and_the_rows_they_make():
    record = [(NOW - i % 600, ("k", f"p::{i % 50}"), ("x", "y"), [i, 1], ([], [])) for i in
              range(2_000)]  # fmt: skip
    per_row = 4 * 8 + 2 * 8 + ENTRY_BYTES + 2 * VALUE_BYTES  # arrays, then rows()' objects
    groups = len(fold_all([record] * 5, [2] * 5)[0].rows())
    settled = fold_all([record] * 5, [3] * 5, flush_rows=100)[0]  # reduced as it goes
    assert len(settled) <= 2 * groups + column_state.SLACK_ROWS
    fold = fold_all([record] * 5, [3] * 5, flush_rows=10**9)[0]  # only the size bound reduces
    assert fold.cols.nbytes == 5 * 2_000 * per_row and len(fold) == 5 * 2_000
    fold.cols.reduce(fold.shape_widths())  # one row per (keyset, minute, shape)
    assert fold.cols.nbytes == groups * per_row == settled.cols.nbytes
    assert len(fold) == len(fold.rows()) == groups
    fold.clear()
    assert fold.cols.nbytes == 0 and len(fold) == 0


def v3_fields(record: list[tuple], version: int = 3) -> list:
    return msgspec.msgpack.decode(ColumnsEncoder("s", version).encode(record))


def malformed(change, version: int = 3) -> bytes:
    record = [
        (NOW, ("k",), ("x",), [1.5], ([("lat", Dist.of([2.0, 3.0]))], [("g", 1.0, TS_MS)]))
    ] * 3
    fields = v3_fields(record, version)
    change(fields, {name: 6 + i for i, (name, _) in enumerate(COLUMN_TYPES)})
    return msgspec.msgpack.encode(fields)


def _set(name, value):
    return lambda f, at: f.__setitem__(at[name], value)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_set("values", b"\x00" * 7), "bad_column"),  # not whole float64 items
        (_set("at", b"\x00" * 16), "bad_column"),  # 2 times for 3 events
        (
            _set("value_offsets", b"".join(i.to_bytes(4, "little") for i in (0, 1, 2, 4))),
            "bad_offsets",
        ),
        (
            _set(
                "value_offsets",
                b"".join(i.to_bytes(4, "little", signed=True) for i in (0, 2, 1, 3)),
            ),
            "bad_offsets",
        ),
        (
            _set("bucket_offsets", b"".join(i.to_bytes(4, "little") for i in (0, 2, 4, 9))),
            "bad_offsets",
        ),
        (_set("dist_path", b"\x00" * 4), "bad_column"),  # 1 path for 3 distributions
        (_set("at", "not bytes"), "malformed_columns"),  # wrong type
        (lambda f, at: f.__setitem__(5, 2**40), "too_many_rows"),
        (lambda f, at: f.pop(), "malformed_columns"),
    ],
)
def test_malformed_columns_dead_letter_the_record_with_a_stable_reason(change, reason):
    fold = PartitionFold(LIMITS, BatchDecoder())
    rejected = fold.add_record(malformed(change), 4, TS_MS)
    assert [(r.offset, r.index, r.reason) for r in rejected] == [(4, -1, reason)]
    assert fold.events == 0 and len(fold) == 0


def _dtype(name: str, code: str):
    index = [n for n, _ in COLUMN_TYPES].index(name)
    return lambda f, at: f.__setitem__(-1, f[-1][:index] + code + f[-1][index + 1 :])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_dtype("keyset", "q"), "bad_dtype"),  # wider than the column's type
        (_dtype("at", "d"), "bad_dtype"),  # a float time
        (_dtype("values", "Q"), "bad_dtype"),  # unsigned 64-bit: not exact in int64
        (_dtype("values", "z"), "bad_dtype"),  # not a type
        (lambda f, at: f.__setitem__(-1, f[-1][:-1]), "bad_dtype"),  # one type short
        (lambda f, at: f.__setitem__(-1, f[-1] + "B"), "bad_dtype"),  # one type too many
        (lambda f, at: f.__setitem__(-1, 7), "malformed_columns"),  # not a string
        (_dtype("values", "B"), "bad_offsets"),  # 24 bytes of float64 as 24 uint8 values
        (_dtype("at", "q"), "bad_column"),  # 3 x uint32 read as int64
        (_dtype("at", "v"), "bad_dtype"),  # varints only for float columns
        (
            lambda f, at: (
                f.__setitem__(at["values"], b"\x02\x04\x86"),
                _dtype("values", "v")(f, at),
            ),
            "bad_column",
        ),  # runs past the end
        (
            lambda f, at: (
                f.__setitem__(at["values"], b"\xff" * 10 + b"\x01\x02\x04"),
                _dtype("values", "v")(f, at),
            ),
            "bad_column",
        ),  # a varint of 11 bytes
        (lambda f, at: f.__setitem__(at["shape"], b"\x07\x00\x00"), "bad_offsets"),  # implied
    ],
)
def test_malformed_narrow_types_dead_letter_the_record(change, reason):
    fold = PartitionFold(LIMITS, BatchDecoder())
    rejected = fold.add_record(malformed(change, 4), 4, TS_MS)
    assert [(r.offset, r.index, r.reason) for r in rejected] == [(4, -1, reason)]
    assert fold.events == 0 and len(fold) == 0


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzzed_narrow_records_never_raise(data):
    """Any dtypes string and column bytes: a clear rejection or a fold, never an exception."""
    fields = v3_fields(
        [(NOW, ("k",), ("x",), [3], ([("lat", Dist.of([2.0]))], [("g", 1.0, TS_MS)]))] * 2, 4
    )
    at = data.draw(st.integers(6, len(fields) - 1))
    if at == len(fields) - 1:
        fields[at] = data.draw(st.text(alphabet="bBhHiIqQdfz", max_size=22))
    else:
        fields[at] = data.draw(st.binary(max_size=40))
    fold = PartitionFold(LIMITS, BatchDecoder())
    rejected = fold.add_record(msgspec.msgpack.encode(fields), 0, TS_MS)
    assert fold.events + len(rejected) >= 1
    assert all(r.reason for r in rejected)
    fold.rows()


def test_bad_values_in_columns_are_rejected_per_event():
    record = [
        (NOW, ("k",), ("x",), [1.0], ([], [])),
        (NOW, ("k",), ("x",), [math.nan], ([], [])),
        (NOW, ("k",), ("x",), [math.inf], ([], [])),
        (NOW, ("k",), ("x",), [2.0**60], ([], [])),
        (NOW, ("k",), (), [], ([("lat", Dist(1, math.inf, 0.0, math.inf, math.inf, {81: 1}))], [])),
        (NOW, ("k",), (), [], ([], [("g", math.nan, TS_MS)])),
    ]
    fields = v3_fields(record)
    fields[7] = (9).to_bytes(4, "little") + (0).to_bytes(4, "little") * 5  # keyset out of range
    fold = PartitionFold(LIMITS, BatchDecoder())
    rejected = fold.add_record(msgspec.msgpack.encode(fields), 0, TS_MS)
    assert [(r.index, r.reason) for r in rejected] == [
        (0, "bad_reference"),
        (1, "not_finite"),
        (2, "not_finite"),
        (3, "huge_value"),
        (4, "sample_not_finite"),
        (5, "not_finite"),
    ]
    assert fold.events == 0


def test_a_cleared_fold_forgets_its_shapes():
    first = [(NOW, ("k",), ("x",), [1], ([], [])), (NOW, ("k",), ("y", "z"), [2, 3], ([], []))]
    second = [
        (NOW, ("u",), ("a", "b", "c"), [4, 5, 6], ([], [])),
        (NOW, ("u",), ("d",), [7], ([], [])),
    ]
    fold = PartitionFold(LIMITS, BatchDecoder())
    fold.add_record(ColumnsEncoder("s", 4).encode(first), 0, TS_MS)
    assert len(fold.rows()) == 2
    fold.clear()  # as many shapes again, of other widths
    fold.add_record(ColumnsEncoder("s", 4).encode(second), 1, TS_MS)
    assert same_rows(fold.rows(), fold_all([second], [2])[0].rows())
