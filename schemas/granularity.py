"""Time buckets: parse granularities such as ``1m``/``1h``/``1mo`` and floor instants to them.

A bucket is identified by the UTC instant (unix seconds) of its start. Buckets are computed on
the wall clock of a configured IANA time zone, so a day is a local day (23 or 25 hours across
DST changes) and a repeated local hour in autumn yields two distinct hourly buckets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

UNITS = ("m", "h", "d", "w", "mo", "q", "y")
DEFAULT_GRANULARITIES = ("1m", "1h", "1d", "1w", "1mo", "1q", "1y")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# One unit's length in seconds: exact for m h d w (in UTC; a local day may be 23 or 25 hours),
# a mean for mo q y (a year of 365.25 days). For sizing ranges; ``Calendar`` does the bucketing.
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 2_629_800,
                "q": 7_889_400, "y": 31_557_600}  # fmt: skip
# Each unit as a ClickHouse interval unit (``INTERVAL 15 MINUTE``).
SQL_UNITS = {"m": "MINUTE", "h": "HOUR", "d": "DAY", "w": "WEEK", "mo": "MONTH", "q": "QUARTER",
             "y": "YEAR"}  # fmt: skip
_PATTERN = re.compile(r"^(\d+)(mo|m|h|d|w|q|y)$")
# The n each unit accepts: buckets must tile their parent unit exactly.
_ALLOWED_N = {
    "m": {n for n in range(1, 61) if 60 % n == 0},
    "h": {n for n in range(1, 25) if 24 % n == 0},
    "d": {1},
    "w": {1},
    "mo": {1, 2, 3, 4, 6, 12},
    "q": {1},
    "y": {1},
}


class GranularityError(ValueError):
    """An unparseable or unsupported granularity string."""


@dataclass(frozen=True, slots=True)
class Granularity:
    """One granularity, e.g. ``Granularity.parse("15m")``."""

    n: int
    unit: str

    @classmethod
    def parse(cls, text: str) -> Granularity:
        """Parse ``"<n><unit>"`` with unit one of m h d w mo q y."""
        match = _PATTERN.match(text.strip())
        if not match:
            raise GranularityError(f"granularity {text!r} is not '<n><unit>' with unit in {UNITS}")
        n, unit = int(match.group(1)), match.group(2)
        if n not in _ALLOWED_N[unit]:
            allowed = sorted(_ALLOWED_N[unit])
            raise GranularityError(f"granularity {text!r}: n must be one of {allowed} for {unit!r}")
        return cls(n, unit)

    def __str__(self) -> str:
        return f"{self.n}{self.unit}"

    @property
    def seconds(self) -> int:
        """Length in seconds (``UNIT_SECONDS``: a mean for months, quarters and years)."""
        return self.n * UNIT_SECONDS[self.unit]

    @property
    def sql_interval(self) -> str:
        """The length as a ClickHouse interval, e.g. ``INTERVAL 15 MINUTE``."""
        return f"INTERVAL {self.n} {SQL_UNITS[self.unit]}"

    @property
    def fixed_seconds(self) -> int | None:
        """Length in seconds for minute granularities (the same in every zone), else None."""
        return self.seconds if self.unit == "m" else None


def granularity_seconds(granularities: Iterable[str]) -> dict[str, int]:
    """Each granularity's length in seconds (for a page sizing its ranges)."""
    return {g: Granularity.parse(g).seconds for g in granularities}


@dataclass(frozen=True)
class Calendar:
    """Time zone and week start that local buckets are computed in (defaults: UTC, Monday)."""

    time_zone: str = "UTC"
    week_start: str = "monday"
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.week_start not in WEEKDAYS:
            raise ValueError(f"week_start must be one of {WEEKDAYS}, not {self.week_start!r}")
        object.__setattr__(self, "_tz", ZoneInfo(self.time_zone))

    @cached_property
    def week_start_index(self) -> int:
        """0 for Monday ... 6 for Sunday (Python's weekday numbering)."""
        return WEEKDAYS.index(self.week_start)

    def floor(self, ts: int, granularity: Granularity) -> int:
        """Start (unix seconds) of the bucket of ``granularity`` that contains ``ts``."""
        local = datetime.fromtimestamp(ts, self._tz)
        n, unit = granularity.n, granularity.unit
        if unit == "m":
            start = local.replace(minute=local.minute - local.minute % n, second=0, microsecond=0)
        elif unit == "h":
            start = local.replace(
                hour=local.hour - local.hour % n, minute=0, second=0, microsecond=0
            )
        else:
            day = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
            if unit == "d":
                start = day
            elif unit == "w":
                back = (day.weekday() - self.week_start_index) % 7
                start = (day.replace(tzinfo=None) - timedelta(days=back)).replace(tzinfo=self._tz)
            elif unit == "mo":
                start = day.replace(day=1, month=day.month - (day.month - 1) % n)
            elif unit == "q":
                start = day.replace(day=1, month=day.month - (day.month - 1) % 3)
            else:
                start = day.replace(day=1, month=1)
        return int(start.timestamp())

    def next(self, bucket: int, granularity: Granularity) -> int:
        """Start of the bucket after the one starting at ``bucket``."""
        local = datetime.fromtimestamp(bucket, self._tz)
        n, unit = granularity.n, granularity.unit
        if unit in ("m", "h"):
            # Fixed-length in absolute time, whatever the wall clock does.
            return self.floor(bucket + granularity.seconds, granularity)
        naive = local.replace(tzinfo=None)
        if unit == "d":
            naive += timedelta(days=1)
        elif unit == "w":
            naive += timedelta(days=7)
        else:
            months = {"mo": n, "q": 3, "y": 12}[unit]
            index = naive.month - 1 + months
            naive = naive.replace(year=naive.year + index // 12, month=index % 12 + 1)
        return self.floor(int(naive.replace(tzinfo=self._tz).timestamp()) + 1, granularity)
