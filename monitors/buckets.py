"""A monitor's buckets on the schemas' :class:`Calendar`: every step follows the local calendar
of the rollups' zone (a Prague day is 23 or 25 hours across DST, a week 167 or 169), never a
fixed number of seconds, so a judged bucket is always a stored one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from tally.schemas.granularity import Calendar, Granularity


@dataclass(frozen=True)
class Buckets:
    """Bucket starts (unix seconds) of ``granularity`` in ``calendar``."""

    calendar: Calendar
    granularity: Granularity

    @property
    def _fixed(self) -> int | None:
        return self.granularity.fixed_seconds

    def floor(self, ts: int) -> int:
        """Start of the bucket holding ``ts``."""
        return self.calendar.floor(int(ts), self.granularity)

    def next(self, bucket: int) -> int:
        """Start of the following bucket (the end of ``bucket``)."""
        fixed = self._fixed
        return bucket + fixed if fixed else self.calendar.next(bucket, self.granularity)

    def prev(self, bucket: int) -> int:
        """Start of the preceding bucket."""
        fixed = self._fixed
        return bucket - fixed if fixed else self.floor(bucket - 1)

    def back(self, bucket: int, k: int) -> int:
        """Start of the bucket ``k`` steps before ``bucket``."""
        fixed = self._fixed
        if fixed:
            return bucket - k * fixed
        for _ in range(k):
            bucket = self.prev(bucket)
        return bucket

    def span(self, first: int, last: int) -> list[int]:
        """Every bucket start from ``first`` to ``last`` inclusive."""
        fixed = self._fixed
        if fixed:
            return list(range(first, last + 1, fixed))
        out = []
        while first <= last:
            out.append(first)
            first = self.next(first)
        return out

    def elapsed(self, since: int, until: int) -> int:
        """Seconds from ``since`` to ``until`` as timings count them: absolute for minutes and
        hours, on the local wall clock for days and longer (a 23-hour day counts ``1d``)."""
        if self.granularity.unit in ("m", "h"):
            return until - since
        tz = ZoneInfo(self.calendar.time_zone)
        wall = datetime.fromtimestamp(until, tz).replace(tzinfo=None)
        return int((wall - datetime.fromtimestamp(since, tz).replace(tzinfo=None)).total_seconds())
