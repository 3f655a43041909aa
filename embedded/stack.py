"""The whole pipeline on this machine: Kafka, ClickHouse, topics and N aggregator processes.

Used by ``make demo``, the load tests and the integration tests; everything it starts it
stops, and every port is a free one on 127.0.0.1.

ClickHouse requires a password: the one generated at the data dir's first start
(``<workdir>/clickhouse/secrets/clickhouse-password``) unless ``StackConfig.clickhouse_password``
sets one. Aggregators get it as ``TALLY_CLICKHOUSE_PASSWORD``; other code takes it from the
stack: ``stack.clickhouse_password``, ``stack.clickhouse_settings`` (a ``ClickHouseSettings``)
or a ready client, ``stack.clickhouse_client()``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import clickhouse_connect

from tally.aggregator.settings import command_line as aggregator_command_line
from tally.aggregator.sink import RollupSink
from tally.clickhouse.settings import DEFAULT_DATABASE, ClickHouseSettings
from tally.clickhouse.sink_base import apply_ddl_once
from tally.embedded.clickhouse.process import EmbeddedClickHouse, start_clickhouse
from tally.embedded.kafka_broker import start_kafka
from tally.embedded.kafka_cluster import KafkaCluster, replication_for, start_cluster
from tally.embedded.kafka_node import EmbeddedKafka, free_ports
from tally.embedded.lifecycle import StopsOnExit
from tally.kafka.admin import create_topic
from tally.kafka.settings import AGGREGATOR_GROUP, EVENTS_TOPIC
from tally.schemas.access import access_model
from tally.schemas.ddl import RollupSchema


@dataclass
class StackConfig:
    """Knobs for a local stack. Test-only speedups (short group timeouts) live here."""

    partitions: int = 8
    aggregators: int = 2
    topic: str = EVENTS_TOPIC
    group: str = AGGREGATOR_GROUP
    database: str = DEFAULT_DATABASE
    flush_interval_s: float = 1.0
    session_timeout_ms: int = 6_000
    heartbeat_ms: int = 500
    time_zone: str = "UTC"
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    clickhouse_user: str = "default"
    # None: the password generated at the data dir's first start.
    clickhouse_password: str | None = field(default=None, repr=False)
    # More than one: a local cluster (topics replicated min(3, N) times, min ISR one less).
    kafka_brokers: int = 1


@dataclass
class Stack(StopsOnExit):
    """A running local stack."""

    workdir: Path
    config: StackConfig
    kafka: EmbeddedKafka | KafkaCluster
    clickhouse: EmbeddedClickHouse
    aggregators: list[subprocess.Popen] = field(default_factory=list)
    metrics_ports: dict[int, int] = field(default_factory=dict)
    owns_kafka: bool = True  # False: the Kafka was passed to start_stack, which leaves it running

    @property
    def clickhouse_user(self) -> str:
        """The ClickHouse user every component of the stack uses."""
        return self.clickhouse.user

    @property
    def clickhouse_password(self) -> str:
        """The ClickHouse password every component of the stack uses."""
        return self.clickhouse.password

    @property
    def clickhouse_settings(self) -> ClickHouseSettings:
        """URL, user and password of the stack's ClickHouse, as the aggregator takes them."""
        return ClickHouseSettings(
            url=self.clickhouse.url, user=self.clickhouse.user, password=self.clickhouse.password
        )

    def component_settings(self, component: str) -> ClickHouseSettings:
        """URL, user and password of one component's own ClickHouse user (``aggregator``,
        ``traces``, ``monitors``, ``api``, ``sql``; ``tally.schemas.access``)."""
        user, password = self.clickhouse.login(component)
        return ClickHouseSettings(url=self.clickhouse.url, user=user, password=password)

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic."""
        return f"{self.config.topic}.dlq"

    def aggregator_command(self, index: int, metrics_port: int = 0) -> list[str]:
        """The command line of aggregator ``index``."""
        c = self.config
        return [
            *aggregator_command_line(
                bootstrap=self.kafka.bootstrap,
                topic=c.topic,
                group=c.group,
                clickhouse_url=self.clickhouse.url,
                database=c.database,
                time_zone=c.time_zone,
                flush_interval=c.flush_interval_s,
                session_timeout_ms=c.session_timeout_ms,
                heartbeat_ms=c.heartbeat_ms,
                metrics_port=metrics_port,
                initial_offset="earliest",
                clickhouse_user=self.clickhouse.login("aggregator")[0],
            ),
            *c.extra_args,
        ]

    def start_aggregator(self) -> subprocess.Popen:
        """Start one more aggregator process (logs in the workdir)."""
        index = len(self.metrics_ports)
        port = free_ports(1)[0]
        log = open(self.workdir / f"aggregator-{index}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            self.aggregator_command(index, port), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=self.aggregator_env(),
        )  # fmt: skip
        log.close()
        self.aggregators.append(proc)
        self.metrics_ports[proc.pid] = port
        return proc

    def aggregator_env(self) -> dict[str, str]:
        """The launcher's environment, the aggregator user's password, then ``config.env``."""
        password = {"TALLY_CLICKHOUSE_PASSWORD": self.clickhouse.login("aggregator")[1]}
        return {**os.environ, **password, **self.config.env}

    def metrics(self, proc: subprocess.Popen) -> dict[str, float]:
        """The Prometheus samples of one aggregator, by ``name{labels}``."""
        from urllib.request import urlopen

        from prometheus_client.parser import text_string_to_metric_families

        port = self.metrics_ports[proc.pid]
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def clickhouse_client(self):
        """A sync clickhouse-connect client to the stack's ClickHouse."""
        return clickhouse_connect.get_client(
            host=self.clickhouse.host,
            port=self.clickhouse.port,
            database="default",
            username=self.clickhouse.user,
            password=self.clickhouse.password,
        )

    def stop_aggregators(self, timeout: float = 60) -> list[int]:
        """SIGTERM every aggregator and wait; returns their exit codes."""
        for proc in self.aggregators:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.aggregators:
            try:
                codes.append(proc.wait(timeout))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                codes.append(proc.wait())
        self.aggregators.clear()
        return codes

    def stop(self) -> None:
        """Stop everything this stack started."""
        try:
            self.stop_aggregators()
        finally:
            try:
                if self.owns_kafka:
                    self.kafka.stop()
            finally:
                self.clickhouse.stop()


