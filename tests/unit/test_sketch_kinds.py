"""Distributions and gauges without services: the sketch, the client API, wire v2, the fold."""

from __future__ import annotations

import math
import random

import msgspec
import numpy as np
import pytest

from tally.aggregator.fold import KIND_DIST, KIND_GAUGE, PartitionFold
from tally.ingest import ClientSettings, Dist, InvalidValues, Tracker, dist, gauge, heartbeat
from tally.ingest.flatten import flatten, flatten_all
from tally.schemas import sketch
from tally.schemas.limits import Limits
from tally.schemas.wire import BatchDecoder, BatchEncoder, BatchV1, BatchV2, WireError

T0 = 1_763_596_800  # 2025-11-20 00:00:00 UTC
TS_MS = (T0 + 3600) * 1000


def fold() -> PartitionFold:
    return PartitionFold(Limits(), BatchDecoder())


# -- the sketch ---------------------------------------------------------------------------


def test_every_value_is_within_alpha_of_its_bucket_representative():
    rng = random.Random(1)
    for _ in range(20_000):
        v = math.exp(rng.uniform(math.log(sketch.MIN_SAMPLE), math.log(sketch.MAX_SAMPLE)))
        rep = sketch.representative(sketch.key_of(v))
        assert abs(rep - v) <= sketch.ALPHA * v * (1 + 1e-12)
        assert sketch.key_problem(sketch.key_of(v)) is None
    assert sketch.representative(sketch.key_of(0)) == 0.0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1.0, "negative_sample"),
        (math.nan, "sample_not_finite"),
        (math.inf, "sample_not_finite"),
        (1e-12, "sample_below_range"),
        (2.0**60, "sample_above_range"),
        (True, "non_numeric_sample"),
        ("3", "non_numeric_sample"),
    ],
)
def test_bad_samples_have_a_reason(value, reason):
    assert sketch.sample_problem(value) == reason
    assert dist(value).problem == reason
    with pytest.raises(InvalidValues) as info:
        flatten_all({"d": dist(value)}, Limits())
    assert info.value.reason == reason


def test_quantiles_match_numpy_within_alpha_and_merge_exactly():
    rng = np.random.default_rng(3)
    a = rng.lognormal(2.0, 1.5, 50_000)
    b = rng.pareto(1.2, 50_000) * 10
    merged = Dist.of(a.tolist()).buckets.copy()
    for k, n in Dist.of(b.tolist()).buckets.items():
        merged[k] = merged.get(k, 0) + n
    both = np.concatenate([a, b])
    assert merged == Dist.of(both.tolist()).buckets  # merging is adding counts: exact
    keys = sorted(merged)
    counts = [merged[k] for k in keys]
    for q in (0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1):
        truth = float(np.percentile(both, q * 100))
        est = sketch.quantile(keys, counts, q, float(both.min()), float(both.max()))
        assert abs(est - truth) <= sketch.ALPHA * truth * (1 + 1e-9)


# -- client ---------------------------------------------------------------------------------


def test_flatten_keeps_kinds_apart_and_plain_flatten_refuses_them():
    paths, numbers, kinds = flatten_all(
        {"count": 1, "duration": dist(12.5), "queue": {"depth": gauge(3, at=T0)}}, Limits()
    )
    assert paths == ("count",) and numbers == [1]
    (dpath, d), = kinds[0]  # fmt: skip
    assert dpath == "duration" and (d.count, d.total, d.vmin, d.vmax) == (1, 12.5, 12.5, 12.5)
    assert kinds[1] == [("queue.depth", 3.0, T0 * 1000)]
    with pytest.raises(InvalidValues):
        flatten({"duration": dist(1)}, Limits())


def test_gauge_without_a_time_is_rejected_and_heartbeat_is_a_gauge_of_the_time():
    from datetime import datetime

    naive = gauge(1.0, at=datetime(2026, 1, 1))  # no zone: no time
    with pytest.raises(InvalidValues) as info:
        flatten_all({"g": naive}, Limits())
    assert info.value.reason == "gauge_without_timestamp"
    beat = heartbeat(at=T0 + 0.25)
    assert beat.value == T0 + 0.25 and beat.at_ms == T0 * 1000 + 250


