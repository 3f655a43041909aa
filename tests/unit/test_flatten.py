import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.ingest.flatten import InvalidValues, flatten
from tally.schemas.limits import Limits

LIMITS = Limits()


def test_nested_values_become_dotted_paths_in_order():
    paths, numbers = flatten(
        {"count": 1, "duration": {"count": 1, "sum": 2.5, "square": 6.25}, "codes": {"OK": 1}},
        LIMITS,
    )
    assert paths == ("count", "duration.count", "duration.sum", "duration.square", "codes.OK")
    assert numbers == [1, 1, 2.5, 6.25, 1]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"a": "1"}, "non_numeric"),
        ({"a": True}, "non_numeric"),
        ({"a": None}, "non_numeric"),
        ({"a": math.nan}, "not_finite"),
        ({"a": {"b": math.inf}}, "not_finite"),
        ({"a": 2**60}, "huge_value"),
        ({"a.b": 1}, "bad_path"),
        ({"": 1}, "bad_path"),
        ({1: 1}, "bad_path"),
        ({}, "empty"),
        ({"a": {}}, "empty"),
    ],
)
def test_invalid_values_are_rejected_with_a_reason(values, reason):
    with pytest.raises(InvalidValues) as info:
        flatten(values, LIMITS)
    assert info.value.reason == reason


def test_depth_and_size_limits():
    deep: dict = {"x": 1}
    for _ in range(LIMITS.max_depth):
        deep = {"n": deep}
    with pytest.raises(InvalidValues, match="too_deep"):
        flatten(deep, LIMITS)
    with pytest.raises(InvalidValues, match="too_many_values"):
        flatten({f"k{i}": 1 for i in range(LIMITS.max_values + 1)}, LIMITS)
    with pytest.raises(InvalidValues, match="path_too_long"):
        flatten({"a" * (LIMITS.max_path_length + 1): 1}, LIMITS)


def test_int_subclasses_are_plain_numbers():
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    _paths, numbers = flatten({"level": Level.HIGH}, LIMITS)
    assert numbers == [3] and type(numbers[0]) is int


names = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
leaves = st.one_of(st.integers(-(2**40), 2**40), st.floats(-1e9, 1e9, allow_nan=False))
trees = st.recursive(
    leaves, lambda kids: st.dictionaries(names, kids, min_size=1, max_size=4), max_leaves=20
)


@given(st.dictionaries(names, trees, min_size=1, max_size=5))
def test_flatten_keeps_every_leaf_once(values):
    paths, numbers = flatten(values, LIMITS)

    def count(node):
        return sum(count(v) for v in node.values()) if isinstance(node, dict) else 1

    assert len(paths) == len(set(paths)) == count(values)
    for path, number in zip(paths, numbers, strict=True):
        node = values
        for part in path.split("."):
            node = node[part]
        assert node == number
