"""The dashboard's handlers in-process (Litestar's test client) over a ClickHouse address that
refuses connections: sign-in rules, error pages, static files, safe page JSON."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from tally.api.app import create_app
from tally.api.settings import ApiSettings
from tally.clickhouse.settings import ClickHouseSettings
from tally.read import ReadSettings
from tally.web import WebSettings, web_handlers
from tally.web.routes import _json_script

READ = "read-token-unit-0123456789"
SQL = "sql-token-unit-0123456789"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "broken.yaml").write_text("title: b\nkey: calc\nwidgets: 3\n")
    url = f"http://127.0.0.1:{_closed_port()}"
    read = ReadSettings(clickhouse=ClickHouseSettings(url=url, password="x"))
    app = create_app(ApiSettings(read, READ, SQL), web_handlers(WebSettings(tmp_path)))
    with TestClient(app) as c:
        yield c


def test_pages_need_a_session_and_say_when_clickhouse_is_down(client):
    first = client.get("/ui/d/jobs", follow_redirects=False)
    assert first.status_code == 302 and first.headers["location"].startswith("/ui/login")
    assert client.post("/ui/login", data={"token": "nope"}).status_code == 401
    assert client.post("/ui/login", data={"token": SQL}, follow_redirects=False).status_code == 303
    page = client.get("/ui/d/jobs")
    assert page.status_code == 503 and "ClickHouse is unavailable" in page.text
    assert client.get("/ui/d/nope").status_code == 404
    broken = client.get("/ui/d/broken")
    assert broken.status_code == 404 and "broken.yaml:3" in broken.text
    index = client.get("/ui/")
    assert index.status_code == 200 and "broken.yaml:3" in index.text
    assert "ClickHouse is unavailable" in index.text


def test_static_files_and_headers(client):
    script = client.get("/ui/static/vendor/uPlot.iife.min.js")
    assert script.status_code == 200 and "uPlot" in script.text
    login = client.get("/ui/login")
    assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
    assert login.headers["x-content-type-options"] == "nosniff"
    assert client.get("/").headers.get("location", "/ui/") == "/ui/"


def test_kpi_rejects_an_empty_range(client):
    client.post("/ui/login", data={"token": READ})
    response = client.get("/ui/api/kpi", params={"key": "k", "since": 10, "until": 10})
    assert response.status_code == 400 and "until" in response.text


def test_page_json_cannot_close_its_script_tag():
    text = _json_script({"title": "</script><script>alert(1)</script>", "a": "&"})
    assert "</" not in text and "<" not in text and "&" not in text
