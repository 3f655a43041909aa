"""Per-user access in the embedded ClickHouse: what chDB cannot do, the front does.

chDB (clickhouse-local) runs every query as its one configured user: it keeps no access
storage (``CREATE USER`` is refused), ignores the connection's user, and never reads
``access_control_improvements``, so ``EXECUTE AS`` stays disabled. The front therefore
authenticates each component's user itself and runs its statements on a chDB connection set
up with that user's declared policy (``tally.schemas.access``):

- its profile settings are ``SET`` after the request's own, ``readonly`` last: with
  ``readonly=1`` ClickHouse itself refuses any later change (``SETTINGS`` in the query);
- the statement kind (the root of ClickHouse's ``EXPLAIN AST``) must be one it is allowed;
- for users with a ``reads`` list, every table and table function of the statement, as
  ClickHouse's analyzer resolves them (``EXPLAIN QUERY TREE``: CTEs, subqueries, ``IN``,
  views by name), must be on it.

Passwords are generated at first start into ``<data_dir>/secrets/clickhouse-<component>-password``
(0600), like the administrator's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tally.embedded.clickhouse.secret import ensure_password
from tally.schemas.access import AccessModel, ComponentUser

ACCESS_FILE = "access.json"
_AST_ROOT = re.compile(r"[A-Za-z]+(?: query)?(?: |$)")
_TREE_ROOT = re.compile(r"(?:QUERY|UNION) id: \d+")
_TABLE_NODE = re.compile(r"^\s*TABLE id: \d+, .*?table_name: (?P<name>.+)$")
_FUNCTION_NODE = re.compile(r"^\s*TABLE_FUNCTION id: \d+, .*?table_function_name: (?P<name>.+)$")


class AccessRefused(Exception):
    """The statement is outside the user's declared privileges."""


@dataclass(frozen=True)
class Login:
    """One user the server accepts, with its policy (``None``: the administrator)."""

    name: str
    password: str = field(repr=False)
    policy: ComponentUser | None = None


def password_file(component: str) -> str:
    return f"clickhouse-{component}-password"


def component_passwords(data_dir: Path, model: AccessModel) -> dict[str, str]:
    """Each component user's password, generated at first start (``<data_dir>/secrets``)."""
    return {u.name: ensure_password(data_dir, name=password_file(u.component)) for u in model.users}


def logins(admin: Login, model: AccessModel, passwords: Mapping[str, str]) -> dict[str, Login]:
    """Every user the server accepts, by name."""
    found = {u.name: Login(u.name, passwords[u.name], u) for u in model.users}
    found[admin.name] = admin
    return found


def setup_settings(policy: ComponentUser) -> dict[str, str]:
    """The profile settings to ``SET`` after the request's, without ``readonly``."""
    return {k: str(v) for k, v in policy.settings.items() if k != "readonly"}


Explain = Callable[[str], str]


def check(policy: ComponentUser, sql: str, explain: Explain) -> None:
    """Raise :class:`AccessRefused` unless ``policy`` allows ``sql``.

    ``explain(statement)`` runs an ``EXPLAIN`` statement on the request's connection (with the
    request's parameters) and returns its text.
    """
    root = explain(f"EXPLAIN AST {sql}").split("\n", 1)[0]
    if not _AST_ROOT.match(root):  # not EXPLAIN's own text (an output FORMAT left in): refuse
        raise AccessRefused(f"{policy.name}: the statement could not be checked")
    kind = root.split(" ", 1)[0]
    if kind not in policy.statements:
        raise AccessRefused(f"{policy.name} may not run {kind}")
    if policy.reads is None or kind in ("InsertQuery", "DescribeQuery"):
        return
    tree = explain(f"EXPLAIN QUERY TREE {sql}")
    if not _TREE_ROOT.match(tree):
        raise AccessRefused(f"{policy.name}: the statement could not be checked")
    for line in tree.splitlines():
        table, function = _TABLE_NODE.match(line), _FUNCTION_NODE.match(line)
        if table and not _allowed(table.group("name"), policy.reads):
            raise AccessRefused(f"{policy.name} may not read {table.group('name')}")
        if function and function.group("name") not in policy.table_functions:
            raise AccessRefused(
                f"{policy.name} may not use the table function {function.group('name')}"
            )


def _allowed(name: str, reads: tuple[str, ...]) -> bool:
    """Exact names, or ``db.*`` for every table of that database."""
    database, dot, _ = name.partition(".")
    return name in reads or (bool(dot) and f"{database}.*" in reads)
