"""clickhouse-connect clients: the connection arguments every client of tally passes (the write
services' async client here, the readers' in ``read/connection.py``)."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.asyncclient import AsyncClient

from tally.clickhouse.settings import ClickHouseSettings, clickhouse_endpoint


def client_kwargs(
    settings: ClickHouseSettings, url: str, database: str | None, timeout_s: float
) -> dict[str, Any]:
    """clickhouse-connect's arguments for ``url`` (one of ``settings.urls``) as ``settings``'
    user, over TLS when the URL says https."""
    endpoint = clickhouse_endpoint(url)
    return {
        "host": endpoint.host,
        "port": endpoint.port,
        "username": settings.user,
        "password": settings.password,
        "secure": endpoint.secure,
        "verify": settings.verify_tls,
        "ca_cert": settings.ca_cert,
        "database": database or "default",
        "send_receive_timeout": int(timeout_s),
    }


async def connect(settings: ClickHouseSettings, database: str | None = None) -> AsyncClient:
    """An async clickhouse-connect client for ``settings.url`` (its first URL)."""
    kwargs = client_kwargs(settings, settings.urls[0], database, settings.insert_timeout_s)
    return await clickhouse_connect.get_async_client(**kwargs, compress="lz4")
