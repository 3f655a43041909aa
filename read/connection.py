"""clickhouse-connect clients for the read side (sync and async), credentials from settings.

With several replicas in ``--clickhouse-url`` a reader connects by the one failover rule of
``clickhouse/failover.py`` (start at the replica that answered last, move on past unreachable
ones); a reader whose replica stops answering drops its client and moves its cursor on
(``Reader.run``), so its next request connects to the next replica that answers.
"""

from __future__ import annotations

from typing import Any

import clickhouse_connect

from tally.clickhouse.client import client_kwargs
from tally.clickhouse.failover import ReplicaCursor, connect_first, connect_first_async
from tally.read.settings import ReadSettings


def _kwargs(settings: ReadSettings, url: str) -> dict[str, Any]:
    timeout = settings.query_timeout_s
    kwargs = client_kwargs(settings.clickhouse, url, None, timeout)
    return {**kwargs, "compress": False, "autogenerate_session_id": False}


def _cursor(settings: ReadSettings, cursor: ReplicaCursor | None) -> ReplicaCursor:
    return ReplicaCursor(settings.clickhouse.urls) if cursor is None else cursor


def connect_sync(settings: ReadSettings, cursor: ReplicaCursor | None = None) -> Any:
    """A sync client on the first replica that answers from ``cursor`` on (a client without
    one: from the first URL)."""
    return connect_first(
        _cursor(settings, cursor),
        lambda url: clickhouse_connect.get_client(**_kwargs(settings, url)),
    )


async def connect_async(settings: ReadSettings, cursor: ReplicaCursor | None = None) -> Any:
    """An async client on the first replica that answers from ``cursor`` on (a client without
    one: from the first URL)."""
    return await connect_first_async(
        _cursor(settings, cursor),
        lambda url: clickhouse_connect.get_async_client(**_kwargs(settings, url)),
    )
