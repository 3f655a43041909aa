"""No SQL from input, no secrets in reprs."""

from __future__ import annotations

import pytest

from tally.aggregator.settings import from_args
from tally.kafka.security import KafkaSecurity
from tally.read.rollup_queries import QUERIES
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
    source += inspect.getsource(sink.RollupSink._insert)  # where every insert is built
    assert "column_oriented=True" in source and "format(" not in source and 'f"' not in source


def test_embedded_clickhouse_child_environment_is_minimal():
    from tally.embedded.clickhouse.process import child_environment

    launcher = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TALLY_KAFKA_SASL_PASSWORD": "sasl-456",
        "TALLY_CLICKHOUSE_PASSWORD": "pw-123",
        "AWS_SECRET_ACCESS_KEY": "x",
        "LD_PRELOAD": "/tmp/evil.so",
    }
    assert child_environment(launcher) == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    more = child_environment({**launcher, "PYTHONPATH": "/src", "TZ": "UTC"})
    assert more["PYTHONPATH"] == "/src" and more["TZ"] == "UTC"


def test_embedded_clickhouse_password_file(tmp_path):
    import stat

    from tally.embedded.clickhouse.secret import ensure_password, password_path

    first = ensure_password(tmp_path)
    assert ensure_password(tmp_path) == first and len(first) >= 32
    assert stat.S_IMODE(password_path(tmp_path).stat().st_mode) == 0o600
    assert password_path(tmp_path) == tmp_path / "secrets" / "clickhouse-password"
    assert ensure_password(tmp_path, "chosen") == "chosen" == ensure_password(tmp_path)
    with pytest.raises(ValueError):
        ensure_password(tmp_path, "two\nlines")


@pytest.mark.parametrize(
    "canonical",
    [
        "SELECT file('/etc/passwd')",
        "SELECT FILE(x)\nFROM t",
        "SELECT *\nFROM python(log)",
        "SELECT 1\nINTO OUTFILE 'x'",
        "INSERT INTO t FROM INFILE 'x' FORMAT TSV",
        "CREATE TABLE r\n(\n    `k` UInt8\n)\nENGINE = EmbeddedRocksDB(0, '/x')\nPRIMARY KEY k",
        "CREATE TABLE f\n(\n    `s` String\n)\nENGINE = File(LineAsString)",
        "CREATE TABLE d\n(\n    `k` UInt8\n)\nENGINE = MergeTree\nSETTINGS disk = disk(type = 1)",
    ],
)
def test_embedded_clickhouse_policy_refuses(canonical):
    from tally.embedded.clickhouse.sandbox import PolicyViolation, QueryPolicy

    with pytest.raises(PolicyViolation):
        QueryPolicy().check("ignored", lambda _: canonical)


@pytest.mark.parametrize(
    "canonical",
    [
        "SELECT 'file(' AS file, file\nFROM t",
        "SELECT `file`\nFROM files",
        "CREATE TABLE t\n(\n    `a` UInt8\n)\nENGINE = AggregatingMergeTree\nORDER BY a",
        "CREATE TABLE n\n(\n    `a` UInt8\n)\nENGINE = `Null`",
        "SELECT 1\nFORMAT JSON",
    ],
)
def test_embedded_clickhouse_policy_allows(canonical):
    from tally.embedded.clickhouse.sandbox import QueryPolicy

    QueryPolicy().check("ignored", lambda _: canonical)
