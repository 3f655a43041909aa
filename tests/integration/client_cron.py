"""A cron-style script: tracks N events (ids 0..N-1) and exits without closing the tracker.

Arguments: bootstrap, topic, count, [spool_dir], [global|local]. Delivery is left to the exit
hook, as in a short script that never calls ``close()``; ``local`` lets the tracker be garbage
collected before the exit.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tally.ingest import ClientSettings, Tracker


def main() -> None:
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spool = Path(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
    global TRACKER
    tracker = TRACKER = Tracker(
        ClientSettings(
            bootstrap_servers=bootstrap,
            topic=topic,
            spool_dir=spool,
            close_timeout_s=10 if spool is None else 1,
            request_timeout_ms=5_000,
        )
    )
    for i in range(count):
        # one minute each: nothing folds, every id stays its own event on the wire
        tracker.track(("cron", f"cron::{i % 4}"), {"id": i}, at=1_700_000_000 + 60 * i)
    if len(sys.argv) > 5 and sys.argv[5] == "local":
        TRACKER = None


TRACKER: Tracker | None = None


if __name__ == "__main__":
    main()
