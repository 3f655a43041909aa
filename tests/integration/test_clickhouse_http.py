"""The embedded ClickHouse HTTP server, driven by unmodified clickhouse-connect clients and curl."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import clickhouse_connect
import lz4.block
import lz4.frame
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from tally.embedded.clickhouse.compression import zstd
from tally.embedded.clickhouse.process import EmbeddedClickHouse, start_clickhouse
from tally.embedded.clickhouse.sql import find_insert_head

pytestmark = pytest.mark.integration

TYPED_COLUMNS = ["s", "lc", "ts", "f", "i", "u", "tags"]
TYPED_DDL = """CREATE TABLE {table} (
    s String, lc LowCardinality(String), ts DateTime, f Float64, i Int64, u UInt32,
    tags Array(String)
) ENGINE = MergeTree ORDER BY i"""


def typed_rows(n: int, *, aware: bool) -> list[tuple]:
    """Rows exercising every column type; ``aware`` datetimes to insert, naive UTC to compare."""
    start = datetime(2026, 3, 29, 0, 30, tzinfo=UTC if aware else None)
    return [
        (
            f"s{i}\t'\"\\✓",
            f"k{i % 7}",
            start + timedelta(seconds=37 * i),
            i / 7,
            -(i**3),
            i * 65_537 % 2**32,
            [f"t{j}" for j in range(i % 4)],
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    with start_clickhouse(tmp_path_factory.mktemp("chdb")) as server:
        yield server


def connect(server: EmbeddedClickHouse, **kwargs) -> Client:
    """A sync clickhouse-connect client with the server's credentials."""
    return clickhouse_connect.get_client(
        host=server.host,
        port=server.port,
        username=server.user,
        password=server.password,
        **kwargs,
    )


async def connect_async(server: EmbeddedClickHouse, **kwargs):
    """An async clickhouse-connect client with the server's credentials."""
    return await clickhouse_connect.get_async_client(
        host=server.host,
        port=server.port,
        username=server.user,
        password=server.password,
        **kwargs,
    )


def auth_headers(server: EmbeddedClickHouse) -> dict[str, str]:
    """ClickHouse's own credential headers, for raw HTTP requests."""
    return {
        "X-ClickHouse-User": server.user,
        "X-ClickHouse-Key": server.password,
    }


@pytest.fixture
def client(clickhouse: EmbeddedClickHouse) -> Iterator[Client]:
    c = connect(clickhouse)
    yield c
    c.close()


