"""``tally aggregator run|check --help``: the aggregator's flags with help, env and default."""

from __future__ import annotations

import argparse

HELP = {
    "bootstrap": "Kafka bootstrap servers (env TALLY_KAFKA_BOOTSTRAP)",
    "topic": "events topic (env TALLY_TOPIC)",
    "group": "consumer group (env TALLY_GROUP)",
    "dead_letter_topic": "dead-letter topic; empty means <topic>.dlq (env TALLY_DLQ_TOPIC)",
    "kafka_security_protocol": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL "
    "(env TALLY_KAFKA_SECURITY_PROTOCOL)",
    "kafka_sasl_mechanism": "SASL mechanism (env TALLY_KAFKA_SASL_MECHANISM; the password only "
    "from TALLY_KAFKA_SASL_PASSWORD)",
    "kafka_sasl_username": "SASL user (env TALLY_KAFKA_SASL_USERNAME)",
    "kafka_ssl_cafile": "CA bundle for Kafka TLS (env TALLY_KAFKA_SSL_CAFILE)",
    "clickhouse_url": "ClickHouse HTTP(S) URL (env TALLY_CLICKHOUSE_URL; the password only from "
    "TALLY_CLICKHOUSE_PASSWORD)",
    "clickhouse_user": "ClickHouse user (env TALLY_CLICKHOUSE_USER)",
    "clickhouse_ca_cert": "CA bundle for ClickHouse HTTPS (env TALLY_CLICKHOUSE_CA_CERT)",
    "database": "database of the rollups (env TALLY_DATABASE)",
    "granularities": "stored granularities (env TALLY_GRANULARITIES)",
    "time_zone": "zone of day/week/month buckets (env TALLY_TIME_ZONE)",
    "week_start": "first day of a week (env TALLY_WEEK_START)",
    "table_engine": "AggregatingMergeTree or ReplicatedAggregatingMergeTree(...) "
    "(env TALLY_TABLE_ENGINE)",
    "dedup_window": "inserts ClickHouse remembers for dedup (env TALLY_DEDUP_WINDOW)",
    "flush_interval": "seconds between flushes (env TALLY_FLUSH_INTERVAL_S)",
    "flush_rows": "flush early at this many folded entries (env TALLY_FLUSH_ROWS)",
    "session_timeout_ms": "Kafka group session timeout (env TALLY_SESSION_TIMEOUT_MS)",
    "heartbeat_ms": "Kafka heartbeat interval (env TALLY_HEARTBEAT_MS)",
    "metrics_port": "Prometheus /metrics port, 0 disables (env TALLY_METRICS_PORT)",
    "max_event_age_s": "older events are dead-lettered (env TALLY_MAX_EVENT_AGE_S)",
}


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
    for action in p._actions:  # argparse has no public API to edit help after the fact
        if action.help is None:
            action.help = HELP.get(action.dest, " ")
    return p.format_help()
