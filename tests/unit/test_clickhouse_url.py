"""A ClickHouse URL must say scheme and host: ``ch.example.com:8443`` used to reach
127.0.0.1:8123 over plain HTTP with the remote password (issue #21.10)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tally.clickhouse.settings import (
    BadClickHouseUrl,
    ClickHouseEndpoint,
    ClickHouseSettings,
    clickhouse_endpoint,
)
from tally.read import ReadSettings

BAD = ["ch.example.com:8443", "ch.example.com", "tcp://ch:9000", "https://", "http://ch:port", ""]


@pytest.mark.parametrize("url", BAD)
def test_a_url_without_scheme_or_host_is_refused_naming_the_expected_form(url):
    with pytest.raises(BadClickHouseUrl, match=r"http\(s\)://host\[:port\]"):
        ClickHouseSettings(url=url, password="remote-secret")
    with pytest.raises(BadClickHouseUrl):
        ReadSettings.from_env({"TALLY_CLICKHOUSE_URL": url})


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://127.0.0.1:8123", ClickHouseEndpoint("127.0.0.1", 8123, False)),
        ("https://ch.example.com:8443", ClickHouseEndpoint("ch.example.com", 8443, True)),
        ("https://ch.example.com", ClickHouseEndpoint("ch.example.com", 8443, True)),
        ("http://[::1]:9000/", ClickHouseEndpoint("::1", 9000, False)),
    ],
)
def test_a_good_url_gives_host_port_and_tls(url, endpoint):
    assert clickhouse_endpoint(url) == endpoint
    assert ClickHouseSettings(url=url).endpoint == endpoint


def test_the_aggregator_refuses_in_one_line_and_exits_2():
    proc = subprocess.run(
        [sys.executable, "-m", "tally.aggregator", "check", "--clickhouse-url",
         "ch.example.com:8443", "--metrics-port", "-1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'ch.example.com:8443'" in lines[0], proc.stderr
    assert "http(s)://host[:port]" in lines[0]
