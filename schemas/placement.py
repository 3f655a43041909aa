"""Where tally's tables live: one ClickHouse server, or the replicas of one shard.

Every DDL builder (rollups, key tables, traces, monitors) takes a ``Placement`` and asks it for
two things only: the ``ON CLUSTER`` clause of each CREATE/ALTER, and a table engine of the
MergeTree family, replicated or not. The statements themselves are written once.

On a cluster (``replicated=True``) the engines are ``Replicated*MergeTree`` with no path
arguments, so the server's ``default_replica_path`` (``/clickhouse/tables/{uuid}/{shard}``) and
``default_replica_name`` (``{replica}``) apply; ``ON CLUSTER`` gives the table the same UUID on
every replica, which is what makes ``{uuid}`` name one Keeper path. Insert deduplication then
lives in Keeper: a block id recorded by one replica makes the same block a no-op on the other,
so an aggregator that fails over replays its flush to the other replica exactly once
(``replicated_deduplication_window`` / ``..._seconds``, per table).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CLUSTER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# The engines tally's DDL uses; a family outside this list cannot reach a statement.
FAMILIES = ("MergeTree", "AggregatingMergeTree", "ReplacingMergeTree")


@dataclass(frozen=True, slots=True)
class Placement:
    """One server (the default), or ``cluster``'s replicas with replicated engines."""

    cluster: str | None = None
    replicated: bool = False

    def __post_init__(self) -> None:
        if self.cluster is not None and not _CLUSTER.fullmatch(self.cluster):
            raise ValueError(f"{self.cluster!r} is not a valid cluster name")

    def on_cluster(self) -> str:
        """`` ON CLUSTER <name>`` to put after a CREATE/ALTER's object name, or ``""``."""
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def engine(self, family: str, args: str = "") -> str:
        """``family`` (``MergeTree``, ``AggregatingMergeTree``, ...) as this placement runs it.

        ``args`` are the family's own arguments (``ReplacingMergeTree(version)``); a replicated
        engine takes its Keeper path and replica name from the server's defaults.
        """
        if family not in FAMILIES:
            raise ValueError(f"unknown engine family {family!r}")
        name = f"Replicated{family}" if self.replicated else family
        return f"{name}({args})" if args else name

    def dedup_window(self, blocks: int, seconds: int) -> dict[str, int]:
        """The MergeTree settings that keep ``blocks`` insert block ids (``seconds`` if replicated).

        A plain table keeps them on its disk (``non_replicated_deduplication_window``, no time
        limit); a replicated one in Keeper, bounded by count and by age.
        """
        if self.replicated:
            return {
                "replicated_deduplication_window": int(blocks),
                "replicated_deduplication_window_seconds": int(seconds),
            }
        return {"non_replicated_deduplication_window": int(blocks)}


def settings_sql(settings: dict[str, int]) -> str:
    """``name = value, ...`` for a SETTINGS or MODIFY SETTING clause."""
    return ", ".join(f"{name} = {int(value)}" for name, value in settings.items())


SINGLE_SERVER = Placement()
