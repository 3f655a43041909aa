"""Shared helpers for the read-side tests: a password-protected embedded ClickHouse with the
rollup schema, and exact inserts into ``rollups_input`` (the aggregators' own insert target)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tally.aggregator.rows import KIND_DIST, KIND_GAUGE, FoldRows
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
    """``(keys, minute, {path: value})`` rows, inserted as the aggregator does (its sink: the
    rows into ``rollups_input``, their keys and paths into the key index)."""
    fold_rows = FoldRows(
        [tuple(k) for k, _, _ in rows],
        [int(m.timestamp()) for _, m, _ in rows],
        [tuple(v) for _, _, v in rows],
        [[float(x) for x in v.values()] for _, _, v in rows],
    )
    _sink_insert(clickhouse, database, fold_rows)


def _sink_insert(clickhouse: EmbeddedClickHouse, database: str, rows: FoldRows) -> None:
    async def run() -> None:
        settings = ClickHouseSettings(url=clickhouse.url, password=PASSWORD)
        sink = RollupSink(settings, RollupSchema(database))
        await sink.start()
        try:
            await sink.insert(rows, f"test:{uuid.uuid4()}")
        finally:
            await sink.close()

    asyncio.run(run())


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
    """Distribution and gauge rows, shaped as ``aggregator/fold`` does, through the sink."""
    out = FoldRows([], [], [], [])
    for r in rows:
        out.keys.append(tuple(r.keys))
        out.minute.append(int(r.minute.timestamp()))
        out.paths.append(())
        out.values.append([])
        out.path.append(r.path)
        if r.reading is None:
            counts = buckets_of(r.samples)
            ks = sorted(counts)
            out.kind.append(KIND_DIST)
            out.sketch_keys.append(ks)
            out.sketch_counts.append([counts[k] for k in ks])
            out.stats.append(
                [float(len(r.samples)), float(sum(r.samples)), float(sum(x * x for x in r.samples))]
            )
            out.vmin.append(min(r.samples))
            out.vmax.append(max(r.samples))
            out.last.append((0, 0.0))
        else:
            v = float(r.reading[1])
            out.kind.append(KIND_GAUGE)
            out.sketch_keys.append([])
            out.sketch_counts.append([])
            out.stats.append([])
            out.vmin.append(v)
            out.vmax.append(v)
            out.last.append((r.reading[0], v))
    _sink_insert(clickhouse, database, out)
