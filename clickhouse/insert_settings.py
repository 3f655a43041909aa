"""The settings every exactly-once insert pins, so a replay forms the same blocks and dedup ids."""

from __future__ import annotations

from collections.abc import Mapping

from clickhouse_connect.driver.asyncclient import AsyncClient

# Settings that shape the blocks of an insert into rollups_input and of the view's output into
# rollups (values: ClickHouse's defaults), and the ones dedup depends on. Pinned on every
# insert so a replay under another profile forms the same blocks with the same ids.
BLOCK_SETTINGS: Mapping[str, int | str] = {
    "max_block_size": 65409,  # the view's GROUP BY/ORDER BY output blocks
    "max_insert_block_size": 1048449,  # input blocks (older name of ..._rows)
    "max_insert_block_size_rows": 1048449,
    "max_insert_block_size_bytes": 0,
    "min_insert_block_size_rows": 1048449,  # squashing of the input
    "min_insert_block_size_bytes": 268402944,
    "min_insert_block_size_rows_for_materialized_views": 1048449,  # squashing of view output
    "min_insert_block_size_bytes_for_materialized_views": 268402944,
    "use_strict_insert_block_limits": 0,
    "max_threads": 1,  # one pipeline: block order and boundaries do not depend on scheduling
    "max_insert_threads": 1,
    "parallel_view_processing": 0,
    "materialized_views_squash_parallel_inserts": 1,
    "use_async_executor_for_materialized_views": 0,
    "max_partitions_per_insert_block": 100,  # the plan keeps pieces well below
    "throw_on_max_partitions_per_insert_block": 1,
    "async_insert": 0,  # synchronous: durable on return
    "insert_deduplicate": 1,
    "deduplicate_insert": "enable",  # 25.x+: supersedes insert_deduplicate
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "materialized_views_ignore_errors": 0,  # a failing view fails the insert, never drops rows
    "ignore_materialized_views_with_dropped_target_table": 0,
}
# Always sent (a server that does not know them must refuse the insert, not ignore them).
REQUIRED_SETTINGS = frozenset(
    {
        "insert_deduplicate",
        "insert_deduplication_token",
        "deduplicate_blocks_in_dependent_materialized_views",
        "async_insert",
        "max_block_size",
        "max_threads",
    }
)


def pinned_settings(client: AsyncClient, token: str) -> dict[str, int | str]:
    """``BLOCK_SETTINGS`` that ``client``'s server knows (the dedup essentials always), plus
    ``insert_deduplication_token``: what every exactly-once insert sends."""
    known = client.server_settings
    pinned = {
        k: v for k, v in BLOCK_SETTINGS.items() if not known or k in known or k in REQUIRED_SETTINGS
    }
    pinned["insert_deduplication_token"] = token
    return pinned
