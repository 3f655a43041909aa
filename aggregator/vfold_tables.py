"""A version-3 record's keyset and shape tables, checked and mapped to fold-wide ids.

Python work is per distinct string (one memoized check) and per distinct table used by some
event (one dict lookup for its fold-wide id), never per event: names are gathered with numpy
from an object array of the record's strings and turned into tuples in C (``map(tuple, ...)``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from itertools import chain
from typing import Protocol

import numpy as np

from tally.aggregator.fold_bytes import POINTER_BYTES, TABLE_BYTES


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


def names_ok(memo: dict[str, str | None], names: list[str]) -> bool:
    """True when the memoized check finds no problem with any of ``names``."""
    return not any(map(memo.__getitem__, names))


def fold_ids(
    fold: Interned,
    strs: np.ndarray,
    tables: Tables,
    used: np.ndarray,
    is_keys: bool,
) -> np.ndarray:
    """Each used table's fold-wide id (interned on first use), indexed by record table."""
    intern = fold.keysets if is_keys else fold.shapes
    listed = fold.keyset_list if is_keys else fold.shape_list
    out = np.zeros(len(tables.lengths), np.int64)
    lengths = tables.lengths[used]
    get = intern.get
    added = 0
    for width in np.unique(lengths).tolist():  # tuples of one width at a time
        these = used[lengths == width]
        at = tables.starts[these][:, None] + np.arange(width)
        names = list(map(tuple, strs[tables.flat[at]].tolist()))
        ids = list(map(get, names))
        if None in ids:
            for j, found in enumerate(ids):
                if found is None:
                    t = names[j]
                    found = get(t)
                    if found is None:
                        found = intern[t] = len(listed)
                        listed.append(t)
                        added += TABLE_BYTES + POINTER_BYTES * width + sum(map(sys.getsizeof, t))
                    ids[j] = found
        out[these] = ids
    fold.nbytes += added
    return out
