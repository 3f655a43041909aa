"""Fixtures that start the real parts: Apache Kafka (KRaft) and ClickHouse (chDB behind HTTP)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tally.embedded.kafka_install import install
from tally.embedded.stack import Stack, StackConfig, start_stack


@pytest.fixture(scope="session", autouse=True)
def kafka_jars() -> Path:
    """The Kafka jars (downloaded from Maven Central on first use)."""
    return install()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start a stack with the given config; stopped at teardown."""
    stacks: list[Stack] = []

    def make(**overrides) -> Stack:
        aggregators = overrides.pop("start_aggregators", True)
        stack = start_stack(tmp_path / f"stack{len(stacks)}", StackConfig(**overrides), aggregators)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.5) -> None:
    """Poll ``predicate`` until true; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
