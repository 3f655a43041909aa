"""Key discovery tables: which keys were written when, and which paths each key has.

Two small AggregatingMergeTree tables the aggregators write with each flush's new keys and
paths (``aggregator/key_rows.py``), so listing keys never scans the rollups:

- ``keys_seen``: one row per (key, UTC day) with the first and last minute written that day.
  Sorted by key, so a prefix pattern (``event::schedule::*``) reads one index range.
- ``key_paths``: one row per (key, path) with the last minute written.

``min``/``max`` are idempotent, so a replayed insert cannot change them. (Until issue #18 they
were fed by materialized views on ``rollups_input``, which fanned every insert block out to
(key, day) and (key, path) rows: ``RETIRED_VIEWS``.) When a table is
empty (first start after an upgrade), it is backfilled once from the stored rollups (at the
precision of ``source`` buckets). On a cluster the tables are replicated like ``rollups`` and the
backfill, an INSERT, runs on one replica and reaches the others by replication.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tally.schemas.placement import SINGLE_SERVER, Placement

KEYS_TABLE = "keys_seen"
KEYS_VIEW = "keys_seen_feed"
PATHS_TABLE = "key_paths"
PATHS_VIEW = "key_paths_feed"
KINDS_PATHS_VIEW = "key_paths_kinds_feed"
# Views that fed the key tables from every insert; an older schema may still have them.
RETIRED_VIEWS = (KEYS_VIEW, PATHS_VIEW, KINDS_PATHS_VIEW)


def key_statements(
    database: str,
    ttl_days: Mapping[str, int] | None = None,
    stored: Sequence[str] = ("1m", "1h", "1d"),
    placement: Placement = SINGLE_SERVER,
) -> list[str]:
    """Idempotent DDL (``database`` and ``stored`` are validated).

    The key tables keep as long as the longest-kept granularity; the backfill reads ``1h``
    rows (or the coarsest stored granularity).
    """
    db, c = database, placement.on_cluster()
    engine = placement.engine("AggregatingMergeTree")
    ttl = max((ttl_days or {}).values(), default=400)
    source = "1h" if "1h" in stored else stored[-1]
    return [
        f"""CREATE TABLE IF NOT EXISTS {db}.{KEYS_TABLE}{c} (
    key String COMMENT 'metric key',
    day Date COMMENT 'UTC day with writes',
    first_seen SimpleAggregateFunction(min, DateTime('UTC')) COMMENT 'first minute that day',
    last_seen SimpleAggregateFunction(max, DateTime('UTC')) COMMENT 'last minute that day'
) ENGINE = {engine}
ORDER BY (key, day)
TTL day + toIntervalDay({int(ttl)})""",
        f"""CREATE TABLE IF NOT EXISTS {db}.{PATHS_TABLE}{c} (
    key String COMMENT 'metric key',
    path String COMMENT 'dotted value path',
    last_seen SimpleAggregateFunction(max, DateTime('UTC')) COMMENT 'last minute written'
) ENGINE = {engine}
ORDER BY (key, path)""",
        f"""INSERT INTO {db}.{KEYS_TABLE}
SELECT key, toDate(bucket) AS day, min(bucket) AS first_seen, max(bucket) AS last_seen
FROM {db}.rollups
WHERE granularity = '{source}' AND (SELECT count() FROM {db}.{KEYS_TABLE}) = 0
GROUP BY key, day""",
        f"""INSERT INTO {db}.{PATHS_TABLE}
SELECT key, path, max(bucket) AS last_seen
FROM {db}.rollups
WHERE granularity = '{source}' AND (SELECT count() FROM {db}.{PATHS_TABLE}) = 0
GROUP BY key, path""",
    ]
