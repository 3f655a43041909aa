"""What each materialized view on ``rollups_input`` costs the ClickHouse server per event.

``python -m tally.loadtest.bench_ch_views [--events 200000] [--flush 5000] [--rounds 3]``
starts the embedded ClickHouse alone, folds the loadtest's mixed workload (``Workload.events``,
spread over ``--spread`` seconds like a steady run) with a real ``PartitionFold`` into flushes of
``--flush`` events (5,000: one partition's insert at 20,000 events/s, 8 partitions, 2 s flushes),
then, per variant and round (alternating), inserts every flush through the aggregator's
``RollupSink`` as the ``tally_aggregator`` user into a fresh database and reads the server
process's CPU (psutil) around the inserts.

Variants: ``views feed the key index`` is the schema before issue #18 (the three retired key
views, ``RETIRED_VIEWS``, recreated here, and no key-index writes from the sink);
``without <view>`` drops one view from it, so the difference is that view's cost;
``expand only`` and ``none`` keep one and no view; ``admin`` inserts as the administrator (no
per-user access check); ``aggregator writes the key index`` is the current sink and schema
(its client-side cost, ``WrittenKeys.new_rows`` and the key inserts, is printed too).
Prints µs of server CPU per event, best (least disturbed) round per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import clickhouse_connect
import psutil

from tally.aggregator.fold import PartitionFold
from tally.aggregator.rows import FoldRows
from tally.aggregator.settings import ClickHouseSettings
from tally.aggregator.sink import RollupSink
from tally.clickhouse.sink_base import apply_ddl_once
from tally.embedded.clickhouse.process import start_clickhouse
from tally.ingest.flatten import flatten_all
from tally.loadtest.workloads import Cardinality, Workload
from tally.schemas.access import access_model
from tally.schemas.ddl import EXPAND_VIEW, KINDS_VIEW, RollupSchema
from tally.schemas.ddl_keys import KEYS_VIEW, KINDS_PATHS_VIEW, PATHS_VIEW
from tally.schemas.limits import Limits
from tally.schemas.wire import BatchDecoder, BatchEncoder

RECORD = 20
NOW_VIEWS = (EXPAND_VIEW, KINDS_VIEW)
ALL_VIEWS = (*NOW_VIEWS, KEYS_VIEW, PATHS_VIEW, KINDS_PATHS_VIEW)


@dataclass(frozen=True)
class Variant:
    """Which views exist, as whom the inserts run, whether the sink writes the key index."""

    name: str
    views: tuple[str, ...]
    admin: bool = False
    sink_writes_keys: bool = False
    narrow: bool = False  # c9a3f89's rollups table (no distribution/gauge columns)
    window: int | None = None  # the rollups dedup window in blocks (None: the schema's)


def variants() -> list[Variant]:
    """Before #18, each view dropped alone, one and no view, admin, and now."""
    out = [Variant("before: views feed the key index", ALL_VIEWS)]
    out += [Variant(f"without {v}", tuple(x for x in ALL_VIEWS if x != v)) for v in ALL_VIEWS]
    out.append(Variant("expand only", (EXPAND_VIEW,)))
    out.append(Variant("expand only, window 100000", (EXPAND_VIEW,), window=100_000))
    out.append(Variant("expand only, c9a3f89's narrow rollups", (EXPAND_VIEW,), narrow=True))
    out.append(Variant("none", ()))
    out.append(Variant("before, as admin (no access check)", ALL_VIEWS, admin=True))
    out.append(Variant("now: aggregator writes the key index", NOW_VIEWS, sink_writes_keys=True))
    return out


def retired_views(schema: RollupSchema) -> dict[str, str]:
    """The key views as they were before issue #18 (to measure them)."""
    db, src = schema.database, schema.input_table
    return {
        KEYS_VIEW: f"""CREATE MATERIALIZED VIEW {db}.{KEYS_VIEW} TO {schema.keys_table}
AS SELECT key, toDate(minute) AS day, min(minute) AS first_seen, max(minute) AS last_seen
FROM {src} ARRAY JOIN keys AS key GROUP BY key, day""",
        PATHS_VIEW: f"""CREATE MATERIALIZED VIEW {db}.{PATHS_VIEW} TO {schema.paths_table}
AS SELECT key, path, max(minute) AS last_seen
FROM {src} ARRAY JOIN keys AS key ARRAY JOIN paths AS path GROUP BY key, path""",
        KINDS_PATHS_VIEW: f"""CREATE MATERIALIZED VIEW {db}.{KINDS_PATHS_VIEW}
TO {schema.paths_table}
AS SELECT key, concat(path, suffix) AS path, max(minute) AS last_seen
FROM {src} ARRAY JOIN keys AS key
ARRAY JOIN if(kind = 1, ['', '.count', '.sum', '.square'], ['']) AS suffix
WHERE kind != 0 GROUP BY key, path""",
    }


