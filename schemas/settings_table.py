"""Settings declared once: one row per setting (field, type, default, flag, env var, help).

From a :class:`SettingsTable` follow a service's command-line options, its ``TALLY_*``
environment reading (flag, else environment, else default), its ``--help`` text and the
command line a parent process starts it with. Secret rows are read from the environment only:
they have no flag, never appear on a command line and never print.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class BadSetting(ValueError):
    """A flag or environment value that does not parse: names the flag and the variable."""

    def __init__(self, setting: Setting, message: str) -> None:
        where = setting.flag if not setting.secret else setting.env
        super().__init__(f"{where}: {message}")
        self.setting = setting
        self.message = message


def text(value: str) -> str:
    """The value as written."""
    return value


def optional_text(value: str) -> str | None:
    """The value, or None when empty."""
    return value or None


def positive_int(value: str) -> int:
    """An integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an integer") from None
    if number < 1:
        raise ValueError(f"must be >= 1, not {number}")
    return number


def positive_float(value: str) -> float:
    """A number > 0."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not number > 0:
        raise ValueError(f"must be > 0, not {value}")
    return number


def optional_int(value: str) -> int | None:
    """An integer, or None when empty."""
    if not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an integer") from None


def switch(value: str) -> bool:
    """``1``/``true``/``yes``/``on`` (any case) or ``0``/``false``/``no``/``off``/empty."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true or false")


# What ``--help`` calls a value of each parser (anything else: TEXT).
METAVARS: dict[Callable[[str], Any], str] = {
    int: "INTEGER", positive_int: "INTEGER", optional_int: "INTEGER",
    float: "FLOAT", positive_float: "FLOAT",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: where its value comes from and what ``--help`` says about it."""

    field: str  # the key of the resolved value (and the command-line parameter's name)
    type: Callable[[str], Any]  # text (flag or env) -> value; ValueError: bad input
    default: Any  # used when neither the flag nor the environment gives a value
    flag: str  # "--bootstrap"; a switch when ``type`` is ``switch``
    env: str | None  # "TALLY_KAFKA_BOOTSTRAP"; None: the flag only
    help: str
    choices: tuple[str, ...] = ()
    secret: bool = False  # environment only: no flag, never on a command line or printed
    repeat: bool = False  # a flag given many times; the variable (and value) comma-separated
    positional: bool = False  # arguments after the options (``flag`` names them in --help)
    hidden: bool = False  # left out of --help (hooks for tests)

    @property
    def is_switch(self) -> bool:
        """A flag without a value (``--no-ddl``)."""
        return self.type is switch

    def described(self) -> str:
        """The help text with its environment variable and default, as ``--help`` shows it."""
        parts = [f"env var: {self.env}"] if self.env else []
        if not self.is_switch and self.default not in (None, ""):
            parts.append(f"default: {self.default}")
        return f"{self.help} [{'; '.join(parts)}]" if parts else self.help

    def parse_all(self, raw: list[str]) -> tuple[Any, ...]:
        """Each of a positional row's arguments as this setting's value."""
        return tuple(self.parse(item) for item in raw)

    def parse(self, raw: str) -> Any:
        """``raw`` (from a flag or the environment) as this setting's value."""
        try:
            value = self.type(raw)
        except ValueError as exc:
            raise BadSetting(self, str(exc)) from None
        if self.choices and value is not None and value not in self.choices:
            raise BadSetting(self, f"{raw!r} is not one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True)
class SettingsTable:
    """A service's settings, in ``--help`` order; tables join with ``+``."""

    rows: tuple[Setting, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for row in self.rows:
            if row.field in seen:
                raise ValueError(f"setting {row.field!r} is declared twice")
            seen.add(row.field)

    def __add__(self, other: SettingsTable) -> SettingsTable:
        return SettingsTable(self.rows + other.rows)

    def __getitem__(self, field: str) -> Setting:
        for row in self.rows:
            if row.field == field:
                return row
        raise KeyError(field)

    def with_changes(self, field: str, **changes: Any) -> SettingsTable:
        """This table with one row changed (another service's env var or default)."""
        self[field]  # KeyError for a row the table does not have
        return SettingsTable(
            tuple(dataclasses.replace(r, **changes) if r.field == field else r for r in self.rows)
        )

    def without(self, *fields: str) -> SettingsTable:
        """This table without the named rows."""
        return SettingsTable(tuple(r for r in self.rows if r.field not in fields))

    @property
    def options(self) -> tuple[Setting, ...]:
        """The rows with a flag (every row but the secrets)."""
        return tuple(r for r in self.rows if not r.secret)

    def resolve(self, given: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        """Every field's value: the flag's (``given``; None or absent: not given), else the
        environment's, else the default. Raises :class:`BadSetting`."""
        values: dict[str, Any] = {}
        for row in self.rows:
            raw = None if row.secret else given.get(row.field)
            if row.positional and raw:
                values[row.field] = row.parse_all(list(raw))
                continue
            if row.repeat and raw is not None and not isinstance(raw, str):
                raw = ",".join(raw) or None
            if raw is None or (row.is_switch and raw is False):
                raw = env.get(row.env) if row.env else None
            if raw is None:
                values[row.field] = row.default
            elif isinstance(raw, str):
                values[row.field] = row.parse(raw)
            else:
                values[row.field] = raw
        return values

    def argv(self, values: Mapping[str, Any]) -> list[str]:
        """The flags that give ``values`` (by field) to a child process. Secrets are refused:
        they reach a child by its environment only."""
        out: list[str] = []
        for field, value in values.items():
            row = self[field]
            if row.secret:
                raise ValueError(f"{field} is a secret: pass it in the child's environment")
            if row.positional:
                continue  # after every option, below
            if row.is_switch:
                out.extend([row.flag] if value else [])
            elif row.repeat and not isinstance(value, str):
                out.extend(part for item in value for part in (row.flag, str(item)))
            elif value is not None:
                out.extend([row.flag, str(value)])
        for field, value in values.items():
            if self[field].positional:
                out.extend(str(item) for item in value)
        return out

    def environment_names(self) -> Iterable[str]:
        """Every ``TALLY_*`` variable the table reads."""
        return (r.env for r in self.rows if r.env)
