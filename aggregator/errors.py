"""Tell an insert that ClickHouse will never accept from one that waiting will fix.

Stop-gap until ``sink.classify_error`` exists: the worker uses that when present.
"""

from __future__ import annotations

import re
import struct
from typing import Literal

from clickhouse_connect.driver.exceptions import DatabaseError, DataError, ProgrammingError

ErrorKind = Literal["data", "transient"]

# ClickHouse codes that a later attempt can succeed with (overload, limits, network, replicas).
TRANSIENT_CODES = frozenset(
    {3, 159, 164, 202, 203, 209, 210, 236, 241, 242, 252, 285, 319, 394, 425, 999}
)
_CODE = re.compile(r"Code: (\d+)")


def classify_error(exc: BaseException) -> ErrorKind:
    """``data`` for an insert ClickHouse (or the client's encoder) rejects for its content."""
    if isinstance(exc, DataError | ProgrammingError):
        return "data"  # client-side: a value the column type cannot hold
    if isinstance(exc, TypeError | ValueError | OverflowError | struct.error):
        return "data"  # raised while encoding the columns
    if isinstance(exc, DatabaseError):
        found = _CODE.search(str(exc))
        if found is None:
            return "transient"
        code = int(found.group(1))
        if code == 252 and "partitions for single insert block" in str(exc).lower():
            return "data"  # max_partitions_per_insert_block: the same rows fail again
        return "transient" if code in TRANSIENT_CODES else "data"
    return "transient"
