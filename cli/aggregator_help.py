"""``tally aggregator run|check --help``: the aggregator's flags with help, env and default."""

from __future__ import annotations

import argparse


def render(command: str) -> str:
    """The aggregator's parser, as ``tally aggregator <command>``, with every default shown."""
    from tally.aggregator.settings import parser

    p = parser()
    p.prog = f"tally aggregator {command}"
    p.description = (
        "run: consume until SIGTERM/SIGINT, then flush, commit and exit 0. "
        "check: verify Kafka and ClickHouse are reachable and apply the DDL."
    )
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    return p.format_help()
