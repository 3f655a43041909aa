"""Only a deterministic rejection is isolated: the same error, ``attempts`` times in a row."""

from __future__ import annotations

from dataclasses import dataclass, field

from tally.engine.flusher import Inserter
from tally.engine.metrics import EngineMetrics
from tally.engine.protocols import ErrorKind
from tally.engine.stopping import StopGate


class Rejected(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"Code: {code}.")
        self.code = code


@dataclass
class ScriptedSink:
    """An in-memory sink that fails with the scripted errors, then acknowledges."""

    errors: list[Exception]
    inserts: int = 0
    calls: list[str] = field(default_factory=list)

    async def insert(self, rows: list[int], token: str) -> None:
        self.calls.append(token)
        if self.inserts < len(self.errors):
            self.inserts += 1
            raise self.errors[self.inserts - 1]
        self.inserts += 1

    def classify(self, exc: BaseException) -> ErrorKind:
        return "transient" if isinstance(exc, TimeoutError) else "data"

    def rejection(self, exc: BaseException) -> str:
        return f"code {getattr(exc, 'code', None)}"


def inserter(sink: ScriptedSink) -> Inserter:
    return Inserter(sink, EngineMetrics(), StopGate(1.0), max_backoff_s=0.01)


async def test_the_same_rejection_three_times_is_returned_for_isolation():
    sink = ScriptedSink([Rejected(53), TimeoutError(), Rejected(53), Rejected(53)])
    error = await inserter(sink).insert_rows([1], "t:0:0-9", 3)
    assert isinstance(error, Rejected) and error.code == 53
    assert sink.calls == ["t:0:0-9"] * 4  # a transient error in between does not reset


async def test_rejections_that_differ_are_retried_under_the_same_token_until_acknowledged():
    # e.g. a shutting-down server answering with a code the rows never cause again
    sink = ScriptedSink([Rejected(53), Rejected(1001), Rejected(53), Rejected(1001)])
    assert await inserter(sink).insert_rows([1], "t:0:0-9", 3) is None
    assert sink.calls == ["t:0:0-9"] * 5
