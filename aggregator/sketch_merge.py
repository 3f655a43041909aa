"""Merging one more sketch into a fold's distribution entry.

An entry is ``[count, sum, square, min, max, buckets]`` (``buckets``: bucket key -> count).
The event-by-event fold (``fold.py``) merges each event's sketch with :func:`merge_sketch`;
the column fold keeps distribution rows as arrays and reduces them with numpy
(``column_state.py``), appending what the event fold holds when ``rows()`` merges the two. The
sums stay with the caller: the event fold adds them per event.
"""

from __future__ import annotations

from collections.abc import Iterable

from tally.aggregator.fold_bytes import DIST_BUCKET_BYTES


def merge_sketch(
    entry: list, count: int, vmin: float, vmax: float, keys: Iterable[int], counts: Iterable[int]
) -> int:
    """Add ``count`` samples, their extremes and their bucket counts (``keys`` with ``counts``)
    to ``entry``; returns the bytes its new buckets cost."""
    entry[0] += count
    if vmin < entry[3]:
        entry[3] = vmin
    if vmax > entry[4]:
        entry[4] = vmax
    buckets = entry[5]
    before = len(buckets)
    for k, n in zip(keys, counts, strict=True):
        buckets[k] = buckets.get(k, 0) + n
    return DIST_BUCKET_BYTES * (len(buckets) - before)
