"""A rebalance while the engine closes its Kafka clients: no state, no AssertionError."""

from __future__ import annotations

import logging

import pytest
from aiokafka import TopicPartition

from tally.engine.clients import ClientsClosed, KafkaClients
from tally.engine.metrics import EngineMetrics
from tally.engine.partitions import Partitions, RebalanceListener
from tally.engine.settings import ConsumerSettings
from tally.engine.stopping import StopGate

TP = TopicPartition("tally.events", 0)


def no_fold(*, reread: bool = False):
    raise AssertionError("no partition state may be created")


def partitions(clients: KafkaClients) -> Partitions:
    return Partitions(ConsumerSettings(), EngineMetrics(), clients, StopGate(1.0), no_fold)


async def never_flush(tps: list[TopicPartition]) -> None:
    raise AssertionError("nothing to flush")


async def test_an_assignment_while_closing_creates_no_state(caplog):
    clients = KafkaClients()
    await clients.close()  # nothing was opened: safe, and marks the clients closing
    assert clients.closing
    owned = partitions(clients)
    caplog.set_level(logging.INFO, logger="tally.aggregator")
    await RebalanceListener(owned, never_flush).on_partitions_assigned({TP})
    assert owned.states == {}
    assert "left to the next owner" in caplog.text


async def test_an_offset_lookup_without_an_admin_is_a_typed_error_not_an_assertion(caplog):
    clients = KafkaClients()  # never started: no admin, not closing
    owned = partitions(clients)
    with pytest.raises(ClientsClosed):
        await owned.assigned({TP})
    caplog.set_level(logging.INFO, logger="tally.aggregator")
    await RebalanceListener(owned, never_flush).on_partitions_assigned({TP})
    assert owned.states == {}
    assert "left to the next owner" in caplog.text
