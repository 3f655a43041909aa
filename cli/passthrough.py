"""``tally loadtest`` and ``tally demo``: entry points with their own Typer app or argparse."""

from __future__ import annotations

import sys

import typer

PASS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def loadtest(ctx: typer.Context) -> None:
    """Load tests and benchmarks: `tally loadtest run|show ...` (`tally loadtest --help`)."""
    from tally.loadtest.cli import app

    app(args=ctx.args, prog_name="tally loadtest")


def demo(ctx: typer.Context) -> None:
    """The local service with a week of history and live traffic (`tally demo --help`)."""
    from tally.loadtest.demo import main

    sys.exit(main(ctx.args))
