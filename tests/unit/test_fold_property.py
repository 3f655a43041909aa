"""Property: whatever a record holds, the fold counts exactly its valid events."""

from __future__ import annotations

import math

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.aggregator.fold import PartitionFold
from tally.schemas.limits import Limits
from tally.schemas.wire import BatchDecoder

NOW = 1_763_600_000
GOOD_VALUE = st.integers(-(10**9), 10**9)
BAD_VALUE = st.one_of(
    st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.integers(2**54, 2**63),
    st.text(max_size=3), st.booleans(), st.none(), st.lists(st.integers(0, 9), max_size=2),
)  # fmt: skip
GOOD_EVENT = st.tuples(st.integers(NOW - 3600, NOW), st.lists(GOOD_VALUE, min_size=2, max_size=2))
BAD_EVENT = st.one_of(
    st.tuples(st.integers(NOW - 3600, NOW), st.lists(BAD_VALUE, min_size=2, max_size=2)),
    st.tuples(st.integers(0, NOW - 30 * 86400), st.lists(GOOD_VALUE, min_size=2, max_size=2)),
    st.tuples(st.integers(NOW + 7200, NOW + 10**9), st.lists(GOOD_VALUE, min_size=2, max_size=2)),
    st.tuples(st.integers(NOW - 3600, NOW), st.lists(GOOD_VALUE, min_size=0, max_size=1)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.data()), min_size=1, max_size=30))
def test_fold_counts_valid_events_and_rejects_the_rest(items):
    events, want_count, want_sum, want_first, want_bad = [], 0, 0, 0, 0
    for good, data in items:
        at, values = data.draw(GOOD_EVENT if good else BAD_EVENT)
        events.append([at, 0, 0, values])
        if good:
            want_count += 1
            want_first += values[0]
            want_sum += values[1]
        else:
            want_bad += 1
    payload = msgspec.msgpack.encode([1, "p", ["k", "count", "v"], [[0]], [[1, 2]], events])
    fold = PartitionFold(Limits(), BatchDecoder())
    rejects = fold.add_record(payload, 0, NOW * 1000)
    assert len(rejects) == want_bad
    assert fold.events == want_count
    rows = fold.rows()
    by_path: dict[str, float] = {}
    for paths, values in zip(rows.paths, rows.values, strict=True):
        for path, value in zip(paths, values, strict=True):
            by_path[path] = by_path.get(path, 0) + value
    assert by_path.get("v", 0) == want_sum
    assert by_path.get("count", 0) == want_first


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(payload):
    fold = PartitionFold(Limits(), BatchDecoder())
    rejects = fold.add_record(payload, 5, NOW * 1000)
    assert fold.events + len(rejects) >= 1 or payload == b""
