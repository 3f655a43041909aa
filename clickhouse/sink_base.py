"""What the rollup and trace sinks share: one connection to the first replica that answers,
the error classification, close, and DDL applied through a short-lived sink."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from clickhouse_connect.driver.asyncclient import AsyncClient

from tally.clickhouse.errors import classify_error, error_code
from tally.clickhouse.failover import Replicas

if TYPE_CHECKING:
    from tally.engine.protocols import ErrorKind


class ReplicaSink:
    """A ClickHouse sink over :class:`Replicas` (set ``replicas`` in ``__init__``)."""

    replicas: Replicas

    async def start(self) -> None:
        """Connect to the first replica that answers (raises if none does; callers retry)."""
        await self.replicas.connect()

    def classify(self, exc: BaseException) -> ErrorKind:
        """``classify_error``: whether retrying this write can succeed."""
        return classify_error(exc)

    def rejection(self, exc: BaseException) -> str:
        """What makes two rejections the same (the engine isolates only a repeated one): the
        error's type and ClickHouse code."""
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