def post(
    server: EmbeddedClickHouse,
    params: dict[str, str],
    body: bytes | Iterator[bytes] = b"",
    headers: dict[str, str] | None = None,
    method: str = "POST",
    *,
    auth: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request (with the server's credentials unless ``auth`` is false); an
    iterator body goes out with chunked transfer encoding."""
    headers = {**(auth_headers(server) if auth else {}), **(headers or {})}
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        chunked = not isinstance(body, bytes)
        conn.request(
            method,
            f"/?{urlencode(params)}",
            body=body,
            headers=headers,
            encode_chunked=chunked,
        )
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def curl(server: EmbeddedClickHouse, *args: str, stdin: bytes | None = None) -> bytes:
    """curl with the server's credentials, read from a private config file (not argv)."""
    config = server.path / "secrets" / "curlrc"
    if not config.exists():
        config.touch(mode=0o600)
        config.write_text(f'user = "{server.user}:{server.password}"\n')
    return subprocess.run(
        ["curl", "-sS", "-K", str(config), *args],
        input=stdin,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout


def native_block(client: Client, sql: str) -> bytes:
    return client.raw_query(sql, fmt="Native")


def clickhouse_compressed(data: bytes) -> bytes:
    """ClickHouse's ``decompress=1`` block: checksum (unchecked), 0x82 = LZ4, sizes, payload."""
    payload = lz4.block.compress(data, store_size=False)
    sizes = (len(payload) + 9).to_bytes(4, "little") + len(data).to_bytes(4, "little")
    return bytes(16) + b"\x82" + sizes + payload


# --- statement splitting (no server) -------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (b"INSERT INTO t FORMAT Native\n\x0a\x01", ("INSERT INTO t ", "Native", 28)),
        (b"/* c */ insert into `format` (a, format) format CSV 1,2", (None, "CSV", 52)),
        (b"INSERT INTO db.format SETTINGS x='FORMAT' FORMAT TSV\r\nrow", (None, "TSV", 54)),
        (b"INSERT INTO t VALUES (1)", None),
        (b"INSERT INTO t SELECT format FROM s FORMAT Native", None),
        (b"SELECT 1 FORMAT Native", None),
    ],
)
def test_find_insert_head(sql: bytes, expected: tuple | None) -> None:
    head = find_insert_head(sql, at_eof=True)
    if expected is None:
        assert head is None
        return
    statement, fmt, data_start = expected
    assert head is not None and (head.format, head.data_start) == (fmt, data_start)
    assert statement is None or head.statement == statement


# --- plain HTTP and curl -------------------------------------------------------------------


def test_ping_root_and_curl(clickhouse: EmbeddedClickHouse) -> None:
    url = clickhouse.url
    assert curl(clickhouse, f"{url}/ping") == b"Ok.\n"
    assert curl(clickhouse, f"{url}/") == b"Ok.\n"
    assert curl(clickhouse, f"{url}/?query=SELECT%2040%2B2") == b"42\n"
    posted = curl(clickhouse, "--data-binary", "SELECT 7 AS x FORMAT JSONEachRow", f"{url}/")
    assert json.loads(posted) == {"x": 7}
    curl(clickhouse, "--data-binary", "CREATE TABLE curl_t (a UInt8, b String) ENGINE = Log", url)
    csv = b"1,one\n2,two\n"
    insert = f"{url}/?query=INSERT%20INTO%20curl_t%20FORMAT%20CSV"
    curl(clickhouse, "--data-binary", "@-", insert, stdin=csv)
    chunked = ["-H", "Transfer-Encoding: chunked", "-H", "Content-Encoding: gzip"]
    curl(clickhouse, *chunked, "--data-binary", "@-", insert, stdin=gzip.compress(csv))
    body = b"INSERT INTO curl_t FORMAT TSV\n3\tthree\n"
    curl(clickhouse, "--data-binary", "@-", url, stdin=body)
    assert curl(clickhouse, f"{url}/?query=SELECT%20count(),sum(a)%20FROM%20curl_t") == b"5\t9\n"


def test_get_is_readonly_and_errors_carry_codes(clickhouse: EmbeddedClickHouse) -> None:
    status, headers, body = post(
        clickhouse, {"query": "CREATE TABLE ro (a UInt8) ENGINE = Log"}, method="GET"
    )
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "164"
    status, headers, body = post(clickhouse, {"query": "SELECT * FROM no_such_table"})
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception:")
    status, headers, _ = post(clickhouse, {}, b"SELECT 1; SELECT 2")
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "62"
    status, headers, _ = post(clickhouse, {"query": "SELECT 1", "no_such_setting": "1"})
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "115"


def test_response_headers_and_formats(clickhouse: EmbeddedClickHouse) -> None:
    status, headers, body = post(
        clickhouse, {"query_id": "q-123", "default_format": "JSONEachRow"}, b"SELECT 1 AS a"
    )
    assert status == 200 and json.loads(body) == {"a": 1}
    assert headers["X-ClickHouse-Query-Id"] == "q-123"
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["X-ClickHouse-Timezone"]
    assert json.loads(headers["X-ClickHouse-Summary"])["result_rows"] == "1"
    _, headers, body = post(clickhouse, {}, b"CREATE TABLE no_rows (a UInt8) ENGINE = Log")
    assert body == b"" and "X-ClickHouse-Format" not in headers  # clickhouse-connect relies on it
    _, headers, body = post(clickhouse, {}, b"SELECT number FROM numbers(3) FORMAT JSON")
    assert [row["number"] for row in json.loads(body)["data"]] == [0, 1, 2]
    _, headers, body = post(
        clickhouse,
        {"enable_http_compression": "1"},
        b"SELECT repeat('x', 1000) FORMAT TabSeparated",
        {"Accept-Encoding": "gzip"},
    )
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == b"x" * 1000 + b"\n"


# --- sync client ---------------------------------------------------------------------------


def test_sync_client_round_trip(client: Client) -> None:
    client.command(TYPED_DDL.format(table="typed_sync"))
    summary = client.insert("typed_sync", typed_rows(3000, aware=True), column_names=TYPED_COLUMNS)
    assert summary.written_rows == 3000
    assert client.command("SELECT count() FROM typed_sync") == 3000
    result = client.query(f"SELECT {', '.join(TYPED_COLUMNS)} FROM typed_sync ORDER BY i DESC")
    assert result.result_rows == typed_rows(3000, aware=False)


def test_sync_client_binds_raw_formats_and_form_encoding(clickhouse: EmbeddedClickHouse) -> None:
    nasty = 'it\'s a \t tab, a \\ backslash, "quotes" and ✓\n'
    c = connect(clickhouse, form_encode_query_params=True)
    for client in (c, connect(clickhouse)):
        query = "SELECT {s:String} AS s, {a:Array(UInt16)} AS a, {t:Identifier} AS t"
        rows = client.query(query, parameters={"s": nasty, "a": [1, 2], "t": "s"}).result_rows
        assert rows == [(nasty, [1, 2], nasty)]
    sql = "SELECT number AS n, toString(number) AS s FROM numbers(2)"
    assert c.raw_query(sql, fmt="TabSeparated") == b"0\t0\n1\t1\n"
    assert c.raw_query(sql, fmt="JSONEachRow").splitlines() == [
        b'{"n":0,"s":"0"}',
        b'{"n":1,"s":"1"}',
    ]
    rbwnt = c.raw_query("SELECT toUInt8(5) AS x", fmt="RowBinaryWithNamesAndTypes")
    assert rbwnt == b"\x01\x01x\x05UInt8\x05"


def test_statement_in_body_uncompressed_insert(clickhouse: EmbeddedClickHouse) -> None:
    """compress=False: clickhouse-connect puts ``INSERT ... FORMAT Native`` at the body's start."""
    c = connect(clickhouse, compress=False)
    c.command("CREATE TABLE ten (" + ", ".join(f"c{i} UInt8" for i in range(10)) + ") ENGINE = Log")
    # Ten columns: the Native block starts with byte 0x0a, right after the statement's newline.
    c.insert("ten", [[i] * 10 for i in range(100)], column_names=[f"c{i}" for i in range(10)])
    assert c.command("SELECT count(), sum(c9) FROM ten") == ["100", "4950"]


def test_error_is_database_error_with_code(client: Client) -> None:
    with pytest.raises(DatabaseError) as info:
        client.query("SELECT * FROM missing_table")
    assert info.value.code == 60
    with pytest.raises(DatabaseError) as info:
        client.command("SELECT toUInt8('not a number')")
    assert info.value.code == 6


def test_settings_reach_the_engine(client: Client) -> None:
    assert client.command("SELECT getSetting('async_insert')") == "false"  # clickhouse-server's
    on = client.command("SELECT getSetting('async_insert')", settings={"async_insert": 1})
    assert on == "true"
    token = client.command(
        "SELECT getSetting('insert_deduplication_token')",
        settings={"insert_deduplication_token": "p0:10-20"},
    )
    assert token == "p0:10-20"


def test_insert_deduplication_token(client: Client) -> None:
    client.command(
        "CREATE TABLE dedup (k UInt64, v String) ENGINE = MergeTree ORDER BY k"
        " SETTINGS non_replicated_deduplication_window = 1000"
    )
    rows = [[i, "x"] for i in range(100)]
    for token in ("t-1", "t-1", "t-2"):
        settings = {"async_insert": 0, "insert_deduplication_token": token}
        client.insert("dedup", rows, column_names=["k", "v"], settings=settings)
    assert client.command("SELECT count() FROM dedup") == 200


def test_session_keeps_set_and_use(clickhouse: EmbeddedClickHouse, client: Client) -> None:
    client.command("CREATE DATABASE IF NOT EXISTS sess_db")
    client.command("SET max_threads = 1")
    client.command("USE sess_db")
    assert client.command("SELECT getSetting('max_threads'), currentDatabase()") == [
        "1",
        "sess_db",
    ]
    other = connect(clickhouse)
    assert other.command("SELECT getSetting('max_threads') != 1, currentDatabase()") == [
        "1",
        "default",
    ]


# --- request bodies on the wire ------------------------------------------------------------


def test_concatenated_frames_and_blocks(clickhouse: EmbeddedClickHouse, client: Client) -> None:
    client.command("CREATE TABLE frames (n UInt64) ENGINE = MergeTree ORDER BY n")
    blocks = [
        native_block(client, f"SELECT number AS n FROM numbers({start}, 1000)")
        for start in (0, 1000, 2000)
    ]
    insert = {"query": "INSERT INTO frames FORMAT Native"}
    encodings = {
        "lz4": lambda block: lz4.frame.compress(block),
        "gzip": lambda block: gzip.compress(block),
        "zstd": lambda block: zstd.compress(block),
    }
    for name, encode in encodings.items():
        frames = b"".join(encode(block) for block in blocks)
        pieces = iter([frames[i : i + 777] for i in range(0, len(frames), 777)])
        for body in (frames, pieces):  # whole (Content-Length), then chunked across frames
            status, _, answer = post(clickhouse, insert, body, {"Content-Encoding": name})
            assert status == 200, answer
    packed = b"".join(clickhouse_compressed(block) for block in blocks)
    status, _, body = post(clickhouse, {**insert, "decompress": "1"}, packed)
    assert status == 200, body
    assert client.command("SELECT count(), uniqExact(n) FROM frames") == ["21000", "3000"]


def test_truncated_or_unknown_encoding_is_an_error(clickhouse: EmbeddedClickHouse) -> None:
    frame = lz4.frame.compress(b"SELECT 1")
    status, headers, _ = post(clickhouse, {}, frame[:-3], {"Content-Encoding": "lz4"})
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "271"
    status, headers, _ = post(
        clickhouse, {}, zlib.compress(b"SELECT 1"), {"Content-Encoding": "br"}
    )
    assert headers["X-ClickHouse-Exception-Code"] == "89"


# --- async client --------------------------------------------------------------------------


async def test_async_client_round_trip_and_multi_block_insert(
    clickhouse: EmbeddedClickHouse,
) -> None:
    c = await connect_async(clickhouse)
    try:
        await c.command(TYPED_DDL.format(table="typed_async"))
        await c.insert("typed_async", typed_rows(2000, aware=True), column_names=TYPED_COLUMNS)
        result = await c.query(
            f"SELECT {', '.join(TYPED_COLUMNS)} FROM typed_async ORDER BY i DESC"
        )
        assert result.result_rows == typed_rows(2000, aware=False)
        # ~2 MiB per block: 300k rows go out as several blocks, one lz4 frame each.
        await c.command("CREATE TABLE big_async (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
        rows = [[i, f"row number {i}"] for i in range(300_000)]
        await c.insert("big_async", rows, column_names=["n", "s"], settings={"async_insert": 0})
        counts = await c.command("SELECT count(), uniqExact(n), sum(n) FROM big_async")
        assert counts == ["300000", "300000", str(sum(range(300_000)))]
    finally:
        await c.close()


# --- concurrency ---------------------------------------------------------------------------

WRITER = """
import os, sys, clickhouse_connect
port, writer = int(sys.argv[1]), int(sys.argv[2])
client = clickhouse_connect.get_client(
    host="127.0.0.1", port=port, password=os.environ["TALLY_CLICKHOUSE_PASSWORD"]
)
for batch in range(8):
    rows = [[writer, batch, i] for i in range(5000)]
    client.insert("shared", rows, column_names=["w", "b", "i"], settings={"async_insert": 0})
"""


def test_two_writer_processes_and_a_reader(clickhouse: EmbeddedClickHouse, client: Client) -> None:
    client.command("CREATE TABLE shared (w UInt8, b UInt8, i UInt32) ENGINE = MergeTree ORDER BY w")
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(clickhouse.port), str(w)],
            env={**os.environ, "TALLY_CLICKHOUSE_PASSWORD": clickhouse.password},
        )
        for w in (1, 2)
    ]
    seen = []
    while any(w.poll() is None for w in writers):
        seen.append(client.command("SELECT count() FROM shared"))
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    assert seen == sorted(seen) and all(n % 5000 == 0 for n in seen)  # whole inserts only
    per_writer = client.query("SELECT w, count() FROM shared GROUP BY w ORDER BY w").result_rows
    assert per_writer == [(1, 40_000), (2, 40_000)]


