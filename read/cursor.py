"""Opaque keyset cursors: the sort-order values of a page's last row, base64url JSON.

A list ordered by ``(started, execution_id)`` hands back ``encode([started_us, id])``; the next
request decodes it and continues strictly after that row (no offsets: rows written between
requests neither repeat nor vanish). A cursor that does not decode is a 400, never SQL.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from tally.read.errors import ReadError

MAX_CURSOR = 4096


class BadCursor(ReadError):
    """A cursor this server did not hand out (or one for another list)."""

    field = "cursor"


def encode(values: list[object]) -> str:
    """The cursor after a row whose sort values are ``values``."""
    return base64.urlsafe_b64encode(msgspec.json.encode(values)).decode().rstrip("=")


def decode(text: str, types: tuple[type, ...]) -> list[object]:
    """The values of ``text``, checked against ``types`` (one per sort column)."""
    if len(text) > MAX_CURSOR:
        raise BadCursor("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadCursor("cursor does not decode: pass the `next` value back unchanged") from None
    if (
        not isinstance(values, list)
        or len(values) != len(types)
        or not all(type(v) is t for v, t in zip(values, types, strict=True))
    ):
        raise BadCursor("cursor is not one of this list's")
    return values
