"""Where a run sends and reads: Kafka, ClickHouse, topic, group, database, and who to watch."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import clickhouse_connect

from tally.clickhouse.settings import DEFAULT_DATABASE
from tally.kafka.settings import AGGREGATOR_GROUP, EVENTS_TOPIC

if TYPE_CHECKING:
    from tally.embedded.stack import Stack


@dataclass(frozen=True)
class Endpoints:
    """The pipeline under test (embedded or external) and the processes to sample."""

    bootstrap: str
    clickhouse_url: str
    topic: str = EVENTS_TOPIC
    group: str = AGGREGATOR_GROUP
    database: str = DEFAULT_DATABASE
    clickhouse_user: str = "default"
    clickhouse_password: str = field(default="", repr=False)
    aggregator_pids: tuple[int, ...] = ()
    kafka_pid: int | None = None
    clickhouse_pid: int | None = None
    flush_interval_s: float | None = None
    partitions: int | None = None

    @classmethod
    def of_stack(cls, stack: Stack, **fields: Any) -> Endpoints:
        """The Kafka and ClickHouse (with its login) of an embedded ``stack``, plus ``fields``."""
        return cls(
            bootstrap=stack.kafka.bootstrap,
            clickhouse_url=stack.clickhouse.url,
            clickhouse_user=stack.clickhouse_user,
            clickhouse_password=stack.clickhouse_password,
            **fields,
        )

    @property
    def embedded(self) -> bool:
        """True when this run started the stack (and so knows every process)."""
        return self.kafka_pid is not None

    def clickhouse(self, timeout_s: int = 300):
        """A new sync clickhouse-connect HTTP client (one per thread: they are not shared)."""
        url = urlparse(self.clickhouse_url)
        secure = url.scheme == "https"
        return clickhouse_connect.get_client(
            host=url.hostname or "127.0.0.1",
            port=url.port or (8443 if secure else 8123),
            username=self.clickhouse_user,
            password=self.clickhouse_password,
            secure=secure,
            database="default",
            send_receive_timeout=timeout_s,
            # Our embedded front does not compress responses; a real server may.
            compress=False,
        )


def password_from_env() -> str:
    """ClickHouse password for external runs: from the environment only, never a flag."""
    return os.environ.get("TALLY_CLICKHOUSE_PASSWORD", "")
