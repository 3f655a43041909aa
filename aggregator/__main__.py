"""``python -m tally.aggregator``."""

from tally.aggregator.cli import main

main()
