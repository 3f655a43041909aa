"""The local cluster's layout and node configs, and what `tally up --kafka-brokers` derives."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tally.embedded.kafka_cluster import (
    ClusterLayout,
    _read_layout,
    new_layout,
    node_config,
    replication_for,
)
from tally.embedded.kafka_install import KafkaBrokerError
from tally.up.service import Service, UpSettings


def test_replication_is_three_copies_two_in_sync_at_most():
    assert [(r.factor, r.min_insync) for r in map(replication_for, (1, 2, 3, 5))] == [
        (1, 1),
        (2, 1),
        (3, 2),
        (3, 2),
    ]
    assert replication_for(1).topic_config() == {}
    assert replication_for(3).topic_config() == {"min.insync.replicas": "2"}


def test_every_node_votes_and_replicates_the_internal_topics(tmp_path: Path):
    layout = ClusterLayout("abc", [9092, 9093, 9094], [19092, 19093, 19094])
    config = node_config(layout, 2, tmp_path, partitions_default=4)
    assert config["node.id"] == "2"
    assert config["controller.quorum.voters"] == (
        "1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094"
    )
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:19093"
    assert config["offsets.topic.replication.factor"] == "3"
    assert config["transaction.state.log.min.isr"] == "2"
    assert config["min.insync.replicas"] == "2"
    assert config["default.replication.factor"] == "3"
    assert config["unclean.leader.election.enable"] == "false"


def test_a_fresh_layout_has_distinct_ports_and_keeps_a_given_first_port():
    free = new_layout(3, None)
    assert len(set(free.broker_ports + free.controller_ports)) == 6
    fixed = new_layout(3, 40100)
    assert fixed.broker_ports == [40100, 40101, 40102]
    assert not set(fixed.controller_ports) & set(fixed.broker_ports)


def test_a_data_dir_of_another_size_is_refused(tmp_path: Path):
    layout = ClusterLayout("abc", [1, 2, 3], [4, 5, 6])
    (tmp_path / "cluster.json").write_bytes(msgspec.json.encode(layout))
    assert _read_layout(tmp_path, 3) == layout
    with pytest.raises(KafkaBrokerError, match="3-node cluster, not 5"):
        _read_layout(tmp_path, 5)


def test_up_with_three_brokers_bootstraps_from_all_and_replicates(tmp_path: Path):
    service = Service(UpSettings(data_dir=tmp_path, kafka_port=9300, kafka_brokers=3))
    assert service.bootstrap == "127.0.0.1:9300,127.0.0.1:9301,127.0.0.1:9302"
    assert service._replication() == replication_for(3)
    single = Service(UpSettings(data_dir=tmp_path, kafka_port=9300))
    assert single.bootstrap == "127.0.0.1:9300"
    assert single._replication().factor == 1
