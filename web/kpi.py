"""KPI values: each path summed over the range, then expressions over the sums (as Trifle's
KPI does), for the range and the period just before it.

Both periods are whole buckets and never share one: the range starts at the first bucket
that begins at or after ``since`` (a bucket only partly inside is left out, not widened to),
and the previous period is the same number of buckets just before it. One run an hour over
24h at 1h therefore compares 24 with 24. When the range ends inside a bucket (today so far, at
1d), the previous period's last bucket is cut at the same elapsed part (yesterday until the
same time of day), read at the finest served granularity: like is compared with like."""

from __future__ import annotations

import asyncio
import time

import msgspec

from tally.read import AsyncReader
from tally.read.errors import BadRange
from tally.read.expression import parse
from tally.read.settled import as_of_time
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
    previous_until: int = 0  # the previous period ends here (its last bucket cut like-for-like)


def _totals(rows: list, expressions: list) -> dict[str, float | None]:
    sums: dict[str, float | None] = {}
    for r in rows:
        sums[r.name] = (sums.get(r.name) or 0.0) + sum(p or 0.0 for p in r.points)
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


def like_for_like(calendar: Calendar, g: Granularity, start: int, until: int) -> int:
    """Where the previous period ends: ``start`` if the range ends on a bucket boundary, else
    its last bucket cut at the elapsed part of the range's last (partial) bucket."""
    last = calendar.floor(until - 1, g)
    if calendar.next(last, g) == until:
        return start
    previous_last = calendar.floor(start - 1, g)
    return min(start, previous_last + (until - last))


_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 2_629_746, "q": 7_889_238,
           "y": 31_556_952}  # fmt: skip


def _approx_s(g: Granularity) -> int:
    return g.n * _UNIT_S[g.unit]


def finer(served: tuple[str, ...], g: Granularity, seconds: int) -> Granularity | None:
    """The finest served granularity below ``g`` that covers ``seconds`` within the bucket
    limit (None: there is none)."""
    for name in served:
        fine = Granularity.parse(name)
        if _approx_s(fine) < _approx_s(g) and seconds / _approx_s(fine) < MAX_BUCKETS:
            return fine
    return None


async def kpi(
    reader: AsyncReader,
    key: str,
    paths: list[str],
    expressions: list[str],
    since: int,
    until: int,
    granularity: str,
    as_of: int | None = None,
) -> Kpi:
    """Totals of ``paths`` and ``expressions`` (over the totals), now and one period earlier;
    with ``as_of``, the range ends there at the latest and is read as of it."""
    parsed = [parse(e) for e in expressions]
    needed = list(dict.fromkeys([*paths, *(p for e in parsed for p in e.paths)]))
    since, until = resolve(since, until)  # BadRange outside 1970..2100
    schema = await reader.schema()
    g = parse_granularity(schema.check(granularity))
    calendar = schema.calendar
    if as_of is not None:
        settle_s = reader.settings.settle_s
        as_of = as_of_time(as_of, calendar, schema.stored, time.time(), settle_s)
        since, until = resolve(since, min(until, as_of))  # BadRange: nothing before as_of
    before, since = periods(calendar, g, since, until)
    before_until = like_for_like(calendar, g, since, until)
    whole_until = calendar.floor(before_until, g)  # the previous period's whole buckets end here
    fine = finer(schema.granularities, g, before_until - whole_until)
    if fine is None:  # nothing finer is served: the whole last bucket, as before
        before_until = whole_until = since
    else:
        before_until = calendar.floor(before_until, fine)
    reads = [reader.series(key, needed, (), since, until, granularity, as_of=as_of)]
    if before < whole_until:  # whole buckets (none when the previous period is one cut bucket)
        reads.append(reader.series(key, needed, (), before, whole_until, granularity))
    if whole_until < before_until:
        reads.append(reader.series(key, needed, (), whole_until, before_until, str(fine)))
    now, *earlier = await asyncio.gather(*reads)
    current = _totals(now.rows, parsed)
    previous = _totals([row for part in earlier for row in part.rows], parsed)
    names = [*paths, *expressions]
    rows = [KpiRow(n, current.get(n), previous.get(n)) for n in names]
    return Kpi(key, since, until, before, rows, before_until)
