"""ClickHouse plumbing every service shares: connection settings, the client, the settings
pinned on exactly-once inserts, error classification and the DDL runner."""
