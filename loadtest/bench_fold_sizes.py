"""The fold alone by record size: the same events cut into records of N events, per version.

``python -m tally.loadtest.bench_fold_sizes [--events 40000] [--sizes 90,300,2000]
[--flush-events 23100] [--rounds 3]`` builds the mixed workload's events
(``bench_fold_v3.mixed_events``), encodes them as records of each size in wire versions 2, 3
and 4, and folds each set in this process (``PartitionFold.add_record``, ``rows()`` every
``--flush-events`` as the loadtest's flushes; best of ``--rounds`` by CPU). No Kafka and no
ClickHouse: it isolates what a record costs the fold whatever its size (a column record has a
fixed cost that large records amortize), and prints bytes per event beside it.
"""

from __future__ import annotations

import argparse
import gc
import time

from tally.aggregator.cli import FOLD_GC_THRESHOLD
from tally.loadtest.bench_fold_v3 import VERSIONS, encode, fold_cpu, mixed_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--sizes", default="90,300,2000", help="events per record, comma-separated")
    parser.add_argument("--flush-events", type=int, default=23_100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    now = int(time.time())
    events = mixed_events(args.events, now - 3600)
    print("events per record | " + " | ".join(f"fold v{v} (ev/CPU-s)" for v in VERSIONS)
          + " | v4 / v2 | " + " | ".join(f"bytes/event v{v}" for v in VERSIONS))  # fmt: skip
    for size in map(int, args.sizes.split(",")):
        records = {v: encode(events, v, size) for v in VERSIONS}
        gc.collect()
        gc.set_threshold(*FOLD_GC_THRESHOLD)
        rate = {}
        for v, payloads in records.items():
            captured = [(p, now * 1000) for p in payloads]
            cpu = min(fold_cpu(captured, args.flush_events) for _ in range(args.rounds))
            rate[v] = args.events / cpu
        size_of = {v: sum(map(len, p)) / args.events for v, p in records.items()}
        print(
            f"{size} | " + " | ".join(f"{rate[v]:,.0f}" for v in VERSIONS)
            + f" | {rate[4] / rate[2]:.2f}x | "
            + " | ".join(f"{size_of[v]:.1f}" for v in VERSIONS),
            flush=True,
        )  # fmt: skip


if __name__ == "__main__":
    main()
