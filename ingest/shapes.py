"""A cache of validated value shapes: ``track`` flattens a dict it has seen before in C calls.

Jobs send the same nested dict shapes over and over. A shape is the top dict's names and value
types plus each nested dict's names, collected with a few C calls per dict. The first event of
a shape goes through ``flatten_all`` (every check, with its reason on failure); if it is valid,
at most two levels deep and every leaf a plain ``int`` or ``float``, the shape's paths and
where each leaf sits among the collected values are remembered. Later events of the shape only
pick their numbers and check them in two passes (every type exactly ``int`` or ``float``; the
sum of magnitudes finite and within half the limit, so every value is within it); anything
else (NaN, a huge value, a bool, ``dist()``, a ``Mapping`` that is not a ``dict``, a deeper
dict) goes through ``flatten_all`` and gets its exact result or error. So do dicts of one or
two names and dicts whose first value is a dict (job hooks' three-level fan-out), for which
collecting the shape costs more than it saves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import itemgetter

from tally.ingest.flatten import Kinds, flatten_all
from tally.schemas.limits import Limits

MAX_SHAPES = 10_000  # remembered shapes (and type rows); the cache starts over past that
SMALL = 3  # dicts with fewer top-level names go straight to flatten_all

Pick = Callable[[list], list]
_PLAIN = (int, float, dict)
_NUMBERS = frozenset((int, float))


class ShapeCache:
    """``flatten_all`` with a cache of valid shapes. One per ``Tracker``; thread-safe enough:
    a race only makes two threads learn the same shape."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._half = limits.max_abs_value / 2
        self._max_depth = limits.max_depth
        self._shapes: dict[tuple, tuple[tuple[str, ...], Pick] | None] = {}
        self._rows: dict[tuple[type, ...], tuple[int, ...] | bool | None] = {}

    def flatten(
        self, values: Mapping[str, object]
    ) -> tuple[tuple[str, ...], list[int | float], Kinds | None]:
        """What ``flatten_all(values, limits)`` returns (or raises)."""
        if type(values) is not dict or len(values) < SMALL:
            return flatten_all(values, self.limits)  # as cheap as the cache for a leaf or two
        # Two levels inline (what jobs send); deeper dicts make the shape unplannable.
        found = [*values.values()]
        if type(found[0]) is dict:  # job hooks' total/jobs/tenants fan-out: three levels
            return flatten_all(values, self.limits)
        types = tuple([type(v) for v in found])  # faster than map(type, ...)
        kids = self._rows.get(types, False)
        if kids is False:
            kids = self._row(types)
        if kids is None:
            return flatten_all(values, self.limits)
        sig = [tuple(values), types]
        if kids:
            for i in kids:
                child = found[i]
                inner = [*child.values()]
                sig.append(tuple(child))
                found += inner
        key = tuple(sig)
        plan = self._shapes.get(key, False)
        if plan is False:
            return self._learn(values, key)
        if plan is not None:
            paths, pick = plan
            numbers = pick(found)
            # Nested values were not typed yet: every leaf exactly an int or a float, and
            # the sum of magnitudes within half the limit (false for NaN and infinities; the
            # half covers a float sum rounding an int just above the limit down to it).
            if {type(v) for v in numbers} <= _NUMBERS and sum(map(abs, numbers)) <= self._half:
                return paths, numbers, None
        return flatten_all(values, self.limits)

    def _row(self, types: tuple[type, ...]) -> tuple[int, ...] | None:
        """Indices of the nested dicts in a row of value types; None if a leaf is not plain."""
        if len(self._rows) >= MAX_SHAPES:
            self._rows.clear()
        kids = None
        if all(t in _PLAIN for t in types):
            kids = tuple(i for i, t in enumerate(types) if t is dict)
        self._rows[types] = kids
        return kids

    def _learn(
        self, values: dict, key: tuple
    ) -> tuple[tuple[str, ...], list[int | float], Kinds | None]:
        """First event of a shape: the full checks; remember the shape if it is valid."""
        paths, numbers, kinds = flatten_all(values, self.limits)
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
        plan = None
        if kinds is None and _two_plain_levels(values):
            where, total = _layout(values, 0)
            pick = _picker(where, total)
            if pick([*_values_in_order(values)]) == numbers:
                plan = (paths, pick)
        if plan is None and key[1] and all(t is dict for t in key[1]):
            # Dicts of dicts (job hooks' total/jobs/tenants fan-out): deeper than two levels
            # or holding dist()/gauge(); collecting their shape only costs time.
            self._rows[key[1]] = None
        self._shapes[key] = plan
        return paths, numbers, kinds


def _two_plain_levels(values: dict) -> bool:
    """Every leaf a plain int or float, at most one level of nested (plain) dicts."""
    for value in values.values():
        if type(value) is dict:
            if not all(type(v) is int or type(v) is float for v in value.values()):
                return False
        elif type(value) is not int and type(value) is not float:
            return False
    return True


def _layout(node: dict, base: int) -> tuple[list[int], int]:
    """Where each leaf of ``node`` (depth first) sits among the values ``flatten`` gathers,
    and where the next block starts."""
    vals = list(node.values())
    offset = base + len(vals)
    where: list[int] = []
    for i, value in enumerate(vals):
        if type(value) is dict:
            inner, offset = _layout(value, offset)
            where += inner
        else:
            where.append(base + i)
    return where, offset


def _values_in_order(node: dict) -> list:
    """The values in ``flatten``'s order: a dict's own values, then each child's block."""
    vals = list(node.values())
    out = list(vals)
    for value in vals:
        if type(value) is dict:
            out += _values_in_order(value)
    return out


def _picker(where: list[int], total: int) -> Pick:
    """A C-speed function taking the leaves, depth first, out of the ``total`` gathered values."""
    if where == list(range(total)):  # one flat dict: its values are the numbers
        return list
    if len(where) == 1:
        index = where[0]
        return lambda found: [found[index]]
    get = itemgetter(*where)
    return lambda found: list(get(found))
