"""Flush intents, stored as Kafka commit metadata so the group coordinator fences them.

Before inserting the range [start, end] of a partition, the aggregator commits offset ``start``
(unchanged) with metadata ``tally1:<start>:<end>``. A member that lost the partition cannot
make that commit (its generation is stale), so it never inserts. Whoever owns the partition
next finds the intent and replays exactly that range under the same dedup token.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "tally1"


@dataclass(frozen=True, slots=True)
class Intent:
    """A pending flush of offsets ``start``..``end`` (inclusive) of one partition."""

    start: int
    end: int

    def encode(self) -> str:
        """Commit metadata text."""
        return f"{PREFIX}:{self.start}:{self.end}"

    def token(self, topic: str, partition: int) -> str:
        """The ClickHouse ``insert_deduplication_token`` for this range."""
        return f"{topic}:{partition}:{self.start}-{self.end}"

    @classmethod
    def decode(cls, metadata: str | None, committed: int) -> Intent | None:
        """The intent in ``metadata`` if it is one and starts at the ``committed`` offset."""
        if not metadata or not metadata.startswith(PREFIX + ":"):
            return None
        try:
            _, start, end = metadata.split(":")
            intent = cls(int(start), int(end))
        except ValueError:
            return None
        if intent.start != committed or intent.end < intent.start:
            return None
        return intent
