"""From fetched rows to verdicts: segments, windowed values, and the condition per bucket.

Pure: the live service judges the newest durable bucket, a backtest every bucket of a range,
with the same code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from tally.monitors.conditions import Frame, Verdict, judge
from tally.monitors.source import Fetched
from tally.monitors.spec import Monitor, Share
from tally.read.aggregators import aggregate
from tally.read.expression import parse as parse_expression


@dataclass(frozen=True, slots=True)
class Segment:
    """One alert instance of a monitor: ``name`` ("" for an unsegmented monitor) and the
    concrete key it reads (for the dashboard link)."""

    name: str
    key: str


def _capture(pattern: str, separator: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in pattern.split("*")]
    any_run = "(.*)" if separator == "" else r"([^.]+)"
    return re.compile("^" + any_run.join(parts) + "$")


def key_segment(monitor: Monitor, key: str) -> str:
    """The part of ``key`` matched by the pattern's ``*`` (joined by ``/``)."""
    if "*" not in monitor.key:
        return ""
    m = _capture(monitor.key, "").match(key)
    return "/".join(m.groups()) if m else key


def _join(*names: str) -> str:
    return "/".join(n for n in names if n)


@dataclass(frozen=True, slots=True)
class Frames:
    """Per segment, the frame over every bucket of the range (windowed, oldest first)."""

    buckets: list[int]
    frames: dict[Segment, Frame]


def _windowed(points: list[float | None], window: int, how: str) -> list[float | None]:
    if window == 1:
        return points
    out: list[float | None] = []
    for i in range(len(points)):
        chunk = [p for p in points[max(0, i - window + 1) : i + 1] if p is not None]
        out.append(aggregate(chunk, how, 1)[0] if chunk else None)
    return out


def frames(monitor: Monitor, fetched: Fetched, known: Iterable[Segment] = ()) -> Frames:
    """Segments and their frames; ``known`` segments (from state) get one even when silent."""
    buckets = fetched.buckets
    n = len(buckets)
    zeros = [0.0] * n
    expression = parse_expression(monitor.expression) if monitor.expression else None
    active_path = getattr(monitor.condition, "active", None)
    path_capture = _capture(monitor.path, ".") if "*" in monitor.path else None
    raw: dict[Segment, tuple[list[float | None], list[bool], list[float] | None]] = {}
    keys = set(fetched.grid) | set(fetched.known_keys)
    keys |= {s.key for s in known if "*" in monitor.key}
    if "*" not in monitor.key:
        keys = {monitor.key}
    for key in sorted(keys):
        columns = {
            p: [cells.get(b) for b in buckets] for p, cells in fetched.grid.get(key, {}).items()
        }
        kseg = key_segment(monitor, key)
        active = None
        if active_path:
            active = [v or 0.0 for v in columns.get(active_path, zeros)]
        if path_capture is not None:
            for path, column in columns.items():
                m = path_capture.match(path)
                if m:
                    seg = Segment(_join(kseg, "/".join(m.groups())), key)
                    raw[seg] = ([v or 0.0 for v in column], [v is not None for v in column], active)
            continue
        present = [any(c[i] is not None for c in columns.values()) for i in range(n)]
        if expression is not None:
            values: list[float | None] = [
                expression.evaluate({p: (c[i] or 0.0) for p, c in columns.items()})
                for i in range(n)
            ]
        else:
            values = [v or 0.0 for v in columns.get(monitor.path, zeros)]
        raw[Segment(kseg, key)] = (values, present, active)
    for seg in known:
        if seg not in raw and (path_capture is not None or "*" in monitor.key):
            raw[seg] = (list(zeros), [False] * n, None if not active_path else list(zeros))
    out: dict[Segment, Frame] = {}
    windowed = {s: _windowed(v, monitor.window, monitor.aggregate) for s, (v, _, _) in raw.items()}
    if monitor.count_above is not None:
        # One alert for the whole set: how many segments are above the line per bucket.
        counts: list[float | None] = [
            float(sum(1 for w in windowed.values() if (w[i] or 0.0) > monitor.count_above))
            for i in range(n)
        ]
        present = [any(p[i] for _, p, _ in raw.values()) for i in range(n)]
        return Frames(buckets, {Segment("", monitor.key): Frame(counts, present)})
    totals = None
    if isinstance(monitor.condition, Share):
        totals = [sum((w[i] or 0.0) for w in windowed.values()) for i in range(n)]
    for seg, (_, present, active) in raw.items():
        act = _windowed(active, monitor.window, "sum") if active is not None else None
        out[seg] = Frame(windowed[seg], present, act, totals)  # type: ignore[arg-type]
    return Frames(buckets, out)


def verdict_at(monitor: Monitor, frame: Frame, index: int) -> Verdict:
    """The verdict on bucket ``index`` from the frame's history up to it."""
    lo = max(0, index - monitor.history)
    hi = index + 1
    return judge(
        monitor.condition,
        Frame(
            frame.values[lo:hi],
            frame.present[lo:hi],
            None if frame.active is None else frame.active[lo:hi],
            None if frame.totals is None else frame.totals[lo:hi],
        ),
    )
