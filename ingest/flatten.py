"""Flatten a nested dict of numbers into dotted paths (Trifle::Stats semantics)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tally.schemas.limits import Limits


class InvalidValues(ValueError):
    """``values`` is not a nested mapping of finite numbers within the limits."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def flatten(
    values: Mapping[str, object], limits: Limits
) -> tuple[tuple[str, ...], list[int | float]]:
    """Return ``(paths, numbers)`` for ``values``; e.g. ``{"a": {"b": 1}}`` -> ``(("a.b",), [1])``.

    Raises ``InvalidValues`` on a non-numeric, non-finite or huge leaf, a bad or over-long
    name, nesting deeper than ``limits.max_depth`` or more than ``limits.max_values`` leaves.
    """
    paths: list[str] = []
    numbers: list[int | float] = []
    _walk(values, "", 1, limits, paths, numbers)
    if not paths:
        raise InvalidValues("empty", "values has no numeric leaves")
    if len(paths) > limits.max_values:
        raise InvalidValues("too_many_values", f"{len(paths)} leaves > {limits.max_values}")
    return tuple(paths), numbers


def _walk(
    node: Mapping[str, object],
    prefix: str,
    depth: int,
    limits: Limits,
    paths: list[str],
    numbers: list[int | float],
) -> None:
    if depth > limits.max_depth:
        raise InvalidValues("too_deep", f"{prefix!r} nests deeper than {limits.max_depth}")
    limit = limits.max_abs_value
    max_path = limits.max_path_length
    add_path, add_number = paths.append, numbers.append
    for name, value in node.items():
        if type(name) is not str or not name or "." in name:
            raise InvalidValues("bad_path", f"name {name!r} under {prefix!r}")
        path = prefix + name if prefix else name
        kind = type(value)
        if kind is int or kind is float:
            number = value
        elif kind is dict or isinstance(value, Mapping):
            _walk(value, path + ".", depth + 1, limits, paths, numbers)
            continue
        elif isinstance(value, int | float) and kind is not bool:
            # Subclasses such as IntEnum or numpy scalars: stored as plain numbers.
            number = float(value) if isinstance(value, float) else int(value)
        else:
            raise InvalidValues("non_numeric", f"{path}={value!r}")
        if not -limit <= number <= limit:  # also false for NaN
            reason = "not_finite" if not math.isfinite(number) else "huge_value"
            raise InvalidValues(reason, f"{path}={number!r}")
        if len(path) > max_path:
            raise InvalidValues("path_too_long", path[:64])
        add_path(path)
        add_number(number)
