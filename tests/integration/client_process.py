"""A job process for the SIGTERM tests: tracks N events, says ready, then idles until killed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tally.ingest import ClientSettings, Tracker


def main() -> None:
    bootstrap, count, spool, at = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    tracker = Tracker(
        ClientSettings(
            bootstrap_servers=bootstrap,
            spool_dir=Path(spool) if spool else None,
            close_timeout_s=3,
            request_timeout_ms=3_000,
            linger_ms=200,
        )
    )
    for i in range(count):
        tracker.track(("sig", f"sig::{i % 3}"), {"count": 1, "v": i % 5}, at=at)
    print("ready", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
