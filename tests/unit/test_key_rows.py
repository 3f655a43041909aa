"""The key index rows the aggregator writes: the facts the retired views produced, new ones only."""

from __future__ import annotations

from tally.aggregator.key_rows import DAY_S, WrittenKeys
from tally.aggregator.rows import KIND_DIST, KIND_GAUGE, KIND_SUM, FoldRows

DAY = 20_000 * DAY_S  # a UTC midnight
M = 60


def summed(rows: list[tuple[tuple[str, ...], int, tuple[str, ...]]]) -> FoldRows:
    return FoldRows(
        [k for k, _, _ in rows], [m for _, m, _ in rows], [p for _, _, p in rows],
        [[1.0] * len(p) for _, _, p in rows],
    )  # fmt: skip


def test_days_and_paths_per_key_as_the_views_gave_them():
    rows = summed(
        [
            (("a", "a::t1"), DAY + 5 * M, ("count", "ok")),
            (("a", "a::t2"), DAY + 9 * M, ("count",)),
            (("a",), DAY + DAY_S + 1 * M, ("count",)),  # next UTC day
        ]
    )
    index = WrittenKeys().new_rows(rows)
    assert sorted(index.days) == [
        ("a", 20_000, DAY + 5 * M, DAY + 9 * M),
        ("a", 20_001, DAY + DAY_S + M, DAY + DAY_S + M),
        ("a::t1", 20_000, DAY + 5 * M, DAY + 5 * M),
        ("a::t2", 20_000, DAY + 9 * M, DAY + 9 * M),
    ]
    assert sorted(index.paths) == [
        ("a", "count", DAY + DAY_S + M),
        ("a", "ok", DAY + 5 * M),
        ("a::t1", "count", DAY + 5 * M),
        ("a::t1", "ok", DAY + 5 * M),
        ("a::t2", "count", DAY + 9 * M),
    ]
    assert sorted(index.day_columns()[0]) == ["a", "a", "a::t1", "a::t2"]
    assert len(index.path_columns()) == 3


def test_distributions_and_gauges_list_their_paths():
    rows = FoldRows(
        [("a",), ("a",), ("a",)], [DAY, DAY, DAY], [("count",), (), ()], [[1.0], [], []],
        kind=[KIND_SUM, KIND_DIST, KIND_GAUGE], path=["", "ms", "queue"],
        sketch_keys=[[], [1], []], sketch_counts=[[], [1], []], stats=[[], [1, 2, 4], []],
        vmin=[None, 2.0, 3.0], vmax=[None, 2.0, 3.0], last=[(0, 0.0), (0, 0.0), (1, 3.0)],
    )  # fmt: skip
    paths = sorted(p for _, p, _ in WrittenKeys().new_rows(rows).paths)
    assert paths == ["count", "ms", "ms.count", "ms.square", "ms.sum", "queue"]


def test_only_new_facts_are_written_and_only_once_acknowledged():
    written = WrittenKeys()
    first = written.new_rows(summed([(("a",), DAY + 5 * M, ("count",))]))
    assert first
    # not acknowledged (the insert failed): the retry writes it again
    assert written.new_rows(summed([(("a",), DAY + 5 * M, ("count",))])) == first
    written.remember(first)
    # same minute, same day, same paths: nothing to write
    assert not written.new_rows(summed([(("a",), DAY + 5 * M, ("count",))]))
    later = written.new_rows(summed([(("a",), DAY + 7 * M, ("count",))]))
    assert later.days == [("a", 20_000, DAY + 7 * M, DAY + 7 * M)]
    assert later.paths == [("a", "count", DAY + 7 * M)]
    written.remember(later)
    earlier_day_start = written.new_rows(summed([(("a",), DAY + 1 * M, ("count",))]))
    assert earlier_day_start.days == [("a", 20_000, DAY + M, DAY + M)]  # a new first_seen
    assert not earlier_day_start.paths


def test_memory_is_bounded_and_forgetting_only_rewrites():
    written = WrittenKeys(capacity=4)
    for i in range(10):
        index = written.new_rows(summed([((f"k{i}",), DAY, ("count",))]))
        written.remember(index)
        assert len(written) <= 4
    again = written.new_rows(summed([(("k0",), DAY, ("count",))]))
    assert again.days == [("k0", 20_000, DAY, DAY)]  # forgotten: written again (idempotent)
