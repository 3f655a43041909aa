"""ClickHouse errors classified: ``"data"`` (this insert fails again however long we wait) or
``"transient"`` (retrying can succeed)."""

from __future__ import annotations

import asyncio
import re
import struct
from typing import TYPE_CHECKING

import aiohttp
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    DataError,
    OperationalError,
    ProgrammingError,
)

if TYPE_CHECKING:
    from tally.engine.protocols import ErrorKind

# ClickHouse error codes (src/Common/ErrorCodes.cpp; names via errorCodeToName) that say
# nothing about the rows: the server is busy, short of memory or disk, unreachable, shutting
# down, or misconfigured (auth, missing table). Retrying (after an operator acts) succeeds, so
# they must never dead-letter a range.
TRANSIENT_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE (a cut connection)
        60,  # UNKNOWN_TABLE (schema being re-created: an operator's problem, not the rows')
        81,  # UNKNOWN_DATABASE
        95,  # CANNOT_READ_FROM_SOCKET
        96,  # CANNOT_WRITE_TO_SOCKET
        115,  # UNKNOWN_SETTING (server downgraded under us)
        159,  # TIMEOUT_EXCEEDED
        160,  # TOO_SLOW
        164,  # READONLY
        173,  # CANNOT_ALLOCATE_MEMORY
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        195,  # IP_ADDRESS_NOT_ALLOWED
        198,  # DNS_ERROR
        201,  # QUOTA_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE
        244,  # UNEXPECTED_ZOOKEEPER_ERROR
        252,  # TOO_MANY_PARTS (merges behind); "Too many partitions" is data, see below
        254,  # NO_ACTIVE_REPLICAS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
        289,  # REPLICA_IS_NOT_IN_QUORUM
        319,  # UNKNOWN_STATUS_OF_INSERT
        364,  # RECEIVED_ERROR_TOO_MANY_REQUESTS
        372,  # SESSION_NOT_FOUND
        373,  # SESSION_IS_LOCKED
        394,  # QUERY_WAS_CANCELLED
        415,  # ALL_REPLICAS_LOST
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        473,  # DEADLOCK_AVOIDED
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
        733,  # TABLE_IS_BEING_RESTARTED
        735,  # QUERY_WAS_CANCELLED_BY_CLIENT
        749,  # TCP_CONNECTION_LIMIT_REACHED
        762,  # HTTP_CONNECTION_LIMIT_REACHED
        763,  # SESSION_REFUSED
        776,  # RESOURCE_LIMIT_EXCEEDED
        777,  # MEMORY_RESERVATION_KILLED
        778,  # MEMORY_RESERVATION_FAILED
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION (network/IO inside the server)
        1019,  # QUERY_SLOT_ACQUISITION_TIMEOUT
        1020,  # MEMORY_RESERVATION_ACQUISITION_TIMEOUT
    }
)
TOO_MANY_PARTS = 252
_CODE = re.compile(r"Code: (\d+)\.")


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code carried by ``exc`` (attribute or ``Code: N.`` text), or None."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def classify_error(exc: BaseException) -> ErrorKind:
    """``"data"`` if this insert will fail again however often it is retried, else ``"transient"``.

    Data: clickhouse-connect's client-side ``DataError``/``ProgrammingError`` (rows it cannot
    serialize), serialization errors (``ValueError``, ``TypeError``, ``OverflowError``,
    ``struct.error``), and server ``Code: N`` errors not in ``TRANSIENT_CODES`` (parse and
    type errors, ``Too many partitions for single INSERT block``, constraint and ``throwIf``
    violations). Transient: connection errors and timeouts, HTTP errors without a code (a
    proxy's 502/503), and the codes in ``TRANSIENT_CODES`` (memory, too many parts,
    throttling, Keeper, auth, missing table, a pinned setting the profile makes readonly).
    """
    code = error_code(exc)
    if code is not None:
        if code == TOO_MANY_PARTS:
            return "data" if "Too many partitions" in str(exc) else "transient"
        return "transient" if code in TRANSIENT_CODES else "data"
    if isinstance(exc, ProgrammingError) and "is readonly" in str(exc):
        return "transient"  # a profile forbids a pinned setting: configuration, not rows
    if isinstance(exc, DataError | ProgrammingError):
        return "data"
    if isinstance(exc, OperationalError | DatabaseError):
        return "transient"  # network error, or an HTTP error without a ClickHouse code
    if isinstance(exc, OSError | TimeoutError | asyncio.TimeoutError | aiohttp.ClientError):
        return "transient"
    if isinstance(exc, ValueError | TypeError | OverflowError | struct.error):
        return "data"
    return "transient"


def is_data_error(exc: BaseException) -> bool:
    """True when ``classify_error(exc) == "data"`` (waiting alone will not fix it)."""
    return classify_error(exc) == "data"
