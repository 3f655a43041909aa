"""Settings declared once: flag, else environment, else default; secrets never on a command line."""

from __future__ import annotations

import pytest

from tally.aggregator import settings as aggregator
from tally.kafka.settings import DEFAULT_BOOTSTRAP, EVENTS_TOPIC
from tally.schemas.settings_table import BadSetting, Setting, SettingsTable, switch, text
from tally.traces import settings as writer

TABLE = SettingsTable(
    (
        Setting("name", text, "a", "--name", "TALLY_T_NAME", "a name"),
        Setting("count", int, 3, "--count", "TALLY_T_COUNT", "a count"),
        Setting("password", text, "", "", "TALLY_T_PASSWORD", "a secret", secret=True),
        Setting("off", switch, False, "--off", None, "a switch"),
    )
)


def test_a_flag_wins_over_the_environment_which_wins_over_the_default():
    assert TABLE.resolve({}, {})["count"] == 3
    assert TABLE.resolve({}, {"TALLY_T_COUNT": "5"})["count"] == 5
    assert TABLE.resolve({"count": "7"}, {"TALLY_T_COUNT": "5"})["count"] == 7


def test_a_bad_value_names_its_flag_and_a_secret_comes_only_from_the_environment():
    with pytest.raises(BadSetting, match="--count"):
        TABLE.resolve({}, {"TALLY_T_COUNT": "many"})
    assert TABLE.resolve({"password": "flag"}, {"TALLY_T_PASSWORD": "env"})["password"] == "env"
    assert [r.field for r in TABLE.options] == ["name", "count", "off"]


def test_a_child_command_line_never_carries_a_secret():
    assert TABLE.argv({"name": "b", "count": 4, "off": True}) == [
        "--name", "b", "--count", "4", "--off",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="environment"):
        TABLE.argv({"password": "pw"})
    with pytest.raises(KeyError):
        TABLE.argv({"unknown": 1})


def test_a_field_is_declared_once_per_table():
    with pytest.raises(ValueError, match="twice"):
        TABLE + SettingsTable((TABLE["name"],))


def test_the_aggregator_command_line_parses_back_to_the_same_settings():
    line = aggregator.command_line(
        bootstrap="127.0.0.1:19092", clickhouse_url="http://127.0.0.1:18123",
        clickhouse_user="agg", database="other", flush_interval=0.5, initial_offset="earliest",
    )  # fmt: skip
    assert line[1:4] == ["-m", "tally.aggregator", "run"]
    s = aggregator.from_args(line[4:], env={"TALLY_CLICKHOUSE_PASSWORD": "pw"})
    assert (s.bootstrap_servers, s.clickhouse.url, s.clickhouse.user) == (
        "127.0.0.1:19092", "http://127.0.0.1:18123", "agg",
    )  # fmt: skip
    assert (s.schema.database, s.flush_interval_s, s.initial_offset) == ("other", 0.5, "earliest")
    assert s.clickhouse.password == "pw" and "pw" not in " ".join(line)


def test_the_trace_writer_shares_rows_under_its_own_variables():
    env = {"TALLY_TOPIC": "events", "TALLY_GROUP": "aggs", "TALLY_KAFKA_BOOTSTRAP": "k:1"}
    settings, _schema = writer.from_values(writer.SETTINGS.resolve({}, env))
    assert settings.topic == "tally.traces" and settings.group == "tally-trace-writers"
    assert settings.bootstrap_servers == "k:1"
    assert aggregator.from_args([], env={}).bootstrap_servers == DEFAULT_BOOTSTRAP
    assert aggregator.from_args([], env={}).topic == EVENTS_TOPIC


def test_a_repeated_flag_joins_like_its_comma_separated_variable():
    row = Setting("queues", text, "rq:default", "--queue", "TALLY_T_QUEUES", "queues", repeat=True)
    table = SettingsTable((row,))
    assert table.resolve({"queues": ["a:1", "b:2"]}, {})["queues"] == "a:1,b:2"
    assert table.resolve({"queues": []}, {"TALLY_T_QUEUES": "c:3"})["queues"] == "c:3"
    assert table.argv({"queues": ["a:1", "b:2"]}) == ["--queue", "a:1", "--queue", "b:2"]


def test_a_service_child_gets_its_own_clickhouse_password_and_no_other():
    from tally.up.service import child_environment

    launcher = {
        "PATH": "/usr/bin",
        "TALLY_CLICKHOUSE_PASSWORD": "admin",
        "TALLY_SQL_CLICKHOUSE_PASSWORD": "sql",
        "TALLY_API_TOKEN": "token",
        "TALLY_KAFKA_SASL_PASSWORD": "sasl",
    }
    env = child_environment(launcher, "aggregator-pw")
    assert env == {
        "PATH": "/usr/bin",
        "TALLY_CLICKHOUSE_PASSWORD": "aggregator-pw",
        "TALLY_KAFKA_SASL_PASSWORD": "sasl",
    }