def test_tracker_counts_bad_samples_instead_of_raising():
    tracker = Tracker(ClientSettings(bootstrap_servers="127.0.0.1:1", flush_on_sigterm=False))
    try:
        assert tracker.track("k", {"d": dist(-1)}) is False
        assert tracker.track("k", {"d": dist(math.nan)}) is False
        assert tracker.track("k", {"d": dist(2.0**60)}) is False
        assert tracker.stats().invalid == 3
    finally:
        tracker.close(0.1)
    strict = Tracker(ClientSettings(bootstrap_servers="127.0.0.1:1", strict=True))
    try:
        with pytest.raises(InvalidValues):
            strict.track("k", {"d": dist(-1)})
    finally:
        strict.close(0.1)


# -- wire -----------------------------------------------------------------------------------


def test_plain_batches_stay_version_1_and_kinds_make_version_2():
    enc, dec = BatchEncoder("s"), BatchDecoder()
    plain = dec.decode(enc.encode([(T0, ("k",), ("c",), [1])]))
    assert isinstance(plain, BatchV1)
    kinds = ([("d", dist(3.0))], [("g", 2.0, T0 * 1000)])
    mixed = dec.decode(enc.encode([(T0, ("k",), ("c",), [1]), (T0, ("k",), (), [], kinds)]))
    assert isinstance(mixed, BatchV2)
    assert mixed.events[0].dists == [] and mixed.events[1].gauges[0].at_ms == T0 * 1000


def test_a_record_of_an_unknown_future_version_is_dead_lettered_not_guessed():
    payload = msgspec.msgpack.encode([5, "s", ["k"], [[0]], [[0]], [[T0, 0, 0, [1]]]])
    with pytest.raises(WireError) as info:
        BatchDecoder().decode(payload)
    assert info.value.reason == "unknown_version"
    rejected = fold().add_record(payload, 7, TS_MS)
    assert [(r.offset, r.index, r.reason) for r in rejected] == [(7, -1, "unknown_version")]


# -- fold -----------------------------------------------------------------------------------


def kinds_record(*events) -> bytes:
    return BatchEncoder("s").encode(list(events))


def test_fold_merges_sketches_and_gauges_per_key_minute_path():
    f = fold()
    d1, d2 = Dist.of([1.0, 2.0, 3.0]), Dist.of([2.0, 100.0])
    payload = kinds_record(
        (T0 + 1, ("k",), ("c",), [1], ([("lat", d1)], [("q", 5.0, (T0 + 1) * 1000)])),
        (T0 + 2, ("k",), (), [], ([("lat", d2)], [("q", 4.0, (T0 + 2) * 1000)])),
        (T0 + 3, ("k",), (), [], ([], [("q", 9.0, (T0 + 1) * 1000)])),  # older reading
    )
    assert f.add_record(payload, 0, TS_MS) == []
    rows = f.rows()
    assert rows.column_names()[-1] == "last" and len(rows) == 3
    by_kind = {rows.kind[i]: i for i in range(len(rows))}
    i = by_kind[KIND_DIST]
    assert rows.path[i] == "lat" and rows.stats[i] == [5.0, 108.0, 1 + 4 + 9 + 4 + 10_000]
    assert sum(rows.sketch_counts[i]) == 5 and (rows.vmin[i], rows.vmax[i]) == (1.0, 100.0)
    g = by_kind[KIND_GAUGE]
    assert rows.last[g] == ((T0 + 2) * 1000, 4.0) and (rows.vmin[g], rows.vmax[g]) == (4.0, 9.0)
    assert rows.take([g]).last == [rows.last[g]]


def test_a_fold_of_plain_sums_sends_only_the_original_columns():
    f = fold()
    f.add_record(BatchEncoder("s").encode([(T0, ("k",), ("c",), [1])]), 0, TS_MS)
    assert f.rows().column_names() == ("keys", "minute", "paths", "values")


def raw(version, strings, keysets, shapes, events) -> bytes:
    return msgspec.msgpack.encode([version, "s", strings, keysets, shapes, events])