def test_ping_and_queries_answer_while_a_query_runs(
    clickhouse: EmbeddedClickHouse, client: Client
) -> None:
    """Proved by ClickHouse's own process list, not by a stopwatch: the slow query (4 s, 100x
    a ping) is seen running before the ping and still running after it and another query."""
    slow_sql = "SELECT sleepEachRow(1) AS ping_probe FROM numbers(4) SETTINGS max_block_size = 1"
    running_sql = (
        "SELECT count() FROM system.processes"
        " WHERE query LIKE '%ping_probe%' AND query NOT LIKE '%system.processes%'"
    )
    slow = threading.Thread(target=client.command, args=(slow_sql,))
    slow.start()
    other = connect(clickhouse)
    deadline = time.monotonic() + 60
    while other.command(running_sql) != 1:
        assert time.monotonic() < deadline, "the slow query never started"
        time.sleep(0.05)
    assert curl(clickhouse, f"{clickhouse.url}/ping") == b"Ok.\n"
    assert other.command("SELECT 1") == 1
    assert other.command(running_sql) == 1  # answered while the slow query still ran
    slow.join()


# --- auth, lifecycle -----------------------------------------------------------------------


def test_auth(tmp_path: Path) -> None:
    with start_clickhouse(tmp_path, user="alice", password="s3cret") as server:
        good = clickhouse_connect.get_client(
            host=server.host, port=server.port, username="alice", password="s3cret"
        )
        assert good.command("SELECT currentUser() != ''") == 1
        with pytest.raises(DatabaseError) as info:
            clickhouse_connect.get_client(
                host=server.host, port=server.port, username="alice", password="wrong"
            )
        assert info.value.code == 516
        wrong = {"X-ClickHouse-User": "alice", "X-ClickHouse-Key": "nope"}
        status, headers, _ = post(server, {"query": "SELECT 1"}, headers=wrong, auth=False)
        assert status == 403 and headers["X-ClickHouse-Exception-Code"] == "516"
        by_header = {"X-ClickHouse-User": "alice", "X-ClickHouse-Key": "s3cret"}
        assert post(server, {"query": "SELECT 1"}, headers=by_header, auth=False)[2] == b"1\n"
        by_params = {"query": "SELECT 2", "user": "alice", "password": "s3cret"}
        assert post(server, by_params, auth=False)[2] == b"2\n"
        assert curl(server, f"{server.url}/ping") == b"Ok.\n"


