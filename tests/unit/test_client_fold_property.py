"""Property: folding on the client never changes a rollup (``ingest/outbox/folding.py``).

For any event sequence and any fold window (how the sender's rounds chunk it), the aggregator
fold (``aggregator/fold.py``) of the folded stream yields the same rows as that of the
unfolded stream: sums, distributions (count, sum, square, min, max, buckets, hence every
quantile) and gauges (last by event time with ties, min, max). Float values are dyadic
(k/8) so that any summation order is exact; integers go up to 2^52, so some folds would
leave the value limit and must not happen.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tally.aggregator.fold import PartitionFold
from tally.aggregator.rows import FoldRows
from tally.ingest.codec import MetricCodec
from tally.ingest.flatten import flatten_all
from tally.ingest.kinds import Dist, Gauge, dist
from tally.ingest.outbox.folding import RecordFolder
from tally.ingest.records import KindsRecord, MetricRecord
from tally.schemas import sketch
from tally.schemas.limits import MAX_ABS_VALUE, Limits
from tally.schemas.wire import BatchDecoder

NOW = 1_763_600_000
KEYS = (("calc", "calc::a"), ("calc", "calc::b"), ("queue::q",), ("calc", "calc::a", "x"))
SMALL = st.integers(-1000, 1000)
BIG = st.sampled_from([2**52, 2**52 + 1, -(2**52)])
DYADIC = st.integers(-4000, 4000).map(lambda k: k / 8)
SAMPLE = st.one_of(st.just(0), st.integers(1, 10**6), st.integers(1, 4000).map(lambda k: k / 8))
# readings at a handful of instants, so that time ties are frequent
AT_MS = st.integers(0, 5).map(lambda i: (NOW - 120) * 1000 + 7_000 * i)
GAUGE_VALUE = st.integers(-5, 5)


@st.composite
def values(draw: st.DrawFn) -> dict:
    """One event's values; each path name always has the same kind (no kind conflicts)."""
    out: dict = {}
    shape = draw(st.integers(0, 5))
    if shape in (0, 1, 4):
        out["count"] = 1
        out["v"] = draw(st.one_of(SMALL, BIG))
    if shape in (1, 2):
        out["f"] = {"a": draw(DYADIC), "b": draw(SMALL)}
    if shape in (2, 4):
        samples = draw(st.lists(SAMPLE, min_size=1, max_size=4))
        out["lat"] = dist(samples[0]) if len(samples) == 1 else Dist.of(samples)
    if shape in (3, 4, 5):
        out["depth"] = Gauge(draw(GAUGE_VALUE), draw(AT_MS))
    if shape == 5:
        out["seen"] = Gauge(float(draw(AT_MS)) / 1000, draw(AT_MS))
    if shape == 3:
        out["count"] = 1
    return out


EVENT = st.tuples(st.sampled_from(KEYS), st.integers(NOW - 300, NOW), values())


def record(keys: tuple[str, ...], at: int, vals: dict) -> MetricRecord:
    paths, numbers, kinds = flatten_all(vals, Limits())
    if kinds is None:
        return MetricRecord(at, keys, paths, numbers, keys[-1])
    return KindsRecord(at, keys, paths, numbers, keys[-1], kinds)


def cut(items: list, sizes: list[int]) -> list[list]:
    """``items`` in consecutive chunks of ``sizes`` (cycled), the last one what is left."""
    chunks, i, k = [], 0, 0
    while i < len(items):
        size = sizes[k % len(sizes)]
        chunks.append(items[i : i + size])
        i, k = i + size, k + 1
    return chunks


def aggregate(chunks: list[list[MetricRecord]]) -> dict:
    """What the aggregator folds from one record per chunk, as comparable rows."""
    codec, fold = MetricCodec("prop"), PartitionFold(Limits(), BatchDecoder())
    for offset, chunk in enumerate(chunks):
        if chunk:
            assert fold.add_record(codec.encode(chunk), offset, NOW * 1000) == []
    return canonical(fold.rows())


def canonical(rows: FoldRows) -> dict:
    out: dict = {}
    for i in range(len(rows)):
        if rows.has_kinds and rows.kind[i]:
            keys, counts = rows.sketch_keys[i], rows.sketch_counts[i]
            quantiles = [
                sketch.quantile(keys, counts, q, rows.vmin[i], rows.vmax[i])
                for q in (0.0, 0.5, 0.9, 0.99, 1.0)
            ]
            slot = (rows.keys[i], rows.minute[i], rows.kind[i], rows.path[i])
            value = (keys, counts, rows.stats[i], rows.vmin[i], rows.vmax[i], rows.last[i])
            value += (quantiles if keys else [],)
        else:
            slot = (rows.keys[i], rows.minute[i], rows.paths[i])
            value = rows.values[i]
        assert slot not in out
        out[slot] = value
    return out


