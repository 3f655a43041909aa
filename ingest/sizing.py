"""Upper bounds on the encoded size of events, so records can be capped in bytes.

The bound follows the ``BatchV1`` msgpack layout (see ``schemas/wire.py``) with the widest
header every item could need, plus what the columnar ``BatchV3`` adds per record (its event
count, a bin header per column and the leading offsets) and ``BatchV4`` its column types; it
is never below the real size of a one-event record in any version.
"""

from __future__ import annotations

from collections.abc import Sequence

ARRAY = 5  # msgpack array header, widest form
_INT = 9  # any msgpack integer or float
_STR = 5  # msgpack str header, widest form
_BIN = 5  # msgpack bin header, widest form
V3_COLUMNS = 19
RECORD_OVERHEAD = (
    1 + _INT + _STR + 4 * ARRAY  # [1, source, strings, keysets, shapes, events]
    + _INT + V3_COLUMNS * _BIN + 4 * 4  # version 3: event count, column headers, offsets
    + _STR + V3_COLUMNS  # version 4: one column type each
)  # fmt: skip
EVENT_OVERHEAD = ARRAY + 3 * _INT + ARRAY  # [at, keyset, shape, values]


def strings_bound(names: Sequence[str]) -> int:
    """Bytes ``names`` can cost in a record: table strings plus a list of their indices."""
    total = ARRAY
    for name in names:
        total += (len(name) if name.isascii() else len(name.encode())) + _STR + _INT
    return total


def event_bound(source: str, keys: Sequence[str], paths: Sequence[str], values: int) -> int:
    """Size bound of a record holding this one event (``values`` numbers)."""
    return (
        RECORD_OVERHEAD
        + len(source.encode())
        + EVENT_OVERHEAD
        + strings_bound(keys)
        + strings_bound(paths)
        + values * _INT
    )


def value_bound(max_path_length: int) -> int:
    """Most one value can cost: a path of ``max_path_length`` 4-byte characters, and a number."""
    return 4 * max_path_length + _STR + _INT + _INT
