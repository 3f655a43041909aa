"""Group intents: one insert for the ranges of several partitions, fenced and replayable.

A combined flush commits, in one OffsetCommit request, offset ``start_p`` of every member
partition ``p`` with metadata ``tally2:<start_p>:<end_p>:<group>``, where ``<group>`` lists
every member as ``<partition>.<start>.<end>`` (sorted by partition). The insert's dedup token is
derived from the whole group, so whoever owns any member next can rebuild exactly the same
insert (every member's range, re-read outside the group) and ClickHouse drops it if the
original landed. Kafka caps commit metadata (``offset.metadata.max.bytes``, default 4096), so a
group is kept under :data:`MAX_METADATA` characters; ``chunk`` splits larger sets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

PREFIX = "tally2"
MAX_METADATA = 3_000  # well under Kafka's default offset.metadata.max.bytes (4096)


@dataclass(frozen=True, slots=True, order=True)
class Member:
    """One partition's range ``start``..``end`` (inclusive) in a group."""

    partition: int
    start: int
    end: int

    def encode(self) -> str:
        return f"{self.partition}.{self.start}.{self.end}"


@dataclass(frozen=True, slots=True)
class GroupIntent:
    """A pending combined flush: its members, sorted by partition."""

    members: tuple[Member, ...]

    @classmethod
    def of(cls, members: Sequence[Member]) -> GroupIntent:
        """The group of ``members`` (sorted, so the token does not depend on their order)."""
        ordered = tuple(sorted(members))
        if len({m.partition for m in ordered}) != len(ordered):
            raise ValueError("a group holds each partition once")
        return cls(ordered)

    def body(self) -> str:
        return ",".join(m.encode() for m in self.members)

    def member(self, partition: int) -> Member | None:
        """The range of ``partition`` in this group, if it is a member."""
        return next((m for m in self.members if m.partition == partition), None)

    def encode(self, partition: int) -> str:
        """Commit metadata for member ``partition``."""
        m = self.member(partition)
        if m is None:
            raise ValueError(f"partition {partition} is not in the group")
        return f"{PREFIX}:{m.start}:{m.end}:{self.body()}"

    def token(self, topic: str) -> str:
        """The ClickHouse ``insert_deduplication_token`` of the combined insert."""
        digest = hashlib.sha256(self.body().encode()).hexdigest()[:32]
        return f"{topic}:group:{digest}"

    @classmethod
    def decode(cls, metadata: str | None, committed: int, partition: int) -> GroupIntent | None:
        """The group in ``metadata`` if it is one whose member ``partition`` starts at the
        ``committed`` offset."""
        if not metadata or not metadata.startswith(PREFIX + ":"):
            return None
        try:
            _, start, end, body = metadata.split(":", 3)
            members = [Member(*(int(x) for x in item.split("."))) for item in body.split(",")]
            group = cls.of(members)
        except (ValueError, TypeError):
            return None
        own = group.member(partition)
        if own is None or (own.start, own.end) != (int(start), int(end)):
            return None
        if own.start != committed or any(m.end < m.start for m in group.members):
            return None
        return group


def chunk(members: Sequence[Member], limit: int = MAX_METADATA) -> list[list[Member]]:
    """``members`` (sorted by partition) in consecutive groups whose metadata fits ``limit``."""
    out: list[list[Member]] = []
    size = 0
    for m in sorted(members):
        # A member's metadata is the prefix, its own range and the whole body.
        grown = size + len(m.encode()) + 1
        if not out or len(PREFIX) + 60 + grown > limit:
            out.append([])
            grown = len(m.encode())
        out[-1].append(m)
        size = grown
    return out
