"""KPI values: each path summed over the range, then expressions over the sums (as Trifle's
KPI does), for the range and the period just before it."""

from __future__ import annotations

import asyncio

import msgspec

from tally.read import AsyncReader
from tally.read.expression import parse


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
    start = since - (until - since)
    now, before = await asyncio.gather(
        reader.series(key, needed, (), since, until, granularity),
        reader.series(key, needed, (), start, since, granularity),
    )
    current, previous = _totals(now.rows, parsed), _totals(before.rows, parsed)
    names = [*paths, *expressions]
    return Kpi(key, since, until, start, [KpiRow(n, current[n], previous[n]) for n in names])
