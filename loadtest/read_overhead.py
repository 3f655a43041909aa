"""The read layer's own cost, without I/O: ``python -m tally.loadtest.read_overhead``.

``Reader``/``AsyncReader`` run ``series`` (a 721-bucket hourly month, two paths, a top-3
wildcard with ``other``, one expression) and ``values`` against a client that answers every
statement from memory, so what is timed is validation, planning, driving the statements and
building the result. Run it from two code trees (``PYTHONPATH``) back to back and compare:
ClickHouse's time, which dwarfs this, is left out on purpose. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from tally.loadtest.read_bench import timed
from tally.read import AsyncReader, Reader, ReadSettings
from tally.read.queries import SCHEMA

HOURS = 721
END = 1_780_000_000 // 3600 * 3600
START = END - (HOURS - 1) * 3600
TABLES = [("rollups_1h", "granularity = '1h' toTimeZone(bucket, 'UTC')"), ("keys_seen", ""),
          ("key_paths", "")]  # fmt: skip
SERIES = ("calc", ["count", "codes.*"], ["success / count"], START, END, "1h", 3)


class Answer:
    """A statement's result as clickhouse-connect hands it over."""

    def __init__(self, rows: list[Any]) -> None:
        self.result_rows, self.column_names, self.column_types = rows, [], []


RANKING = [(f"codes.C{i}", 100.0 - i, 5) for i in range(3)]  # (path, total, matches)
MATCHED = [(START + i * 3600, f"codes.C{j}" if j < 3 else "", 1.0)
           for i in range(HOURS) for j in range(4)]  # fmt: skip
POINTS = [(START + i * 3600, p, float(i % 7)) for i in range(HOURS) for p in ("count", "success")]


def _answer(text: str) -> Answer:
    if text == SCHEMA:
        return Answer(TABLES)
    if "count() OVER ()" in text:  # the wildcard's ranking
        return Answer(RANKING)
    if "has({keep" in text:  # the wildcard's points, "other" named ''
        return Answer(MATCHED)
    return Answer(POINTS)


class SyncClient:
    def query(self, text: str, parameters: Any = None, settings: Any = None) -> Answer:
        return _answer(text)

    def close(self) -> None:
        pass


class AsyncClient:
    async def query(self, text: str, parameters: Any = None, settings: Any = None) -> Answer:
        return _answer(text)

    async def close(self) -> None:
        pass


async def _timed_async(reader: AsyncReader, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        await reader.series(*SERIES)
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=150, help="calls per measurement")
    args = p.parse_args(argv)
    reader = Reader(ReadSettings())
    reader._client = SyncClient()
    areader = AsyncReader(ReadSettings())
    areader._client = AsyncClient()
    for label, samples in (
        ("sync series", timed(lambda: reader.series(*SERIES), args.runs)),
        ("sync values", timed(lambda: reader.values("calc", START, END, "1h"), args.runs)),
        ("async series", asyncio.run(_timed_async(areader, args.runs))),
    ):
        low, mid = min(samples) * 1e3, statistics.median(samples) * 1e3
        print(f"{label}: min {low:.3f} ms, p50 {mid:.3f} ms (n={len(samples)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