def test_stop_finishes_in_flight_work_and_data_persists(tmp_path: Path) -> None:
    server = start_clickhouse(tmp_path)
    c = connect(server)
    c.command("CREATE TABLE kept (n UInt32) ENGINE = MergeTree ORDER BY n")
    c.insert("kept", [[n] for n in range(1000)], column_names=["n"])
    slow: list[object] = []
    runner = threading.Thread(target=lambda: slow.append(c.command("SELECT sleep(1) + 5")))
    runner.start()
    time.sleep(0.3)
    assert server.stop() == 0
    runner.join()
    assert slow == [5] and not server.is_running
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    with start_clickhouse(tmp_path) as again:
        assert again.password == server.password  # kept in the data dir
        c = connect(again)
        assert c.command("SELECT count(), sum(n) FROM kept") == ["1000", "499500"]
        with pytest.raises(RuntimeError, match="exited with code 1"):
            start_clickhouse(tmp_path)  # one process per data path


# --- failed inserts are failures -----------------------------------------------------------

INSERT_FAILURES = [
    # (table DDL, rows, insert settings, expected ClickHouse error code)
    (
        "CREATE TABLE {t} (n UInt64, CONSTRAINT small CHECK n < 10) ENGINE = MergeTree ORDER BY n",
        [[1], [20]],
        {},
        469,  # VIOLATED_CONSTRAINT
    ),
    (
        "CREATE TABLE {t} (n UInt64) ENGINE = MergeTree PARTITION BY n ORDER BY n",
        [[1], [2], [3]],
        {"max_partitions_per_insert_block": 2},
        252,  # TOO_MANY_PARTS (too many partitions for one block)
    ),
]


