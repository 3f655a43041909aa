"""The former entry point, kept for ``python -m tally.embedded.clickhouse_http ...``: it runs the
embedded ClickHouse server, now the package :mod:`tally.embedded.clickhouse`."""

from tally.embedded.clickhouse.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