GOOD_DIST = [0, 1, 5.0, 25.0, 5.0, 5.0, [sketch.key_of(5.0)], [1]]


@pytest.mark.parametrize(
    ("dist_entry", "gauges", "reason"),
    [
        ([0, 1, -5.0, 25.0, -5.0, -5.0, [1], [1]], [], "negative_sample"),
        ([0, 1, 5.0, 25.0, 5.0, 2.0**60, [1], [1]], [], "sample_above_range"),
        ([0, 1, 5.0, 25.0, 5.0, math.nan, [1], [1]], [], "sample_not_finite"),
        ([0, 2, 5.0, 25.0, 5.0, 5.0, [sketch.key_of(5.0)], [1]], [], "bad_distribution"),
        ([0, 1, 5.0, 25.0, 5.0, 5.0, [40_000], [1]], [], "bad_sketch_bucket"),
        ([0, 1, 5.0], [], "bad_distribution"),
        (None, [[1, 3.0]], "gauge_without_timestamp"),
        (None, [[1, 3.0, None]], "gauge_without_timestamp"),
        (None, [[1, math.inf, T0 * 1000]], "not_finite"),
        (None, [[1, 3.0, 5]], "bad_gauge_time"),
        (None, [[2, 3.0, T0 * 1000]], "path_kind_conflict"),  # 'c' is a summed path
    ],
)
def test_bad_kinds_are_dead_lettered_with_a_reason_and_the_rest_is_kept(dist_entry, gauges, reason):
    dists = [dist_entry] if dist_entry is not None else []
    payload = raw(
        2,
        ["lat", "q", "c", "k"],
        [[3]],
        [[2], []],
        [[T0, 0, 0, [1]], [T0, 0, 1, [], dists, gauges], [T0, 0, 1, [], [GOOD_DIST], []]],
    )
    f = fold()
    rejected = f.add_record(payload, 4, TS_MS)
    assert [(r.index, r.reason) for r in rejected] == [(1, reason)]
    assert f.events == 2


def test_a_path_used_as_sum_and_as_distribution_in_one_fold_is_a_conflict():
    f = fold()
    first = BatchEncoder("s").encode([(T0, ("k",), ("lat",), [1])])
    assert f.add_record(first, 0, TS_MS) == []
    second = kinds_record((T0, ("k",), (), [], ([("lat", dist(1.0))], [])))
    rejected = f.add_record(second, 1, TS_MS)
    assert [r.reason for r in rejected] == ["path_kind_conflict"]
    third = kinds_record((T0, ("k",), (), [], ([], [("g", 1.0, T0 * 1000)])))
    assert f.add_record(third, 2, TS_MS) == []
    fourth = BatchEncoder("s").encode([(T0, ("k",), ("g",), [1])])
    assert [r.reason for r in f.add_record(fourth, 3, TS_MS)] == ["path_kind_conflict"]


def test_a_topic_mixing_v1_and_v2_records_folds_both():
    f = fold()
    v1 = BatchEncoder("old").encode([(T0, ("k",), ("count",), [1])])
    v2 = kinds_record((T0, ("k",), ("count",), [1], ([("lat", dist(2.0))], [])))
    assert f.add_record(v1, 0, TS_MS) == [] and f.add_record(v2, 1, TS_MS) == []
    rows = f.rows()
    assert sorted(rows.kind) == [0, 1]
    assert sum(sum(v) for v in rows.values) == 2


def test_gauge_folds_do_not_depend_on_arrival_order():
    readings = [(T0 + 5, 3.0), (T0 + 50, 9.0), (T0 + 50, 4.0), (T0 + 20, -1.0), (T0 + 7, 2.0)]
    results = set()
    rng = random.Random(5)
    for _ in range(20):
        rng.shuffle(readings)
        f = fold()
        events = [(T0, ("k",), (), [], ([], [("g", v, at * 1000)])) for at, v in readings]
        assert f.add_record(kinds_record(*events), 0, TS_MS) == []
        rows = f.rows()
        results.add((rows.last[0], rows.vmin[0], rows.vmax[0]))
    assert results == {(((T0 + 50) * 1000, 9.0), -1.0, 9.0)}  # a tie goes to the larger value
