"""What the rollup and trace sinks share: one connection to the first replica that answers,
the error classification (of a partial insert's rejection too), close, and DDL applied through
a short-lived sink."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Protocol

from clickhouse_connect.driver.asyncclient import AsyncClient

from tally.clickhouse.errors import classify_error, error_code
from tally.clickhouse.failover import Replicas

if TYPE_CHECKING:
    from tally.engine.protocols import ErrorKind


class PartlyInserted(Exception):
    """ClickHouse rejected step ``failed`` of a sink's insert after the steps before it landed.

    ``landed`` names what those steps wrote (the rollup sink: UTC months of ``minute``; the
    trace sink: tables). Those rows of the same records are in ClickHouse under the rejected
    insert's token, so a re-read part of the range must leave them out (the sink's
    ``exclude(rows, landed)``) when it is inserted under a token of its own.
    """

    def __init__(self, error: BaseException, failed: Hashable, landed: frozenset) -> None:
        super().__init__(f"step {failed} rejected after {len(landed)} landed: {error}")
        self.error = error
        self.failed = failed
        self.landed = landed


class ReplicaSink:
    """A ClickHouse sink over :class:`Replicas` (set ``replicas`` in ``__init__``)."""

    replicas: Replicas

    async def start(self) -> None:
        """Connect to the first replica that answers (raises if none does; callers retry)."""
        await self.replicas.connect()

    def classify(self, exc: BaseException) -> ErrorKind:
        """``classify_error`` (of the rejection inside a :class:`PartlyInserted`): whether
        retrying this write can succeed."""
        return classify_error(exc.error if isinstance(exc, PartlyInserted) else exc)

    def rejection(self, exc: BaseException) -> str:
        """What makes two rejections the same (the engine isolates only a repeated one): the
        error's type and ClickHouse code, and the step that failed."""
        if isinstance(exc, PartlyInserted):
            return f"{self.rejection(exc.error)}@{exc.failed}"
        return f"{type(exc).__name__}:{error_code(exc)}"

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.replicas.close()

    def client(self) -> AsyncClient:
        """The connected client; :meth:`start` must have run."""
        if self.replicas.client is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        return self.replicas.client


class DdlSink(Protocol):
    """A sink that can create its tables."""

    async def start(self) -> None: ...

    async def apply_ddl(self) -> None: ...

    async def close(self) -> None: ...


async def apply_ddl_once(sink: DdlSink) -> None:
    """Start ``sink``, apply its DDL and close it (also when the DDL fails)."""
    await sink.start()
    try:
        await sink.apply_ddl()
    finally:
        await sink.close()