def fold_rounds(chunks: list[list[MetricRecord]]) -> list[list[MetricRecord]]:
    folder = RecordFolder(MAX_ABS_VALUE)
    out = []
    for chunk in chunks:
        folded, weigh = folder.fold(chunk)
        assert weigh(folded) == len(chunk)  # every tracked event is still counted once
        assert len(folded) <= len(chunk) + 2 * len({(r.keys, r.at // 60) for r in chunk})
        out.append(folded)
    return out


@settings(max_examples=400, deadline=None)
@given(
    st.lists(EVENT, min_size=1, max_size=60),
    st.lists(st.integers(1, 25), min_size=1, max_size=4),
    st.lists(st.integers(1, 40), min_size=1, max_size=3),
)
def test_folded_and_unfolded_streams_make_the_same_rollups(events, windows, records):
    stream = [record(*e) for e in events]
    rounds = cut(stream, windows)  # the sender's fold windows
    want = aggregate(rounds)
    folded = fold_rounds(rounds)
    assert aggregate(folded) == want
    # the packer may cut a round into several Kafka records: the rollups do not change
    assert aggregate([c for r in folded for c in cut(r, records)]) == want
    # folding what was folded changes nothing (split and spool replay re-pack folded records)
    assert aggregate(fold_rounds(folded)) == want


def test_repeats_fold_into_one_event_per_keys_minute_and_shape():
    keys = ("calc", "calc::a")
    at = NOW - NOW % 60
    stream = [record(keys, at + i % 60, {"count": 1, "ms": i}) for i in range(1_000)]
    stream += [record(keys, at + 60, {"count": 1, "ms": 5})]  # the next minute stays apart
    folded, weigh = RecordFolder(MAX_ABS_VALUE).fold(stream)
    assert [(r.at, r.values) for r in folded] == [(at + 59, [1_000, 499_500]), (at + 60, [1, 5])]
    assert weigh(folded) == 1_001 and weigh(folded[:1]) == 1_000


def test_gauge_min_and_max_readings_travel_beside_the_last_one():
    keys = ("queue::q",)
    readings = [(3.0, 1_000), (-2.0, 2_000), (9.0, 3_000), (4.0, 9_000), (1.0, 9_000)]
    stream = [record(keys, NOW, {"depth": Gauge(v, NOW * 1000 + ms), "n": 1}) for v, ms in readings]
    folded, weigh = RecordFolder(MAX_ABS_VALUE).fold(stream)
    gauges = [r.kinds[1] for r in folded]  # type: ignore[attr-defined]
    last = NOW * 1000 + 9_000
    assert gauges == [
        [("depth", 4.0, last)],  # last by time; the tie at 9 s goes to the larger value
        [("depth", -2.0, last - 7_000)],  # the minimum
        [("depth", 9.0, last - 6_000)],  # the maximum
    ]
    assert [r.values for r in folded] == [[5], [], []] and weigh(folded) == 5


def test_sums_that_would_leave_the_value_limit_are_not_folded():
    stream = [record(("k",), NOW, {"v": 2**52 + 7}) for _ in range(3)]
    folded, weigh = RecordFolder(MAX_ABS_VALUE).fold(stream)
    assert [r.values for r in folded] == [[2**52 + 7]] * 3 and weigh(folded) == 3
    # 2^53 + 1 next to a float: a float sum of magnitudes rounds it down to the limit itself
    stream = [record(("k",), NOW, {"v": v, "f": 1.0}) for v in (2**52, 2**52 + 1)]
    folded, weigh = RecordFolder(MAX_ABS_VALUE).fold(stream)
    assert [r.values for r in folded] == [[2**52, 1.0], [2**52 + 1, 1.0]] and weigh(folded) == 2


def test_float_sums_agree_up_to_summation_order():
    keys = ("k",)
    stream = [record(keys, NOW, {"x": 0.1 * i + 1e-7}) for i in range(200)]
    want, got = aggregate([stream]), aggregate(fold_rounds([stream]))
    assert want.keys() == got.keys()
    for slot, values in want.items():
        pairs = zip(values, got[slot], strict=True)
        assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in pairs)


def test_packed_records_count_every_tracked_event_once_whatever_the_chunking():
    from tally.ingest.outbox.accumulator import _share
    from tally.ingest.outbox.packer import Packer
    from tally.ingest.outbox.ratelog import RateLimitedLog
    from tally.ingest.stats import Counters

    keys = ("queue::q",)
    stream = [
        record(keys, NOW, {"depth": Gauge(v, NOW * 1000 + ms), "n": 1})
        for v, ms in [(3.0, 1), (-2.0, 2), (9.0, 3), (4.0, 9)]
    ] + [record(("k",), NOW, {"n": 1}) for _ in range(5)]
    for step in (1, 2, 3, 2_000):  # one folded event per Kafka record, and more
        counters = Counters()
        folder = RecordFolder(MAX_ABS_VALUE)
        packer = Packer(MetricCodec("t"), step, 900 * 1024, counters, RateLimitedLog(), folder.fold)
        pending = packer.pack(0, stream, 1)
        assert sum(p.counted for p in pending) == len(stream)
        assert sum(p.events for p in pending) == 4  # main + min + max readings, one sum
        assert (counters.get("fold_events_in"), counters.get("fold_records_out")) == (9, 4)
    pieces = packer.pack(0, stream[:2], 1, fold=False)
    pieces += packer.pack(0, stream[2:4], 1, fold=False)
    _share(7, pieces)  # a folded record of 7 events split in two pieces of 2 wire events
    assert [p.counted for p in pieces] == [5, 2]
    _share(1, pieces)  # gauge-only extras stand for no tracked event of their own
    assert [p.counted for p in pieces] == [1, 0]
