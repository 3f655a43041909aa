"""Exactness: what the rollups must contain for what was sent, and the comparison."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tally.ingest.flatten import flatten
from tally.loadtest.workloads import TrackedEvent
from tally.schemas.ddl import identifier
from tally.schemas.granularity import Calendar, Granularity
from tally.schemas.limits import Limits

Slot = tuple[str, str, int, str]  # granularity, key, bucket, path


class Expected:
    """Running totals of what was tracked, per (granularity, key, bucket, path).

    Events are summed per (keys, minute, paths) as they arrive and expanded to slots only
    when ``totals`` is read, so a million events cost seconds, not minutes.
    """

    def __init__(self, calendar: Calendar, granularities: Iterable[str]) -> None:
        self.calendar = calendar
        self.granularities = [Granularity.parse(g) for g in granularities]
        self.events = 0
        self._limits = Limits()
        self._sums: dict[tuple[tuple[str, ...], int, tuple[str, ...]], list] = {}
        self._totals: Counter[Slot] | None = None

    def add(self, event: TrackedEvent) -> None:
        """Account for one event."""
        self.add_raw(event.keys, event.values, event.at)

    def add_raw(self, keys: tuple[str, ...], values: dict, at: int) -> None:
        """Account for one ``track(keys, values, at)`` call."""
        paths, numbers = flatten(values, self._limits)
        self._accumulate((tuple(keys), at - at % 60, paths), numbers)
        self.events += 1
        self._totals = None

    def merge(self, other: Expected) -> None:
        """Add another producer's expectations to these."""
        for slot, numbers in other._sums.items():
            self._accumulate(slot, numbers)
        self.events += other.events

    def _accumulate(
        self, slot: tuple[tuple[str, ...], int, tuple[str, ...]], numbers: list
    ) -> None:
        sums = self._sums.get(slot)
        self._sums[slot] = (
            numbers if sums is None else [a + b for a, b in zip(sums, numbers, strict=True)]
        )
        self._totals = None

    @property
    def totals(self) -> Counter[Slot]:
        """Expected value of every (granularity, key, bucket, path)."""
        if self._totals is None:
            totals: Counter[Slot] = Counter()
            floors: dict[int, list[tuple[str, int]]] = {}
            for (keys, minute, paths), numbers in self._sums.items():
                buckets = floors.get(minute)
                if buckets is None:
                    buckets = [(str(g), self.calendar.floor(minute, g)) for g in self.granularities]
                    floors[minute] = buckets
                for g, bucket in buckets:
                    for key in keys:
                        for path, number in zip(paths, numbers, strict=True):
                            totals[(g, key, bucket, path)] += number
            self._totals = totals
        return self._totals


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
        f"FROM {identifier(database)}.rollups GROUP BY granularity, key, bucket, path"
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
