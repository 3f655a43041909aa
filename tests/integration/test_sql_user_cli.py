"""``tally api`` / ``tally ui`` over an external ClickHouse (the real embedded server with its
per-component users, started as in test_clickhouse_users.py): ``/sql`` runs as the SQL user
named by ``--sql-clickhouse-user``, whose limits the query cannot lift; without one it answers
503 naming the missing setting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tally.embedded.clickhouse.process import EmbeddedClickHouse
from tally.embedded.kafka_node import free_ports
from tests.integration.test_clickhouse_users import MODEL, started

pytestmark = pytest.mark.integration

READ = "read-token-0123456789abcdef"
SQL = "sql-token-0123456789abcdef"
LIFT = "SELECT number FROM numbers(50000) SETTINGS max_result_rows=0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    with started(tmp_path_factory.mktemp("external"), MODEL) as ch:
        yield ch


def command(ch: EmbeddedClickHouse, kind: str, port: int, data_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "tally.cli", kind, "--port", str(port),
        "--clickhouse-url", ch.url, "--clickhouse-user", ch.login("api")[0],
        "--data-dir", str(data_dir), *extra,
    ]  # fmt: skip


def environment(ch: EmbeddedClickHouse, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(TALLY_API_TOKEN=READ, TALLY_API_SQL_TOKEN=SQL)
    env["TALLY_CLICKHOUSE_PASSWORD"] = ch.login("api")[1]
    return {**env, **extra}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """Start ``tally api|ui`` and return its URL once /health answers; stop it afterwards."""
    processes: list[subprocess.Popen[str]] = []

    def start(ch: EmbeddedClickHouse, kind: str, env: dict[str, str], *extra: str) -> str:
        port = free_ports(1)[0]
        process = subprocess.Popen(
            command(ch, kind, port, tmp_path, *extra), env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{url}/api/v1/health").status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.2)
        raise TimeoutError(f"tally {kind} did not answer")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=20)


def post_sql(url: str, query: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {SQL}"}
    return httpx.post(f"{url}/api/v1/sql", json={"query": query}, headers=headers, timeout=60)


def test_api_with_the_sql_user_keeps_its_limits(server, serve, tmp_path):
    user, password = server.login("sql")
    secret = tmp_path / "sql-password"
    secret.write_text(password + "\n")
    url = serve(
        server, "api", environment(server),
        "--sql-clickhouse-user", user, "--sql-clickhouse-password-file", str(secret),
    )  # fmt: skip
    lifted = post_sql(url, LIFT)
    assert lifted.status_code == 400 and "readonly" in lifted.json()["reason"], lifted.text
    capped = post_sql(url, "SELECT number FROM numbers(50000)")
    assert capped.status_code == 413 and "max rows: 10.00 thousand" in capped.json()["reason"]
    inputs = post_sql(url, "SELECT count() FROM tally.rollups_input")
    assert inputs.status_code == 403  # tally_sql reads the documented views only
    ok = post_sql(url, "SELECT count() AS n FROM tally.rollups_1h")
    assert ok.status_code == 200 and ok.json()["rows"] == [[0]]


def test_ui_takes_the_sql_password_from_the_environment(server, serve):
    user, password = server.login("sql")
    env = environment(
        server, TALLY_SQL_CLICKHOUSE_USER=user, TALLY_SQL_CLICKHOUSE_PASSWORD=password
    )
    url = serve(server, "ui", env)
    lifted = post_sql(url, LIFT)
    assert lifted.status_code == 400 and "Code: 164" in lifted.json()["reason"]


@pytest.mark.parametrize("kind", ["api", "ui"])
def test_without_a_sql_user_sql_answers_503_naming_the_setting(server, serve, kind):
    url = serve(server, kind, environment(server))
    for query in (LIFT, "SELECT 1"):
        refused = post_sql(url, query)
        assert refused.status_code == 503
        assert refused.json()["error"] == "unconfigured"
        assert "--sql-clickhouse-user" in refused.json()["reason"]
    reads = httpx.get(f"{url}/api/v1/keys", headers={"Authorization": f"Bearer {READ}"})
    assert reads.status_code == 200  # the read endpoints still work


def test_a_sql_user_without_a_password_is_refused_at_start(server, tmp_path):
    port = free_ports(1)[0]
    done = subprocess.run(
        command(server, "api", port, tmp_path, "--sql-clickhouse-user", "tally_sql"),
        env=environment(server), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --sql-clickhouse-user: tally_sql needs its password in "
        "TALLY_SQL_CLICKHOUSE_PASSWORD or --sql-clickhouse-password-file"
    ]
