"""Stored rows and bytes of a table (``count()`` and ``system.parts``), and ``OPTIMIZE FINAL``."""

from __future__ import annotations

from dataclasses import dataclass

from tally.schemas.ddl import identifier


@dataclass(frozen=True)
class TableSize:
    """Rows as stored (before merges collapse them) and active parts' bytes on disk."""

    rows: int
    bytes_on_disk: int
    parts: int


def table_size(client, database: str, table: str) -> TableSize:
    """``count()`` of the table and the sum over its active parts."""
    db, name = identifier(database), identifier(table)
    rows = client.query(f"SELECT count() FROM {db}.{name}").result_rows[0][0]
    size, parts = client.query(
        "SELECT sum(bytes_on_disk), count() FROM system.parts"
        " WHERE database = {db:String} AND table = {table:String} AND active",
        parameters={"db": db, "table": name},
    ).result_rows[0]
    return TableSize(int(rows), int(size or 0), int(parts))


def optimize_final(client, database: str, table: str) -> None:
    """Merge every part so each (granularity, key, bucket, path) is one row."""
    client.command(f"OPTIMIZE TABLE {identifier(database)}.{identifier(table)} FINAL")


KEY_CLASSES = (
    ("per product", "calculation::product_target::"),
    ("per customer", "calculation::customer::"),
    ("per reseller", "calculation::reseller::"),
    ("per tenant", "event::schedule::"),
)


def rows_by_class(client, database: str, table: str = "rollups") -> list[dict]:
    """Stored rows per granularity and key class (global keys are everything else)."""
    arms = ", ".join(f"position(key, '{needle}') > 0, '{name}'" for name, needle in KEY_CLASSES)
    result = client.query(
        f"SELECT granularity, multiIf({arms}, 'global') AS class, count() AS rows,"
        f" uniqExact(key) AS keys"
        f" FROM {identifier(database)}.{identifier(table)}"
        " GROUP BY granularity, class ORDER BY granularity, class"
    )
    return [
        {"granularity": g, "class": c, "rows": int(r), "keys": int(k)}
        for g, c, r, k in result.result_rows
    ]
