"""Screens of a record's distribution and gauge columns, every row at once.

A record passes only if each distribution row would pass ``checks`` event by event (valid
samples, consistent count/sum/min/max, sorted sketch buckets whose counts add up and whose
ends are the keys of min and max) and each gauge has a value within the cap and a storable
time. The column fold (``vfold``) folds nothing of a record that fails.
"""

from __future__ import annotations

import numpy as np

from tally.aggregator.columns import Columns
from tally.schemas import sketch
from tally.schemas.limits import MAX_EVENT_TIME, MIN_EVENT_TIME

NEAR_INTEGER = 1e-6  # log-ratios this close to a bucket edge get math.log's exact answer


def _valid_samples(v: np.ndarray) -> bool:
    return bool(((v == 0) | ((v >= sketch.MIN_SAMPLE) & (v <= sketch.MAX_SAMPLE))).all())


def dists_ok(c: Columns) -> bool:
    """Every distribution row passes ``checks._dist_problem`` (computed for all rows at once)."""
    if not len(c.dist_path):
        return True
    cnt, total, square, vmin, vmax = c.dist_count, c.dist_sum, c.dist_square, c.dist_min, c.dist_max
    bo, bk, bc = c.bucket_offsets, c.bucket_keys, c.bucket_counts
    if not _valid_samples(vmin) or not _valid_samples(vmax):
        return False
    if not ((square >= 0) & (square < np.inf)).all():
        return False
    if not ((bk == sketch.ZERO_KEY) | ((bk >= sketch.MIN_KEY) & (bk <= sketch.MAX_KEY))).all():
        return False
    if len(bc) and bc.min() < 1:
        return False
    nb = np.diff(bo)
    single = (cnt == 1) & (nb == 1)
    if single.any():
        first = bo[:-1][single]
        if not (
            (vmax[single] == vmin[single]) & (total[single] == vmin[single]) & (bc[first] == 1)
        ).all():
            return False
    multi = np.flatnonzero(~single)
    if not len(multi):
        return True
    m_cnt, m_min, m_max, m_sum = cnt[multi], vmin[multi], vmax[multi], total[multi]
    if not (
        (m_cnt >= 1)
        & (m_cnt <= sketch.MAX_SAMPLE)
        & (m_min <= m_max)
        & (m_sum >= 0)
        & (m_sum < np.inf)
    ).all():
        return False
    cumulative = np.concatenate(([0], np.cumsum(bc)))
    if not np.array_equal(cumulative[bo[multi + 1]] - cumulative[bo[multi]], m_cnt):
        return False  # also a row without buckets (count >= 1)
    if len(bk) > 1:
        same_row = np.ones(len(bk) - 1, bool)
        starts = bo[1:-1]
        same_row[starts[(starts > 0) & (starts < len(bk))] - 1] = False
        if ((np.diff(bk) <= 0) & same_row).any():
            return False
    if not np.array_equal(key_of(m_min), bk[bo[multi]]):
        return False
    return np.array_equal(key_of(m_max), bk[bo[multi + 1] - 1])


def key_of(v: np.ndarray) -> np.ndarray:
    """``sketch.key_of`` of valid samples; near a bucket edge, ``math.log`` decides."""
    positive = v > 0
    x = np.log(np.where(positive, v, 1.0)) / sketch.LOG_GAMMA
    keys = np.where(positive, np.ceil(x), sketch.ZERO_KEY).astype(np.int64)
    for i in np.flatnonzero(positive & (np.abs(x - np.rint(x)) < NEAR_INTEGER)).tolist():
        keys[i] = sketch.key_of(float(v[i]))
    return keys


def gauges_ok(c: Columns, cap: float) -> bool:
    """Every gauge has a finite value within ``cap`` and a storable time."""
    if not len(c.gauge_path):
        return True
    at_ms = c.gauge_at_ms
    return bool(
        (np.abs(c.gauge_value) <= cap).all()
        and at_ms.min() >= MIN_EVENT_TIME * 1000
        and at_ms.max() <= MAX_EVENT_TIME * 1000
    )
