"""The split of a rejected range is a function of the range alone (replays repeat it)."""

from __future__ import annotations

from tally.engine.isolator import halves


def leaves(start: int, end: int) -> list[tuple[int, int]]:
    """Every range the isolation could try, depth first, as ``Isolator.isolate`` pops them."""
    out, todo = [], halves(start, end)
    while todo:
        a, b = todo.pop()
        out.append((a, b))
        if a < b:
            todo.extend(halves(a, b))
    return out


def test_halves_cover_the_range_without_overlap_and_end_in_single_offsets():
    tried = leaves(100, 131)
    singles = sorted(a for a, b in tried if a == b)
    assert singles == list(range(100, 132))
    assert tried == leaves(100, 131)  # deterministic
    assert (100, 131) not in tried  # the whole range is never tried again under a new token
    assert halves(7, 7) == [(7, 7)]
