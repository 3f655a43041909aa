"""Kafka connection settings, declared once: the bootstrap address, the events topic, security.

Every service and the client read these rows (``tally.schemas.settings_table``); the
defaults below are the only place the local bootstrap address and the topic names are written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tally.kafka.security import PROTOCOLS, KafkaSecurity
from tally.schemas.settings_table import Setting, SettingsTable, optional_text, text

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
EVENTS_TOPIC = "tally.events"
TRACES_TOPIC = "tally.traces"
AGGREGATOR_GROUP = "tally-aggregators"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of ``topic`` (``tally.events.dlq``)."""
    return f"{topic}.dlq"


BOOTSTRAP = Setting(
    "bootstrap", text, DEFAULT_BOOTSTRAP, "--bootstrap", "TALLY_KAFKA_BOOTSTRAP",
    "Kafka bootstrap servers",
)  # fmt: skip
TOPIC = Setting("topic", text, EVENTS_TOPIC, "--topic", "TALLY_TOPIC", "topic of events")

SECURITY = SettingsTable(
    (
        Setting(
            "kafka_security_protocol", text, "PLAINTEXT", "--kafka-security-protocol",
            "TALLY_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
            choices=PROTOCOLS,
        ),
        Setting(
            "kafka_sasl_mechanism", text, "PLAIN", "--kafka-sasl-mechanism",
            "TALLY_KAFKA_SASL_MECHANISM", "SASL mechanism",
        ),
        Setting(
            "kafka_sasl_username", optional_text, None, "--kafka-sasl-username",
            "TALLY_KAFKA_SASL_USERNAME",
            "SASL user; the password only from TALLY_KAFKA_SASL_PASSWORD",
        ),
        Setting(
            "kafka_sasl_password", optional_text, None, "", "TALLY_KAFKA_SASL_PASSWORD",
            "SASL password", secret=True,
        ),
        Setting(
            "kafka_ssl_cafile", optional_text, None, "--kafka-ssl-cafile",
            "TALLY_KAFKA_SSL_CAFILE", "CA bundle for Kafka TLS",
        ),
    )
)  # fmt: skip


def security_from(values: Mapping[str, Any]) -> KafkaSecurity:
    """The :class:`KafkaSecurity` of resolved ``SECURITY`` values."""
    return KafkaSecurity(
        protocol=values["kafka_security_protocol"],
        sasl_mechanism=values["kafka_sasl_mechanism"],
        sasl_username=values["kafka_sasl_username"],
        sasl_password=values["kafka_sasl_password"],
        ssl_cafile=values["kafka_ssl_cafile"],
    )


def security_from_env(env: Mapping[str, str]) -> KafkaSecurity:
    """The :class:`KafkaSecurity` the ``TALLY_KAFKA_*`` variables describe."""
    return security_from(SECURITY.resolve({}, env))
