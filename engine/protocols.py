"""What the engine is configured with: a fold per partition, a sink, and its settings.

A ``Fold`` turns one partition's Kafka records into rows, in offset order, so that folding
the same range again builds the same rows (the same inserts, hence the same dedup ids in
ClickHouse). A ``Sink`` inserts those rows under a token and says which errors are the rows'
fault. ``EngineSettings`` is the part of a service's settings the loop reads.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from tally.kafka.security import KafkaSecurity

ErrorKind = Literal["data", "transient"]
# What a fold builds and its sink inserts (``FoldRows``, ``TraceRows``); ``len()`` counts rows.
Rows = TypeVar("Rows", bound=Sized)
Rows_co = TypeVar("Rows_co", bound=Sized, covariant=True)
Rows_contra = TypeVar("Rows_contra", bound=Sized, contravariant=True)


@dataclass(frozen=True, slots=True)
class Rejected:
    """One record (``index`` -1) or one event of a record that is dead-lettered."""

    offset: int
    index: int
    reason: str
    detail: str
    event: Any = None


class Fold(Protocol[Rows_co]):
    """The rows folded from one partition's records since the last flush.

    ``events`` (events folded) and ``nbytes`` (estimated bytes held) feed the metrics and the
    memory bound; ``len()`` is the number of rows ``rows()`` would return.
    """

    events: int
    nbytes: int

    def __len__(self) -> int: ...

    def add_record(self, payload: bytes, offset: int, timestamp_ms: int) -> list[Rejected]:
        """Fold one record; return what is rejected (to dead-letter), fold the rest."""
        ...

    def rows(self) -> Rows_co:
        """Everything folded since ``clear``, as the sink inserts it (deterministic per range)."""
        ...

    def clear(self) -> None:
        """Forget everything folded (after a durable flush)."""
        ...


class FoldFactory(Protocol[Rows_co]):
    """Makes an empty fold: for an owned partition, or (``reread``) for a range re-read to
    isolate an insert ClickHouse rejects (a fold may then skip side effects such as metrics,
    since those events were counted when first folded)."""

    def __call__(self, *, reread: bool = False) -> Fold[Rows_co]: ...


class Sink(Protocol[Rows_contra]):
    """Where folded rows go: ClickHouse tables, inserted exactly once per token.

    Optional abilities (found with ``getattr``): ``rejection(exc) -> str`` says which data
    rejections are the same (only one repeated ``max_insert_attempts`` times is isolated); an
    insert that lands in pieces raises an error with ``landed`` when a later piece is rejected,
    and ``exclude(rows, landed)`` leaves those rows out of the isolated parts (``isolator``).
    """

    async def start(self) -> None:
        """Connect; raise if the store is unreachable (the engine retries with backoff)."""
        ...

    async def apply_ddl(self) -> None:
        """Create or align the tables (when the settings say ``apply_ddl``)."""
        ...

    async def insert(self, rows: Rows_contra, token: str) -> None:
        """Insert durably; a second insert under the same ``token`` must insert nothing."""
        ...

    def classify(self, exc: BaseException) -> ErrorKind:
        """``"data"`` if retrying this insert cannot succeed, else ``"transient"``."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class CombiningSink(Sink[Rows], Protocol):
    """A sink that can also insert several partitions' rows as one (an optional ability, found
    with ``getattr``): the engine then flushes all its partitions in one insert per flush."""

    def combine(self, parts: Sequence[Rows]) -> Rows:
        """``parts`` as one rows object, in order (deterministic: replays must match)."""
        ...


class EngineSettings(Protocol):
    """The settings the engine reads (``AggregatorSettings`` has them all)."""

    @property
    def bootstrap_servers(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def security(self) -> KafkaSecurity: ...
    @property
    def dead_letter_topic(self) -> str: ...
    @property
    def dead_letter_max_bytes(self) -> int: ...
    @property
    def initial_offset(self) -> str | None: ...
    @property
    def apply_ddl(self) -> bool: ...
    @property
    def flush_interval_s(self) -> float: ...
    @property
    def group_flush(self) -> bool: ...
    @property
    def max_inserts_per_s(self) -> float: ...
    @property
    def max_flush_interval_s(self) -> float: ...
    @property
    def parts_check_interval_s(self) -> float: ...
    @property
    def flush_rows(self) -> int: ...
    @property
    def max_fold_bytes(self) -> int: ...
    @property
    def max_poll_records(self) -> int: ...
    @property
    def max_insert_attempts(self) -> int: ...
    @property
    def session_timeout_ms(self) -> int: ...
    @property
    def heartbeat_interval_ms(self) -> int: ...
    @property
    def max_poll_interval_ms(self) -> int: ...
    @property
    def retry_max_backoff_s(self) -> float: ...
    @property
    def shutdown_grace_s(self) -> float: ...
