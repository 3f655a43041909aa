"""No SQL from input, no secrets in reprs."""

from __future__ import annotations

import pytest

from tally.aggregator.settings import from_args
from tally.kafka_security import KafkaSecurity
from tally.rollups.queries import QUERIES
from tally.schemas.ddl import RollupSchema, identifier


@pytest.mark.parametrize("name", ["tally; DROP TABLE x", "a-b", "1abc", "", "x" * 70, "t`x"])
def test_identifiers_are_validated(name):
    with pytest.raises(ValueError):
        identifier(name)


def test_schema_rejects_unsafe_settings():
    with pytest.raises(ValueError):
        RollupSchema(database="x;y")
    with pytest.raises(ValueError):
        RollupSchema(engine="Memory; DROP DATABASE tally")
    with pytest.raises(ValueError):
        RollupSchema(time_zone="Mars/Olympus")
    with pytest.raises(ValueError):
        RollupSchema(stored=("1m", "7m"))
    with pytest.raises(ValueError):
        QUERIES["timeline"].sql("bad name", "1h")


def test_secrets_come_from_the_environment_and_do_not_print():
    env = {"TALLY_CLICKHOUSE_PASSWORD": "pw-123", "TALLY_KAFKA_SASL_PASSWORD": "sasl-456"}
    settings = from_args(
        ["--kafka-security-protocol", "SASL_PLAINTEXT", "--kafka-sasl-username", "u"], env=env
    )
    assert settings.clickhouse.password == "pw-123"
    assert settings.security.sasl_password == "sasl-456"
    text = repr(settings)
    assert "pw-123" not in text and "sasl-456" not in text
    kwargs = settings.security.aiokafka_kwargs()
    assert kwargs["sasl_plain_password"] == "sasl-456"
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"


def test_tls_settings_build_an_ssl_context():
    kwargs = KafkaSecurity(protocol="SSL").aiokafka_kwargs()
    assert kwargs["ssl_context"] is not None
    with pytest.raises(ValueError):
        KafkaSecurity(protocol="TLS")


def test_inserts_are_parameterised_not_built_from_event_content():
    import inspect

    from tally.aggregator import sink

    source = inspect.getsource(sink.RollupSink.insert_piece)
    assert "column_oriented=True" in source and "format(" not in source and 'f"' not in source
