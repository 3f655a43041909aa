"""The compose `cluster` overlay cannot run here; keep it consistent with the DDL it expects."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from tally.schemas.placement import Placement

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
OVERLAY = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
SERVICES = OVERLAY["services"]
REPLICAS = {"clickhouse": "replica-1.xml", "clickhouse-2": "replica-2.xml"}


def config(name: str) -> ET.Element:
    return ET.parse(ROOT / "deploy" / "cluster" / name).getroot()


def mounted(service: str) -> dict[str, str]:
    """Container path -> repository file of a service's read-only config mounts."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            out[target] = source[2:]
    return out


def test_the_overlay_only_names_services_the_base_has_or_adds_keeper_and_a_second_replica():
    assert set(SERVICES) - set(BASE) == {"keeper", "clickhouse-2"}
    assert SERVICES["clickhouse-2"]["image"] == BASE["clickhouse"]["image"]
    assert SERVICES["keeper"]["image"].split(":")[1] == BASE["clickhouse"]["image"].split(":")[1]


def test_each_replica_loads_the_cluster_and_its_own_macros():
    cluster = config("cluster.xml")
    hosts = [r.findtext("host") for r in cluster.iter("replica")]
    assert hosts == list(REPLICAS)
    assert [n.findtext("host") for n in cluster.iter("node")] == ["keeper"]
    assert cluster.findtext("default_replica_path") == "/clickhouse/tables/{uuid}/{shard}"
    names = set()
    for service, own in REPLICAS.items():
        files = set(mounted(service).values())
        assert {"deploy/cluster/cluster.xml", f"deploy/cluster/{own}"} <= files
        macros = config(own).find("macros")
        assert macros.findtext("shard") == "01"
        names.add(macros.findtext("replica"))
        assert config(own).findtext("interserver_http_host") == service
    assert names == set(REPLICAS)


def test_every_clickhouse_client_lists_both_replicas_and_names_the_cluster():
    (name,) = [c.tag for c in config("cluster.xml").find("remote_servers")]
    Placement(name, replicated=True)  # a valid cluster name for the DDL
    for service in ("aggregator", "trace-writer", "monitors", "ui"):
        env = SERVICES[service]["environment"]
        urls = env["TALLY_CLICKHOUSE_URL"].split(",")
        assert urls == [f"http://{host}:8123" for host in REPLICAS], service
        assert env["TALLY_CLICKHOUSE_CLUSTER"] == name, service
    assert SERVICES["clickhouse-users"]["environment"]["TALLY_CLICKHOUSE_CLUSTER"] == name


def test_replicas_start_after_keeper_and_users_after_both_replicas():
    for service in REPLICAS:
        assert SERVICES[service]["depends_on"]["keeper"]["condition"] == "service_healthy"
    needs = SERVICES["clickhouse-users"]["depends_on"]
    assert needs["clickhouse-2"]["condition"] == "service_healthy"
    assert BASE["clickhouse-users"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_the_second_replica_publishes_loopback_only_and_requires_the_admin_password():
    (port,) = SERVICES["clickhouse-2"]["ports"]
    assert port.startswith("127.0.0.1:")
    assert ":?" in SERVICES["clickhouse-2"]["environment"]["CLICKHOUSE_PASSWORD"]


def test_the_writers_read_the_cluster_settings_and_build_cluster_ddl_from_them():
    from tally.aggregator import settings as aggregator_settings
    from tally.traces import settings as trace_settings

    env = {**BASE["aggregator"]["environment"], **SERVICES["aggregator"]["environment"]}
    env = {k: v for k, v in env.items() if not v.startswith("${")}
    assert set(SERVICES["aggregator"]["environment"]) <= set(
        aggregator_settings.SETTINGS.environment_names()
    )
    built = aggregator_settings.from_args([], env=env)
    assert built.clickhouse.urls == ["http://clickhouse:8123", "http://clickhouse-2:8123"]
    statements = built.schema.statements()
    assert "ON CLUSTER tally" in statements[1] and "ReplicatedAggregatingMergeTree" in statements[1]
    _, schema = trace_settings.from_values(
        trace_settings.SETTINGS.resolve({}, {"TALLY_CLICKHOUSE_CLUSTER": "tally"})
    )
    assert "ON CLUSTER tally" in schema.statements()[1]
