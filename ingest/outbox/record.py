"""What the outbox holds and how it turns into Kafka records: a routed record and its codec."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Record(Protocol):
    """One buffered item: whatever the codec encodes, plus the key that picks its partition."""

    @property
    def route(self) -> str:
        """The routing key (Kafka's murmur2 of it picks the partition)."""
        ...


R = TypeVar("R", bound=Record)


class RecordCodec(Protocol[R]):
    """Encodes buffered records of one type into one Kafka record payload, and back.

    The outbox is the same for every topic: it groups records by partition, packs them into
    capped payloads, spools, retries and splits. What a payload holds is the codec's business.
    """

    def encode(self, records: Sequence[R]) -> bytes:
        """One payload holding ``records`` (at least one)."""
        ...

    def decode(self, payload: bytes) -> list[R]:
        """The records of a payload (routed as when tracked by default); ``WireError`` if it
        is not one."""
        ...
