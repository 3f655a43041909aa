"""The contract between the stages: wire format, limits, time buckets, sketches, ClickHouse DDL,
and how a setting is declared once (``settings_table``) and becomes a command line
(``settings_cli``: every service's ``run|check`` with Typer)."""
