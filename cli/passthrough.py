"""``tally aggregator``, ``tally loadtest`` and ``tally demo``: the existing entry points."""

from __future__ import annotations

import sys

import typer

PASS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def aggregator(ctx: typer.Context) -> None:
    """Run one aggregator: `tally aggregator run|check [flags]` (`tally aggregator run -h`)."""
    args = list(ctx.args)
    if not args or any(a in ("-h", "--help") for a in args):
        from tally.cli.aggregator_help import render

        typer.echo(render(args[0] if args and args[0] in ("run", "check") else "run|check"))
        return
    from tally.aggregator.cli import main

    main(args)


def loadtest(ctx: typer.Context) -> None:
    """Load tests and benchmarks: `tally loadtest run|show ...` (`tally loadtest --help`)."""
    from tally.loadtest.cli import app

    app(args=ctx.args, prog_name="tally loadtest")


def demo(ctx: typer.Context) -> None:
    """The local service with a week of history and live traffic (`tally demo --help`)."""
    from tally.loadtest.demo import main

    sys.exit(main(ctx.args))
