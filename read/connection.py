"""clickhouse-connect clients for the read side (sync and async), credentials from settings.

With several replicas in ``--clickhouse-url`` a reader connects to the first that answers; a
reader whose replica stops answering drops its client (``drop_if_unreachable``), so its next
request connects again, to the next replica that answers.
"""

from __future__ import annotations

from typing import Any

import clickhouse_connect

from tally.clickhouse.failover import unreachable
from tally.clickhouse.settings import ClickHouseEndpoint
from tally.read.settings import ReadSettings


def _kwargs(settings: ReadSettings, endpoint: ClickHouseEndpoint) -> dict[str, Any]:
    ch = settings.clickhouse
    return {
        "host": endpoint.host,
        "port": endpoint.port,
        "username": ch.user,
        "password": ch.password,
        "secure": endpoint.secure,
        "verify": ch.verify_tls,
        "ca_cert": ch.ca_cert,
        "database": "default",
        "send_receive_timeout": int(settings.query_timeout_s),
        "compress": False,
        "autogenerate_session_id": False,
    }


def connect_sync(settings: ReadSettings) -> Any:
    """A sync client on the first replica that answers (the last one's error if none does)."""
    endpoints = settings.clickhouse.endpoints
    for endpoint in endpoints[:-1]:
        try:
            return clickhouse_connect.get_client(**_kwargs(settings, endpoint))
        except Exception as exc:
            if not unreachable(exc):
                raise
    return clickhouse_connect.get_client(**_kwargs(settings, endpoints[-1]))


async def connect_async(settings: ReadSettings) -> Any:
    """An async client on the first replica that answers (the last one's error if none does)."""
    endpoints = settings.clickhouse.endpoints
    for endpoint in endpoints[:-1]:
        try:
            return await clickhouse_connect.get_async_client(**_kwargs(settings, endpoint))
        except Exception as exc:
            if not unreachable(exc):
                raise
    return await clickhouse_connect.get_async_client(**_kwargs(settings, endpoints[-1]))
