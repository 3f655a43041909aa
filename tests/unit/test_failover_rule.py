"""The one replica rule (``clickhouse/failover.py``) that write services and readers share:
start at the replica that answered last, move on only past unreachable ones, wrap around."""

from __future__ import annotations

import asyncio

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tally.clickhouse.failover import ReplicaCursor, connect_first, connect_first_async

URLS = ["http://a:8123", "http://b:8123", "http://c:8123"]


def attempts(down: set[str], refusing: set[str] = frozenset()):  # type: ignore[assignment]
    """A connect function over fake replicas; ``tried`` lists the URLs it was called with."""
    tried: list[str] = []

    def connect_to(url: str) -> str:
        tried.append(url)
        if url in down:
            raise ConnectionRefusedError(f"{url} refused")
        if url in refusing:
            raise DatabaseError("Code: 516. Authentication failed")
        return url

    return connect_to, tried


def test_starts_at_the_first_url_and_moves_past_unreachable_ones() -> None:
    cursor = ReplicaCursor(URLS)
    connect_to, tried = attempts({"http://a:8123"})
    assert connect_first(cursor, connect_to) == "http://b:8123"
    assert tried == URLS[:2] and cursor.current == 1


def test_starts_at_the_replica_that_answered_last_and_wraps_around() -> None:
    cursor = ReplicaCursor(URLS, current=1)
    cursor.lost()  # b stopped answering in a request: start at c
    connect_to, tried = attempts({"http://c:8123"})
    assert connect_first(cursor, connect_to) == "http://a:8123"
    assert tried == ["http://c:8123", "http://a:8123"] and cursor.current == 0


def test_a_replica_that_answers_with_an_error_ends_the_walk() -> None:
    cursor = ReplicaCursor(URLS)
    connect_to, tried = attempts(set(), refusing={"http://a:8123"})
    with pytest.raises(DatabaseError, match="516"):
        connect_first(cursor, connect_to)
    assert tried == ["http://a:8123"] and cursor.current == 0


def test_none_answering_raises_the_last_replicas_error_the_async_walk_alike() -> None:
    cursor = ReplicaCursor(URLS, current=2)
    connect_to, tried = attempts(set(URLS))

    async def aconnect(url: str) -> str:
        return connect_to(url)

    with pytest.raises(ConnectionRefusedError, match="b:8123"):
        asyncio.run(connect_first_async(cursor, aconnect))
    assert tried == ["http://c:8123", "http://a:8123", "http://b:8123"]
    assert cursor.current == 2
