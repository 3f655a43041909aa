"""``tally clickhouse-users`` against the real embedded ClickHouse, as far as chDB allows: it
logs in as the administrator and sends the production DDL, and chDB (no access storage) refuses
``CREATE USER``; the refusal is reported in one line without the password. That the statements
are exactly the production DDL and parse is tests/unit/test_compose.py's part."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tally.embedded.clickhouse.process import EmbeddedClickHouse
from tally.schemas.access import access_model
from tally.up.clickhouse_users import password_env
from tests.integration.readside import PASSWORD, start

pytestmark = pytest.mark.integration

SECRET = "pw-'quoted'-\\back\\slash-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    ch = start(tmp_path_factory.mktemp("apply"))
    try:
        yield ch
    finally:
        ch.stop()


def run(ch: EmbeddedClickHouse, passwords: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(passwords, TALLY_CLICKHOUSE_PASSWORD=PASSWORD)
    command = [sys.executable, "-m", "tally.cli", "clickhouse-users"]
    command += ["--clickhouse-url", ch.url, "--clickhouse-user", ch.user]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_apply_sends_the_ddl_as_the_administrator_and_reports_chdb_refusal(server):
    passwords = {password_env(u.component): SECRET for u in access_model("tally").users}
    done = run(server, passwords)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    # the first statement is the aggregator's settings profile (its exactly-once settings)
    assert line.startswith(
        f"error: ClickHouse at {server.url}: refused CREATE SETTINGS PROFILE OR REPLACE"
        " tally_aggregator_profile SETTINGS insert_deduplicate = 1 CONST"
    )
    assert "Code: 497" in line  # chDB: no access storage, access DDL is ACCESS_DENIED
    assert "quoted" not in done.stderr + done.stdout


def test_apply_names_every_missing_password(server):
    done = run(server, {password_env("api"): SECRET})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: passwords: set TALLY_AGGREGATOR_CLICKHOUSE_PASSWORD, "
        "TALLY_TRACES_CLICKHOUSE_PASSWORD, TALLY_MONITORS_CLICKHOUSE_PASSWORD, "
        "TALLY_SQL_CLICKHOUSE_PASSWORD"
    )


def test_a_wrong_administrator_password_is_refused(server):
    passwords = {password_env(u.component): SECRET for u in access_model("tally").users}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(passwords, TALLY_CLICKHOUSE_PASSWORD="wrong")
    command = [sys.executable, "-m", "tally.cli", "clickhouse-users", "--clickhouse-url"]
    done = subprocess.run(
        [*command, server.url], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "quoted" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: ClickHouse at {server.url}: login as default failed: ")
