"""Flatten a nested dict of numbers into dotted paths (Trifle::Stats semantics)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tally.ingest.kinds import Dist, Gauge
from tally.ingest.text import text_problem
from tally.schemas.limits import Limits

# (path, sketch) and (path, value, at_ms) of one event, beside its summed values.
Kinds = tuple[list[tuple[str, Dist]], list[tuple[str, float, int]]]


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
    paths, numbers, kinds = flatten_all(values, limits)
    if kinds is not None:
        raise InvalidValues("non_numeric", "dist()/gauge() values need Tracker.track")
    return paths, numbers


def flatten_all(
    values: Mapping[str, object], limits: Limits
) -> tuple[tuple[str, ...], list[int | float], Kinds | None]:
    """``flatten`` that also accepts ``dist()`` and ``gauge()`` leaves (returned apart).

    A distribution at ``P`` is sent as a sketch (its ``P.count``, ``P.sum`` and ``P.square``
    are computed from it in ClickHouse); a gauge as ``(P, value, at_ms)``. Invalid samples, a
    gauge without a time and values outside the limits raise ``InvalidValues``.
    """
    paths: list[str] = []
    numbers: list[int | float] = []
    kinds: Kinds = ([], [])
    _walk(values, "", 1, limits, paths, numbers, kinds)
    if not kinds[0] and not kinds[1]:
        if not paths:
            raise InvalidValues("empty", "values has no numeric leaves")
        if len(paths) > limits.max_values:
            raise InvalidValues("too_many_values", f"{len(paths)} leaves > {limits.max_values}")
        return tuple(paths), numbers, None
    if len(paths) + len(kinds[0]) + len(kinds[1]) > limits.max_values:
        raise InvalidValues("too_many_values", f"more than {limits.max_values} leaves")
    return tuple(paths), numbers, kinds


def _walk(
    node: Mapping[str, object],
    prefix: str,
    depth: int,
    limits: Limits,
    paths: list[str],
    numbers: list[int | float],
    kinds: Kinds,
) -> None:
    if depth > limits.max_depth:
        raise InvalidValues("too_deep", f"{prefix!r} nests deeper than {limits.max_depth}")
    limit = limits.max_abs_value
    max_path = limits.max_path_length
    add_path, add_number = paths.append, numbers.append
    for name, value in node.items():
        if type(name) is not str or not name or "." in name:
            raise InvalidValues("bad_path", f"name {name!r} under {prefix!r}")
        if not name.isascii() and text_problem(name):
            raise InvalidValues("invalid_text", f"name {name!r} under {prefix!r}")
        path = prefix + name if prefix else name
        kind = type(value)
        if kind is int or kind is float:
            number = value
        elif kind is dict or isinstance(value, Mapping):
            _walk(value, path + ".", depth + 1, limits, paths, numbers, kinds)
            continue
        elif kind is Dist or kind is Gauge:
            if len(path) > max_path - 7:  # room for ".square"
                raise InvalidValues("path_too_long", path[:64])
            if kind is Dist:
                if value.problem:
                    raise InvalidValues(value.problem, path)
                kinds[0].append((path, value))
                continue
            if value.at_ms is None:
                raise InvalidValues("gauge_without_timestamp", path)
            number = value.value
            if type(number) is bool or not isinstance(number, int | float):
                raise InvalidValues("non_numeric", f"{path}={number!r}")
            if not -limit <= number <= limit:
                reason = "not_finite" if not math.isfinite(number) else "huge_value"
                raise InvalidValues(reason, f"{path}={number!r}")
            kinds[1].append((path, float(number), value.at_ms))
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
