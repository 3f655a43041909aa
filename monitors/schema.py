"""The YAML shape of monitors, channels and reports: msgspec Structs whose types, ``Meta``
constraints and ``__post_init__`` checks are the file format's rules. :mod:`build` then checks
what needs parsing or several fields (paths, durations, granularity) and makes :mod:`spec`
objects."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, field

from tally.monitors.spec import Aggregate, Condition

Duration = str | int  # "90s", "5m", "1h", "1d" (or seconds)
Scalar = str | int | float | bool
Names = list[str] | str  # channel names: one, or a list
Name = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9_.:-]{1,200}$",
        extra_json_schema={"description": "1-200 letters, digits or _ . : -"},
    ),
]
Port = Annotated[int, Meta(ge=1, le=65535, extra_json_schema={"description": "a TCP port"})]


class _Def(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class MonitorDef(_Def):
    """One entry of ``monitors:``."""

    name: Name
    key: str
    condition: Condition
    path: str = ""
    expression: str = ""
    granularity: str = "1m"
    window: Duration | None = None  # default: one bucket
    aggregate: Aggregate = "sum"
    gauge: bool = False
    for_: Duration = field(default=0, name="for")
    keep_firing_for: Duration = 0
    notify_every: Duration = 0
    labels: dict[str, Scalar] | None = None
    annotations: dict[str, Scalar] | None = None
    notify: Names = "log"
    paused: bool = False
    count_segments_above: float | None = None

    def __post_init__(self) -> None:
        if bool(self.path) == bool(self.expression):
            raise ValueError("a monitor needs exactly one of 'path' or 'expression'")


class ChannelDef(_Def):
    """One entry of ``channels:`` (secrets never here: ``*_env`` names a variable)."""

    type: Literal["webhook", "slack", "email", "log"]
    url: str = ""
    url_env: str = ""
    to: Names = field(default_factory=list)
    sender: str = field(default="tally@localhost", name="from")
    host: str = "127.0.0.1"
    port: Port = 25
    username: str = ""
    password_env: str = ""
    starttls: bool = False

    def __post_init__(self) -> None:
        if self.type in ("webhook", "slack") and not (self.url or self.url_env):
            raise ValueError(f"a {self.type} channel needs 'url' or 'url_env'")
        if self.type == "email" and not self.to:
            raise ValueError("an email channel needs 'to'")


class ReportItemDef(_Def):
    """One line and chart of a digest."""

    key: str
    title: str = ""
    path: str = ""
    expression: str = ""

    def __post_init__(self) -> None:
        if bool(self.path) == bool(self.expression):
            raise ValueError("a report item needs exactly one of 'path' or 'expression'")


class ReportDef(_Def):
    """One entry of ``reports:``."""

    name: str
    items: list[ReportItemDef]
    every: Literal["1d", "1w"] = "1d"
    granularity: str = ""  # accepted for compatibility; the digest's follows ``every``
    notify: Names = "log"
