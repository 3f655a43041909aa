from tally.aggregator.rows import COLUMNS, KIND_COLUMNS, KIND_DIST, KIND_SUM, FoldRows, concat_rows


def summed(key: str, minute: int) -> FoldRows:
    return FoldRows([(key,)], [minute], [("count",)], [[1.0]])


def test_summed_parts_concatenate_in_order_without_kind_columns():
    rows = concat_rows([summed("a", 60), summed("b", 120)])
    assert rows.keys == [("a",), ("b",)] and rows.minute == [60, 120]
    assert rows.column_names() == COLUMNS


def test_a_part_with_kinds_gives_every_row_every_column():
    dist = FoldRows(
        [("d",)], [60], [()], [[]], [KIND_DIST], ["lat"], [[1, 2]], [[3, 4]], [[7.0, 1.0, 2.0]],
        [0.5], [9.0], [(0, 0.0)],
    )  # fmt: skip
    rows = concat_rows([summed("a", 60), dist, summed("b", 120)])
    assert rows.column_names() == COLUMNS + KIND_COLUMNS
    assert all(len(getattr(rows, n)) == 3 for n in COLUMNS + KIND_COLUMNS)
    assert rows.kind == [KIND_SUM, KIND_DIST, KIND_SUM]
    assert rows.path == ["", "lat", ""] and rows.vmin == [None, 0.5, None]
