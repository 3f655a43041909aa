"""Shared helpers for the read-side tests: a password-protected embedded ClickHouse with the
rollup schema, and exact inserts into ``rollups_input`` (the aggregators' own insert target)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect

from tally.aggregator.sink import RollupSink
from tally.clickhouse.settings import ClickHouseSettings
from tally.embedded.clickhouse.process import EmbeddedClickHouse
from tally.read import ReadSettings
from tally.schemas.access import AccessModel
from tally.schemas.ddl import RollupSchema
from tally.schemas.sketch import buckets_of

PASSWORD = "read-side-secret"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def apply_schema(clickhouse: EmbeddedClickHouse, schema: RollupSchema) -> None:
    async def run() -> None:
        sink = RollupSink(ClickHouseSettings(url=clickhouse.url, password=PASSWORD), schema)
        await sink.start()
        try:
            await sink.apply_ddl()
        finally:
            await sink.close()

    asyncio.run(run())


def insert(
    clickhouse: EmbeddedClickHouse, database: str, rows: list[tuple[list[str], datetime, dict]]
) -> None:
    """``(keys, minute, {path: value})`` rows, inserted as the aggregator does."""
    client = clickhouse_connect.get_client(
        host=clickhouse.host, port=clickhouse.port, password=PASSWORD
    )
    data = [[k, m, list(v), [float(x) for x in v.values()]] for k, m, v in rows]
    client.insert(
        f"{database}.rollups_input",
        data,
        column_names=["keys", "minute", "paths", "values"],
        settings={"async_insert": 0},
    )
    client.close()


def settings(clickhouse: EmbeddedClickHouse, database: str) -> ReadSettings:
    return ReadSettings(
        clickhouse=ClickHouseSettings(url=clickhouse.url, password=PASSWORD), database=database
    )


def start(path: Path, access: AccessModel | None = None) -> EmbeddedClickHouse:
    """The embedded server, administrator ``default``/:data:`PASSWORD` (and ``access``'s users)."""
    from tally.embedded.clickhouse.process import start_clickhouse

    return start_clickhouse(path, user="default", password=PASSWORD, access=access)


@dataclass(frozen=True)
class KindRow:
    """One distribution (``samples``) or gauge (``reading`` = (unix ms, value)) row."""

    keys: list[str]
    minute: datetime
    path: str
    samples: tuple[float, ...] = ()
    reading: tuple[int, float] | None = None


def insert_kinds(clickhouse: EmbeddedClickHouse, database: str, rows: list[KindRow]) -> None:
    """Distribution and gauge rows into ``rollups_input``, shaped as ``aggregator/fold`` does."""
    data = []
    for r in rows:
        if r.reading is None:
            counts = buckets_of(r.samples)
            ks = sorted(counts)
            stats = [
                float(len(r.samples)),
                float(sum(r.samples)),
                float(sum(x * x for x in r.samples)),
            ]
            lo, hi = min(r.samples), max(r.samples)
            data.append(
                [
                    r.keys,
                    r.minute,
                    [],
                    [],
                    1,
                    r.path,
                    ks,
                    [counts[k] for k in ks],
                    stats,
                    lo,
                    hi,
                    (0, 0.0),
                ]
            )
        else:
            v = float(r.reading[1])
            data.append([r.keys, r.minute, [], [], 2, r.path, [], [], [], v, v, (r.reading[0], v)])
    client = clickhouse_connect.get_client(
        host=clickhouse.host, port=clickhouse.port, password=PASSWORD
    )
    names = ["keys", "minute", "paths", "values", "kind", "path", "sketch_keys", "sketch_counts",
             "stats", "vmin", "vmax", "last"]  # fmt: skip
    client.insert(
        f"{database}.rollups_input", data, column_names=names, settings={"async_insert": 0}
    )
    client.close()
