"""Helpers for trace tests: a stack with the traces topic and trace writer processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from tally.embedded.stack import Stack
from tally.ingest import ClientSettings
from tally.kafka.admin import create_topic
from tally.traces.ddl import TraceSchema
from tally.traces.transport import TOPIC, TraceShipper, trace_settings


def create_traces_topic(stack: Stack, partitions: int = 4) -> None:
    """The traces topic and its dead-letter topic."""

    async def make() -> None:
        await create_topic(stack.kafka.bootstrap, TOPIC, partitions)
        await create_topic(stack.kafka.bootstrap, f"{TOPIC}.dlq", 1)

    asyncio.run(make())


def apply_trace_ddl(stack: Stack, schema: TraceSchema | None = None) -> None:
    """Create the trace tables (so readers never race the writers' start)."""
    client = stack.clickhouse_client()
    for statement in (schema or TraceSchema()).statements():
        client.command(statement)


def start_writer(stack: Stack, workdir: Path, name: str, *extra: str) -> subprocess.Popen:
    """One ``python -m tally.traces run`` process (log in ``workdir/<name>.log``)."""
    command = [
        sys.executable, "-m", "tally.traces", "run",
        "--bootstrap", stack.kafka.bootstrap,
        "--clickhouse-url", stack.clickhouse.url,
        "--clickhouse-user", stack.clickhouse.user,
        "--flush-interval", "0.3",
        "--session-timeout-ms", "3000",
        "--heartbeat-ms", "300",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "TALLY_CLICKHOUSE_PASSWORD": stack.clickhouse.password}
    with open(workdir / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )


def shipper(stack: Stack) -> TraceShipper:
    """A trace shipper on the stack's Kafka."""
    return TraceShipper(trace_settings(ClientSettings(bootstrap_servers=stack.kafka.bootstrap)))
