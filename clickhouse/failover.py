"""The replicas of one shard behind one client: the first that answers, the next when it fails.

``--clickhouse-url`` may list the replicas of one shard (``http://ch1:8123,http://ch2:8123``).
A write service keeps one client on one replica; when a request fails because that replica
cannot be reached (refused, reset, timed out: no ClickHouse error code), the client is dropped
and the next request connects to the next replica that answers. The request itself is retried
by its caller (the engine retries an insert under the same dedup token, which the replicated
tables' Keeper-held dedup log makes a no-op if the first attempt landed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import aiohttp
from clickhouse_connect.driver.asyncclient import AsyncClient
from clickhouse_connect.driver.exceptions import OperationalError

from tally.clickhouse.client import connect
from tally.clickhouse.errors import error_code
from tally.clickhouse.settings import ClickHouseSettings

T = TypeVar("T")


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the server was not reached or stopped answering (no error code)."""
    if error_code(exc) is not None:
        return False  # the server answered: another replica would say the same
    return isinstance(
        exc, OperationalError | OSError | TimeoutError | asyncio.TimeoutError | aiohttp.ClientError
    )


class Replicas:
    """One async client on the current replica of ``settings.urls``."""

    def __init__(self, settings: ClickHouseSettings, database: str | None = None) -> None:
        self.settings = settings
        self.database = database
        self.current = 0
        self.client: AsyncClient | None = None

    async def connect(self) -> AsyncClient:
        """The client, connecting to the first replica that answers from the current one on;
        raises the last replica's error when none does."""
        if self.client is not None:
            return self.client
        urls = self.settings.urls
        error: BaseException | None = None
        for step in range(len(urls)):
            index = (self.current + step) % len(urls)
            one = replace(self.settings, url=urls[index])
            try:
                self.client = await connect(one, self.database)
            except Exception as exc:  # try the next replica
                error = exc
                continue
            self.current = index
            return self.client
        assert error is not None
        raise error

    async def call(self, request: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """``request(client)``; when the replica is unreachable, the next call uses another."""
        client = await self.connect()
        try:
            return await request(client)
        except Exception as exc:
            if unreachable(exc) and len(self.settings.urls) > 1:
                await self.close()
                self.current = (self.current + 1) % len(self.settings.urls)
            raise

    async def close(self) -> None:
        """Close the current client (the next call connects again)."""
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