def start_stack(
    workdir: Path,
    config: StackConfig | None = None,
    aggregators: bool = True,
    kafka: EmbeddedKafka | KafkaCluster | None = None,
) -> Stack:
    """Start Kafka (unless ``kafka`` is given) and ClickHouse, create the topics, then the
    aggregators."""
    config = config or StackConfig()
    workdir.mkdir(parents=True, exist_ok=True)
    clickhouse = start_clickhouse(
        workdir / "clickhouse",
        user=config.clickhouse_user,
        password=config.clickhouse_password,
        access=access_model(config.database),
    )  # passwords are stored in the data dir (generated there unless the config sets one)
    owns_kafka = kafka is None
    try:
        if kafka is None and config.kafka_brokers > 1:
            kafka = start_cluster(workdir / "kafka", config.kafka_brokers)
        elif kafka is None:
            kafka = start_kafka(workdir / "kafka")
    except BaseException:
        clickhouse.stop()
        raise
    stack = Stack(workdir, config, kafka, clickhouse, owns_kafka=owns_kafka)
    try:
        asyncio.run(_prepare(stack))
        if aggregators:
            for _ in range(config.aggregators):
                stack.start_aggregator()
    except BaseException:
        stack.stop()
        raise
    return stack


async def _prepare(stack: Stack) -> None:
    """Topics, and the rollup DDL (so readers never race the aggregators' start)."""
    kafka = stack.kafka
    r = kafka.replication if isinstance(kafka, KafkaCluster) else replication_for(1)
    copies, config = r.factor, r.topic_config()
    await create_topic(kafka.bootstrap, stack.config.topic, stack.config.partitions, copies, config)
    await create_topic(kafka.bootstrap, stack.dlq_topic, 1, copies, config)
    c = stack.config
    await apply_ddl_once(
        RollupSink(
            stack.clickhouse_settings, RollupSchema(database=c.database, time_zone=c.time_zone)
        )
    )
