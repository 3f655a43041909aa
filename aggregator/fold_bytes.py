"""What a fold's entries cost in memory (CPython, 64-bit): the estimate behind ``nbytes``.

An entry is its dict slot, its 3-tuple key and a list of ``n`` values, each a pointer plus a
number object (a float or an int, up to 24 bytes). Both the event-by-event fold and the
column fold count with these, so a record costs the same whichever way it is folded.
"""

ENTRY_BYTES = 300
VALUE_BYTES = 8 + 24
DIST_BUCKET_BYTES = 100  # a dict slot with an int key and an int count
# An interned keyset/shape: dict slot + tuple, plus its strings (measured with getsizeof).
TABLE_BYTES = 200
POINTER_BYTES = 8
