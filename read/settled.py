"""Reading "as of" a settled time T, so that every read of one page sees the same data.

The rollup row of the bucket in progress (this hour, today) keeps growing while a page's
widgets are read one after another, so under live traffic they disagree by a few events. A read
*as of* T instead shows nothing at or after T: the buckets wholly before T are read as always,
the bucket containing T is summed from the stored rows that tile ``[bucket start, T)`` (whole
days, then whole hours, then minutes: never from its coarse row), and later buckets are left
out. Every read given the same T reads the same rows, whatever arrives meanwhile.

T is *settled* when the aggregators have flushed every event stamped before it: the read side
takes the start of the finest stored bucket (1m) at least ``settle_s`` before now, ``settle_s``
covering the client's batching and retries plus the aggregators' flush interval (the monitors'
watermark makes the same bet with its ``grace``). Events arriving later than that for minutes
before T (a client's spool replayed after an outage, a backlog after an aggregator restart)
still land in their buckets, so a later refresh can show more for the same minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tally.read.errors import BadRange
from tally.read.timerange import TimeLike, Window, to_unix
from tally.schemas.granularity import Calendar, Granularity

SETTLED = "settled"


@dataclass(frozen=True, slots=True)
class Piece:
    """Stored rows of one granularity over ``[start, end)`` (unix seconds, bucket-aligned)."""

    granularity: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Cut:
    """A window read as of ``as_of``: whole buckets in ``[window.start, whole_end)``, and the
    bucket starting at ``partial`` (if any) summed from ``pieces``."""

    as_of: int
    whole_end: int
    partial: int | None
    pieces: tuple[Piece, ...]


def finest(stored: Iterable[str]) -> Granularity:
    """The stored granularity with the shortest buckets (``1m`` by default)."""
    parsed = [Granularity.parse(g) for g in stored]
    if not parsed:
        raise BadRange("no stored granularity to read as of a time (run an aggregator)")
    return min(parsed, key=lambda g: g.seconds)


def settled_time(calendar: Calendar, stored: Iterable[str], now: float, settle_s: float) -> int:
    """The start of the finest stored bucket at least ``settle_s`` before ``now``."""
    return calendar.floor(int(now - settle_s), finest(stored))


def as_of_time(
    value: TimeLike, calendar: Calendar, stored: Iterable[str], now: float, settle_s: float
) -> int:
    """``value`` (a time, or ``"settled"``) floored to the finest stored bucket; rows finer
    than that do not exist, so a read cannot stop inside one."""
    stored = tuple(stored)
    if isinstance(value, str) and value.strip() == SETTLED:
        return settled_time(calendar, stored, now, settle_s)
    return calendar.floor(to_unix(value, now, now), finest(stored))


def tiles(calendar: Calendar, stored: Iterable[str], start: int, end: int) -> tuple[Piece, ...]:
    """Stored buckets that exactly cover ``[start, end)``, coarsest first (fewest rows).

    ``start`` and ``end`` must lie on boundaries of the finest stored granularity. Buckets of
    every stored granularity nest in the configured zone (a local day is whole local hours),
    so taking the longest run of whole buckets of each granularity in turn always closes.
    """
    order = sorted((Granularity.parse(g) for g in stored), key=lambda g: -g.seconds)
    pieces: list[Piece] = []
    cursor = start
    for g in order:
        if cursor >= end or calendar.floor(cursor, g) != cursor:
            continue
        stop = calendar.floor(end, g)
        if stop > cursor:
            pieces.append(Piece(str(g), cursor, stop))
            cursor = stop
    if cursor != end:
        raise BadRange(f"[{start}, {end}) is not made of whole stored buckets")
    return tuple(pieces)


def cut(calendar: Calendar, stored: Iterable[str], window: Window, as_of: int) -> Cut:
    """How to read ``window`` (whose buckets all start before ``as_of``) as of ``as_of``."""
    last = window.buckets[-1] if window.buckets else window.start
    if window.end <= as_of or not window.buckets:
        return Cut(as_of, window.end, None, ())
    return Cut(as_of, last, last, tiles(calendar, stored, last, as_of))


def check_kept(at: Cut, ttl_days: Mapping[str, int], now: float) -> None:
    """:class:`BadRange` when a piece needs rows older than its granularity's TTL keeps (1m
    rows live 14 days by default): that partial bucket cannot be read as of ``at.as_of``."""
    for p in at.pieces:
        days = ttl_days.get(p.granularity)
        if days is not None and p.start < now - days * 86400:
            raise BadRange(
                f"as of {at.as_of} the last bucket needs {p.granularity} rows from {p.start},"
                f" older than the {days} days they are kept: read without as_of, or as of a"
                " bucket boundary"
            )
