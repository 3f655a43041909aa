"""docker-compose.yml cannot run here; keep it consistent with what the tests run."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import yaml

from tally.aggregator import settings as aggregator_settings
from tally.embedded import kafka_broker

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_images_are_pinned():
    for name, service in SERVICES.items():
        if "image" in service:
            image = service["image"]
            assert re.match(r"^[\w./-]+:\d+(\.\d+)+$", image), f"{name}: {image} is not pinned"


def test_kafka_is_kraft_and_matches_the_local_broker_version():
    env = SERVICES["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in env["KAFKA_LISTENERS"]
    version = SERVICES["kafka"]["image"].split(":")[1]
    assert version == kafka_broker.KAFKA_VERSION


def test_topics_are_created_with_enough_partitions_for_the_aggregators():
    script = "\n".join(SERVICES["kafka-topics"]["command"])
    partitions = int(re.search(r"--topic tally.events --partitions (\d+)", script).group(1))
    replicas = SERVICES["aggregator"]["deploy"]["replicas"]
    assert replicas >= 2 and partitions >= 2 * replicas
    assert "--topic tally.events.dlq" in script


def test_aggregator_environment_is_what_the_aggregator_reads():
    env = SERVICES["aggregator"]["environment"]
    source = inspect.getsource(aggregator_settings)
    for name in env:
        assert f'"{name}"' in source, f"{name} is not read by the aggregator"
    assert env["TALLY_DLQ_TOPIC"] == "tally.events.dlq"
    assert env["TALLY_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["TALLY_CLICKHOUSE_URL"].startswith("http://clickhouse:")
    assert aggregator_settings.from_args([], env={}).group == env["TALLY_GROUP"]


def test_aggregator_image_is_built_from_the_repo_and_runs_the_cli():
    assert SERVICES["aggregator"]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["tally-aggregator"]' in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'tally-aggregator = "tally.aggregator.cli:main"' in pyproject
    depends = SERVICES["aggregator"]["depends_on"]
    assert depends["kafka-topics"]["condition"] == "service_completed_successfully"
    assert depends["clickhouse"]["condition"] == "service_healthy"


def test_monitor_service_reads_its_environment_and_the_mounted_monitors():
    from tally.cli import monitors, options
    from tally.monitors.loader import load_paths

    service = SERVICES["monitors"]
    assert service["build"] == "."
    assert service["entrypoint"] == ["tally", "monitors", "run"]
    assert service["deploy"]["replicas"] >= 2  # the lease elects one evaluating replica
    cli = inspect.getsource(monitors) + inspect.getsource(options)
    for name in service["environment"]:
        used = f'"{name}"' in cli or f"url_env: {name}" in (
            ROOT / "monitors" / "examples" / "jobs.yaml"
        ).read_text()  # fmt: skip
        assert used or name == "TALLY_CLICKHOUSE_PASSWORD", f"{name} is not read"
    assert (
        service["environment"]["TALLY_GROUP"]
        == SERVICES["aggregator"]["environment"]["TALLY_GROUP"]
    )
    (mount,) = service["volumes"]
    source, target, _ = mount.split(":")
    assert service["command"] == [target]
    loaded = load_paths([ROOT / source])
    assert loaded.errors == () and loaded.monitors
    depends = service["depends_on"]
    assert depends["kafka-topics"]["condition"] == "service_completed_successfully"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '".[server,monitors,sampler]"' in dockerfile


def test_published_ports_bind_loopback_only():
    """Kafka's PLAINTEXT listener and ClickHouse's HTTP must not listen on every interface."""
    published = {
        name: service["ports"] for name, service in SERVICES.items() if service.get("ports")
    }
    assert set(published) >= {"kafka", "clickhouse"}
    for name, ports in published.items():
        for port in ports:
            spec = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port}"
            assert spec.startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
    assert "127.0.0.1:9092:9092" in SERVICES["kafka"]["ports"]
    assert "127.0.0.1:8123:8123" in SERVICES["clickhouse"]["ports"]


def test_sampler_service_runs_the_module_with_the_environment_it_reads():
    from tally.sampler import service

    sampler = SERVICES["sampler"]
    assert sampler["build"] == "." and sampler["entrypoint"] == ["python", "-m", "tally.sampler"]
    source = inspect.getsource(service)
    for name in sampler["environment"]:
        assert f'"{name}"' in source, f"{name} is not read by the sampler"
    assert "ports" not in sampler  # nothing to publish
    assert 'sampler]"' in (ROOT / "Dockerfile").read_text()  # the image installs the extra
