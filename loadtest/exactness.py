"""Exactness: what the rollups must contain for what was sent, and the comparison."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tally.ingest.flatten import flatten
from tally.loadtest.workloads import TrackedEvent
from tally.schemas.granularity import Calendar, Granularity
from tally.schemas.limits import Limits

Slot = tuple[str, str, int, str]  # granularity, key, bucket, path


class Expected:
    """Running totals of what was tracked, per (granularity, key, bucket, path)."""

    def __init__(self, calendar: Calendar, granularities: Iterable[str]) -> None:
        self.calendar = calendar
        self.granularities = [Granularity.parse(g) for g in granularities]
        self.totals: Counter[Slot] = Counter()
        self.events = 0
        self._limits = Limits()

    def add(self, event: TrackedEvent) -> None:
        """Account for one event."""
        paths, numbers = flatten(event.values, self._limits)
        buckets = [(str(g), self.calendar.floor(event.at, g)) for g in self.granularities]
        for g, bucket in buckets:
            for key in event.keys:
                for path, number in zip(paths, numbers, strict=True):
                    self.totals[(g, key, bucket, path)] += number
        self.events += 1


@dataclass(frozen=True)
class Comparison:
    """The result of comparing rollups with expectations."""

    expected_slots: int
    actual_slots: int
    mismatches: list[tuple[Slot, float, float]]

    @property
    def exact(self) -> bool:
        """True if every slot matches to the unit and no slot is extra or missing."""
        return not self.mismatches


def fetch_totals(client, database: str = "tally") -> Counter[Slot]:
    """All rollup totals via a sync clickhouse-connect client."""
    result = client.query(
        f"SELECT granularity, key, toUnixTimestamp(bucket), path, sum(value) "
        f"FROM {database}.rollups GROUP BY granularity, key, bucket, path"
    )
    return Counter({(g, k, int(b), p): v for g, k, b, p, v in result.result_rows})


def compare(expected: Counter[Slot], actual: Counter[Slot], limit: int = 20) -> Comparison:
    """Every slot's value must be equal; returns up to ``limit`` mismatches."""
    mismatches = []
    for slot in expected.keys() | actual.keys():
        want, got = expected.get(slot, 0), actual.get(slot, 0)
        if want != got:
            mismatches.append((slot, want, got))
            if len(mismatches) >= limit:
                break
    return Comparison(len(expected), len(actual), mismatches)
