"""The replicas of one shard behind one client: the first that answers, the next when it fails.

``--clickhouse-url`` may list the replicas of one shard (``http://ch1:8123,http://ch2:8123``).
Every client of tally (the write services' :class:`Replicas`, the readers' sync and async
clients) follows one rule, :func:`connect_first` / :func:`connect_first_async` over a
:class:`ReplicaCursor`:

- **Start** at the replica that answered last (the first URL until one has): a client that
  lost its replica does not try the dead one first again.
- **Move on** in URL order, wrapping around, only past a replica that cannot be reached
  (refused, reset, timed out: no ClickHouse error code, :func:`unreachable`). A replica that
  answers with an error (a wrong password, an unknown database) ends the walk with that error:
  another replica would say the same.
- **Give up** with the last replica's error when none answers.
- A client whose replica stops answering in a request (:meth:`ReplicaCursor.lost`) is dropped
  and the next connect starts at the replica after it. The request itself is retried by its
  caller (the engine retries an insert under the same dedup token, which the replicated tables'
  Keeper-held dedup log makes a no-op if the first attempt landed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
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


@dataclass
class ReplicaCursor:
    """Where a client is in its replicas' URLs: the one that answered last."""

    urls: list[str]
    current: int = 0

    def order(self) -> list[int]:
        """The replicas to try, from the current one on, wrapping around."""
        count = len(self.urls)
        return [(self.current + step) % count for step in range(count)]

    def lost(self) -> None:
        """The current replica stopped answering: the next connect starts at the next one."""
        self.current = (self.current + 1) % len(self.urls)


class _Walk:
    """One connect attempt by the module's rule: the URLs to try in order; ``failed`` raises
    unless the walk moves on, ``answered`` moves the cursor to the replica that answered."""

    def __init__(self, cursor: ReplicaCursor) -> None:
        self.cursor = cursor
        self.order = cursor.order()
        self.index = self.order[0]

    def __iter__(self) -> Iterator[str]:
        for index in self.order:
            self.index = index
            yield self.cursor.urls[index]

    def failed(self, exc: Exception) -> None:
        if self.index == self.order[-1] or not unreachable(exc):
            raise exc

    def answered(self, client: T) -> T:
        self.cursor.current = self.index
        return client


def connect_first(cursor: ReplicaCursor, connect_to: Callable[[str], T]) -> T:
    """``connect_to(url)`` of the first replica that answers, by the module's rule."""
    walk = _Walk(cursor)
    for url in walk:
        try:
            return walk.answered(connect_to(url))
        except Exception as exc:
            walk.failed(exc)
    raise AssertionError("no replica URL")  # ClickHouseSettings refuses an empty URL list


async def connect_first_async(
    cursor: ReplicaCursor, connect_to: Callable[[str], Awaitable[T]]
) -> T:
    """``await connect_to(url)`` of the first replica that answers, by the module's rule."""
    walk = _Walk(cursor)
    for url in walk:
        try:
            return walk.answered(await connect_to(url))
        except Exception as exc:
            walk.failed(exc)
    raise AssertionError("no replica URL")


class Replicas:
    """One async client (a write service's) on the current replica of ``settings.urls``."""

    def __init__(self, settings: ClickHouseSettings, database: str | None = None) -> None:
        self.settings = settings
        self.database = database
        self.cursor = ReplicaCursor(settings.urls)
        self.client: AsyncClient | None = None

    async def connect(self) -> AsyncClient:
        """The client, connected by :func:`connect_first_async` if there is none."""
        if self.client is None:
            self.client = await connect_first_async(
                self.cursor, lambda url: connect(replace(self.settings, url=url), self.database)
            )
        return self.client

    async def call(self, request: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """``request(client)``; when the replica is unreachable, the next call uses another."""
        client = await self.connect()
        try:
            return await request(client)
        except Exception as exc:
            if unreachable(exc) and len(self.cursor.urls) > 1:
                await self.close()
                self.cursor.lost()
            raise

    async def close(self) -> None:
        """Close the current client (the next call connects again)."""
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
