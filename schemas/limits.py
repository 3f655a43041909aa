"""Limits on keys, paths and values that the client and the aggregator both enforce."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Largest magnitude a value may have: integers stay exact in the Float64 rollup column.
MAX_ABS_VALUE = float(2**53)


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

    def time_problem(self, at: object, reference: int) -> str | None:
        """Reason event time ``at`` is unacceptable relative to ``reference`` (unix s), or None."""
        if type(at) is not int:
            return "bad_timestamp"
        if at < reference - self.max_past_seconds:
            return "too_old"
        if at > reference + self.max_future_seconds:
            return "too_far_in_future"
        return None
