"""A local Kafka cluster: N combined broker+controller KRaft nodes from the same jars.

Every node is an :class:`EmbeddedKafka` (``kafka_node``) of its own: its ``node.id``,
listeners and data dir under ``<workdir>/node-<id>``, all formatted with one cluster id, and
together the controller quorum (N voters). The layout (cluster id and ports) is kept in
``<workdir>/cluster.json``, so a restarted cluster comes back on the same ports and data.
Topics get replication factor ``min(3, N)`` and ``min.insync.replicas`` one less (2 of 3), as
in production. Each node can be killed (-9), stopped and restarted on its own; the admin
helpers say which node leads which partition and whether every replica is back in sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import msgspec
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from tally.embedded.kafka_install import KafkaBrokerError, install
from tally.embedded.kafka_node import (
    DATA_NAME,
    PROPERTIES_NAME,
    EmbeddedKafka,
    broker_config,
    format_storage,
    free_ports,
    jvm_args,
    launch_node,
    random_cluster_id,
    render_properties,
    retry_port_clash,
    wait_ready,
)
from tally.embedded.lifecycle import StopsOnExit

T = TypeVar("T")

LAYOUT_FILE = "cluster.json"
# A killed node is fenced (its partitions get new leaders) after the broker session timeout:
# Kafka's default is 9 s; a local cluster for tests and development answers within seconds.
SESSION_TIMEOUT_MS = 4_000
HEARTBEAT_MS = 500
# Three JVMs start at once on a small box: the C1 compiler alone boots them in about half the
# CPU time (a local cluster is for faults and development, not for throughput benchmarks).
FAST_START = ["-XX:TieredStopAtLevel=1"]


@dataclass(frozen=True)
class Replication:
    """How topics are replicated: ``factor`` copies, ``min_insync`` of them to acknowledge."""

    factor: int = 1
    min_insync: int = 1

    def topic_config(self) -> dict[str, str]:
        """Topic-level config that goes with the factor (empty for one copy)."""
        return {"min.insync.replicas": str(self.min_insync)} if self.factor > 1 else {}


def replication_for(brokers: int) -> Replication:
    """Replication factor ``min(3, brokers)``, ``min.insync.replicas`` one less (at least 1)."""
    factor = max(1, min(3, brokers))
    return Replication(factor, max(1, factor - 1))


class ClusterLayout(msgspec.Struct, frozen=True):
    """What a cluster's data dirs were formatted for: its id and each node's two ports."""

    cluster_id: str
    broker_ports: list[int]
    controller_ports: list[int]

    @property
    def size(self) -> int:
        return len(self.broker_ports)

    def voters(self) -> str:
        """``controller.quorum.voters``: every node votes (node ids start at 1)."""
        return ",".join(
            f"{node}@127.0.0.1:{port}" for node, port in enumerate(self.controller_ports, 1)
        )


def new_layout(brokers: int, port: int | None) -> ClusterLayout:
    """A fresh layout: broker ports ``port``, ``port+1``, ... if given, the rest free."""
    ports = free_ports(3 * brokers)
    broker_ports = [port + i for i in range(brokers)] if port is not None else ports[:brokers]
    controller_ports = [p for p in ports if p not in broker_ports][:brokers]
    return ClusterLayout(random_cluster_id(), broker_ports, controller_ports)


def node_config(
    layout: ClusterLayout, node: int, log_dir: Path, partitions_default: int
) -> dict[str, str]:
    """server.properties of node ``node`` (1-based): the single broker's, made a cluster's."""
    r = replication_for(layout.size)
    factor, isr = str(r.factor), str(r.min_insync)
    extra = {
        "node.id": str(node),
        "controller.quorum.voters": layout.voters(),
        "default.replication.factor": factor,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": factor,
        "transaction.state.log.replication.factor": factor,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": factor,
        "share.coordinator.state.topic.min.isr": isr,
        "unclean.leader.election.enable": "false",
        "broker.session.timeout.ms": str(SESSION_TIMEOUT_MS),
        "broker.heartbeat.interval.ms": str(HEARTBEAT_MS),
    }
    return broker_config(
        layout.broker_ports[node - 1],
        layout.controller_ports[node - 1],
        log_dir,
        partitions_default=partitions_default,
        extra=extra,
    )


@dataclass
class KafkaCluster(StopsOnExit):
    """A running local cluster; nodes are numbered from 1 (their ``node.id``)."""

    workdir: Path
    layout: ClusterLayout
    nodes: list[EmbeddedKafka] = field(default_factory=list)
    ready_seconds: float = 0.0

    @property
    def bootstrap(self) -> str:
        """Every node's listener, comma-separated (what clients and aggregators get)."""
        return ",".join(f"127.0.0.1:{port}" for port in self.layout.broker_ports)

    @property
    def replication(self) -> Replication:
        return replication_for(self.layout.size)

    @property
    def running(self) -> bool:
        """True while every node runs."""
        return all(node.running for node in self.nodes)

    def node(self, node_id: int) -> EmbeddedKafka:
        """The node whose ``node.id`` is ``node_id``."""
        return self.nodes[node_id - 1]

    def kill(self, node_id: int) -> None:
        """kill -9 one node (its JVM's process group) and reap it."""
        self.node(node_id).kill()

    def stop_node(self, node_id: int, timeout: float = 30) -> None:
        """Controlled shutdown of one node (SIGTERM; SIGKILL after ``timeout``)."""
        self.node(node_id).stop(timeout)

    def restart(self, node_id: int, timeout: float = 90) -> float:
        """Start one node again on its data and ports; returns seconds until it answered."""
        node = self.node(node_id)
        node.restart(timeout)
        return node.ready_seconds

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM every node at once (one at a time, the last ones would wait for a lost
        quorum), then SIGKILL whatever is still running after ``timeout``."""
        for node in self.nodes:
            if node.running:
                node._signal_group(signal.SIGTERM)
                node._signal_group(signal.SIGCONT)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.kill()

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of every node's log (for failure messages)."""
        return "\n".join(
            f"--- node {i} ({node.log_path}):\n{node.log_tail(lines)}"
            for i, node in enumerate(self.nodes, 1)
        )

    async def leaders(self, topic: str) -> dict[int, int]:
        """partition -> node id of its leader (-1 while it has none)."""
        return {p: info.leader for p, info in (await self.describe(topic)).items()}

    async def describe(self, topic: str) -> dict[int, PartitionInfo]:
        """Leader, replicas and in-sync replicas of every partition of ``topic``."""
        meta = await _admin_call(self.bootstrap, lambda admin: admin.describe_topics([topic]))
        (meta,) = meta
        if meta["error_code"]:
            raise KafkaBrokerError(f"describe {topic!r}: error code {meta['error_code']}")
        return {
            p["partition"]: PartitionInfo(p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
            for p in meta["partitions"]
        }

    async def busiest_node(self, topic: str) -> int:
        """The node leading the most partitions of ``topic`` (the lowest id on a tie)."""
        counts: dict[int, int] = {}
        for leader in (await self.leaders(topic)).values():
            if leader >= 0:
                counts[leader] = counts.get(leader, 0) + 1
        return min(counts, key=lambda node: (-counts[node], node))

    async def wait_in_sync(self, topics: Iterable[str], timeout: float = 120) -> float:
        """Wait until every partition of ``topics`` has a leader and all its replicas in
        sync (what a rolling restart waits for between nodes); returns the seconds waited."""
        started = time.monotonic()
        names = list(topics)
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(Exception):
                    infos = [info for t in names for info in (await self.describe(t)).values()]
                    if infos and all(i.leader >= 0 and i.in_sync for i in infos):
                        return time.monotonic() - started
                await asyncio.sleep(0.2)


@dataclass(frozen=True)
class PartitionInfo:
    """One partition as the controller sees it."""

    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def in_sync(self) -> bool:
        return set(self.replicas) <= set(self.isr)


def _read_layout(workdir: Path, brokers: int) -> ClusterLayout | None:
    try:
        layout = msgspec.json.decode((workdir / LAYOUT_FILE).read_bytes(), type=ClusterLayout)
    except (OSError, msgspec.ValidationError, msgspec.DecodeError):
        return None
    if layout.size != brokers:
        raise KafkaBrokerError(
            f"{workdir} holds a {layout.size}-node cluster, not {brokers} nodes: "
            "use another data directory"
        )
    return layout


def start_cluster(
    workdir: Path,
    brokers: int = 3,
    *,
    port: int | None = None,
    partitions_default: int = 4,
    timeout: float = 120,
    cache_dir: Path | None = None,
) -> KafkaCluster:
    """Install if needed, format every node once, start them all, wait until all answer.

    A ``workdir`` that already holds a cluster is started again on its ports and data.
    Without ``port`` the ports are free ones, picked again if another process takes one
    before a fresh cluster binds it.
    """
    if brokers < 1:
        raise ValueError("a cluster needs at least one node")
    libs = install(cache_dir)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    saved = _read_layout(workdir, brokers)

    def start() -> KafkaCluster:
        fresh = saved is None
        layout = saved or new_layout(brokers, port)
        return _start_once(libs, workdir, layout, partitions_default, timeout, fresh)

    return retry_port_clash(start, 3 if saved is None and port is None else 1)


def _start_once(
    libs: Path,
    workdir: Path,
    layout: ClusterLayout,
    partitions_default: int,
    timeout: float,
    fresh: bool,
) -> KafkaCluster:
    started = time.monotonic()
    if fresh:  # a retry after a port clash starts from empty data dirs
        for old in workdir.glob("node-*"):
            shutil.rmtree(old, ignore_errors=True)
    commands = _prepare_nodes(libs, workdir, layout, partitions_default)
    (workdir / LAYOUT_FILE).write_bytes(msgspec.json.encode(layout))
    cluster = KafkaCluster(workdir, layout)
    offsets = []
    try:
        for node, command in enumerate(commands, 1):
            node_dir = workdir / f"node-{node}"
            handle, offset = launch_node(
                command, node_dir, layout.broker_ports[node - 1], layout.controller_ports[node - 1]
            )
            cluster.nodes.append(handle)
            offsets.append(offset)
        # The nodes elect a controller together: wait for each only once all were launched.
        for node, offset in zip(cluster.nodes, offsets, strict=True):
            wait_ready(node, offset, max(1.0, timeout - (time.monotonic() - started)))
        asyncio.run(_wait_for_brokers(cluster, timeout - (time.monotonic() - started)))
    except BaseException:
        for node in cluster.nodes:
            node.kill()
        raise
    cluster.ready_seconds = time.monotonic() - started
    for node in cluster.nodes:
        node.ready_seconds = cluster.ready_seconds
    return cluster


def _prepare_nodes(
    libs: Path, workdir: Path, layout: ClusterLayout, partitions_default: int
) -> list[list[str]]:
    """Write each node's properties and format its data dir (in parallel: a JVM each)."""
    commands = []
    jobs = []
    for node in range(1, layout.size + 1):
        node_dir = workdir / f"node-{node}"
        node_dir.mkdir(parents=True, exist_ok=True)
        log_dir = node_dir / DATA_NAME
        properties = node_dir / PROPERTIES_NAME
        config = node_config(layout, node, log_dir, partitions_default)
        properties.write_text(render_properties(config))
        jobs.append((libs, properties, log_dir, layout.cluster_id))
        java, *jvm = jvm_args(libs)
        commands.append([java, *FAST_START, *jvm, "kafka.Kafka", str(properties)])
    with ThreadPoolExecutor(max_workers=layout.size, thread_name_prefix="kafka-format") as pool:
        for future in [pool.submit(format_storage, *job) for job in jobs]:
            future.result()
    return commands


async def _wait_for_brokers(cluster: KafkaCluster, timeout: float) -> None:
    """Until the metadata lists every node as a broker."""
    want = cluster.layout.size
    try:
        async with asyncio.timeout(max(1.0, timeout)):
            while True:
                with contextlib.suppress(Exception):
                    if len(await _broker_ids(cluster.bootstrap)) >= want:
                        return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise KafkaBrokerError(
            f"not all {want} brokers registered in time:\n{cluster.log_tails()}"
        ) from None


async def _broker_ids(bootstrap: str) -> Sequence[int]:
    cluster = await _admin_call(bootstrap, lambda admin: admin.describe_cluster())
    return [broker["node_id"] for broker in cluster.get("brokers", [])]


async def _admin_call(
    bootstrap: str, call: Callable[[AIOKafkaAdminClient], Awaitable[T]], attempts: int = 20
) -> T:
    """``call`` on an admin client, retried: it asks a random known node, which may be down."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tally-cluster")
    await admin.start()
    try:
        for attempt in range(1, attempts + 1):
            try:
                return await call(admin)
            except KafkaError as exc:
                if not exc.retriable or attempt == attempts:
                    raise
                await asyncio.sleep(0.1)
        raise AssertionError("unreachable")
    finally:
        await admin.close()
