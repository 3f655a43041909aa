"""Single-flight: identical concurrent calls run once; cancellation and errors are shared safely."""

from __future__ import annotations

import asyncio

import pytest

from tally.api.coalesce import Coalescer


async def test_identical_calls_in_flight_run_once():
    coalescer, calls = Coalescer(), []

    async def query(tag: str) -> str:
        calls.append(tag)
        await asyncio.sleep(0.05)
        return tag

    results = await asyncio.gather(
        *(coalescer.run(("series", "a"), lambda: query("a")) for _ in range(10)),
        coalescer.run(("series", "b"), lambda: query("b")),
    )
    assert results == ["a"] * 10 + ["b"]
    assert calls == ["a", "b"] and coalescer.shared == 9
    assert await coalescer.run(("series", "a"), lambda: query("a2")) == "a2"  # nothing cached


async def test_a_cancelled_waiter_does_not_cancel_the_others():
    coalescer = Coalescer()
    started = asyncio.Event()

    async def query() -> int:
        started.set()
        await asyncio.sleep(0.05)
        return 42

    first = asyncio.ensure_future(coalescer.run("k", query))
    await started.wait()
    second = asyncio.ensure_future(coalescer.run("k", query))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == 42


async def test_errors_reach_every_waiter():
    coalescer = Coalescer()

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("bad range")

    results = await asyncio.gather(
        *(coalescer.run("k", failing) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ValueError) for r in results)
    with pytest.raises(ValueError):
        await coalescer.run("k", failing)
