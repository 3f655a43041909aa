"""The HTTP API through a real HTTP client (httpx) against uvicorn and the real ClickHouse."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest

from tally.api.server import PortInUse, ServerThread, check_port
from tally.api.settings import ApiSettings
from tally.api.sql import SqlSettings
from tally.embedded.kafka_node import free_ports
from tally.schemas.access import access_model
from tally.schemas.ddl import RollupSchema
from tests.integration.readside import apply_schema, insert, settings, start
from tests.integration.test_read_series import CALC

pytestmark = pytest.mark.integration

READ = "read-token-0123456789abcdef"
SQL = "sql-token-0123456789abcdef"
RANGE = {"since": "2026-03-02T10:00:00Z", "until": "2026-03-02T14:00:00Z", "granularity": "1h"}
NOW = int(time.time()) // 60 * 60
TENANTS = 3000
# One write per tenant over the last 13 days: sparse data, but a grid of 3,000 x 18,720 buckets.
HEAVY = [
    (["heavy"], datetime.fromtimestamp(NOW - 60 * (i * 6 + 1), UTC), {f"tenants.t{i:04d}.count": i})
    for i in range(1, TENANTS + 1)
]


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[str]:
    clickhouse = start(tmp_path_factory.mktemp("api") / "clickhouse", access_model("tally"))
    try:
        apply_schema(clickhouse, RollupSchema(database="tally"))
        insert(clickhouse, "tally", CALC)
        insert(clickhouse, "tally", HEAVY)
        port = free_ports(1)[0]
        read = settings(clickhouse, "tally")
        user, password = clickhouse.login("sql")
        as_sql = replace(read.clickhouse, user=user, password=password)
        sql = SqlSettings(replace(read, clickhouse=as_sql))
        api_settings = ApiSettings(read, READ, SQL, port=port, sql=sql)
        thread = ServerThread(api_settings).start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            thread.stop()
    finally:
        clickhouse.stop()


@pytest.fixture
def client(api) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {READ}"}) as c:
        yield c


def test_every_endpoint_needs_a_token(api):
    with httpx.Client(base_url=api) as anonymous:
        for path in (
            "/api/v1/keys",
            "/api/v1/series?key=calc&path=count",
            "/api/v1/values?key=calc",
        ):
            response = anonymous.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        assert (
            anonymous.get(
                "/api/v1/keys", headers={"Authorization": "Bearer wrong-token"}
            ).status_code
            == 401
        )
        assert anonymous.get("/api/v1/health").json() == {"status": "ok"}


def test_series_over_http(client):
    response = client.get(
        "/api/v1/series",
        params={
            "key": "calc", "path": ["count", "codes.*"], "expression": "success / count",
            "top": 1, "aggregate": "sum", "slices": 2, "category": "true", **RANGE,
        },
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    rows = {r["name"]: r["points"] for r in body["series"]["rows"]}
    assert rows == {
        "count": [2, 0, 4, 0],
        "codes.ok": [1, 0, 3, 0],
        "codes.(other)": [1, 0, 1, 0],
        "success / count": [0.5, None, 1.0, None],
    }
    assert [s["values"]["count"] for s in body["aggregate"]] == [2, 4]
    assert body["category"][0] == {"name": "count", "value": 6}


def test_series_as_of_over_http(client):
    settled = client.get("/api/v1/settled").json()
    assert settled["settle_s"] == 10 and settled["as_of"] % 60 == 0
    assert settled["as_of"] <= time.time() - 10
    # tenant i wrote i at NOW - 6i+1 minutes: as of an hour ago, t0010 had, t0005 had not yet
    t = NOW - 3600
    paths = ["tenants.t0005.count", "tenants.t0010.count"]
    query = {"key": "heavy", "path": paths, "since": "2d", "granularity": "1d"}
    live = client.get("/api/v1/series", params=query).json()["series"]
    assert [sum(r["points"]) for r in live["rows"]] == [5, 10] and live["as_of"] is None
    then = client.get("/api/v1/series", params={**query, "as_of": t}).json()["series"]
    assert [sum(r["points"]) for r in then["rows"]] == [0, 10] and then["as_of"] == t
    now = client.get("/api/v1/series", params={**query, "as_of": "settled"}).json()["series"]
    assert now["as_of"] >= settled["as_of"] and [sum(r["points"]) for r in now["rows"]] == [5, 10]
    values = client.get("/api/v1/values", params={**query, "as_of": t}).json()
    assert sum(v.get("tenants.t0005.count", 0) for v in values["values"]) == 0
    bad = client.get("/api/v1/series", params={**query, "as_of": "soon"})
    assert bad.status_code == 400 and bad.json()["error"] == "range"


def test_values_keys_paths(client):
    values = client.get("/api/v1/values", params={"key": "calc", **RANGE}).json()
    assert values["values"][1] == {} and values["values"][0]["count"] == 2
    keys = client.get(
        "/api/v1/keys",
        params={
            "pattern": "calc::*",
            "since": "2026-03-01T00:00:00Z",
            "until": "2026-03-03T00:00:00Z",
        },
    ).json()
    assert [k["key"] for k in keys] == ["calc::tenant::b", "calc::tenant::a"]
    assert keys[0]["last_seen"].startswith("2026-03-02T12:30:00")
    paths = client.get("/api/v1/paths", params={"key": "event::schedule::nightly"}).json()
    assert [p["path"] for p in paths] == ["count"]
    assert client.get("/api/v1/granularities").json()["granularities"] == [
        "1m",
        "1h",
        "1d",
        "1w",
        "1mo",
        "1q",
        "1y",
    ]


@pytest.mark.parametrize(
    ("params", "error", "reason"),
    [
        ({"granularity": "5x"}, "granularity", "not '<n><unit>'"),
        ({"granularity": "2h"}, "granularity", "not served"),
        ({"since": "2026-03-03T00:00:00Z"}, "range", "reversed"),
        ({"since": "yesterday"}, "range", "not a time"),
        ({"expression": "success / (count"}, "expression", "expected ')'"),
        ({"path": "codes.x*"}, "pattern", "whole segment"),
    ],
)
def test_bad_requests_are_400_with_the_reason(client, params, error, reason):
    query = {"key": "calc", "path": "count", **RANGE, **params}
    response = client.get("/api/v1/series", params=query)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert reason in response.json()["reason"]


BAD_TIMES = ["0001-01-01", "99999999999999999999d", "9999-12-30", "1969-12-31T23:00:00Z"]
TIME_ENDPOINTS = [
    ("/api/v1/series", {"key": "calc", "path": "count"}),
    ("/api/v1/values", {"key": "calc"}),
    ("/api/v1/gauge", {"key": "calc", "path": "depth"}),
    ("/api/v1/quantiles", {"key": "calc", "path": "duration"}),
    ("/api/v1/keys", {"pattern": "calc*"}),
    ("/api/v1/executions", {"key": "calc"}),
    ("/api/v1/joblog", {}),
]


@pytest.mark.parametrize(("endpoint", "params"), TIME_ENDPOINTS)
@pytest.mark.parametrize("since", BAD_TIMES)
def test_times_out_of_range_are_400_with_the_reason(client, endpoint, params, since):
    response = client.get(endpoint, params={**params, "since": since})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "range",
        "reason": f"{since!r} is outside the times served (1970-01-01 to 2100-01-01 UTC)",
    }


@pytest.mark.parametrize(
    ("expression", "status", "reason"),
    [
        ("1e999 + count", 400, "number '1e999' at position 0 is too large"),
        ("-" * 990 + "count", 400, "more than 50 minus signs in a row"),
        ("sum(1e308, 1e308)", 200, None),  # overflow is null, as 1e308 * 10 already was
    ],
)
def test_hostile_expressions_answer_without_a_500(client, expression, status, reason):
    query = {"key": "calc", "expression": expression, **RANGE}
    response = client.get("/api/v1/series", params=query)
    assert response.status_code == status, response.text
    if reason:
        assert response.json() == {"error": "expression", "reason": reason}
    else:
        assert response.json()["series"]["rows"][0]["points"] == [None] * 4


def test_bad_key_pattern_is_400(client):
    response = client.get("/api/v1/keys", params={"pattern": "calc**"})
    assert response.status_code == 400 and response.json()["error"] == "pattern"


def test_sql_needs_the_sql_token_and_is_read_only(client, api):
    query = {
        "query": "SELECT sum(value) AS n FROM tally.rollups_1h"
        " WHERE key = {k:String} AND path = 'count'",
        "parameters": {"k": "calc"},
    }
    assert client.post("/api/v1/sql", json=query).status_code == 403
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {SQL}"}) as admin:
        response = admin.post("/api/v1/sql", json=query)
        assert response.status_code == 200, response.text
        assert response.json() == {"columns": ["n"], "types": ["Float64"], "rows": [[6.0]]}
        write = admin.post("/api/v1/sql", json={"query": "DROP TABLE tally.rollups"})
        assert write.status_code == 403 and write.json()["error"] == "denied"
        assert admin.post("/api/v1/sql", json=query).status_code == 200  # still there


def test_openapi_schema_lists_the_endpoints(api):
    schema = httpx.get(f"{api}/api/v1/schema/openapi.json").json()
    assert {
        "/api/v1/series",
        "/api/v1/keys",
        "/api/v1/paths",
        "/api/v1/values",
        "/api/v1/sql",
    } <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_schema_page_is_the_json_and_loads_nothing_from_elsewhere(api):
    response = httpx.get(f"{api}/api/v1/schema")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    assert "<script" not in response.text and "cdn." not in response.text
    assert response.json() == httpx.get(f"{api}/api/v1/schema/openapi.json").json()


def test_port_in_use_is_reported(api):
    port = int(api.rsplit(":", 1)[1])
    with pytest.raises(PortInUse, match=f"127.0.0.1:{port} is already in use"):
        check_port("127.0.0.1", port)


def test_clickhouse_down_is_503_without_details():
    from tally.clickhouse.settings import ClickHouseSettings
    from tally.read import ReadSettings

    dead, port = free_ports(2)
    read = ReadSettings(
        clickhouse=ClickHouseSettings(url=f"http://127.0.0.1:{dead}", password="p"),
        query_timeout_s=5,
    )
    thread = ServerThread(ApiSettings(read, READ, SQL, port=port)).start()
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/series",
            params={"key": "calc", "path": "count"},
            headers={"Authorization": f"Bearer {READ}"},
            timeout=60,
        )
    finally:
        thread.stop()
    assert response.status_code == 503
    assert response.json() == {"error": "backend", "reason": "ClickHouse is unavailable"}


def test_quantiles_and_gauges_over_http(client):
    response = client.get(
        "/api/v1/quantiles",
        params={"key": "calc", "path": "duration", "q": ["0.5", "0.99"], **RANGE},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["qs"] == [0.5, 0.99] and len(body["buckets"]) == 4
    assert body["count"] == [0, 0, 0, 0] and body["quantiles"][0] == [None] * 4
    gauge = client.get("/api/v1/gauge", params={"key": "calc", "path": "depth", **RANGE})
    assert gauge.status_code == 200 and gauge.json()["last"] == [None] * 4
    bad = client.get("/api/v1/quantiles", params={"key": "calc", "path": "d", "q": "2", **RANGE})
    assert bad.status_code == 400


def _timed(client: httpx.Client, path: str, params: dict) -> float:
    started = time.perf_counter()
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def test_a_heavy_series_does_not_stall_light_requests(api):
    auth = {"Authorization": f"Bearer {READ}"}
    with (
        httpx.Client(base_url=api, headers=auth, timeout=300) as client,
        httpx.Client(base_url=api, headers=auth, timeout=300) as other,
        ThreadPoolExecutor(1) as pool,
    ):
        light = {
            "/api/v1/health": {},
            "/api/v1/series": {"key": "calc", "path": "count", **RANGE},
        }
        normal = {p: max(_timed(client, p, q) for _ in range(5)) for p, q in light.items()}
        heavy = {"key": "heavy", "path": "tenants.*.count", "top": 5, "granularity": "1m",
                 "since": NOW - 13 * 86400, "until": NOW}  # fmt: skip
        waits: dict[str, list[float]] = {p: [] for p in light}
        answer = pool.submit(other.get, "/api/v1/series", params=heavy)
        while not answer.done() or min(map(len, waits.values())) < 5:
            for path, params in light.items():
                waits[path].append(_timed(client, path, params))
        response = answer.result()
    for path, times in waits.items():  # does not hang: 20x its own normal time (1 s at least)
        assert max(times) < max(20 * normal[path], 1.0), (path, normal[path], times)
    if response.status_code == 400:
        assert response.json()["error"] == "limit"
        assert "points per response" in response.json()["reason"]
    else:
        assert response.status_code == 200, response.text
        series = response.json()["series"]
        assert [r["name"] for r in series["rows"]] == [
            *(f"tenants.t{i:04d}.count" for i in range(TENANTS, TENANTS - 5, -1)),
            "tenants.(other).count",
        ]
        assert sum(series["rows"][-1]["points"]) == sum(range(1, TENANTS - 4))
        assert len(series["rows"]) * len(series["buckets"]) <= 200_000
