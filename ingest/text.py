"""One rule for the text the client ships: it must encode as UTF-8.

A Python ``str`` can hold lone surrogates (``os.fsdecode(b"report-\\xff.csv")`` gives
``"report-\\udcff.csv"``) that no UTF-8 encoder accepts. The metrics ``Tracker`` refuses
such keys and paths (``invalid_text``, counted as ``invalid``); traces keep the text and
escape each lone surrogate as ``\\udcff`` (``valid_text``), so the rest of the line survives.
"""

from __future__ import annotations

INVALID_TEXT = "invalid_text"


def text_problem(text: str) -> str | None:
    """``"invalid_text"`` when ``text`` cannot be encoded as UTF-8, else None."""
    if text.isascii():  # O(1) in CPython
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return INVALID_TEXT
    return None


def valid_text(text: str) -> str:
    """``text`` itself when it encodes as UTF-8, else with each lone surrogate escaped."""
    if text_problem(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def utf8_size(text: str) -> int:
    """Bytes ``text`` takes as UTF-8 (lone surrogates counted as their escape)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "backslashreplace"))
