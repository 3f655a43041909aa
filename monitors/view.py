"""One monitor as its page shows it: the value it judged per bucket (the same fetch, frames and
conditions as the live service), the lines it compares that value with, and its firing
windows from the stored transition history."""

from __future__ import annotations

import time

import msgspec

from tally.monitors.engine import buckets_of
from tally.monitors.evaluate import Segment, frames, verdict_at
from tally.monitors.source import fetch
from tally.monitors.spec import Expected, Monitor, Range, Threshold
from tally.read import AsyncReader

BEFORE, AFTER = 30, 10  # buckets drawn around the one asked for


class Line(msgspec.Struct, frozen=True):
    """A fixed line the judged value is compared with (``above``: breach above it)."""

    label: str
    value: float
    breach: str  # above | below


class Window(msgspec.Struct, frozen=True):
    """One firing episode of a segment: from its first breaching bucket (``since``) and the
    bucket that fired, to the bucket that resolved it (``None``: still firing)."""

    since: int
    fired: int
    resolved: int | None


class Judged(msgspec.Struct, frozen=True):
    """The judged value and verdict per bucket (bucket starts, unix seconds)."""

    granularity: str
    buckets: list[int]
    ends: list[int]
    values: list[float | None]
    breach: list[bool | None]


def lines(m: Monitor) -> list[Line]:
    """The fixed lines of ``m``'s condition (none for drift, anomaly, zero, share, no data);
    with ``count_segments_above`` they apply to the count of segments."""
    c = m.condition
    found: list[Line] = []
    if isinstance(c, Threshold):
        found += [Line("above", c.above, "above")] if c.above is not None else []
        found += [Line("below", c.below, "below")] if c.below is not None else []
    elif isinstance(c, Range):
        found += [Line("max", c.max, "above"), Line("min", c.min, "below")]
    elif isinstance(c, Expected):
        found += [Line("more than", c.more_than, "above")] if c.more_than is not None else []
        found += [Line("fewer than", c.fewer_than, "below")] if c.fewer_than is not None else []
    return found


async def judged(reader: AsyncReader, m: Monitor, segment: Segment, at: int) -> Judged:
    """The values ``m`` judged for ``segment`` from ``BEFORE`` buckets before ``at`` to
    ``AFTER`` after it (complete buckets only)."""
    clock = buckets_of(m, (await reader.schema()).calendar)
    at = clock.floor(at)
    first, last = clock.back(at, BEFORE), at
    newest = clock.prev(clock.floor(int(time.time())))  # the last complete bucket
    for _ in range(AFTER):
        if clock.next(last) > newest:
            break
        last = clock.next(last)
    buckets = clock.span(clock.back(first, m.history), last)
    fetched = await fetch(reader, m, buckets, clock.next(last))
    framed = frames(m, fetched, [segment])
    frame = next((f for s, f in framed.frames.items() if s.name == segment.name), None)
    values: list[float | None] = []
    breach: list[bool | None] = []
    for i in range(m.history, len(buckets)):
        v = verdict_at(m, frame, i) if frame is not None else None
        values.append(None if v is None else v.value)
        breach.append(None if v is None else v.breach)
    shown = buckets[m.history :]
    ends = [clock.next(b) for b in shown]
    return Judged(str(m.granularity), shown, ends, values, breach)


def windows(history: list[tuple[int, str, str, int]]) -> list[Window]:
    """Firing windows from ``(bucket, before, after, since)`` transitions, oldest first (a
    transition recorded twice, after a restart, counts once)."""
    out: list[Window] = []
    open_: Window | None = None
    for bucket, before, after, since in sorted(history):
        if after == "firing" and before != "firing" and open_ is None:
            open_ = Window(since or bucket, bucket, None)
        elif after == "resolved" and open_ is not None:
            out.append(Window(open_.since, open_.fired, bucket))
            open_ = None
    return [*out, open_] if open_ is not None else out
