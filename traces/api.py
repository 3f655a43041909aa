"""The tracing API for job code: ``trace`` blocks (also a decorator), notes, results, tags.

The current execution is the active run's (``tally.ingest.jobs.active_run()``); the enclosing
block is held in a context variable, so nesting follows ``await`` and threads the way the
run itself does. Every function here swallows its own errors: tracing never raises into the
job (``trace`` re-raises only the job's own exception, unchanged).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from tally.ingest.jobs.tracking import ACTIVE_RUN
from tally.traces.buffer import TraceBuffer
from tally.traces.model import ARTIFACT, Line

# (buffer, enclosing block seq, depth of lines inside it)
_SCOPE: ContextVar[tuple[TraceBuffer, int, int] | None] = ContextVar("tally_trace", default=None)


def _where() -> tuple[TraceBuffer, int, int] | None:
    """The active run's buffer and the enclosing block (seq 0 / depth 0 at the top)."""
    run = ACTIVE_RUN.get()
    if run is None:
        return None
    buffer = run.trace
    if buffer is None:
        return None
    scope = _SCOPE.get()
    if scope is not None and scope[0] is buffer:
        return scope
    return buffer, 0, 0


class trace:
    """A traced block: ``with trace("Fetching main product") as block:`` or ``@trace()``.

    The block's line gets its start, duration and outcome (``ok`` or the exception type that
    left it; the exception propagates unchanged). ``block.result(value)`` records its value;
    as a decorator the function's return value is recorded (``result=False`` to skip).
    """

    __slots__ = ("_line", "_name", "_record", "_token", "_where")

    def __init__(self, name: str | None = None, *, result: bool = True) -> None:
        self._name = name
        self._record = result
        self._line: Line | None = None
        self._token: Token | None = None
        self._where: tuple[TraceBuffer, int, int] | None = None

    def __enter__(self) -> trace:
        try:
            where = _where()
            if where is not None:
                buffer, parent, depth = where
                line = buffer.open(self._name or "block", parent, depth)
                if line is not None:
                    self._line, self._where = line, where
                    self._token = _SCOPE.set((buffer, line.seq, depth + 1))
        except Exception:  # never into the job
            self._line = None
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        line, where = self._line, self._where
        if line is not None and where is not None:
            try:
                if self._token is not None:
                    _SCOPE.reset(self._token)
                where[0].close(line, exc)
            except Exception:
                pass
            self._line = self._token = self._where = None
        return False

    async def __aenter__(self) -> trace:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        return self.__exit__(exc_type, exc, tb)

    def result(self, value: object) -> None:
        """Record ``value`` as this block's result (serialized, truncated; see TraceLimits)."""
        line, where = self._line, self._where
        if line is None or where is None:
            return
        with contextlib.suppress(Exception):
            where[0].result(value, line.seq, where[2] + 1)

    def __call__(self, func: Callable) -> Callable:
        """Decorate a sync or async function: each call is one block named after it."""
        name = self._name or getattr(func, "__qualname__", "block")
        record = self._record
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                with trace(name) as block:
                    value = await func(*args, **kwargs)
                    if record:
                        block.result(value)
                    return value

            return awrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with trace(name) as block:
                value = func(*args, **kwargs)
                if record:
                    block.result(value)
                return value

        return wrapper


def _in_scope(act: Callable[[TraceBuffer, int, int], object]) -> None:
    """``act(buffer, enclosing block, depth)`` in the active run, if traced; never raises."""
    try:
        where = _where()
        if where is not None:
            act(*where)
    except Exception:  # never into the job
        pass


def note(text: object) -> None:
    """Add a note line in the current block (any value; serialized and truncated)."""
    _in_scope(lambda buffer, block, depth: buffer.note(text, block, depth))


def result(value: object) -> None:
    """Record ``value`` as the current block's (or the run's) result."""
    _in_scope(lambda buffer, block, depth: buffer.result(value, block, depth))


def artifact(name: str, payload: object) -> None:
    """Attach a larger payload (cut to ``TraceLimits.max_artifact_bytes``) in the current block."""
    _in_scope(lambda buffer, block, depth: buffer.text(ARTIFACT, name, payload, block, depth))


def tag(name: str, value: object) -> None:
    """Tag the current execution (``tag("customer", 42)``); tags can decide sampling."""
    _in_scope(lambda buffer, _block, _depth: buffer.tag(name, value))


def current_execution_id() -> str | None:
    """The execution id of the active traced run, or None."""
    run = ACTIVE_RUN.get()
    return (run.execution_id or None) if run is not None else None