def _failing_tables(client: Client, prefix: str) -> list[tuple[str, list, dict, int]]:
    """Tables whose next insert of ``rows`` fails in ``insert_done``, one per error kind."""
    cases = []
    for i, (ddl, rows, settings, code) in enumerate(INSERT_FAILURES):
        table = f"{prefix}_fail{i}"
        client.command(ddl.format(t=table))
        cases.append((table, rows, settings, code))
    # A materialized view whose SELECT throws (throwIf) while the insert is pushed through it.
    client.command(f"CREATE TABLE {prefix}_src (n UInt64) ENGINE = Null")
    client.command(f"CREATE TABLE {prefix}_dst (n UInt64) ENGINE = MergeTree ORDER BY n")
    client.command(
        f"CREATE MATERIALIZED VIEW {prefix}_mv TO {prefix}_dst"
        f" AS SELECT n + throwIf(n = 7, 'seven is not allowed') AS n FROM {prefix}_src"
    )
    cases.append((f"{prefix}_src", [[1], [7]], {}, 395))  # FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
    # TOO_MANY_PARTS: the table allows one active part, so the second insert is refused.
    client.command(
        f"CREATE TABLE {prefix}_parts (n UInt64) ENGINE = MergeTree ORDER BY n"
        " SETTINGS parts_to_throw_insert = 1, parts_to_delay_insert = 0"
    )
    client.insert(f"{prefix}_parts", [[1]], column_names=["n"])
    cases.append((f"{prefix}_parts", [[2]], {}, 252))
    return cases


