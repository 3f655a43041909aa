"""Dashboard paths that match nothing the key ever wrote, with the closest known paths
(``amount.summ`` -> ``amount.sum``), so a typo shows on its widget instead of a zero."""

from __future__ import annotations

import difflib
import re

import msgspec

from tally.read.errors import ReadError
from tally.read.expression import parse
from tally.read.patterns import PathWildcard, is_wildcard


class UnknownPath(msgspec.Struct, frozen=True):
    """A path (or wildcard) of a dashboard row that no path of the key matches; ``row`` is
    the row as written (the path, or the expression reading it)."""

    row: str
    path: str
    suggestions: list[str]


def _needed(paths: list[str], expressions: list[str]) -> list[tuple[str, str]]:
    """``(row, path)`` for each path asked for and each path an expression reads."""
    found = [(p, p) for p in paths]
    for text in expressions:
        try:
            found.extend((text, p) for p in parse(text).paths)
        except ReadError:
            continue  # the series request reports it
    return list(dict.fromkeys(found))


def _matches(path: str, known: list[str]) -> bool:
    if not is_wildcard(path):
        return path in known
    try:
        regex = re.compile(PathWildcard.parse(path).regex)
    except ReadError:
        return True  # a bad pattern: the series request reports it
    return any(regex.match(k) for k in known)


def unknown_paths(paths: list[str], expressions: list[str], known: list[str]) -> list[UnknownPath]:
    """Paths of ``paths`` and ``expressions`` that match none of ``known`` (none when the key
    has no paths at all: the page says the key is empty), each with up to 3 close matches."""
    if not known:
        return []
    return [
        UnknownPath(row, p, difflib.get_close_matches(p, known, n=3, cutoff=0.6))
        for row, p in _needed(paths, expressions)
        if not _matches(p, known)
    ]
