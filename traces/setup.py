"""What a local service (``tally up``) needs for traces: the topic, the DDL, a writer command."""

from __future__ import annotations

from tally.clickhouse.settings import ClickHouseSettings
from tally.clickhouse.sink_base import apply_ddl_once
from tally.embedded.kafka_cluster import Replication
from tally.kafka.admin import create_topic
from tally.traces.ddl import TraceSchema
from tally.traces.settings import command_line
from tally.traces.sink import TraceSink
from tally.traces.transport import TOPIC


async def prepare_traces(
    bootstrap: str,
    clickhouse: ClickHouseSettings,
    database: str,
    partitions: int = 4,
    replication: Replication | None = None,
) -> None:
    """Create the traces topic (and its dead-letter topic) and the trace tables."""
    r = replication or Replication()
    await create_topic(bootstrap, TOPIC, partitions, r.factor, r.topic_config())
    await create_topic(bootstrap, f"{TOPIC}.dlq", 1, r.factor, r.topic_config())
    await apply_ddl_once(TraceSink(clickhouse, TraceSchema(database=database)))


def trace_writer_command(
    bootstrap: str, clickhouse_url: str, user: str, database: str, flush_interval_s: float
) -> list[str]:
    """The command line of one trace writer (the password goes in its environment)."""
    return command_line(
        bootstrap=bootstrap, clickhouse_url=clickhouse_url, clickhouse_user=user,
        database=database, flush_interval=flush_interval_s, metrics_port=0,
    )  # fmt: skip