def test_sync_insert_errors_are_raised(client: Client) -> None:
    for table, rows, settings, code in _failing_tables(client, "sync"):
        before = client.command(f"SELECT count() FROM {table}")
        with pytest.raises(DatabaseError) as info:
            client.insert(table, rows, column_names=["n"], settings=settings)
        assert info.value.code == code, (table, str(info.value))
        assert f"Code: {code}. DB::Exception:" in str(info.value)
        assert client.command(f"SELECT count() FROM {table}") == before


async def test_async_insert_errors_are_raised(clickhouse: EmbeddedClickHouse) -> None:
    sync = connect(clickhouse)
    cases = _failing_tables(sync, "async")
    c = await connect_async(clickhouse)
    try:
        for table, rows, settings, code in cases:
            with pytest.raises(DatabaseError) as info:
                await c.insert(table, rows, column_names=["n"], settings=settings)
            assert info.value.code == code, (table, str(info.value))
    finally:
        await c.close()


def test_insert_error_status_header_and_body(clickhouse: EmbeddedClickHouse) -> None:
    """What clickhouse-server sends: an error status, the code header, ``Code: N.`` body."""
    client = connect(clickhouse)
    client.command(
        "CREATE TABLE raw_fail (n UInt64, CONSTRAINT small CHECK n < 10)"
        " ENGINE = MergeTree ORDER BY n"
    )
    status, headers, body = post(
        clickhouse, {"query": "INSERT INTO raw_fail FORMAT TSV"}, b"1\n20\n"
    )
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "469"
    assert body.startswith(b"Code: 469. DB::Exception: Constraint `small`")
    assert client.command("SELECT count() FROM raw_fail") == 0


def test_rows_with_blank_lines_are_all_inserted(clickhouse: EmbeddedClickHouse) -> None:
    """chDB's query ends inline rows at a blank line; none may be lost because of that."""
    client = connect(clickhouse)
    client.command("CREATE TABLE blanks (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
    # 2570 is 0x0A0A: its UInt64 bytes are a blank line; so is a string with "\n\n".
    rows = [[n, "a\n\nb" if n % 2 else "c"] for n in range(5000)]
    client.insert("blanks", rows, column_names=["n", "s"])
    status, _, body = post(
        clickhouse,
        {"query": "INSERT INTO blanks FORMAT JSONEachRow"},
        b'{"n": 10001, "s": "j"}\n\n\n{"n": 10002, "s": "k"}\n',
    )
    assert status == 200, body
    assert client.command("SELECT count(), sum(n), countIf(s = 'a\n\nb') FROM blanks") == [
        "5002",
        str(sum(range(5000)) + 10001 + 10002),
        "2500",
    ]
