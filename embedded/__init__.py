"""Run the real Kafka (KRaft), ClickHouse (chDB) and Redis on this machine, alone or as a stack."""
