"""Replay monitors over history: when each would have fired and resolved.

The same fetch, frames, conditions and state machine as the live service, over every bucket of
``[since, until)`` with no prior state; the buckets before ``since`` only feed history.
"""

from __future__ import annotations

from dataclasses import dataclass

from tally.monitors.engine import advance, buckets_of, iso
from tally.monitors.evaluate import frames
from tally.monitors.source import fetch
from tally.monitors.spec import Monitor
from tally.read import AsyncReader


@dataclass(frozen=True)
class Event:
    """One would-be notification or state change."""

    bucket: int
    monitor: str
    segment: str
    before: str
    after: str
    notify: str
    value: float | None

    def line(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.6g}"
        segment = f" [{self.segment}]" if self.segment else ""
        what = self.notify or f"{self.before} -> {self.after}"
        return f"{iso(self.bucket)}  {what:<18} {self.monitor}{segment}  value {value}"


async def backtest(
    reader: AsyncReader, monitor: Monitor, since: int, until: int, all_changes: bool = False
) -> list[Event]:
    """Events in ``[since, until)``: notifications, or every state change with ``all_changes``."""
    calendar = (await reader.schema()).calendar
    clock = buckets_of(monitor, calendar)
    first = clock.floor(since)
    last = clock.prev(clock.floor(until))  # the last complete bucket
    if last < first:
        return []
    buckets = clock.span(clock.back(first, monitor.history), last)
    fetched = await fetch(reader, monitor, buckets, clock.next(last))
    step = advance(monitor, frames(monitor, fetched), {}, monitor.history, calendar=calendar)
    events = [
        Event(t.bucket, monitor.name, s.name, t.before, t.after, t.notify, t.value)
        for s, t in step.transitions
        if all_changes or t.notify
    ]
    return sorted(events, key=lambda e: (e.bucket, e.segment))
