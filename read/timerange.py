"""Time ranges: ``since``/``until`` as durations (``24h``), ISO times, datetimes or unix seconds,
and the list of buckets they cover on the configured calendar (so empty buckets align)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from tally.read.errors import BadGranularity, BadRange
from tally.schemas.granularity import UNIT_SECONDS, Calendar, Granularity, GranularityError

MAX_BUCKETS = 20_000
MIN_TIME = 0  # 1970-01-01T00:00:00Z
MAX_TIME = 4_102_444_800  # 2100-01-01T00:00:00Z: ClickHouse DateTime ends in 2106
_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_SECONDS = {"s": 1, **{unit: UNIT_SECONDS[unit] for unit in ("m", "h", "d", "w")}}

TimeLike = datetime | int | float | str | None


def parse_granularity(text: str) -> Granularity:
    """The granularity, or :class:`BadGranularity` with the reason."""
    try:
        return Granularity.parse(text)
    except (GranularityError, AttributeError) as exc:
        raise BadGranularity(str(exc)) from exc


def parse_duration(text: str) -> int:
    """Seconds in ``30m``/``24h``/``7d``/``2w``/``90s``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise BadRange(f"{text!r} is not a duration like 90s, 30m, 24h, 7d or 2w")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def _bounded(seconds: float, value: TimeLike) -> int:
    """``seconds`` as int if within [1970, 2100), else :class:`BadRange` naming the bounds."""
    if not MIN_TIME <= seconds < MAX_TIME:  # False for nan as well
        raise BadRange(f"{value!r} is outside the times served (1970-01-01 to 2100-01-01 UTC)")
    return int(seconds)


def to_unix(value: TimeLike, now: float, default: float) -> int:
    """Unix seconds of a datetime (naive = UTC), number, ``now``, duration ago or ISO text,
    within [1970, 2100) UTC; :class:`BadRange` otherwise."""
    try:
        return _bounded(_seconds(value, now, default), value)
    except (OverflowError, ValueError, OSError) as exc:
        if isinstance(exc, BadRange):
            raise
        raise BadRange(f"{value!r} is not a time that can be served: {exc}") from exc


def _seconds(value: TimeLike, now: float, default: float) -> float:
    if value is None:
        return int(default)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text == "now":
            return int(now)
        if re.fullmatch(r"\d{9,11}", text):
            return int(text)
        if _DURATION.match(text):
            return int(now) - parse_duration(text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return _seconds(parsed, now, default)
    raise BadRange(
        f"{value!r} is not a time: use an ISO time, unix seconds, 'now' or a duration ago (24h)"
    )


def resolve(since: TimeLike, until: TimeLike, now: float | None = None) -> tuple[int, int]:
    """``(start, end)`` unix seconds of a non-empty range; ``until`` defaults to now."""
    now = time.time() if now is None else now
    end = to_unix(until, now, now)
    start = to_unix(since, now, end - UNIT_SECONDS["d"])
    if end <= start:
        raise BadRange(f"the range is empty or reversed (since {start} >= until {end})")
    return start, end


@dataclass(frozen=True, slots=True)
class Window:
    """A resolved range ``[start, end)`` in unix seconds and its bucket starts."""

    granularity: Granularity
    start: int
    end: int
    buckets: tuple[int, ...]


def window(
    calendar: Calendar,
    granularity: str | Granularity,
    since: TimeLike = "24h",
    until: TimeLike = None,
    now: float | None = None,
    max_buckets: int = MAX_BUCKETS,
) -> Window:
    """Every bucket whose start lies in ``[floor(since), until)``; ``until`` defaults to now.

    The first bucket is the one containing ``since``; the last is the one containing the
    instant just before ``until``, so ``since=24h`` at 10:30 covers 10:00 yesterday to 10:00
    today inclusive (the current, partial bucket is included).
    """
    g = granularity if isinstance(granularity, Granularity) else parse_granularity(granularity)
    start, end = resolve(since, until, now)
    first = calendar.floor(start, g)
    if first < MIN_TIME:
        raise BadRange(f"the first bucket of {g} starts before 1970-01-01 UTC; start later")
    buckets = []
    b = first
    while b < end:
        buckets.append(b)
        if len(buckets) > max_buckets:
            raise BadRange(
                f"the range has more than {max_buckets} buckets of {g}; "
                "use a coarser granularity or a shorter range"
            )
        b = calendar.next(b, g)
    return Window(g, first, b, tuple(buckets))


def time_range(since: TimeLike, until: TimeLike) -> tuple[datetime, datetime]:
    """``since``/``until`` resolved (see :func:`resolve`) as aware UTC datetimes."""
    start, end = resolve(since, until)
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
