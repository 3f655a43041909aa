"""The local stack as a long-running service: what ``tally up`` starts, watches and stops.

Kafka, ClickHouse, N aggregators and the HTTP API on fixed ports, all data under one
directory so a restart keeps it. Either of Kafka and ClickHouse can be an external one
instead. Secrets (ClickHouse password, API tokens) are files under ``<data_dir>/secrets``
(mode 0600); the password reaches aggregators only through their environment.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tally.aggregator.settings import command_line as aggregator_command_line
from tally.aggregator.sink import RollupSink
from tally.api.server import PortInUse, ServerThread, check_port
from tally.api.settings import ApiSettings
from tally.api.sql import SqlSettings
from tally.api.tokens import load_or_create, tokens
from tally.clickhouse.settings import CONNECTION, DEFAULT_DATABASE, ClickHouseSettings
from tally.clickhouse.sink_base import apply_ddl_once
from tally.embedded.clickhouse.process import EmbeddedClickHouse, start_clickhouse
from tally.embedded.kafka_broker import start_kafka
from tally.embedded.kafka_cluster import KafkaCluster, Replication, replication_for, start_cluster
from tally.embedded.kafka_node import EmbeddedKafka
from tally.embedded.lifecycle import terminate
from tally.kafka.admin import create_topic
from tally.kafka.settings import EVENTS_TOPIC
from tally.read import ReadSettings
from tally.schemas.access import access_model
from tally.schemas.ddl import RollupSchema
from tally.traces.setup import prepare_traces, trace_writer_command
from tally.up.monitors_command import command_line as monitors_command_line
from tally.up.paths import CLICKHOUSE_PASSWORD_FILE, secret_path
from tally.up.stack_file import write_stack
from tally.web import WebSettings, web_handlers
from tally.web.traces_pages import TRACE_PAGES

TOPIC = EVENTS_TOPIC


def child_environment(launcher: Mapping[str, str], clickhouse_password: str) -> dict[str, str]:
    """A service child's environment: the launcher's, without the API's variables and without
    any ClickHouse password but the child's own (``TALLY_CLICKHOUSE_PASSWORD``); the Kafka SASL
    password stays (every child talks to Kafka). Passwords never go on command lines."""
    own = CONNECTION["clickhouse_password"].env or ""
    env = {
        k: v
        for k, v in launcher.items()
        if not k.startswith("TALLY_API_") and not k.endswith("CLICKHOUSE_PASSWORD")
    }
    env[own] = clickhouse_password
    return env


@dataclass(frozen=True)
class UpSettings:
    """What ``tally up`` runs; built once from the command line."""

    data_dir: Path
    kafka_port: int = 9092
    clickhouse_port: int = 8123
    api_host: str = "127.0.0.1"
    api_port: int = 8700
    aggregators: int = 2
    partitions: int = 8
    time_zone: str = "UTC"
    week_start: str = "monday"
    database: str = DEFAULT_DATABASE
    kafka_bootstrap: str | None = None  # external Kafka instead of the local one
    clickhouse_url: str | None = None  # external ClickHouse instead of the local one
    clickhouse_user: str = "default"
    external_clickhouse_password: str = field(default="", repr=False)
    api: bool = True
    flush_interval_s: float = 2.0
    heartbeat_ms: int = 3000  # aggregators: how soon a member learns of a rebalance
    monitors_dir: Path | None = None  # run the monitor service over these files
    dashboards_dir: Path | None = None  # the dashboard's YAML files (besides the built-ins)
    trace_writers: int = 1
    kafka_brokers: int = 1  # > 1: a local cluster on kafka_port, kafka_port + 1, ...


@dataclass
class Service:
    """The running parts; :meth:`stop` stops what :meth:`start` started, in reverse."""

    settings: UpSettings
    kafka: EmbeddedKafka | KafkaCluster | None = None
    clickhouse: EmbeddedClickHouse | None = None
    aggregators: list[subprocess.Popen] = field(default_factory=list)
    trace_writers: list[subprocess.Popen] = field(default_factory=list)
    api: ServerThread | None = None
    monitors: subprocess.Popen | None = None
    restarts: int = 0
    _password: str = field(default="", repr=False)

    @property
    def bootstrap(self) -> str:
        if self.settings.kafka_bootstrap:
            return self.settings.kafka_bootstrap
        return ",".join(f"127.0.0.1:{port}" for port in self._kafka_ports())

    def _kafka_ports(self) -> list[int]:
        s = self.settings
        return [s.kafka_port + i for i in range(max(1, s.kafka_brokers))]

    def _replication(self) -> Replication:
        """Of the topics we create: a local cluster's (3 copies, 2 in sync), else one copy."""
        return replication_for(1 if self.settings.kafka_bootstrap else self.settings.kafka_brokers)

    @property
    def clickhouse_url(self) -> str:
        return self.settings.clickhouse_url or f"http://127.0.0.1:{self.settings.clickhouse_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def preflight(self) -> None:
        """Fail before starting anything if a port we need is taken (clear message)."""
        s = self.settings
        wanted = []
        if not s.clickhouse_url:
            wanted.append(("ClickHouse", "127.0.0.1", s.clickhouse_port, "--clickhouse-port"))
        if not s.kafka_bootstrap:
            wanted += [("Kafka", "127.0.0.1", port, "--kafka-port") for port in self._kafka_ports()]
        if s.api:
            wanted.append(("the API", s.api_host, s.api_port, "--api-port"))
        for what, host, port, flag in wanted:
            try:
                check_port(host, port)
            except PortInUse as exc:
                raise PortInUse(
                    f"{exc}: {what} cannot listen there. Stop what holds it (another "
                    f"`tally up`?) or pass {flag} with a free port."
                ) from None

    def start(self, say: Callable[[str], object] = print) -> None:
        """Start everything; on any failure stop what was started and re-raise."""
        s = self.settings
        self.preflight()
        s.data_dir.mkdir(parents=True, exist_ok=True)
        (s.data_dir / "logs").mkdir(exist_ok=True)
        try:
            if s.clickhouse_url:
                self._password = s.external_clickhouse_password
            else:
                self._password = load_or_create(secret_path(s.data_dir, CLICKHOUSE_PASSWORD_FILE))
                say(f"starting ClickHouse on 127.0.0.1:{s.clickhouse_port} ...")
                self.clickhouse = start_clickhouse(
                    s.data_dir / "clickhouse", port=s.clickhouse_port,
                    user=s.clickhouse_user, password=self._password,
                    access=access_model(s.database),
                )  # fmt: skip
            if not s.kafka_bootstrap and s.kafka_brokers > 1:
                say(f"starting a {s.kafka_brokers}-broker Kafka cluster on {self.bootstrap} ...")
                self.kafka = start_cluster(
                    s.data_dir / "kafka-cluster", s.kafka_brokers, port=s.kafka_port
                )
            elif not s.kafka_bootstrap:
                say(f"starting Kafka on 127.0.0.1:{s.kafka_port} ...")
                self.kafka = start_kafka(s.data_dir / "kafka", port=s.kafka_port)
            asyncio.run(self._prepare())
            for index in range(s.aggregators):
                self.aggregators.append(self._start_aggregator(index))
            for index in range(s.trace_writers):
                self.trace_writers.append(self._start_trace_writer(index))
            if s.monitors_dir is not None:
                self.monitors = self._start_monitors()
            if s.api:
                read_token, sql_token = tokens(s.data_dir)
                api = ApiSettings(
                    self.read_settings("api"),
                    read_token,
                    sql_token,
                    s.api_host,
                    s.api_port,
                    monitor_paths=self._monitor_paths(),
                    sql=self._sql_settings(),
                )
                ui = web_handlers(WebSettings(s.dashboards_dir))
                self.api = ServerThread(api, [*ui, *TRACE_PAGES]).start()
            write_stack(
                s.data_dir, self.bootstrap, self.clickhouse_url, self.api_url if s.api else None
            )
        except BaseException:
            self.stop()
            raise

    def read_settings(self, component: str | None = None) -> ReadSettings:
        """Read settings for this service's ClickHouse (as ``component``'s user if given)."""
        clickhouse = self._clickhouse_settings(component)
        return ReadSettings(clickhouse=clickhouse, database=self.settings.database)

    def login(self, component: str | None) -> tuple[str, str]:
        """User and password of ``component`` on the local ClickHouse (``tally.schemas.access``);
        the configured user for an external ClickHouse or ``None`` (the administrator)."""
        if self.clickhouse is None or component is None:
            return self.settings.clickhouse_user, self._password
        return self.clickhouse.login(component)

    def _clickhouse_settings(self, component: str | None = None) -> ClickHouseSettings:
        user, password = self.login(component)
        return ClickHouseSettings(url=self.clickhouse_url, user=user, password=password)

    def _sql_settings(self) -> SqlSettings | None:
        """The SQL endpoint's own user on the local ClickHouse (an external one: ``None``)."""
        if self.clickhouse is None:
            return None
        return SqlSettings(self.read_settings("sql"))

    def _schema(self) -> RollupSchema:
        s = self.settings
        return RollupSchema(database=s.database, time_zone=s.time_zone, week_start=s.week_start)

    async def _prepare(self) -> None:
        r = self._replication()
        copies, config = r.factor, r.topic_config()
        await create_topic(self.bootstrap, TOPIC, self.settings.partitions, copies, config)
        await create_topic(self.bootstrap, f"{TOPIC}.dlq", 1, copies, config)
        await apply_ddl_once(RollupSink(self._clickhouse_settings(), self._schema()))
        await prepare_traces(
            self.bootstrap, self._clickhouse_settings(), self.settings.database, replication=r
        )

    def _start_aggregator(self, index: int) -> subprocess.Popen:
        s = self.settings
        command = aggregator_command_line(
            bootstrap=self.bootstrap, topic=TOPIC, clickhouse_url=self.clickhouse_url,
            clickhouse_user=self.login("aggregator")[0], database=s.database,
            time_zone=s.time_zone, week_start=s.week_start, flush_interval=s.flush_interval_s,
            metrics_port=0, heartbeat_ms=s.heartbeat_ms,
            # the service owns its topic: a first start counts whatever was tracked before it
            initial_offset="earliest",
        )  # fmt: skip
        return self._spawn(command, "aggregator", f"aggregator-{index}.log")

    def _start_trace_writer(self, index: int) -> subprocess.Popen:
        s = self.settings
        command = trace_writer_command(
            self.bootstrap, self.clickhouse_url, self.login("traces")[0], s.database,
            s.flush_interval_s,
        )  # fmt: skip
        return self._spawn(command, "traces", f"trace-writer-{index}.log")

    def _monitor_paths(self) -> tuple[Path, ...]:
        d = self.settings.monitors_dir
        return (d,) if d is not None else ()

    def _start_monitors(self) -> subprocess.Popen:
        """The monitor service (``tally monitors run``) over ``monitors_dir``."""
        s = self.settings
        assert s.monitors_dir is not None
        s.monitors_dir.mkdir(parents=True, exist_ok=True)
        command = monitors_command_line(
            paths=[s.monitors_dir], bootstrap=self.bootstrap, topic=TOPIC,
            clickhouse_url=self.clickhouse_url, clickhouse_user=self.login("monitors")[0],
            database=s.database, data_dir=s.data_dir,
            base_url=self.api_url if s.api else "", metrics_port=0,
        )  # fmt: skip
        return self._spawn(command, "monitors", "monitors.log")

    def _spawn(self, command: list[str], component: str, log_name: str) -> subprocess.Popen:
        """Run ``command`` in its own session with ``component``'s ClickHouse password in its
        environment, appending its output to ``logs/<log_name>``."""
        env = child_environment(os.environ, self.login(component)[1])
        with (self.settings.data_dir / "logs" / log_name).open("ab") as log:
            return subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip

    def supervise(self) -> list[int]:
        """Restart aggregators (and the monitor service) that exited; returns the aggregator
        indices restarted."""
        if self.monitors is not None and self.monitors.poll() is not None:
            self.monitors = self._start_monitors()
            self.restarts += 1
        restarted = []
        for index, proc in enumerate(self.aggregators):
            if proc.poll() is not None:
                self.aggregators[index] = self._start_aggregator(index)
                self.restarts += 1
                restarted.append(index)
        for index, proc in enumerate(self.trace_writers):
            if proc.poll() is not None:
                self.trace_writers[index] = self._start_trace_writer(index)
                self.restarts += 1
        return restarted

    def status(self) -> str:
        """One line: what runs where."""
        alive = sum(p.poll() is None for p in self.aggregators)
        parts = [
            f"kafka {self.bootstrap}{'' if self.kafka is None or self.kafka.running else ' DOWN'}",
            f"clickhouse {self.clickhouse_url}"
            + ("" if self.clickhouse is None or self.clickhouse.is_running else " DOWN"),
            f"aggregators {alive}/{len(self.aggregators)}"
            + (f" ({self.restarts} restarts)" if self.restarts else ""),
        ]
        if self.api is not None:
            parts.append(f"api {self.api_url}")
        if self.monitors is not None:
            parts.append(f"monitors {'up' if self.monitors.poll() is None else 'DOWN'}")
        if self.trace_writers:
            writers = sum(p.poll() is None for p in self.trace_writers)
            parts.append(f"trace writers {writers}/{len(self.trace_writers)}")
        return " · ".join(parts)

    def stop(self) -> None:
        """API, then aggregators (SIGTERM: they flush and commit), then Kafka, then ClickHouse."""
        if self.api is not None:
            self.api.stop()
            self.api = None
        if self.monitors is not None:
            terminate(self.monitors, 30)
            self.monitors = None
        for proc in self.aggregators:
            terminate(proc, 60)
        self.aggregators.clear()
        for proc in self.trace_writers:
            terminate(proc, 60)
        self.trace_writers.clear()
        if self.kafka is not None:
            self.kafka.stop()
            self.kafka = None
        if self.clickhouse is not None:
            self.clickhouse.stop()
            self.clickhouse = None
