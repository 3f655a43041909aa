"""The distribution sketch: DDSketch-style logarithmic buckets with relative error ``ALPHA``.

A positive sample ``v`` falls in bucket ``k = ceil(log_gamma(v))`` with
``gamma = (1 + ALPHA) / (1 - ALPHA)``: bucket ``k`` covers ``(gamma^(k-1), gamma^k]`` and its
representative value ``2 gamma^k / (1 + gamma)`` is within ``ALPHA`` (relative) of every value
in it. ``0`` has its own bucket, ``ZERO_KEY``, represented by 0 exactly. Sketches merge by
adding counts per bucket, so minutes sum exactly into hours, days, weeks and months.

Quantiles follow numpy's default (linear) definition: rank ``q (n - 1)``, interpolated between
the two neighbouring order statistics. Each of the two is replaced by its bucket's
representative (clamped to the exact min/max), so the estimate is within ``ALPHA`` of the exact
(interpolated) percentile: a convex combination of two values each within ``ALPHA``.

Samples must be ``0`` or within ``[MIN_SAMPLE, MAX_SAMPLE]``; anything else (negative, NaN,
infinite, below or above the range) is rejected with a reason (``sample_problem``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)
ZERO_KEY = -32768  # Int16 minimum: the bucket of exact zeros
MIN_SAMPLE = 1e-9
MAX_SAMPLE = float(2**53)
MIN_KEY = math.ceil(math.log(MIN_SAMPLE) / LOG_GAMMA) - 1
MAX_KEY = math.ceil(math.log(MAX_SAMPLE) / LOG_GAMMA) + 1


def sample_problem(value: object) -> str | None:
    """Why ``value`` cannot be a distribution sample, or None."""
    if type(value) is bool or not isinstance(value, int | float):
        return "non_numeric_sample"
    if value != value or value in (math.inf, -math.inf):
        return "sample_not_finite"
    if value < 0:
        return "negative_sample"
    if value == 0:
        return None
    if value < MIN_SAMPLE:
        return "sample_below_range"
    if value > MAX_SAMPLE:
        return "sample_above_range"
    return None


def key_of(value: float) -> int:
    """The bucket of a valid sample (``sample_problem(value) is None``)."""
    if value == 0:
        return ZERO_KEY
    return math.ceil(math.log(value) / LOG_GAMMA)


def representative(key: int) -> float:
    """The value that stands for bucket ``key`` (within ``ALPHA`` of all its values)."""
    if key == ZERO_KEY:
        return 0.0
    return 2.0 * GAMMA**key / (1.0 + GAMMA)


def key_problem(key: object) -> str | None:
    """Why ``key`` is not a bucket a valid sample can have, or None."""
    if type(key) is not int or not (key == ZERO_KEY or MIN_KEY <= key <= MAX_KEY):
        return "bad_sketch_bucket"
    return None


def quantile(
    keys: Sequence[int], counts: Sequence[int], q: float, vmin: float, vmax: float
) -> float | None:
    """The ``q`` quantile (0..1) of a sketch given as sorted ``keys`` with their ``counts``."""
    n = sum(counts)
    if n <= 0:
        return None
    rank = q * (n - 1)
    lo = math.floor(rank)
    frac = rank - lo
    low = _at_rank(keys, counts, lo, vmin, vmax)
    if frac == 0 or lo + 1 > n - 1:
        return low
    high = _at_rank(keys, counts, lo + 1, vmin, vmax)
    return low + frac * (high - low)


def _at_rank(keys: Sequence[int], counts: Sequence[int], rank: int, vmin: float, vmax: float):
    seen = 0
    for key, count in zip(keys, counts, strict=True):
        seen += count
        if seen > rank:
            return min(max(representative(key), vmin), vmax)
    return vmax


def buckets_of(samples: Iterable[float]) -> dict[int, int]:
    """Counts per bucket of valid ``samples`` (callers validate first)."""
    out: dict[int, int] = {}
    log, lg = math.log, LOG_GAMMA
    for v in samples:
        k = ZERO_KEY if v == 0 else math.ceil(log(v) / lg)
        out[k] = out.get(k, 0) + 1
    return out
