"""KPI values: each path summed over the range, then expressions over the sums (as Trifle's
KPI does), for the range and the period just before it.

Both periods are whole buckets and never share one: the range starts at the first bucket
that begins at or after ``since`` (a bucket only partly inside is left out, not widened to),
and the previous period is the same number of buckets just before it. One run an hour over
24h at 1h therefore compares 24 with 24."""

from __future__ import annotations

import asyncio

import msgspec

from tally.read import AsyncReader
from tally.read.errors import BadRange
from tally.read.expression import parse
from tally.read.timerange import MAX_BUCKETS, parse_granularity, resolve
from tally.schemas.granularity import Calendar, Granularity


class KpiRow(msgspec.Struct, frozen=True):
    name: str
    value: float | None
    previous: float | None


class Kpi(msgspec.Struct, frozen=True):
    """Values over ``[since, until)`` and over the equally long period before it."""

    key: str
    since: int
    until: int
    previous_since: int
    rows: list[KpiRow]


def _totals(rows: list, expressions: list) -> dict[str, float | None]:
    sums: dict[str, float | None] = {r.name: sum(p or 0.0 for p in r.points) for r in rows}
    for e in expressions:
        sums[e.text] = e.evaluate(sums)
    return sums


def periods(calendar: Calendar, g: Granularity, since: int, until: int) -> tuple[int, int]:
    """``(previous_start, start)``: the range ``[start, until)`` in whole buckets and the
    previous period ``[previous_start, start)`` of as many buckets."""
    start = calendar.floor(since, g)
    if start < since:
        start = calendar.next(start, g)
    if start >= until:  # the range is shorter than a bucket: the bucket it ends in
        start = calendar.floor(until - 1, g)
    count, b = 0, start
    while b < until:
        count, b = count + 1, calendar.next(b, g)
        if count > MAX_BUCKETS:
            raise BadRange(f"the range has more than {MAX_BUCKETS} buckets of {g}")
    previous = start
    for _ in range(count):
        previous = calendar.floor(previous - 1, g)
    return previous, start


async def kpi(
    reader: AsyncReader,
    key: str,
    paths: list[str],
    expressions: list[str],
    since: int,
    until: int,
    granularity: str,
) -> Kpi:
    """Totals of ``paths`` and ``expressions`` (over the totals), now and one period earlier."""
    parsed = [parse(e) for e in expressions]
    needed = list(dict.fromkeys([*paths, *(p for e in parsed for p in e.paths)]))
    since, until = resolve(since, until)  # BadRange outside 1970..2100
    schema = await reader.schema()
    g = parse_granularity(schema.check(granularity))
    before, since = periods(schema.calendar, g, since, until)
    now, earlier = await asyncio.gather(
        reader.series(key, needed, (), since, until, granularity),
        reader.series(key, needed, (), before, since, granularity),
    )
    current, previous = _totals(now.rows, parsed), _totals(earlier.rows, parsed)
    names = [*paths, *expressions]
    return Kpi(key, since, until, before, [KpiRow(n, current[n], previous[n]) for n in names])
