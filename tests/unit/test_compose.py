"""docker-compose.yml cannot run here; keep it consistent with what the tests run."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import chdb
import yaml
from typer.testing import CliRunner

from tally.aggregator import settings as aggregator_settings
from tally.cli import sql_user
from tally.cli.main import app
from tally.embedded import kafka_install
from tally.schemas.access import access_model, production_ddl
from tally.up.clickhouse_users import password_env, passwords_from, statements
from tests.unit.clickhouse_parser import formatted

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
    assert version == kafka_install.KAFKA_VERSION


def test_topics_are_created_with_enough_partitions_for_the_aggregators():
    script = "\n".join(SERVICES["kafka-topics"]["command"])
    partitions = int(re.search(r"--topic tally.events --partitions (\d+)", script).group(1))
    replicas = SERVICES["aggregator"]["deploy"]["replicas"]
    assert replicas >= 2 and partitions >= 2 * replicas
    assert "--topic tally.events.dlq" in script


def test_aggregator_environment_is_what_the_aggregator_reads():
    env = SERVICES["aggregator"]["environment"]
    read = set(aggregator_settings.SETTINGS.environment_names())
    for name in env:
        assert name in read, f"{name} is not read by the aggregator"
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
    assert depends["clickhouse-users"]["condition"] == "service_completed_successfully"


def test_ui_service_reads_its_environment_and_its_command_line_parses():
    from tally.cli import api

    service = SERVICES["ui"]
    assert service["entrypoint"] == ["tally", "ui"]  # ``run`` when no command is named
    read = {*api.UI.environment_names(), "TALLY_API_TOKEN", "TALLY_API_SQL_TOKEN",
            sql_user.PASSWORD_ENV}  # fmt: skip
    for name in service["environment"]:
        assert name in read, f"{name} is not read"
    values = api.UI.resolve(_options(service["command"]), {})
    assert (values["host"], values["port"]) == ("0.0.0.0", 8700)


def _options(argv: list[str]) -> dict[str, str]:
    """``--flag value`` pairs as the fields they set."""
    return {flag.removeprefix("--").replace("-", "_"): value
            for flag, value in zip(argv[::2], argv[1::2], strict=True)}  # fmt: skip


def test_monitor_service_reads_its_environment_and_the_mounted_monitors():
    from tally.cli import monitors
    from tally.monitors.loader import load_paths

    service = SERVICES["monitors"]
    assert service["build"] == "."
    assert service["entrypoint"] == ["tally", "monitors", "run"]
    assert service["deploy"]["replicas"] >= 2  # the lease elects one evaluating replica
    read = set(monitors.SERVICE.environment_names())  # run's rows, secrets included
    for name in service["environment"]:
        used = name in read or f"url_env: {name}" in (
            ROOT / "monitors" / "examples" / "jobs.yaml"
        ).read_text()  # fmt: skip
        assert used, f"{name} is not read"
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
    declared = set(service.SETTINGS.environment_names())
    for name in sampler["environment"]:
        assert f'"{name}"' in source or name in declared, f"{name} is not read by the sampler"
    assert "ports" not in sampler  # nothing to publish
    assert 'sampler]"' in (ROOT / "Dockerfile").read_text()  # the image installs the extra


# --- One ClickHouse user per component (tally.schemas.access), created by clickhouse-users ---

MODEL = access_model("tally")
ADMIN = SERVICES["clickhouse"]["environment"]["CLICKHOUSE_USER"]
SETUP = "clickhouse-users"
REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]+\}$")
# Each service that talks to ClickHouse and the declared component whose user it logs in as;
# Grafana's dashboards read as the API's reader.
COMPONENT_OF = {
    "aggregator": "aggregator",
    "trace-writer": "traces",
    "monitors": "monitors",
    "ui": "api",
    "grafana": "api",
}
NASTY = "a'b\\c\n\"{x:String}'; DROP USER tally_sql; --"


def required_variable(value: str) -> str:
    """``X`` of ``${X:?message}`` (compose refuses to start without X)."""
    match = REQUIRED.match(value)
    assert match, f"{value!r} is not a required variable"
    return match.group(1)


def talks_to_clickhouse(service: dict) -> bool:
    env = service.get("environment", {})
    return "TALLY_CLICKHOUSE_URL" in env or "TALLY_CLICKHOUSE_HOST" in env


def test_each_service_logs_into_clickhouse_as_its_component_user():
    clients = {n for n, s in SERVICES.items() if talks_to_clickhouse(s) and n != SETUP}
    assert clients == set(COMPONENT_OF)
    for name, component in COMPONENT_OF.items():
        env = SERVICES[name]["environment"]
        assert env["TALLY_CLICKHOUSE_USER"] == MODEL.user(component).name, name
        assert required_variable(env["TALLY_CLICKHOUSE_PASSWORD"]) == password_env(component)
    ui = SERVICES["ui"]["environment"]
    assert ui["TALLY_SQL_CLICKHOUSE_USER"] == MODEL.user("sql").name
    assert required_variable(ui[sql_user.PASSWORD_ENV]) == password_env("sql")
    writers = ("aggregator", "trace-writer", "monitors")
    assert len({SERVICES[n]["environment"]["TALLY_CLICKHOUSE_USER"] for n in writers}) == 3


def test_only_the_setup_service_logs_in_as_the_administrator():
    admin_password = SERVICES["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"]
    assert required_variable(admin_password) == "TALLY_CLICKHOUSE_PASSWORD"
    for name, service in SERVICES.items():
        env = service.get("environment", {})
        users = {v for k, v in env.items() if k.endswith("_USER")}
        as_admin = ADMIN in users or "${TALLY_CLICKHOUSE_PASSWORD:" in str(env)
        assert as_admin == (name in ("clickhouse", SETUP)), name
    assert ADMIN not in {u.name for u in MODEL.users}


def test_users_exist_before_any_client_starts():
    setup = SERVICES[SETUP]
    assert setup["build"] == "." and setup["entrypoint"] == ["tally", "clickhouse-users"]
    assert setup["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert setup["restart"] == "no"
    env = setup["environment"]
    assert env["TALLY_CLICKHOUSE_USER"] == ADMIN
    for user in MODEL.users:
        assert required_variable(env[password_env(user.component)]) == password_env(user.component)
    for name in COMPONENT_OF:
        condition = SERVICES[name]["depends_on"][SETUP]["condition"]
        assert condition == "service_completed_successfully", name
    result = CliRunner().invoke(app, ["clickhouse-users", "--help"])
    assert result.exit_code == 0 and "TALLY_<COMPONENT>_CLICKHOUSE_PASSWORD" in result.output


def test_every_secret_is_required_and_make_compose_env_writes_it():
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"COMPOSE_SECRETS := ((?:[^\n]*\\\n)*[^\n]*)", makefile).group(1)
    assert set(listed.replace("\\", " ").split()) == required
    assert ":-tally}" not in text  # no shared default password left
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_setup_statements_are_the_production_ddl_and_parse_with_any_password():
    env = {k: f"{k}:{NASTY}" for k in SERVICES[SETUP]["environment"]}
    passwords = passwords_from(MODEL, env)
    applied = statements(MODEL, passwords)
    assert applied == production_ddl(MODEL, passwords)
    users = [s for s in applied if s.startswith("CREATE USER")]
    assert len(users) == len(MODEL.users)
    for statement in applied:
        text = formatted(statement)  # one statement: a smuggled "; DROP ..." would not parse
        assert text.split()[0] in ("CREATE", "GRANT") and "DROP" not in text.split("'")[0]
    for user in MODEL.users:
        password = passwords[user.name]
        (statement,) = [s for s in users if s.split()[4] == user.name]
        literal = statement.split(" BY ", 1)[1].rsplit(" SETTINGS PROFILE ", 1)[0]
        read = chdb.query(f"SELECT {literal} AS p", "JSONEachRow").bytes().decode()
        assert json.loads(read)["p"] == password  # the server gets exactly this password
