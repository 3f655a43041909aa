"""Conditions: whether the last bucket of a segment's series breaches, from its history.

Pure functions on lists, so live evaluation and backtests judge the same way. ``values`` are
the segment's (windowed) values oldest first, the judged bucket last; ``None`` means the value
is undefined there (an expression dividing by zero).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from tally.monitors.spec import (
    Anomaly,
    Condition,
    Drift,
    Expected,
    NoData,
    Range,
    Share,
    Threshold,
    Zero,
)


@dataclass(frozen=True, slots=True)
class Frame:
    """A segment's inputs: values, whether the key was written per bucket, the ``active``
    path's values (zero condition) and the total over all segments (share condition)."""

    values: list[float | None]
    present: list[bool]
    active: list[float] | None = None
    totals: list[float] | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """``breach`` True/False, or None when there is no value to judge (no data)."""

    breach: bool | None
    value: float | None


def judge(condition: Condition, frame: Frame) -> Verdict:
    """The verdict on the last bucket of ``frame``."""
    x = frame.values[-1] if frame.values else None
    match condition:
        case NoData():
            present = bool(frame.present and frame.present[-1])
            return Verdict(not present, x)
        case Expected(fewer_than=lo, more_than=hi):
            v = 0.0 if x is None else x
            return Verdict((lo is not None and v < lo) or (hi is not None and v > hi), v)
        case Zero():
            return _zero(condition, frame)
        case Share():
            return _share(condition, frame)
    if x is None:
        return Verdict(None, None)
    match condition:
        case Threshold(above=hi, below=lo):
            return Verdict((hi is not None and x > hi) or (lo is not None and x < lo), x)
        case Range(min=lo, max=hi):
            return Verdict(x < lo or x > hi, x)
        case Drift():
            return _drift(condition, frame.values)
        case Anomaly():
            return _anomaly(condition, frame.values)
    raise TypeError(f"unknown condition {condition!r}")


def _zero(c: Zero, frame: Frame) -> Verdict:
    streak = 0
    last = frame.values[-1] if frame.values else None
    for i in range(len(frame.values) - 1, -1, -1):
        if frame.active is not None and frame.active[i] <= 0:
            if i == len(frame.values) - 1:
                return Verdict(None, last)  # the judged bucket had no run: nothing to say
            continue
        value = frame.values[i] or 0.0
        if value != 0:
            break
        streak += 1
        if streak >= c.buckets:
            return Verdict(True, 0.0)
    return Verdict(False, 0.0 if last is None else last)


def _share(c: Share, frame: Frame) -> Verdict:
    totals = frame.totals or []
    shares = [
        None if (t or 0.0) <= max(c.min_total, 0.0) else (v or 0.0) / t
        for v, t in zip(frame.values, totals, strict=False)
    ]
    if not shares or shares[-1] is None:
        return Verdict(None, None)
    now = shares[-1]
    breach = c.above is not None and now > c.above
    if c.jump is not None:
        past = [s for s in shares[:-1][-c.history :] if s is not None]
        if past:
            breach = breach or now - statistics.fmean(past) > c.jump
    return Verdict(breach, now)


def _defined(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _drift(c: Drift, values: list[float | None]) -> Verdict:
    window = _defined(values[-c.history :])
    x = values[-1]
    if len(window) < 3:
        return Verdict(None, x)
    baseline = window[: max(3, 2 * len(window) // 3)]
    mean = statistics.fmean(baseline)
    sd = max(statistics.pstdev(baseline), c.min_sd)
    up = down = 0.0
    for v in window:
        z = (v - mean) / sd
        up = max(0.0, up + z - c.k)
        down = max(0.0, down - z - c.k)
    score = {"up": up, "down": down, "both": max(up, down)}[c.direction]
    return Verdict(score > c.h, x)


def _anomaly(c: Anomaly, values: list[float | None]) -> Verdict:
    x = values[-1]
    past = _defined(values[:-1][-c.history :])
    if x is None or len(past) < 3:
        return Verdict(None, x)
    median = statistics.median(past)
    mad = 1.4826 * statistics.median([abs(v - median) for v in past])
    scale = max(mad, c.floor)
    diff = x - median
    if c.direction == "up":
        breach = diff > c.k * scale
    elif c.direction == "down":
        breach = -diff > c.k * scale
    else:
        breach = abs(diff) > c.k * scale
    return Verdict(breach, x)