def narrow_rollups(schema: RollupSchema) -> list[str]:
    """c9a3f89's ``rollups`` (five columns, window of 100,000 blocks) and its expand view."""
    return [
        f"DROP VIEW {schema.expand_view}",
        f"DROP TABLE {schema.table} SYNC",
        f"""CREATE TABLE {schema.table} (
    granularity LowCardinality(String), key String, bucket DateTime('UTC'),
    path LowCardinality(String), value SimpleAggregateFunction(sum, Float64)
) ENGINE = AggregatingMergeTree
PARTITION BY (granularity, toYYYYMM(bucket))
ORDER BY (granularity, key, path, bucket)
TTL {schema.ttl_clause()}
SETTINGS non_replicated_deduplication_window = 100000""",
        f"CREATE MATERIALIZED VIEW {schema.expand_view} TO {schema.table}\n"
        f"AS {schema.expand_query()}",
    ]


def flushes(events: int, flush: int, spread_s: int, now: int) -> list[FoldRows]:
    """The mixed workload folded into flushes of ``flush`` events."""
    workload = Workload(Cardinality(), seed=7)
    encoder = BatchEncoder("bench")
    fold = PartitionFold(Limits(), BatchDecoder())
    out: list[FoldRows] = []
    chunk: list[tuple] = []
    offset = 0
    for e in workload.events(events, now - spread_s, spread_s):
        paths, numbers, kinds = flatten_all(dict(e.values), Limits())
        chunk.append((e.at, e.keys, paths, numbers) + ((kinds,) if kinds else ()))
        if len(chunk) == RECORD:
            fold.add_record(encoder.encode(chunk), offset, now * 1000)
            offset += 1
            chunk = []
        if fold.events >= flush:
            out.append(fold.rows())
            fold.clear()
    if chunk:
        fold.add_record(encoder.encode(chunk), offset, now * 1000)
    if fold.events:
        out.append(fold.rows())
    return out


async def insert_all(
    settings: ClickHouseSettings, schema: RollupSchema, rows: list[FoldRows], keys: bool
) -> float:
    """Insert every flush as the aggregator does; returns this process's CPU seconds spent on
    the key index (``WrittenKeys.new_rows``)."""
    sink = RollupSink(settings, schema)
    await sink.start()
    spent = 0.0
    try:
        for i, r in enumerate(rows):
            token = f"{schema.database}:0:{i}"
            for piece in sink.plan(r, token):
                await sink.insert_piece(piece)
            if keys:
                t0 = time.process_time()
                index = sink.written_keys.new_rows(r)
                spent += time.process_time() - t0
                await sink.insert_key_index(index, token)
    finally:
        await sink.close()
    return spent


async def apply_ddl(settings: ClickHouseSettings, schema: RollupSchema) -> None:
    await apply_ddl_once(RollupSink(settings, schema))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--flush", type=int, default=5_000)
    parser.add_argument("--spread", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="variant names separated by |")
    args = parser.parse_args()
    now = int(time.time())
    rows = flushes(args.events, args.flush, args.spread, now)
    print(f"{len(rows)} flushes, {sum(len(r) for r in rows):,} rows for {args.events:,} events")
    chosen = variants()
    if args.only:
        wanted = set(args.only.split("|"))
        chosen = [v for v in chosen if v.name in wanted]
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_clickhouse(Path(tmp) / "ch", access=access_model("bench")) as ch,
    ):
        admin = clickhouse_connect.get_client(
            host=ch.host, port=ch.port, username=ch.user, password=ch.password
        )
        user, password = ch.login("aggregator")
        owner = ClickHouseSettings(url=ch.url, user=ch.user, password=ch.password)
        writer = ClickHouseSettings(url=ch.url, user=user, password=password)
        server = psutil.Process(ch.pid)
        best: dict[str, tuple[float, float]] = {}
        for round_ in range(args.rounds):
            for i, variant in enumerate(chosen):
                schema = RollupSchema(f"bench_{round_}_{i}")
                asyncio.run(apply_ddl(owner, schema))
                for name, ddl in retired_views(schema).items():
                    if name in variant.views:
                        admin.command(ddl)
                for name in NOW_VIEWS:
                    if name not in variant.views:
                        admin.command(f"DROP VIEW {schema.database}.{name}")
                if variant.narrow:
                    for statement in narrow_rollups(schema):
                        admin.command(statement)
                if variant.window is not None:
                    admin.command(
                        f"ALTER TABLE {schema.table} MODIFY SETTING"
                        f" non_replicated_deduplication_window = {variant.window}"
                    )
                target = owner if variant.admin else writer
                cpu0 = sum(server.cpu_times()[:2])
                spent = asyncio.run(insert_all(target, schema, rows, variant.sink_writes_keys))
                cpu = sum(server.cpu_times()[:2]) - cpu0
                us = cpu / args.events * 1e6
                client_us = spent / args.events * 1e6
                if variant.name not in best or us < best[variant.name][0]:
                    best[variant.name] = (us, client_us)
                print(
                    f"round {round_} {variant.name}: {cpu:.2f} CPU-s, {us:.1f} µs/event"
                    f" (key index in the aggregator {client_us:.2f} µs/event),"
                    f" load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                admin.command(f"DROP DATABASE {schema.database} SYNC")
        print("variant | server µs per event (best round) | aggregator key-index µs/event")
        for name, (us, client_us) in best.items():
            print(f"{name} | {us:.1f} | {client_us:.2f}")


if __name__ == "__main__":
    main()
