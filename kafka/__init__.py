"""Kafka plumbing every service shares: connection settings and security, admin helpers
(topic creation), the partitioner and what a failed produce means."""
