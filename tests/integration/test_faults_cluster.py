"""Faults on a 3-broker KRaft cluster (replication 3, min.insync.replicas=2, acks=all) while a
producer and two aggregators run: every total stays exact to the event.

One cluster serves the module (each test its own topic, group and ClickHouse); a test that
leaves a node down gets it back, in sync, before the next one. Marked ``cluster``: ``make test``
leaves these to ``make test-cluster`` (their own CI step). Each test prints what it measured:
the client's produce errors and retried requests, records in the log against records
acknowledged (a duplicate would show as more in the log), and the seconds from the fault to
the first commit past it on every partition.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tally.embedded.kafka_cluster import KafkaCluster, start_cluster
from tally.embedded.stack import Stack, StackConfig, start_stack
from tally.loadtest.exactness import compare, fetch_totals

from .cluster_load import Load, committed, records_in_log, seconds_until_commits_pass
from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.cluster]

RATE = 1_000  # events a second
PARTITIONS = 4
_names = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, kafka_jars: Path) -> Iterator[KafkaCluster]:
    with start_cluster(tmp_path_factory.mktemp("cluster") / "kafka", 3) as cluster:
        yield cluster


@pytest.fixture
def cluster_stack(cluster: KafkaCluster, tmp_path: Path) -> Iterator[Callable[[], Stack]]:
    """A stack (own topic, group and ClickHouse) on the shared cluster."""
    stacks: list[Stack] = []

    def make() -> Stack:
        name = f"t{next(_names)}"
        config = StackConfig(
            partitions=PARTITIONS,
            aggregators=2,
            topic=f"tally.events.{name}",
            group=f"aggregators-{name}",
            flush_interval_s=0.5,
            session_timeout_ms=3_000,
            heartbeat_ms=300,
            kafka_brokers=3,
        )
        stack = start_stack(tmp_path / name, config, kafka=cluster)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
    for node in range(1, 4):  # the next test starts on a whole cluster
        if not cluster.node(node).running:
            cluster.restart(node)
    asyncio.run(cluster.wait_in_sync(["__consumer_offsets"]))


@pytest.fixture
def start_load(cluster: KafkaCluster) -> Iterator[Callable[[str], Load]]:
    """Start a producer on a topic; one a failed test left running is stopped at teardown."""
    loads: list[Load] = []

    def start(topic: str) -> Load:
        loads.append(Load(cluster.bootstrap, topic, RATE).start())
        return loads[-1]

    yield start
    for load in loads:
        load.stop()


def rollup_total(stack: Stack) -> float:
    query = "SELECT sum(value) FROM tally.rollups"
    return stack.clickhouse_client().query(query).result_rows[0][0] or 0


def check_exact(stack: Stack, load: Load, what: str, recovered_s: float) -> None:
    """Every event acknowledged, in the log once, and in ClickHouse once; print the report."""
    stats = load.finish()
    assert stats.sent_events == load.expected.events, stats
    assert stats.dropped_overflow == stats.dropped_rejected == stats.send_rejected == 0, stats
    want = sum(load.expected.totals.values())
    wait_for(lambda: rollup_total(stack) >= want, 180, "the rollups to hold every event")
    running = len(stack.aggregators)
    assert stack.stop_aggregators() == [0] * running
    in_log = records_in_log(stack.kafka.bootstrap, stack.config.topic)
    result = compare(load.expected.totals, fetch_totals(stack.clickhouse_client()))
    print(
        f"\n{what}: {stats.sent_events} events in {stats.sent_records} records acknowledged, "
        f"{in_log} records in the log; produce errors {stats.send_failures}, retried produce "
        f"requests {load.producer_retries}; recovered (a commit past the fault on every "
        f"partition) in {recovered_s:.1f}s; exact={result.exact} ({result.expected_slots} slots)"
    )
    assert in_log == stats.sent_records, "the log holds a record twice"
    assert result.exact, result.mismatches
    assert result.expected_slots > 100


def settle(stack: Stack, load: Load, seconds: float) -> dict[int, int]:
    """Let the load run until every partition has a commit; return the commits after
    ``seconds`` more."""
    bootstrap, group = stack.kafka.bootstrap, stack.config.group
    wait_for(lambda: len(committed(bootstrap, group)) == PARTITIONS, 120, "first commits")
    time.sleep(seconds)
    return committed(bootstrap, group)


def test_kill_9_the_busiest_leader_under_load_then_restart_it(cluster, cluster_stack, start_load):
    stack = cluster_stack()
    topic = stack.config.topic
    load = start_load(topic)
    before = settle(stack, load, 3)
    victim = asyncio.run(cluster.busiest_node(topic))
    killed_at = time.monotonic()
    cluster.kill(victim)
    recovered = seconds_until_commits_pass(cluster.bootstrap, stack.config.group, killed_at, before)
    leaders = asyncio.run(cluster.leaders(topic))
    assert victim not in leaders.values(), leaders
    time.sleep(3)
    cluster.restart(victim)
    asyncio.run(cluster.wait_in_sync([topic], timeout=120))
    time.sleep(2)
    check_exact(stack, load, f"kill -9 of node {victim} (leader of the most partitions)", recovered)


async def _coordinator(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.find_coordinator(group)
    finally:
        await admin.close()


def test_kill_9_a_broker_and_an_aggregator_together(cluster, cluster_stack, start_load):
    stack = cluster_stack()
    load = start_load(stack.config.topic)
    before = settle(stack, load, 3)
    # The group's coordinator: its loss moves the group (and its commits) to another node.
    victim = asyncio.run(_coordinator(cluster.bootstrap, stack.config.group))
    aggregator = stack.aggregators.pop(0)
    killed_at = time.monotonic()
    aggregator.send_signal(signal.SIGKILL)
    cluster.kill(victim)
    aggregator.wait()
    stack.start_aggregator()  # as a supervisor would
    recovered = seconds_until_commits_pass(cluster.bootstrap, stack.config.group, killed_at, before)
    time.sleep(2)
    cluster.restart(victim)
    asyncio.run(cluster.wait_in_sync([stack.config.topic], timeout=120))
    check_exact(
        stack, load, f"kill -9 of node {victim} (group coordinator) and an aggregator", recovered
    )


def test_rolling_restart_of_all_three_brokers_under_load(cluster, cluster_stack, start_load):
    stack = cluster_stack()
    topic, group = stack.config.topic, stack.config.group
    load = start_load(topic)
    settle(stack, load, 2)
    began = time.monotonic()
    stalls = []
    for node in range(1, 4):
        before = committed(cluster.bootstrap, group)
        stopped_at = time.monotonic()
        cluster.stop_node(node)  # controlled shutdown: leadership moves first
        stalls.append(seconds_until_commits_pass(cluster.bootstrap, group, stopped_at, before))
        cluster.restart(node)
        asyncio.run(cluster.wait_in_sync([topic, "__consumer_offsets"], timeout=120))
    rolled = time.monotonic() - began
    print(f"\nrolling restart of 3 nodes took {rolled:.1f}s; recovered after each stop in "
          + ", ".join(f"{s:.1f}s" for s in stalls))  # fmt: skip
    check_exact(stack, load, "rolling restart of nodes 1, 2, 3", max(stalls))
