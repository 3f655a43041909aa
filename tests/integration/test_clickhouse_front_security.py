"""The embedded ClickHouse front is closed by default: loopback only, a password, a sandboxed
engine, a minimal environment, no browser access, bounded memory. Real server, real clients."""

from __future__ import annotations

import http.client
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tally.embedded.clickhouse.process import EmbeddedClickHouse, start_clickhouse

pytestmark = pytest.mark.integration

LAUNCHER_SECRET = "sasl-secret-from-the-launcher"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    os.environ["TALLY_KAFKA_SASL_PASSWORD"] = LAUNCHER_SECRET  # what the launcher holds
    try:
        with start_clickhouse(tmp_path_factory.mktemp("secure"), server_args=SMALL_LIMITS) as s:
            yield s
    finally:
        del os.environ["TALLY_KAFKA_SASL_PASSWORD"]


SMALL_LIMITS = ["--max-sessions", "3", "--max-session-timeout", "120", "--max-query-bytes"]
SMALL_LIMITS.append(str(1 << 20))


def request(
    server: EmbeddedClickHouse,
    params: dict[str, str],
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    method: str = "POST",
    auth: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    creds = {"X-ClickHouse-User": server.user, "X-ClickHouse-Key": server.password}
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        all_headers = {**(creds if auth else {}), **(headers or {})}
        conn.request(method, f"/?{urlencode(params)}", body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def client(server: EmbeddedClickHouse, **kwargs):
    return clickhouse_connect.get_client(
        host=server.host, port=server.port, username=server.user, password=server.password, **kwargs
    )


# --- the password ----------------------------------------------------------------------------


def test_password_is_generated_private_and_kept(tmp_path: Path) -> None:
    with start_clickhouse(tmp_path) as first:
        secret_file = tmp_path / "secrets" / "clickhouse-password"
        assert secret_file.read_text().strip() == first.password
        assert len(first.password) >= 32
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(secret_file.parent.stat().st_mode) == 0o700
        assert first.password not in repr(first)
    with start_clickhouse(tmp_path) as again:
        assert again.password == first.password
        assert client(again).command("SELECT 1") == 1


def test_requests_without_credentials_are_refused(server: EmbeddedClickHouse) -> None:
    status, headers, body = request(server, {"query": "SELECT 1"}, auth=False)
    assert status == 401 and headers["X-ClickHouse-Exception-Code"] == "194"
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert body.startswith(b"Code: 194. DB::Exception: Authentication required")
    status, _, _ = request(server, {"query": "SELECT 1"}, method="GET", auth=False)
    assert status == 401
    wrong = {"X-ClickHouse-User": server.user, "X-ClickHouse-Key": "guess"}
    status, headers, _ = request(server, {"query": "SELECT 1"}, headers=wrong, auth=False)
    assert status == 403 and headers["X-ClickHouse-Exception-Code"] == "516"
    with pytest.raises(DatabaseError) as info:
        clickhouse_connect.get_client(host=server.host, port=server.port)  # no password
    assert info.value.code in (194, 516)
    assert request(server, {"query": "SELECT 1"})[2] == b"1\n"


# --- the network -----------------------------------------------------------------------------


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_listens_on_loopback_only(server: EmbeddedClickHouse) -> None:
    assert server.host == "127.0.0.1"
    assert _listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1, nothing else


def test_other_addresses_need_an_explicit_opt_in(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        start_clickhouse(tmp_path, host="0.0.0.0")
    cli = [sys.executable, "-m", "tally.embedded.clickhouse_http", "--path", str(tmp_path)]
    refused = subprocess.run([*cli, "--host", "0.0.0.0"], capture_output=True, timeout=60)
    assert refused.returncode == 2 and b"--allow-remote" in refused.stderr


# --- the engine's reach ----------------------------------------------------------------------

READS_OUTSIDE = [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM file('../../../../../../etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')",
    "SELECT file('/proc/self/environ')",
    "SELECT * FROM file('/proc/self/environ', 'RawBLOB')",
    "SELECT * FROM `/etc/passwd`",
    "SELECT * FROM default.`/etc/passwd`",
    "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:1/bucket/key', 'LineAsString')",
    "SELECT * FROM hdfs('hdfs://127.0.0.1:1/x', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1:1', system.one)",
    "SELECT * FROM mysql('127.0.0.1:1', 'd', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:1', 'd', 't', 'u', 'p')",
    "SELECT * FROM sqlite('/etc/passwd', 't')",
    "SELECT * FROM executable('cat /etc/passwd', 'LineAsString', 'line String')",
    "SELECT * FROM python(log)",
    "SELECT 1 /* a comment */ FROM system.one WHERE file/**/('/etc/passwd') != ''",
]


@pytest.mark.parametrize("sql", READS_OUTSIDE)
def test_get_cannot_read_files_or_urls(server: EmbeddedClickHouse, sql: str) -> None:
    status, headers, body = request(server, {"query": sql}, method="GET")
    assert status != 200, body
    assert b"root:" not in body and LAUNCHER_SECRET.encode() not in body
    assert "X-ClickHouse-Exception-Code" in headers


def test_post_cannot_write_files_or_run_programs(server: EmbeddedClickHouse) -> None:
    target = server.path.parent / "written-by-sql"
    attempts = [
        f"INSERT INTO FUNCTION file('{target}', 'LineAsString') SELECT 'x'",
        f"SELECT 'x' INTO OUTFILE '{target}'",
        f"SELECT 'x' INTO OUTFILE '{target}' TRUNCATE FORMAT TSV",
        f"CREATE TABLE f (s String) ENGINE = File(LineAsString, '{target}')",
        f"CREATE TABLE r (k UInt8) ENGINE = EmbeddedRocksDB(0, '{target}') PRIMARY KEY k",
        f"CREATE TABLE d (k UInt8) ENGINE = MergeTree ORDER BY k"
        f" SETTINGS disk = disk(type = local, path = '{target}/')",
        "CREATE TABLE e (s String) ENGINE = Executable('x.sh', 'LineAsString')",
        f"BACKUP DATABASE default TO File('{target}')",
        f"INSERT INTO t FROM INFILE '{target}' FORMAT TSV",
        "CREATE DICTIONARY x (a UInt64) PRIMARY KEY a SOURCE(EXECUTABLE(command 'id'"
        " format 'TSV')) LAYOUT(FLAT()) LIFETIME(0)",
        "SYSTEM SHUTDOWN",
        "CREATE USER intruder IDENTIFIED WITH no_password",
        "SELECT 1 SETTINGS input_format_values_interpret_expressions = 1",
    ]
    for sql in attempts:
        status, _, body = request(server, {}, sql.encode())
        assert status != 200, (sql, body)
    assert not target.exists()
    assert request(server, {"query": "SELECT 1"})[2] == b"1\n"  # still serving


def test_values_rows_are_data_not_expressions(server: EmbeddedClickHouse) -> None:
    c = client(server)
    c.command("CREATE TABLE vals (s String) ENGINE = Memory")
    status, _, body = request(server, {}, b"INSERT INTO vals VALUES (file('/etc/passwd'))")
    assert status != 200 and b"root:" not in body
    body = b"INSERT INTO vals FORMAT Values (file('/etc/passwd'))"
    assert request(server, {}, body)[0] != 200
    assert request(server, {}, b"INSERT INTO vals VALUES ('plain')")[0] == 200
    assert c.query("SELECT s FROM vals").result_rows == [("plain",)]


def test_user_files_path_is_an_empty_directory_in_the_data_dir(server: EmbeddedClickHouse) -> None:
    path = client(server).command("SELECT getServerSetting('user_files_path')")
    assert path == f"{server.path / 'user_files'}/"
    assert list((server.path / "user_files").iterdir()) == []


def test_server_process_gets_a_minimal_environment(server: EmbeddedClickHouse) -> None:
    raw = Path(f"/proc/{server.pid}/environ").read_bytes()
    names = {entry.split(b"=", 1)[0].decode() for entry in raw.split(b"\0") if entry}
    assert names <= {"PATH", "HOME", "LANG", "TZ", "PYTHONPATH"}
    assert LAUNCHER_SECRET.encode() not in raw and b"TALLY_" not in raw


# --- browsers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_requests_are_refused(server: EmbeddedClickHouse, headers: dict) -> None:
    name = "cross_" + str(abs(hash(tuple(headers.items()))))
    sql = f"CREATE TABLE {name} (a UInt8) ENGINE = Memory".encode()
    status, answer, body = request(server, {}, sql, {"Content-Type": "text/plain", **headers})
    assert status == 403 and answer["X-ClickHouse-Exception-Code"] == "497", body
    assert not any(h.lower().startswith("access-control-") for h in answer)
    exists = client(server).command(f"EXISTS TABLE {name}")
    assert exists == 0


def test_no_cors_preflight_or_cors_headers(server: EmbeddedClickHouse) -> None:
    preflight = {
        "Origin": "http://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-clickhouse-user, x-clickhouse-key",
    }
    status, headers, _ = request(server, {}, headers=preflight, method="OPTIONS", auth=False)
    assert status >= 400
    assert not any(h.lower().startswith("access-control-") for h in headers)
    status, headers, _ = request(server, {"query": "SELECT 1"})
    assert status == 200 and not any(h.lower().startswith("access-control-") for h in headers)
    # A user typing the URL (Sec-Fetch-Site: none) is no cross-site request.
    assert request(server, {"query": "SELECT 2"}, headers={"Sec-Fetch-Site": "none"})[2] == b"2\n"


# --- bounded memory --------------------------------------------------------------------------


def test_session_count_and_timeout_are_bounded(server: EmbeddedClickHouse) -> None:
    status, headers, body = request(
        server, {"session_id": "long", "session_timeout": "100000"}, b"SET max_threads = 1"
    )
    assert status != 200 and headers["X-ClickHouse-Exception-Code"] == "374", body
    for i in range(3):
        params = {"session_id": f"s{i}", "session_timeout": "60"}
        assert request(server, params, b"SET max_threads = 1")[0] == 200
    status, headers, body = request(server, {"session_id": "s3"}, b"SET max_threads = 1")
    assert status != 200 and headers["X-ClickHouse-Exception-Code"] == "202", body
    assert b"Too many sessions" in body
    # Existing sessions keep working; closing one makes room.
    assert request(server, {"session_id": "s0", "close_session": "1"}, b"SELECT 1")[0] == 200
    assert request(server, {"session_id": "s3"}, b"SET max_threads = 1")[0] == 200


def test_large_query_body_is_413(server: EmbeddedClickHouse) -> None:
    padding = b"-- " + b"x" * (2 << 20) + b"\n"
    status, headers, body = request(server, {}, b"SELECT 1 " + padding)
    assert status == 413 and headers["X-ClickHouse-Exception-Code"] == "229"
    assert b"larger than the server's limit of 1048576 bytes" in body
    status, _, _ = request(server, {"query": "SELECT 1"}, padding)
    assert status == 413
    # INSERT rows are not bound by the query limit.
    c = client(server)
    c.command("CREATE TABLE big_insert (s String) ENGINE = MergeTree ORDER BY s")
    c.insert("big_insert", [["y" * 1000] for _ in range(3000)], column_names=["s"])
    assert c.command("SELECT count() FROM big_insert") == 3000


def test_long_statements_pass_the_policy_check(server: EmbeddedClickHouse) -> None:
    """The check formats the statement hex-encoded (twice as long); a 200 KB query still runs."""
    numbers = ",".join(str(n) for n in range(40_000))
    sql = f"SELECT count() FROM numbers(50000) WHERE number IN ({numbers})".encode()
    assert len(sql) > 200_000
    status, _, body = request(server, {}, sql)
    assert (status, body) == (200, b"40000\n")
    assert request(server, {}, b"SELECT getSetting('max_query_size')")[2] == b"262144\n"
