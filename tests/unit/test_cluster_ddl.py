"""The DDL for a cluster of replicas: every statement parses, runs ON CLUSTER, replicates.

Docker cannot run here, so a real Keeper and two replicas are not started: what is proven here
is that each generated statement is one ClickHouse's parser accepts (chDB's ``formatQuery``)
and that it says what the cluster needs; the rest rests on ClickHouse's documented behaviour
(see docs/cluster.md).
"""

from __future__ import annotations

import re

import pytest

from tally.monitors.store import ddl as monitor_ddl
from tally.schemas.access import access_model, production_ddl
from tally.schemas.ddl import RollupSchema
from tally.schemas.placement import Placement
from tally.traces.ddl import TraceSchema
from tests.unit.clickhouse_parser import formatted

CLUSTER = Placement("tally", replicated=True)


def every_statement(placement: Placement) -> list[str]:
    rollups = RollupSchema(placement=placement)
    traces = TraceSchema(placement=placement)
    return [
        *rollups.statements(),
        *rollups.alignment_statements(),
        rollups.ttl_statement(),
        *traces.statements(),
        *traces.alter_statements(),
        *monitor_ddl("tally", placement),
        *production_ddl(access_model("tally"), placement=placement),
    ]


@pytest.mark.parametrize("statement", every_statement(CLUSTER))
def test_every_cluster_statement_parses_and_runs_on_the_cluster(statement):
    text = formatted(statement)
    if text.startswith("INSERT"):  # the key tables' one-off backfill: replication carries it
        assert "ON CLUSTER" not in text
        return
    assert "ON CLUSTER tally" in text, text
    for engine in re.findall(r"ENGINE = (\w+)", text):
        assert engine == "Null" or engine.startswith("Replicated"), text
    assert "non_replicated_deduplication_window" not in text


def test_replicated_tables_keep_their_dedup_window_in_keeper_by_count_and_age():
    rollups = RollupSchema(placement=CLUSTER, dedup_window=10, dedup_window_seconds=3600)
    table = formatted(rollups.statements()[1])
    assert "ENGINE = ReplicatedAggregatingMergeTree" in table
    assert "replicated_deduplication_window = 120" in table  # 10 flushes x 3 x 2 x 2 blocks
    assert "replicated_deduplication_window_seconds = 3600" in table
    traces = formatted(TraceSchema(placement=CLUSTER, dedup_window=50).statements()[1])
    assert "ENGINE = ReplicatedMergeTree" in traces
    assert "replicated_deduplication_window = 50" in traces
    state = formatted(monitor_ddl("tally", CLUSTER)[0])
    assert "ENGINE = ReplicatedReplacingMergeTree(version)" in state


def test_the_writers_profiles_pin_dedup_and_the_writers_may_run_ddl_on_the_cluster():
    ddl = production_ddl(access_model("tally"), placement=CLUSTER)
    for writer in ("tally_aggregator", "tally_traces"):
        profile = next(
            s for s in ddl if s.startswith(f"CREATE SETTINGS PROFILE OR REPLACE {writer}")
        )
        assert "insert_deduplicate = 1 CONST" in profile
        assert "deduplicate_blocks_in_dependent_materialized_views = 1 CONST" in profile
    for writer in ("tally_aggregator", "tally_traces", "tally_monitors"):
        assert f"GRANT ON CLUSTER tally CLUSTER ON *.* TO {writer}" in ddl
    assert not [s for s in ddl if "CLUSTER ON *.*" in s and ("tally_api" in s or "tally_sql" in s)]


def test_one_server_has_no_cluster_clause_and_no_replicated_engine():
    for statement in every_statement(Placement()):
        text = formatted(statement)
        assert "ON CLUSTER" not in text and "Replicated" not in text, text


def test_a_named_replicated_engine_still_wins_over_the_default_path():
    engine = (
        "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/tally/rollups', '{replica}')"
    )
    schema = RollupSchema(engine=engine, placement=CLUSTER)
    assert f"ENGINE = {engine}" in schema.statements()[1]
    assert schema.replicated and "replicated_deduplication_window" in schema.dedup_settings_sql()


@pytest.mark.parametrize("name", ["", "a b", "x; DROP TABLE t", "1abc", "a" * 64, "t`"])
def test_a_cluster_name_that_is_not_an_identifier_is_refused(name):
    with pytest.raises(ValueError, match="cluster name"):
        Placement(name, replicated=True)
