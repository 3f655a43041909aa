"""What the database serves, read from its own view definitions: granularities (stored or
derived), time zone and week start. The reader's calendar therefore always matches the one the
aggregators bucketed with."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tally.read.errors import BadGranularity
from tally.schemas.granularity import WEEKDAYS, Calendar, Granularity, GranularityError

_TZ = re.compile(r"toTimeZone\(bucket, '([^']+)'\)")
_DERIVED_TZ = re.compile(r"toDate\(bucket, '([^']+)'\)")
_WEEK = re.compile(r"toDayOfWeek\(d\) - (\d)")
_TTL = re.compile(r"granularity = '(\w+)', (\d+)")


@dataclass(frozen=True)
class ServedSchema:
    """Granularities on offer, which of them are stored, and the calendar."""

    granularities: tuple[str, ...]
    stored: frozenset[str]
    calendar: Calendar
    has_key_tables: bool
    ttl_days: dict[str, int] = field(default_factory=dict)  # stored rows kept (the table's TTL)

    def check(self, granularity: str) -> str:
        """``granularity`` normalised, or :class:`BadGranularity` if it is not served."""
        try:
            g = str(Granularity.parse(granularity))
        except (GranularityError, AttributeError) as exc:
            raise BadGranularity(str(exc)) from exc
        if g not in self.granularities:
            served = ", ".join(self.granularities) or "none (no rollups yet: run an aggregator)"
            raise BadGranularity(f"granularity {g!r} is not served; served: {served}")
        return g


def _order(g: str) -> tuple[int, int]:
    parsed = Granularity.parse(g)
    return ("m", "h", "d", "w", "mo", "q", "y").index(parsed.unit), parsed.n


def from_tables(rows: Iterable[tuple[str, str]]) -> ServedSchema:
    """Build from ``(name, create_table_query)`` rows of ``system.tables``."""
    granularities, stored = [], set()
    time_zone, week_start, key_tables = "UTC", "monday", 0
    ttl_days: dict[str, int] = {}
    for name, query in rows:
        if name == "rollups":
            ttl_days = {g: int(days) for g, days in _TTL.findall(query)}
            continue
        if name in ("keys_seen", "key_paths"):
            key_tables += 1
            continue
        g = name.removeprefix("rollups_")
        try:
            Granularity.parse(g)
        except GranularityError:
            continue
        granularities.append(g)
        if f"granularity = '{g}'" in query:
            stored.add(g)
        if m := _TZ.search(query) or _DERIVED_TZ.search(query):
            time_zone = m.group(1)
        if m := _WEEK.search(query):
            week_start = WEEKDAYS[int(m.group(1)) - 1]
    return ServedSchema(
        tuple(sorted(granularities, key=_order)),
        frozenset(stored),
        Calendar(time_zone, week_start),
        key_tables == 2,
        ttl_days,
    )
