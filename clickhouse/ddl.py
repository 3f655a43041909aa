"""The DDL runner: apply statements in order (each idempotent: ``IF NOT EXISTS``, ``MODIFY``)."""

from __future__ import annotations

from collections.abc import Iterable

from clickhouse_connect.driver.asyncclient import AsyncClient


async def run_ddl(client: AsyncClient, statements: Iterable[str]) -> None:
    """Run ``statements`` one by one; the first failure raises (ClickHouse has no DDL
    transactions, so what ran stays, and running the whole list again is safe)."""
    for statement in statements:
        await client.command(statement)
