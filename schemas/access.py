"""Who may do what in ClickHouse: one user per component, declared once.

The embedded server enforces this declaration (``embedded/clickhouse/access.py``); production
gets the same users as ``CREATE SETTINGS PROFILE`` / ``CREATE USER`` / ``GRANT`` statements
(:func:`production_ddl`, printed by ``python -m tally.schemas.access``).

    aggregator, traces, monitors  write their own tables (CREATE/ALTER/INSERT/SELECT on <db>.*)
    api                           reads <db>.* and the schema (system.tables, system.columns)
    sql                           reads the documented rollup views and key tables, readonly=1

Nobody but the administrator may KILL, SYSTEM, DROP, SHOW GRANTS or manage access.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from tally.schemas.ddl import DERIVED_FROM_DAYS, SKETCH_PREFIX, identifier
from tally.schemas.ddl_keys import KEYS_TABLE, PATHS_TABLE
from tally.schemas.placement import SINGLE_SERVER, Placement

STORED_DEFAULT = ("1m", "1h", "1d")  # RollupSchema's stored granularities
# Root nodes of ClickHouse's AST (``EXPLAIN AST``) per statement kind.
SELECT = "SelectWithUnionQuery"
WRITER_STATEMENTS = frozenset(
    {SELECT, "InsertQuery", "CreateQuery", "AlterQuery", "DescribeQuery", "ExistsTableQuery"}
)
READER_STATEMENTS = frozenset({SELECT, "DescribeQuery"})
# System tables a reading user may name; none of them shows queries, users or grants.
HARMLESS_SYSTEM_TABLES = ("one", "numbers", "numbers_mt", "zeros", "zeros_mt", "settings")
# Table functions that only generate data.
GENERATOR_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries", "values"}
)
WRITER_GRANT = "SELECT, INSERT, CREATE TABLE, CREATE VIEW, ALTER TABLE, ALTER VIEW"

SQL_LIMITS: Mapping[str, int | str] = {
    "readonly": 1,
    "max_execution_time": 30,
    "timeout_overflow_mode": "throw",
    "max_result_rows": 10_000,
    "max_result_bytes": 16 << 20,
    "result_overflow_mode": "throw",
    "max_memory_usage": 512 << 20,
    "max_rows_to_read": 1_000_000_000,
    "cancel_http_readonly_queries_on_client_close": 1,
}
# The exactly-once writers' inserts are deduplicated by their tokens, in the views' target tables
# too. Each insert sends these itself; the profile pins them, so no query can turn them off.
EXACTLY_ONCE_WRITER: Mapping[str, int | str] = {
    "insert_deduplicate": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
}
API_LIMITS: Mapping[str, int | str] = {
    "readonly": 2,  # the API's own queries pass settings
    "max_execution_time": 60,
    "max_memory_usage": 1 << 30,
    "cancel_http_readonly_queries_on_client_close": 1,
}


@dataclass(frozen=True)
class ComponentUser:
    """One component's ClickHouse user.

    ``grants``: ``(privileges, object)`` pairs, ``{db}`` standing for the database.
    ``reads``: the only tables and views its queries may read (``None``: not restricted beyond
    its grants). ``settings``: its profile, pinned (CONST) in production.
    """

    component: str
    name: str
    statements: frozenset[str]
    grants: tuple[tuple[str, str], ...]
    reads: tuple[str, ...] | None = None
    table_functions: frozenset[str] = frozenset()
    settings: Mapping[str, int | str] = field(default_factory=dict)

    @property
    def readonly(self) -> int:
        return int(self.settings.get("readonly", 0))


@dataclass(frozen=True)
class AccessModel:
    """Every component user of one database."""

    database: str
    users: tuple[ComponentUser, ...]

    def user(self, component: str) -> ComponentUser:
        return next(u for u in self.users if u.component == component)

    def with_settings(self, component: str, **settings: int | str) -> AccessModel:
        """A copy whose ``component`` user has these profile settings changed (tests)."""
        users = tuple(
            replace(u, settings={**u.settings, **settings}) if u.component == component else u
            for u in self.users
        )
        return replace(self, users=users)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=sorted)

    @classmethod
    def from_json(cls, text: str) -> AccessModel:
        raw = json.loads(text)
        users = tuple(
            ComponentUser(
                component=u["component"],
                name=u["name"],
                statements=frozenset(u["statements"]),
                grants=tuple((p, o) for p, o in u["grants"]),
                reads=None if u["reads"] is None else tuple(u["reads"]),
                table_functions=frozenset(u["table_functions"]),
                settings=u["settings"],
            )
            for u in raw["users"]
        )
        return cls(raw["database"], users)


def sql_readable(database: str) -> tuple[str, ...]:
    """The tables and views the SQL endpoint documents: rollups, derived views, key tables."""
    granularities = (*STORED_DEFAULT, *DERIVED_FROM_DAYS)
    names = ["rollups", *(f"rollups_{g}" for g in granularities)]
    names += [f"{SKETCH_PREFIX}{g}" for g in granularities]
    names += [KEYS_TABLE, PATHS_TABLE]
    return tuple(f"{database}.{n}" for n in names)


def access_model(database: str = "tally") -> AccessModel:
    """The declaration: users, grants and limits of every component."""
    db = identifier(database)

    def writer(component: str, settings: Mapping[str, int | str]) -> ComponentUser:
        return ComponentUser(
            component,
            f"tally_{component}",
            WRITER_STATEMENTS,
            (("CREATE DATABASE", f"{db}.*"), (WRITER_GRANT, f"{db}.*")),
            settings=settings,
        )

    system = tuple(f"system.{t}" for t in HARMLESS_SYSTEM_TABLES)
    api = ComponentUser(
        "api",
        "tally_api",
        READER_STATEMENTS,
        (("SELECT", f"{db}.*"), ("SELECT", "system.tables"), ("SELECT", "system.columns")),
        reads=(f"{db}.*", "system.tables", "system.columns", *system),
        table_functions=GENERATOR_FUNCTIONS,
        settings=API_LIMITS,
    )
    readable = sql_readable(db)
    sql = ComponentUser(
        "sql",
        "tally_sql",
        frozenset({SELECT}),
        tuple(("SELECT", name) for name in readable),
        reads=(*readable, *system),
        table_functions=GENERATOR_FUNCTIONS,
        settings=SQL_LIMITS,
    )
    writers = (
        writer("aggregator", EXACTLY_ONCE_WRITER),
        writer("traces", EXACTLY_ONCE_WRITER),
        writer("monitors", {}),
    )
    return AccessModel(db, (*writers, api, sql))


def _literal(value: int | str) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def production_ddl(
    model: AccessModel,
    passwords: Mapping[str, str] | None = None,
    placement: Placement = SINGLE_SERVER,
) -> list[str]:
    """``CREATE SETTINGS PROFILE`` (limits CONST), ``CREATE USER`` and ``GRANT`` statements.

    ``passwords`` maps user names to passwords; a missing one is written as a placeholder to
    replace. ``readonly=2`` profiles keep their limits as MAX constraints (the API sets lower
    ones per query); every other limit is CONST (sending the pinned value itself stays
    allowed). On a cluster every statement runs ``ON CLUSTER`` and the writers, whose DDL
    does too, get the ``CLUSTER`` privilege it requires.
    """
    c = placement.on_cluster()
    statements = []
    for user in model.users:
        profile = f"{user.name}_profile"
        if user.settings:
            items = ", ".join(_constraint(user, k, v) for k, v in user.settings.items())
            statements.append(f"CREATE SETTINGS PROFILE OR REPLACE {profile}{c} SETTINGS {items}")
        password = (passwords or {}).get(user.name, "<password>")
        settings = f" SETTINGS PROFILE {profile}" if user.settings else ""
        statements.append(
            f"CREATE USER OR REPLACE {user.name}{c} IDENTIFIED WITH sha256_password BY"
            f" {_literal(password)}{settings}"
        )
        grants = list(user.grants)
        if placement.cluster and user.statements == WRITER_STATEMENTS:
            grants.append(("CLUSTER", "*.*"))
        statements += [f"GRANT{c} {what} ON {obj} TO {user.name}" for what, obj in grants]
    return statements


def _constraint(user: ComponentUser, name: str, value: int | str) -> str:
    """``name = value CONST``; a readonly=2 user's numeric limits are ``MAX`` instead."""
    if user.readonly == 2 and name != "readonly" and isinstance(value, int):
        return f"{name} = {value} MAX {value}"
    return f"{name} = {_literal(value)} CONST"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tally.schemas.access",
        description="Print the statements that create tally's ClickHouse users on a server.",
    )
    parser.add_argument("--database", default="tally")
    parser.add_argument(
        "--cluster", default=None, help="a cluster of replicas: every statement ON CLUSTER"
    )
    args = parser.parse_args(argv)
    placement = Placement(args.cluster, replicated=args.cluster is not None)
    for statement in production_ddl(access_model(args.database), placement=placement):
        print(f"{statement};")


if __name__ == "__main__":
    main()
