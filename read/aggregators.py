"""Aggregators (one number per slice of a row) and their registry.

Trifle's semantics: ``slices=n`` splits the buckets into ``n`` equal chunks and gives one value
per chunk. When the buckets do not divide evenly, the oldest remainder is dropped so the last
slice always ends at the end of the range. ``None`` points (undefined expression values) are
skipped; a slice with no defined point gives ``None``.

A new aggregator is one function registered in ``AGGREGATORS``; gauges and quantiles will add
``last`` and quantile-merging aggregators here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from tally.read.errors import ReadError

Point = float | None


def _sum(points: Sequence[float]) -> Point:
    return math.fsum(points) if points else None


def _mean(points: Sequence[float]) -> Point:
    return math.fsum(points) / len(points) if points else None


def _min(points: Sequence[float]) -> Point:
    return min(points) if points else None


def _max(points: Sequence[float]) -> Point:
    return max(points) if points else None


def _last(points: Sequence[float]) -> Point:
    return points[-1] if points else None


AGGREGATORS: Mapping[str, Callable[[Sequence[float]], Point]] = {
    "sum": _sum,
    "mean": _mean,
    "min": _min,
    "max": _max,
    "last": _last,
}


def slice_bounds(length: int, slices: int) -> list[tuple[int, int]]:
    """``(start, end)`` index pairs of ``slices`` equal chunks, aligned to the end."""
    if slices < 1:
        raise ReadError("slices must be at least 1")
    if slices > max(length, 1):
        raise ReadError(f"slices ({slices}) cannot exceed the number of buckets ({length})")
    size = length // slices
    offset = length - size * slices
    return [(offset + i * size, offset + (i + 1) * size) for i in range(slices)]


def aggregate(points: Sequence[Point], how: str, slices: int = 1) -> list[Point]:
    """One value per slice of ``points`` with aggregator ``how``."""
    try:
        fn = AGGREGATORS[how]
    except KeyError:
        raise ReadError(f"unknown aggregator {how!r} (known: {', '.join(AGGREGATORS)})") from None
    return [
        fn([p for p in points[a:b] if p is not None]) for a, b in slice_bounds(len(points), slices)
    ]
