"""``tally loadtest``, ``tally demo`` and ``tally sampler``: handed their arguments, imported only
when called (their extras need not be installed for the rest of ``tally``)."""

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


def sampler(ctx: typer.Context) -> None:
    """The queue sampler: `tally sampler run|check [flags]` (`sampler` extra: redis-py)."""
    from tally.sampler.service import main

    main(ctx.args, prog="tally sampler")
