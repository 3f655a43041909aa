"""``tally monitors run``'s settings table (the service's rows and where ClickHouse is) and
the command line ``tally up`` starts the monitor service with."""

from __future__ import annotations

import sys
from typing import Any

from tally.monitors.settings import SETTINGS
from tally.up.read_target import READ_TARGET

MONITORS = SETTINGS + READ_TARGET


def command_line(**values: Any) -> list[str]:
    """``tally monitors run`` with ``values`` (fields of ``MONITORS``) as its arguments; the
    ClickHouse password goes in the child's environment (``TALLY_CLICKHOUSE_PASSWORD``)."""
    return [sys.executable, "-m", "tally.cli", "monitors", "run", *MONITORS.argv(values)]
