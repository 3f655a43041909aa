"""What one producer sent, kept compactly, and the exact totals the rollups must hold for it.

A producer replays its template pool in order, so what it sent in a minute is a run of
consecutive pool indices (wrapping around). Keeping ``(minute, start, count)`` per chunk costs
nothing on the hot path; at the end the runs become a count per template per minute, and
``Expected`` gets each template once per minute with its values multiplied by that count.
All values are integers, so the totals are the same as adding every event one by one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tally.loadtest.exactness import Expected
from tally.loadtest.scenarios import scaled
from tally.loadtest.workloads import TrackedEvent
from tally.schemas.granularity import Calendar


@dataclass
class SendLog:
    """Runs of pool indices sent per minute, minus the events ``track`` refused."""

    pool_size: int
    runs: list[tuple[int, int, int]] = field(default_factory=list)
    refused: list[tuple[int, int]] = field(default_factory=list)

    def sent(self, minute: int, start: int, count: int) -> None:
        """``count`` events from pool index ``start`` on (wrapping) were tracked in ``minute``."""
        if count > 0:
            self.runs.append((minute, start % self.pool_size, count))

    def refuse(self, minute: int, index: int) -> None:
        """The event of pool index ``index`` in ``minute`` was not accepted by ``track``."""
        self.refused.append((minute, index))

    @property
    def events(self) -> int:
        """Events accepted by ``track``."""
        return sum(run[2] for run in self.runs) - len(self.refused)

    def counts(self) -> dict[int, list[int]]:
        """Per minute start, how many times each pool index was accepted."""
        size = self.pool_size
        diffs: dict[int, list[int]] = defaultdict(lambda: [0] * (size + 1))
        for minute, start, count in self.runs:
            full, rest = divmod(count, size)
            diff = diffs[minute]
            if full:
                diff[0] += full
                diff[size] -= full
            end = start + rest
            if end <= size:
                diff[start] += 1
                diff[end] -= 1
            else:  # wraps around the end of the pool
                diff[start] += 1
                diff[size] -= 1
                diff[0] += 1
                diff[end - size] -= 1
        out: dict[int, list[int]] = {}
        for minute, diff in diffs.items():
            running, counts = 0, []
            for step in diff[:size]:
                running += step
                counts.append(running)
            out[minute] = counts
        for minute, index in self.refused:
            out[minute][index] -= 1
        return out

    def expected(
        self, templates: Sequence[TrackedEvent], calendar: Calendar, granularities: Iterable[str]
    ) -> Expected:
        """Totals for everything accepted (one ``Expected.add`` per template and minute)."""
        if len(templates) != self.pool_size:
            raise ValueError("templates do not match the pool size")
        expected = Expected(calendar, granularities)
        for minute, counts in sorted(self.counts().items()):
            for index, count in enumerate(counts):
                if count:
                    t = templates[index]
                    expected.add(TrackedEvent(t.keys, scaled(t.values, count), minute, t.route))
        expected.events = self.events
        return expected


def merge_totals(parts: Iterable[Counter]) -> Counter:
    """Sum partial totals (``Counter.update`` adds, and keeps zero and negative sums)."""
    merged: Counter = Counter()
    for part in parts:
        merged.update(part)
    return merged
