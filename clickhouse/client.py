"""The async clickhouse-connect client of a write service (aggregator, trace writer)."""

from __future__ import annotations

import clickhouse_connect
from clickhouse_connect.driver.asyncclient import AsyncClient

from tally.clickhouse.settings import ClickHouseSettings


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
