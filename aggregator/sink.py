"""Writes rollup rows to ClickHouse (server or the embedded front) with clickhouse-connect.

Every insert pins the settings that decide how ClickHouse cuts it into blocks (dedup ids are
the token plus the block's ordinal, so a replay must form the same blocks whatever the server
or user profile says), is split so that no block touches more partitions than ClickHouse
accepts (``insert_plan``), and errors are classified by ``classify_error``: ``"data"`` (this
insert will fail again however long we wait) or ``"transient"`` (retrying can succeed).
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
from collections.abc import Mapping

import aiohttp
import clickhouse_connect
from clickhouse_connect.driver.asyncclient import AsyncClient
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    DataError,
    OperationalError,
    ProgrammingError,
)

from tally.aggregator.insert_plan import DEFAULT_PARTITIONS_PER_INSERT, InsertPiece, plan_inserts
from tally.aggregator.rows import FoldRows
from tally.aggregator.settings import ClickHouseSettings
from tally.engine.protocols import ErrorKind
from tally.schemas.ddl import TABLE, RollupSchema

log = logging.getLogger("tally.aggregator.sink")

COLUMN_TYPES = {
    "keys": "Array(String)",
    "minute": "DateTime('UTC')",
    "paths": "Array(LowCardinality(String))",
    "values": "Array(Float64)",
    "kind": "UInt8",
    "path": "String",
    "sketch_keys": "Array(Int16)",
    "sketch_counts": "Array(UInt64)",
    "stats": "Array(Float64)",
    "vmin": "Nullable(Float64)",
    "vmax": "Nullable(Float64)",
    "last": "Tuple(Int64, Float64)",
}

# Settings that shape the blocks of an insert into rollups_input and of the view's output into
# rollups (values: ClickHouse's defaults), and the ones dedup depends on. Pinned on every
# insert so a replay under another profile forms the same blocks with the same ids.
BLOCK_SETTINGS: Mapping[str, int | str] = {
    "max_block_size": 65409,  # the view's GROUP BY/ORDER BY output blocks
    "max_insert_block_size": 1048449,  # input blocks (older name of ..._rows)
    "max_insert_block_size_rows": 1048449,
    "max_insert_block_size_bytes": 0,
    "min_insert_block_size_rows": 1048449,  # squashing of the input
    "min_insert_block_size_bytes": 268402944,
    "min_insert_block_size_rows_for_materialized_views": 1048449,  # squashing of view output
    "min_insert_block_size_bytes_for_materialized_views": 268402944,
    "use_strict_insert_block_limits": 0,
    "max_threads": 1,  # one pipeline: block order and boundaries do not depend on scheduling
    "max_insert_threads": 1,
    "parallel_view_processing": 0,
    "materialized_views_squash_parallel_inserts": 1,
    "use_async_executor_for_materialized_views": 0,
    "max_partitions_per_insert_block": 100,  # the plan keeps pieces well below
    "throw_on_max_partitions_per_insert_block": 1,
    "async_insert": 0,  # synchronous: durable on return
    "insert_deduplicate": 1,
    "deduplicate_insert": "enable",  # 25.x+: supersedes insert_deduplicate
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "materialized_views_ignore_errors": 0,  # a failing view fails the insert, never drops rows
    "ignore_materialized_views_with_dropped_target_table": 0,
}
# Always sent (a server that does not know them must refuse the insert, not ignore them).
REQUIRED_SETTINGS = frozenset(
    {
        "insert_deduplicate",
        "insert_deduplication_token",
        "deduplicate_blocks_in_dependent_materialized_views",
        "async_insert",
        "max_block_size",
        "max_threads",
    }
)

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


async def connect(settings: ClickHouseSettings, database: str | None = None) -> AsyncClient:
    """An async clickhouse-connect client for ``settings.url``."""
    endpoint = settings.endpoint
    return await clickhouse_connect.get_async_client(
        host=endpoint.host,
        port=endpoint.port,
        username=settings.user,
        password=settings.password,
        secure=endpoint.secure,
        verify=settings.verify_tls,
        ca_cert=settings.ca_cert,
        database=database or "default",
        send_receive_timeout=int(settings.insert_timeout_s),
        compress="lz4",
    )


def pinned_settings(client: AsyncClient, token: str) -> dict[str, int | str]:
    """``BLOCK_SETTINGS`` that ``client``'s server knows (the dedup essentials always), plus
    ``insert_deduplication_token``: what every exactly-once insert sends."""
    known = client.server_settings
    pinned = {
        k: v for k, v in BLOCK_SETTINGS.items() if not known or k in known or k in REQUIRED_SETTINGS
    }
    pinned["insert_deduplication_token"] = token
    return pinned


class RollupSink:
    """Applies the DDL and inserts rows with a dedup token (one or more inserts per call)."""

    def __init__(
        self,
        settings: ClickHouseSettings,
        schema: RollupSchema,
        partitions_per_insert: int = DEFAULT_PARTITIONS_PER_INSERT,
    ) -> None:
        self.settings = settings
        self.schema = schema
        self.partitions_per_insert = partitions_per_insert
        self._client: AsyncClient | None = None

    async def start(self) -> None:
        """Connect (raises if ClickHouse is unreachable; callers retry)."""
        self._client = await connect(self.settings)

    async def apply_ddl(self) -> None:
        """Create what is missing; align the view, the dedup window and the TTL with the flags."""
        client = self._require()
        for statement in [*self.schema.statements(), *self.schema.alignment_statements()]:
            await client.command(statement)
        if await self._ttl_differs():
            log.info("rollups TTL changed; applying", extra={"ttl": self.schema.ttl_clause()})
            await client.command(
                self.schema.ttl_statement(), settings={"materialize_ttl_after_modify": 0}
            )

    async def _ttl_differs(self) -> bool:
        """True when the table's TTL is not the configured one (compared as ClickHouse formats it).

        ``engine_full`` is read through the Native format (no TSV escaping of quotes) and both
        sides are normalised by ``formatQuerySingleLine``, so identical flags never ALTER.
        """
        client = self._require()
        result = await client.query(
            "SELECT engine_full FROM system.tables"
            " WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": self.schema.database, "t": TABLE},
        )
        if not result.result_rows:
            return False
        current = ttl_of_engine(str(result.result_rows[0][0]))
        wanted = self.schema.ttl_clause()
        if current is None:
            return True
        if " ".join(current.split()) == " ".join(wanted.split()):
            return False
        same = await client.query(
            "SELECT formatQuerySingleLine(concat('SELECT ', {a:String}))"
            " = formatQuerySingleLine(concat('SELECT ', {b:String}))",
            parameters={"a": current, "b": wanted},
        )
        return not bool(same.result_rows[0][0])

    def plan(self, rows: FoldRows, token: str) -> list[InsertPiece]:
        """The inserts for one flush: one piece with ``token``, or ``token/<i>`` per piece."""
        return plan_inserts(rows, token, self.schema, self.partitions_per_insert)

    def insert_settings(self, token: str) -> dict[str, int | str]:
        """The settings of one insert: ``BLOCK_SETTINGS`` the server knows, plus the token."""
        return pinned_settings(self._require(), token)

    async def insert(self, rows: FoldRows, token: str) -> None:
        """Insert ``rows`` synchronously (durable on return); a replay with ``token`` is a no-op.

        The rows go to the Null table ``rollups_input``; its view writes ``rollups``, and the
        token is carried to the view's blocks (``deduplicate_blocks_in_dependent_materialized_
        views``), so a repeated range is dropped there, block by block. A flush touching more
        partitions than one insert may is split by ``plan`` and its pieces inserted in order;
        a replay re-inserts every piece and ClickHouse drops those it already has.
        """
        for piece in self.plan(rows, token):
            await self.insert_piece(piece)

    async def insert_piece(self, piece: InsertPiece) -> None:
        """Insert one planned piece under its own token."""
        names = piece.rows.column_names()
        await self._require().insert(
            self.schema.input_table,
            piece.rows.columns(),
            column_names=list(names),
            column_type_names=[COLUMN_TYPES[n] for n in names],
            column_oriented=True,
            settings=self.insert_settings(piece.token),
        )

    def classify(self, exc: BaseException) -> ErrorKind:
        """``classify_error``: whether retrying this insert can succeed."""
        return classify_error(exc)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _require(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("RollupSink.start() was not called")
        return self._client


_TTL = re.compile(r"\bTTL (.*?)(?: SETTINGS |$)", re.DOTALL)


def ttl_of_engine(engine_full: str) -> str | None:
    """The TTL expression in a ``system.tables.engine_full`` text, or None."""
    match = _TTL.search(engine_full)
    return match.group(1).strip() if match else None
