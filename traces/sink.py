"""Inserts trace rows into ClickHouse, each table under the flush's dedup token.

A table rejected for its content after an earlier table of the same flush landed raises
``PartlyInserted`` naming the landed tables; the engine's isolation then inserts the re-read
parts of the range without them (``exclude``), so no table is written twice.
"""

from __future__ import annotations

from dataclasses import replace

from clickhouse_connect.driver.asyncclient import AsyncClient

from tally.clickhouse.ddl import run_ddl
from tally.clickhouse.failover import Replicas
from tally.clickhouse.insert_settings import pinned_settings
from tally.clickhouse.settings import ClickHouseSettings
from tally.clickhouse.sink_base import PartlyInserted, ReplicaSink
from tally.traces.ddl import EXECUTIONS, JOB_LOG, LINES, TraceSchema
from tally.traces.fold import EXECUTION_COLUMNS, JOB_LOG_COLUMNS, LINE_COLUMNS, TraceRows


class TraceSink(ReplicaSink):
    """The trace writer's ``engine.protocols.Sink``: three tables, one token each."""

    def __init__(self, settings: ClickHouseSettings, schema: TraceSchema) -> None:
        self.settings = settings
        self.schema = schema
        self.replicas = Replicas(settings)

    async def apply_ddl(self) -> None:
        """Create the trace tables if missing; align their dedup window."""
        client = self.client()
        await run_ddl(client, self.schema.statements())
        await run_ddl(client, self.schema.alter_statements())

    def insert_settings(self, client: AsyncClient, token: str) -> dict[str, int | str]:
        """The aggregator's pinned block settings (what the server knows), plus ``token``."""
        pinned = pinned_settings(client, token)
        pinned["max_partitions_per_insert_block"] = 1000
        return pinned

    async def insert(self, rows: TraceRows, token: str) -> None:
        """Insert synchronously (durable on return); a replay with ``token`` inserts nothing.

        Each table gets ``<token>/<table>``; a retry after a partial failure re-inserts every
        table and ClickHouse drops the ones it already has. A data rejection after a table
        landed raises :class:`PartlyInserted` with the landed tables.
        """
        landed: list[str] = []
        for table, columns, data in (
            (EXECUTIONS, EXECUTION_COLUMNS, rows.executions),
            (LINES, LINE_COLUMNS, rows.lines),
            (JOB_LOG, JOB_LOG_COLUMNS, rows.job_log),
        ):
            if not data:
                continue
            try:
                await self.replicas.call(
                    lambda client, table=table, columns=columns, data=data: client.insert(
                        self.schema.table(table),
                        data,
                        column_names=list(columns),
                        settings=self.insert_settings(client, f"{token}/{table}"),
                    )
                )
            except Exception as exc:
                if landed and self.classify(exc) == "data":
                    raise PartlyInserted(exc, table, frozenset(landed)) from exc
                raise
            landed.append(table)

    def exclude(self, rows: TraceRows, landed: frozenset[str]) -> TraceRows:
        """``rows`` without the tables a :class:`PartlyInserted` insert landed."""
        return replace(
            rows,
            executions=[] if EXECUTIONS in landed else rows.executions,
            lines=[] if LINES in landed else rows.lines,
            job_log=[] if JOB_LOG in landed else rows.job_log,
        )
