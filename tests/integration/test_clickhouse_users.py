"""One ClickHouse user per component on the real embedded ClickHouse (issue #21 items 2, 3 and
12): the SQL endpoint's user cannot lift its limits, no component can KILL, SYSTEM, SHOW GRANTS
or read system tables beyond a few, a closed client cancels its query, and over HTTP the API
answers a timeout with 504 (and cancels) and a limit with 413."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tally.api.server import ServerThread
from tally.api.settings import ApiSettings
from tally.api.sql import SqlSettings
from tally.clickhouse.settings import ClickHouseSettings
from tally.embedded.clickhouse.process import EmbeddedClickHouse, start_clickhouse
from tally.embedded.kafka_node import free_ports
from tally.read import ReadSettings
from tally.schemas.access import AccessModel, access_model
from tally.schemas.ddl import RollupSchema

pytestmark = pytest.mark.integration

READ = "read-token-0123456789abcdef"
SQL = "sql-token-0123456789abcdef"
# One-row blocks: a slow query checks its deadline and cancellation after every row. A long
# limit, so that only a cancellation can end a slow query early; QUICK ends it after 2 s.
MODEL = access_model("tally").with_settings("sql", max_execution_time=60, max_block_size=1)
QUICK = MODEL.with_settings("sql", max_execution_time=2)
SLOW = "SELECT sleepEachRow(0.1) FROM numbers(600)"  # 60 s unless stopped
RUNNING = (
    "SELECT count() FROM system.processes"
    " WHERE query LIKE '%sleepEachRow%' AND query NOT LIKE '%system.processes%'"
)


def started(path: Path, model: AccessModel) -> EmbeddedClickHouse:
    ch = start_clickhouse(path, access=model)
    admin = client_of(ch, ch.user, ch.password)
    for statement in RollupSchema(database="tally").statements():
        admin.command(statement)
    return ch


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    with started(tmp_path_factory.mktemp("users"), MODEL) as ch:
        yield ch


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    with started(tmp_path_factory.mktemp("quick"), QUICK) as ch:
        yield ch


def client_of(ch: EmbeddedClickHouse, user: str, password: str) -> Any:
    return clickhouse_connect.get_client(
        host=ch.host, port=ch.port, username=user, password=password
    )


def as_component(ch: EmbeddedClickHouse, component: str) -> Any:
    return client_of(ch, *ch.login(component))


def refusal(client: Any, query: str) -> str:
    with pytest.raises(DatabaseError) as caught:
        client.query(query)
    return str(caught.value)


def running(ch: EmbeddedClickHouse) -> int:
    return client_of(ch, ch.user, ch.password).query(RUNNING).result_rows[0][0]


def wait_until_none_running(ch: EmbeddedClickHouse, bound: float) -> None:
    deadline = time.monotonic() + bound
    while running(ch) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running(ch) == 0, "the query kept running"


def test_each_component_has_its_own_user_with_a_generated_private_password(server):
    users = {c: server.login(c)[0] for c in ("aggregator", "traces", "monitors", "api", "sql")}
    assert users == {
        "aggregator": "tally_aggregator",
        "traces": "tally_traces",
        "monitors": "tally_monitors",
        "api": "tally_api",
        "sql": "tally_sql",
    }
    passwords = {server.login(c)[1] for c in users} | {server.password}
    assert len(passwords) == 6 and all(len(p) >= 32 for p in passwords)
    secret = server.path / "secrets" / "clickhouse-sql-password"
    assert secret.stat().st_mode & 0o777 == 0o600
    user, _ = server.login("sql")
    with pytest.raises(DatabaseError, match="516"):
        client_of(server, user, server.password)  # another component's password


def test_sql_user_cannot_lift_its_limits(server):
    sql = as_component(server, "sql")
    lifted = refusal(sql, "SELECT number FROM numbers(50000) SETTINGS max_result_rows=0")
    assert "Code: 164" in lifted and "readonly" in lifted
    assert "max rows: 10.00 thousand" in refusal(sql, "SELECT number FROM numbers(50000)")
    huge = refusal(sql, "SELECT randomString(5e7) FROM numbers(4)")
    assert "max bytes: 16.00 MiB" in huge or "memory limit" in huge.lower()
    readonly = sql.query("SELECT getSetting('readonly'), getSetting('max_memory_usage')")
    assert readonly.result_rows == [(1, 512 << 20)]


@pytest.mark.parametrize("component", ["aggregator", "traces", "monitors", "api", "sql"])
def test_no_component_can_kill_or_administer(server, component):
    client = as_component(server, component)
    for statement in (
        "KILL QUERY WHERE 1",
        "SYSTEM FLUSH LOGS",
        "SHOW GRANTS",
        "DROP TABLE tally.rollups",
    ):
        assert "Code: 497" in refusal(client, statement), statement
    admin = client_of(server, server.user, server.password)
    assert admin.query("SHOW GRANTS").result_rows  # the administrator still can


@pytest.mark.parametrize("component", ["api", "sql"])
def test_readers_see_only_their_tables(server, component):
    client = as_component(server, component)
    for query in (
        "SELECT * FROM system.processes",
        "WITH p AS (SELECT * FROM system.users) SELECT count() FROM p",
        "SELECT 1 WHERE 1 IN (SELECT 1 FROM system.query_log)",
        "SELECT count() FROM merge('system', '^processes$')",
        "INSERT INTO tally.rollups_input SELECT * FROM tally.rollups_input",
    ):
        assert "Code: 497" in refusal(client, query) or "Code: 60" in refusal(client, query), query
    assert client.query("SELECT count() FROM tally.rollups_1h").result_rows == [(0,)]
    assert client.query("SELECT count() FROM numbers(3)").result_rows == [(3,)]


def test_sql_user_reads_only_the_documented_views(server):
    sql = as_component(server, "sql")
    assert "may not read tally.rollups_input" in refusal(sql, "SELECT * FROM tally.rollups_input")
    assert sql.query("SELECT count() FROM tally.keys_seen").result_rows == [(0,)]


def test_a_closed_client_cancels_its_query(server):
    user, password = server.login("sql")
    auth = base64.b64encode(f"{user}:{password}".encode())
    body = SLOW.encode()
    with socket.create_connection((server.host, server.port)) as s:
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nContent-Length: %d\r\n\r\n%s"
            % (auth, len(body), body)
        )
        deadline = time.monotonic() + 20
        while not running(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running(server) == 1
    wait_until_none_running(server, bound=10)  # its own limit would end it after 60 s


def sql_read_settings(ch: EmbeddedClickHouse) -> ReadSettings:
    user, password = ch.login("sql")
    return ReadSettings(clickhouse=ClickHouseSettings(url=ch.url, user=user, password=password))


@pytest.fixture(scope="module")
def api_sql(server, quick_server) -> Iterator[tuple[str, str]]:
    """Two APIs over the SQL user: one waits for ClickHouse's own 2 s limit (``quick_server``),
    one gives up after 0.5 s (``server``, whose limit is 60 s)."""
    ports = free_ports(2)
    setups = [(quick_server, 2.0, 5.0), (server, 0.5, 0.0)]
    threads = []
    for port, (ch, timeout, grace) in zip(ports, setups, strict=True):
        read = sql_read_settings(ch)
        api = ApiSettings(read, READ, SQL, port=port, sql=SqlSettings(read, timeout, grace))
        threads.append(ServerThread(api).start())
    try:
        yield tuple(f"http://127.0.0.1:{p}" for p in ports)  # type: ignore[misc]
    finally:
        for thread in threads:
            thread.stop()


def post_sql(url: str, query: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {SQL}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        return c.post("/api/v1/sql", json={"query": query})


def test_api_sql_limits_are_named_and_cannot_be_lifted(api_sql):
    url = api_sql[0]
    lifted = post_sql(url, "SELECT number FROM numbers(50000) SETTINGS max_result_rows=0")
    assert lifted.status_code == 400 and "readonly" in lifted.json()["reason"]
    rows = post_sql(url, "SELECT number FROM numbers(50000)")
    assert rows.status_code == 413 and "max rows: 10.00 thousand" in rows.json()["reason"]
    big = post_sql(url, "SELECT randomString(5e7) FROM numbers(4)")
    assert big.status_code == 413 and big.json()["error"] == "limit"
    kill = post_sql(url, "KILL QUERY WHERE 1")
    assert kill.status_code == 403 and "may not run KillQueryQuery" in kill.json()["reason"]
    ok = post_sql(url, "SELECT count() AS n FROM tally.rollups_1h")
    assert ok.status_code == 200 and ok.json()["rows"] == [[0]]


def test_api_sql_timeout_is_504_naming_the_limit(api_sql, quick_server):
    response = post_sql(api_sql[0], SLOW)
    assert response.status_code == 504, response.text
    assert response.json() == {
        "error": "timeout",
        "reason": "the query ran longer than the limit of 2 s (max_execution_time)"
        " and was cancelled",
    }
    assert running(quick_server) == 0


def test_api_deadline_cancels_the_query(api_sql, server):
    response = post_sql(api_sql[1], SLOW)
    assert response.status_code == 504 and response.json()["error"] == "timeout"
    wait_until_none_running(server, bound=10)  # its own limit would end it after 60 s
