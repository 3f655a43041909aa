"""``python -m tally.embedded.clickhouse``: run the embedded ClickHouse server."""

from tally.embedded.clickhouse.cli import main

main()
