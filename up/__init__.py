"""The local service ``tally up`` runs (and ``tally demo`` drives): Kafka, ClickHouse, the
aggregators, the trace writer and the HTTP API with the dashboard, under one data directory."""
