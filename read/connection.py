"""clickhouse-connect clients for the read side (sync and async), credentials from settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import clickhouse_connect

from tally.read.settings import ReadSettings


def _kwargs(settings: ReadSettings) -> dict[str, Any]:
    ch = settings.clickhouse
    url = urlparse(ch.url)
    secure = url.scheme == "https"
    return {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or (8443 if secure else 8123),
        "username": ch.user,
        "password": ch.password,
        "secure": secure,
        "verify": ch.verify_tls,
        "ca_cert": ch.ca_cert,
        "database": "default",
        "send_receive_timeout": int(settings.query_timeout_s),
        "compress": False,
        "autogenerate_session_id": False,
    }


def connect_sync(settings: ReadSettings) -> Any:
    """A sync client."""
    return clickhouse_connect.get_client(**_kwargs(settings))


async def connect_async(settings: ReadSettings) -> Any:
    """An async client."""
    return await clickhouse_connect.get_async_client(**_kwargs(settings))
