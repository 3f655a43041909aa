"""Limits on keys, paths and values that the client and the aggregator both enforce."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Largest magnitude a value may have: integers stay exact in the Float64 rollup column.
MAX_ABS_VALUE = float(2**53)

# Event times ClickHouse can store with every bucket they fan out to. ``bucket`` and ``minute``
# are DateTime('UTC') (unix seconds 0 .. 2**32 - 1, 1970 .. 2106-02-07). A bucket starts at or
# before its minute, and the widest one (a year, or a week derived from days, in a zone up to
# 14 h ahead of UTC) starts at most a year and 14 h earlier: events from 1971-01-01 on keep
# every bucket >= 0. The upper bound leaves a month below the end of the DateTime range.
MIN_EVENT_TIME = 31_536_000  # 1971-01-01T00:00:00Z
MAX_EVENT_TIME = 4_291_747_199  # 2105-12-31T23:59:59Z


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds for one event. Anything outside is rejected with a reason, never truncated."""

    max_key_length: int = 256
    max_path_length: int = 256
    max_depth: int = 8
    max_values: int = 1024
    max_keys: int = 16
    max_abs_value: float = MAX_ABS_VALUE
    max_past_seconds: int = 7 * 86400
    max_future_seconds: int = 3600
    # (granularity, seconds) a stored granularity keeps rows; events older than that on
    # arrival are counted as expired there (they are folded, and ClickHouse drops them).
    ttl_seconds: tuple[tuple[str, int], ...] = ()

    def expired_in(self, at: int, reference: int) -> list[str]:
        """Granularities whose TTL an event at ``at`` has already passed at ``reference``."""
        return [g for g, ttl in self.ttl_seconds if at + ttl < reference]

    def shortest_ttl(self) -> tuple[str, int] | None:
        """The granularity with the shortest TTL and its seconds, or None."""
        return min(self.ttl_seconds, key=lambda item: item[1], default=None)

    def key_problem(self, key: object) -> str | None:
        """Reason ``key`` is not a valid metric key, or None."""
        if not isinstance(key, str) or not key:
            return "bad_key"
        if len(key) > self.max_key_length:
            return "key_too_long"
        return None

    def path_problem(self, path: object) -> str | None:
        """Reason ``path`` is not a valid dotted path, or None."""
        if not isinstance(path, str) or not path:
            return "bad_path"
        if len(path) > self.max_path_length:
            return "path_too_long"
        if path.count(".") >= self.max_depth:
            return "too_deep"
        if path.startswith(".") or path.endswith(".") or ".." in path:
            return "bad_path"
        return None

    def value_problem(self, value: object) -> str | None:
        """Reason ``value`` is not a summable number, or None."""
        if type(value) is bool or not isinstance(value, int | float):
            return "non_numeric"
        if isinstance(value, float) and not math.isfinite(value):
            return "not_finite"
        if not -self.max_abs_value <= value <= self.max_abs_value:
            return "huge_value"
        return None

    def time_bounds(self, reference: int) -> tuple[int, int]:
        """The accepted event times ``[lo, hi]`` for a record written at ``reference``."""
        return (
            max(reference - self.max_past_seconds, MIN_EVENT_TIME),
            min(reference + self.max_future_seconds, MAX_EVENT_TIME),
        )

    def time_problem(self, at: object, reference: int) -> str | None:
        """Reason event time ``at`` is unacceptable relative to ``reference`` (unix s), or None.

        ``time_out_of_range``: outside what ClickHouse's DateTime holds for the event and all
        its buckets (whatever the record time says, e.g. a record timestamped 0).
        """
        if type(at) is not int:
            return "bad_timestamp"
        if not MIN_EVENT_TIME <= at <= MAX_EVENT_TIME:
            return "time_out_of_range"
        if at < reference - self.max_past_seconds:
            return "too_old"
        if at > reference + self.max_future_seconds:
            return "too_far_in_future"
        return None
