"""The scheduler's search for the newest durable bucket (a watermark stub on a fixed line:
durability is monotone in time, as committed offsets only grow)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tally.monitors.loader import load_text
from tally.monitors.service import MonitorService
from tally.schemas.granularity import Calendar


@dataclass
class Line:
    """Buckets ending at or before ``until`` are durable; counts lookups."""

    until: int
    lookups: list[int] = field(default_factory=list)

    async def durable(self, end: int, now: float) -> bool:
        self.lookups.append(end)
        return end <= self.until


@dataclass
class Schema:
    calendar: Calendar = field(default_factory=Calendar)


class Reader:
    async def schema(self) -> Schema:
        return Schema()


MONITOR = load_text(
    "monitors: [{name: m, key: k, path: x, condition: {type: threshold, above: 1}}]", "m.yaml"
).monitors[0]
NOW = 1_800_000_000 - 1_800_000_000 % 60 + 30  # 30 s into a minute


def newest(until: int) -> tuple[int | None, int]:
    line = Line(until)
    svc = MonitorService([], Reader(), None, line, None)  # type: ignore[arg-type]
    result = asyncio.run(svc._newest_durable(MONITOR, NOW))
    return result, len(line.lookups)


def test_the_last_complete_minute_in_one_lookup() -> None:
    minute = NOW - 30
    assert newest(until=minute) == (minute - 60, 1)


def test_while_an_aggregator_is_behind_the_newest_durable_bucket_in_few_lookups() -> None:
    minute = NOW - 30
    for behind in (1, 2, 7, 50, 118):
        result, lookups = newest(until=minute - behind * 60)
        assert result == minute - (behind + 1) * 60
        assert lookups <= 9


def test_nothing_durable_in_the_catch_up_range() -> None:
    assert newest(until=0) == (None, 2)
