"""The production DDL of the per-component users parses as ClickHouse's own parser reads it."""

from __future__ import annotations

import pytest

from tally.schemas.access import access_model, production_ddl, sql_readable
from tests.unit.clickhouse_parser import formatted


@pytest.mark.parametrize(
    "statement", production_ddl(access_model("tally"), {"tally_sql": "s3cret"})
)
def test_every_statement_parses(statement):
    assert formatted(statement).split()[0] in ("CREATE", "GRANT")


def test_sql_user_limits_are_const_and_its_grants_are_the_documented_views():
    ddl = production_ddl(access_model("tally"))
    profile = next(s for s in ddl if s.startswith("CREATE SETTINGS PROFILE OR REPLACE tally_sql"))
    for setting in (
        "readonly = 1 CONST",
        "max_result_rows = 10000 CONST",
        "max_result_bytes = 16777216 CONST",
        "max_execution_time = 30 CONST",
        "max_memory_usage = 536870912 CONST",
        "max_rows_to_read = 1000000000 CONST",
    ):
        assert setting in profile
    grants = {s.split(" ON ")[1].split(" TO ")[0] for s in ddl if s.endswith("TO tally_sql")}
    assert grants == set(sql_readable("tally")) and "tally.rollups_input" not in grants
    assert not [s for s in ddl if "KILL" in s or "SYSTEM" in s or "ACCESS" in s]
