"""Reads as plans: pure generators that yield statements and receive their results.

A plan checks its request before its first statement, yields each :class:`Sql` it needs and
is sent that statement's result (clickhouse-connect's: ``result_rows``, ``column_names``,
``column_types``); a statement that fails is thrown into the plan at its ``yield``, where the
plan may answer it. It returns its result, or a :class:`Build` when turning the rows into the
result is CPU-bound work. Plans do no I/O: the runners (``read/runner.py``, one sync and one
async) execute the statements and the build, and ``Reader``/``AsyncReader`` are those runners
with a connection.

Why generators rather than a list of statements and a build function: several reads take
steps whose next statement depends on the rows of the one before (a series ranks its
wildcards before it knows which points to fetch, a job query probes the key's measures only
when it found no rows, the served schema is read again only when the cache lacks what was
asked); a generator states that sequence once, as straight-line code, for both runners.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from tally.read.queries import Sql

T = TypeVar("T")


class Answer(Protocol):
    """What a plan is sent for a statement (a clickhouse-connect ``QueryResult``)."""

    @property
    def result_rows(self) -> Sequence[Sequence[Any]]: ...

    @property
    def column_names(self) -> Sequence[str]: ...

    @property
    def column_types(self) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class Build(Generic[T]):
    """A plan's CPU-bound last step: sync runners call it, async ones run it in a thread."""

    step: Callable[[], T]


Plan = Generator[Sql, Answer, T | Build[T]]


class Walk(Generic[T]):
    """One plan being run: ``sql`` is the statement it waits for (None once it is done);
    ``feed`` hands it that statement's result or failure."""

    def __init__(self, plan: Plan[T]) -> None:
        self._plan = plan
        self.sql: Sql | None = None
        self.outcome: T | Build[T] | None = None
        self._advance(lambda: next(plan))

    def feed(self, result: Answer | Exception) -> None:
        """Send the result of ``sql`` (or throw its exception) into the plan."""
        if isinstance(result, Exception):
            self._advance(lambda: self._plan.throw(result))
        else:
            self._advance(lambda: self._plan.send(result))

    def _advance(self, step: Callable[[], Sql]) -> None:
        try:
            self.sql = step()
        except StopIteration as done:
            self.sql, self.outcome = None, done.value


def statement(sql: Sql) -> Plan[Answer]:
    """One statement's result as a plan: a caller's own SQL on a reader's client."""
    return (yield sql)
