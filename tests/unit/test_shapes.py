"""``ShapeCache.flatten`` returns and raises exactly what ``flatten_all`` does, cached or not."""

from __future__ import annotations

import enum
import math
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.ingest.flatten import InvalidValues, flatten_all
from tally.ingest.kinds import dist, gauge
from tally.ingest.shapes import ShapeCache
from tally.schemas.limits import Limits

LIMITS = Limits(max_depth=3, max_values=12, max_path_length=24)


class Level(enum.IntEnum):
    HIGH = 3


NAMES = st.sampled_from(["count", "sum", "a", "b", "x.y", "", "n\udcff", "é", "k" * 30])
LEAF = st.one_of(
    st.integers(-(2**53), 2**53),
    st.sampled_from([2**53 + 1, -(2**60), 0.5, -0.0, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from([None, "1", Level.HIGH, dist(3.0), gauge(2.0, at=1.0)]),
)
VALUES = st.recursive(
    LEAF, lambda inner: st.dictionaries(NAMES, inner, max_size=4), max_leaves=14
).filter(lambda v: isinstance(v, dict))


def outcome(call, values):
    try:
        paths, numbers, kinds = call(values)
    except InvalidValues as exc:
        return ("raises", exc.reason)
    return (paths, [(type(n), n if n == n else "nan") for n in numbers], kinds)


@settings(max_examples=600, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=8), st.integers(0, 7))
def test_the_cache_agrees_with_flatten_all(events, repeat):
    cache = ShapeCache(LIMITS)
    for values in events + events[:repeat] + events:  # each shape seen first and again
        assert outcome(cache.flatten, values) == outcome(lambda v: flatten_all(v, LIMITS), values)


def test_a_known_shape_still_rejects_bad_numbers_with_the_reason():
    cache = ShapeCache(Limits())
    good = {"count": 1, "d": {"sum": 2, "square": 4.0}}
    assert cache.flatten(good) == (("count", "d.sum", "d.square"), [1, 2, 4.0], None)
    assert cache.flatten({"count": 7, "d": {"sum": 8, "square": 9.5}})[1] == [7, 8, 9.5]
    for bad, reason in [
        ({"count": True, "d": {"sum": 2, "square": 4.0}}, "non_numeric"),
        ({"count": 1, "d": {"sum": math.nan, "square": 4.0}}, "not_finite"),
        ({"count": 1, "d": {"sum": 2**54, "square": 4.0}}, "huge_value"),
        ({"count": 1, "d": {"sum": {"deeper": 1}, "square": 4.0}}, None),
    ]:
        if reason is None:  # one level deeper: a different shape, flattened in full
            assert cache.flatten(bad)[0] == ("count", "d.sum.deeper", "d.square")
            continue
        with pytest.raises(InvalidValues) as caught:
            cache.flatten(bad)
        assert caught.value.reason == reason
    subclass = {"count": Level.HIGH, "d": {"sum": 2, "square": 4.0}}
    assert cache.flatten(subclass)[1] == [3, 2, 4.0]
    assert type(cache.flatten(subclass)[1][0]) is int  # stored as a plain int, as before
    assert cache.flatten(OrderedDict(good))[0] == ("count", "d.sum", "d.square")


def test_numbers_are_copied_so_later_mutation_changes_nothing():
    cache = ShapeCache(Limits())
    values = {"a": 1, "b": {"c": 2}, "d": 3}
    cache.flatten(values)
    _, numbers, _ = cache.flatten(values)
    values["a"] = 100
    values["b"]["c"] = 200
    assert numbers == [1, 2, 3]
