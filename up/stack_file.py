"""``<data_dir>/stack.json``: the URLs the stack in a data directory serves (never secrets).

``tally up`` and ``tally demo`` write it when their stack is up; the read commands take the
ClickHouse URL from it when none is given, so a stack on moved ports is found from its data
directory alone (and never confused with another run's stack on the default ports).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tally.clickhouse.settings import DEFAULT_URL

STACK_FILE = "stack.json"


def write_stack(data_dir: Path, kafka: str, clickhouse: str, api: str | None) -> Path:
    """Record the stack's URLs (atomically: a reader never sees half a file)."""
    path = data_dir / STACK_FILE
    body = {"kafka_bootstrap": kafka, "clickhouse_url": clickhouse, "api_url": api}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_stack(data_dir: Path) -> dict[str, str]:
    """The URLs recorded in ``data_dir`` (empty when there is no readable stack.json)."""
    try:
        body = json.loads((data_dir / STACK_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(body, dict):
        return {}
    return {k: v for k, v in body.items() if isinstance(v, str) and v}


def clickhouse_url(given: str | None, data_dir: Path) -> str:
    """``given`` (flag or TALLY_CLICKHOUSE_URL), else the data dir's stack, else the default."""
    if given:
        return given
    return read_stack(data_dir.expanduser()).get("clickhouse_url", DEFAULT_URL)
