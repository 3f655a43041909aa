"""A version-3 record's keyset and shape tables, checked and mapped to fold-wide ids.

Python work is per distinct string (one memoized check) and per distinct table used by some
event (one dict lookup for its fold-wide id), never per event: names are gathered with numpy
from an object array of the record's strings and turned into tuples in C (``map(tuple, ...)``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from itertools import chain, compress, count
from typing import Protocol

import numpy as np

from tally.aggregator.fold_bytes import POINTER_BYTES, TABLE_BYTES

STR_BYTES = sys.getsizeof("")  # a compact ASCII string's header


class Interned(Protocol):
    """What ``fold_ids`` updates of a ``PartitionFold``: its interned keysets and shapes."""

    keysets: dict[tuple[str, ...], int]
    shapes: dict[tuple[str, ...], int]
    keyset_list: list[tuple[str, ...]]
    shape_list: list[tuple[str, ...]]
    nbytes: int


@dataclass(frozen=True, slots=True)
class Tables:
    """A record's keysets or shapes as one flat array of string indices."""

    lengths: np.ndarray
    starts: np.ndarray
    flat: np.ndarray

    @classmethod
    def of(cls, tables: list[list[int]], strings: int) -> Tables | None:
        """The tables, or None when an index is outside the string table."""
        lengths = np.fromiter(map(len, tables), np.int64, len(tables))
        flat = np.fromiter(chain.from_iterable(tables), np.int64, int(lengths.sum()))
        if len(flat) and (flat.min() < 0 or flat.max() >= strings):
            return None
        starts = np.zeros(len(tables), np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        return cls(lengths, starts, flat)

    def indices(self, used: np.ndarray) -> np.ndarray:
        """The string indices of tables ``used`` (concatenated)."""
        lengths = self.lengths[used]
        total = int(lengths.sum())
        shift = np.repeat(self.starts[used] - (np.cumsum(lengths) - lengths), lengths)
        return self.flat[shift + np.arange(total)]


def present(indices: np.ndarray, size: int) -> np.ndarray:
    """The distinct values of ``indices`` (all in ``0 .. size - 1``), in order."""
    return np.flatnonzero(np.bincount(indices, minlength=size))


def names_ok(memo: dict[str, str | None], names: list[str]) -> bool:
    """True when the memoized check finds no problem with any of ``names``."""
    return not any(map(memo.__getitem__, names))


def string_bytes(lengths: np.ndarray) -> np.ndarray:
    """``sys.getsizeof`` of ASCII strings of these lengths (an estimate for others)."""
    return lengths + STR_BYTES


def key_lengths_ok(lengths: np.ndarray, max_key_length: int) -> bool:
    """``Limits.key_problem`` for strings of these lengths: none empty, none too long."""
    return not len(lengths) or bool(lengths.min() >= 1 and lengths.max() <= max_key_length)


def fold_ids(
    fold: Interned,
    strs: np.ndarray,
    str_bytes: np.ndarray,
    tables: Tables,
    used: np.ndarray,
    is_keys: bool,
) -> np.ndarray:
    """Each used table's fold-wide id (interned on first use), indexed by record table;
    ``str_bytes`` is each record string's size (what a new table's names add to ``nbytes``)."""
    intern = fold.keysets if is_keys else fold.shapes
    listed = fold.keyset_list if is_keys else fold.shape_list
    out = np.zeros(len(tables.lengths), np.int64)
    lengths = tables.lengths[used]
    added = 0
    for width in np.unique(lengths).tolist():  # tuples of one width at a time
        these = used[lengths == width]
        at = tables.starts[these][:, None] + np.arange(width)
        flat = tables.flat[at]
        names = list(map(tuple, strs[flat].tolist()))
        base = len(listed)
        # one C-level pass: a known tuple gives its id, a new one takes base + its position
        ids = np.fromiter(map(intern.setdefault, names, count(base)), np.int64, len(names))
        new = ids == base + np.arange(len(names))
        if new.any():  # renumber the new ones base, base + 1, ... in order
            renumber = np.cumsum(new) - 1 + base
            fresh = ids >= base
            ids[fresh] = renumber[ids[fresh] - base]
            added_names = list(compress(names, new.tolist()))
            intern.update(zip(added_names, range(base, base + len(added_names)), strict=True))
            listed.extend(added_names)
            added += len(added_names) * (TABLE_BYTES + POINTER_BYTES * width)
            added += int(str_bytes[flat[new]].sum())
        out[these] = ids
    fold.nbytes += added
    return out
