"""The naive design: every event stored as raw rows, aggregated when queried.

One row per (event, key, path) in a plain MergeTree ``(ts, key, path, value)`` sorted by
``(key, path, ts)`` (the best order for these queries; the rollups use the same), and the
same questions as the rollup views answer, computed from the raw rows at query time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tally.loadtest.workloads import CALC_KEY
from tally.read.rollup_queries import QUERIES
from tally.schemas.ddl import identifier
from tally.schemas.wire import BatchV1, BatchV2, BatchV3
from tally.schemas.wire_columns import batch_events

TABLE = "events_raw"
COLUMNS = ("ts", "key", "path", "value")
COLUMN_TYPES = ("DateTime('UTC')", "String", "LowCardinality(String)", "Float64")


def ddl(database: str) -> list[str]:
    """Drop and create the raw table (it holds only the current run)."""
    db = identifier(database)
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"DROP TABLE IF EXISTS {db}.{TABLE}",
        f"""CREATE TABLE {db}.{TABLE} (
    ts DateTime('UTC'),
    key String,
    path LowCardinality(String),
    value Float64
) ENGINE = MergeTree ORDER BY (key, path, ts)""",
    ]


@dataclass
class RawColumns:
    """Column-oriented raw rows awaiting insert."""

    ts: list[int] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    value: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def columns(self) -> list[list]:
        """Columns in table order."""
        return [self.ts, self.key, self.path, self.value]


def expand(batch: BatchV1 | BatchV2 | BatchV3, out: RawColumns) -> int:
    """Append one row per (event, key, path) of ``batch`` to ``out``; returns its events."""
    events = batch_events(batch)
    strings = batch.strings
    keysets = [[strings[i] for i in ks] for ks in batch.keysets]
    shapes = [[strings[i] for i in sh] for sh in batch.shapes]
    ts, key, path, value = out.ts, out.key, out.path, out.value
    for event in events:
        paths = shapes[event.shape]
        width = len(paths)
        for name in keysets[event.keyset]:
            ts.extend([event.at] * width)
            key.extend([name] * width)
            path.extend(paths)
            value.extend(event.values)
    return len(events)


def insert(client, database: str, rows: RawColumns) -> None:
    """One synchronous insert of ``rows``."""
    client.insert(
        f"{identifier(database)}.{TABLE}",
        rows.columns(),
        column_names=list(COLUMNS),
        column_type_names=list(COLUMN_TYPES),
        column_oriented=True,
        settings={"async_insert": 0},
    )


@dataclass(frozen=True)
class PairedQuery:
    """One question asked of the rollups and of the raw rows, with its parameters."""

    name: str
    rollup_sql: str
    naive_sql: str
    parameters: dict


_RANGE = "ts >= {start:DateTime} AND ts < {end:DateTime}"


def paired_queries(rollups_db: str, naive_db: str, start, end) -> list[PairedQuery]:
    """The dashboard questions over [start, end) for the global calculation key."""
    raw = f"{identifier(naive_db)}.{TABLE}"
    base = {"start": start, "end": end, "key": CALC_KEY}
    customer = f"{CALC_KEY}::customer::"

    def timeline(bucket_fn: str) -> str:
        return (
            f"SELECT {bucket_fn}(ts) AS bucket, sum(value) AS value FROM {raw}"
            f" WHERE key = {{key:String}} AND path = {{path:String}} AND {_RANGE}"
            " GROUP BY bucket ORDER BY bucket"
        )

    return [
        PairedQuery(
            "timeline_1h",
            QUERIES["timeline"].sql(rollups_db, "1h"),
            timeline("toStartOfHour"),
            {**base, "path": "count"},
        ),
        PairedQuery(
            "timeline_1m",
            QUERIES["timeline"].sql(rollups_db, "1m"),
            timeline("toStartOfMinute"),
            {**base, "path": "count"},
        ),
        PairedQuery(
            "success_rate_1h",
            QUERIES["success_rate"].sql(rollups_db, "1h"),
            f"""SELECT toStartOfHour(ts) AS bucket,
       sumIf(value, path = 'success') AS success,
       sumIf(value, path = 'count') AS count,
       round(success / nullIf(count, 0), 4) AS success_rate
FROM {raw}
WHERE key = {{key:String}} AND path IN ('success', 'count') AND {_RANGE}
GROUP BY bucket ORDER BY bucket""",
            base,
        ),
        PairedQuery(
            "breakdown_codes",
            QUERIES["breakdown"].sql(rollups_db, "1h"),
            f"""SELECT substring(path, length({{prefix:String}}) + 1,
           length(path) - length({{prefix:String}}) - length({{suffix:String}})) AS item,
       sum(value) AS value
FROM {raw}
WHERE key = {{key:String}}
  AND startsWith(path, {{prefix:String}}) AND endsWith(path, {{suffix:String}})
  AND position(item, '.') = 0 AND {_RANGE}
GROUP BY item ORDER BY value DESC, item""",
            {**base, "prefix": "codes.", "suffix": ""},
        ),
        PairedQuery(
            "top_customers",
            f"""SELECT key, sum(value) AS value FROM {identifier(rollups_db)}.rollups_1h
WHERE startsWith(key, {{prefix:String}}) AND path = 'count'
  AND bucket >= {{start:DateTime}} AND bucket < {{end:DateTime}}
GROUP BY key ORDER BY value DESC, key LIMIT 10""",
            f"""SELECT key, sum(value) AS value FROM {raw}
WHERE startsWith(key, {{prefix:String}}) AND path = 'count' AND {_RANGE}
GROUP BY key ORDER BY value DESC, key LIMIT 10""",
            {"start": start, "end": end, "prefix": customer},
        ),
    ]
