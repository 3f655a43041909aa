"""What a monitor is: typed, validated definitions built from YAML by :mod:`loader`.

Conditions are msgspec Structs tagged by ``type``: the YAML of a condition converts straight
into one, its field types and ``__post_init__`` checking it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

from tally.schemas.granularity import Granularity

Aggregate = Literal["sum", "mean", "min", "max", "last"]
Direction = Literal["up", "down", "both"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
DIRECTIONS: tuple[str, ...] = get_args(Direction)


Count = Annotated[
    int, Meta(ge=1, le=10_000, extra_json_schema={"description": "between 1 and 10000 buckets"})
]


class _Condition(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    """A condition kind, tagged by ``type`` in YAML (``{type: threshold, above: 5}``)."""

    @property
    def kind(self) -> str:
        return str(self.__struct_config__.tag)


class Threshold(_Condition, tag="threshold"):
    """Breach when the value is above ``above`` or below ``below`` (either or both)."""

    above: float | None = None
    below: float | None = None

    def __post_init__(self) -> None:
        if self.above is None and self.below is None:
            raise ValueError("a threshold needs 'above' or 'below'")


class Range(_Condition, tag="range"):
    """Breach when the value leaves ``[min, max]``."""

    min: float
    max: float

    def __post_init__(self) -> None:
        if self.min > self.max:
            raise ValueError("a range needs min <= max")


class Expected(_Condition, tag="expected"):
    """Counts against an expectation: a missing bucket counts as 0 (a stopped cron fires)."""

    fewer_than: float | None = None
    more_than: float | None = None

    def __post_init__(self) -> None:
        if self.fewer_than is None and self.more_than is None:
            raise ValueError("an expected condition needs 'fewer_than' or 'more_than'")


class Zero(_Condition, tag="zero"):
    """Breach once the value has been 0 for ``buckets`` consecutive active buckets.

    With ``active`` (a path), only buckets where that path is > 0 count (a scheduler that ran
    but touched nothing); other buckets neither count nor break the streak. A file may give
    ``for`` (a duration) instead of ``buckets``: the loader turns it into buckets of the
    monitor's granularity and clears it.
    """

    buckets: Count | None = None
    active: str | None = None
    for_: str | int | None = msgspec.field(default=None, name="for")

    def __post_init__(self) -> None:
        if self.for_ is None and self.buckets is None:
            raise ValueError("a zero condition needs 'for' (a duration) or 'buckets'")


class Drift(_Condition, tag="drift"):
    """CUSUM over the last ``history`` buckets: S = max(0, S + (x - mean)/sd - k) > h, with
    mean and sd from the oldest two thirds of those buckets (the baseline)."""

    history: Count = 30
    k: float = 0.5
    h: float = 4.0
    direction: Direction = "up"
    min_sd: float = 1e-9


class Anomaly(_Condition, tag="anomaly"):
    """Hampel: |x - median| > k * max(1.4826 * MAD, floor) over the previous ``history``."""

    history: Count = 30
    k: float = 3.0
    floor: float = 1.0
    direction: Direction = "both"


class Share(_Condition, tag="share"):
    """A segment's share of the total over all segments: above ``above``, or more than
    ``jump`` over its mean share in the previous ``history`` buckets."""

    above: float | None = None
    jump: float | None = None
    history: Count = 30
    min_total: float = 0.0

    def __post_init__(self) -> None:
        if self.above is None and self.jump is None:
            raise ValueError("a share condition needs 'above' or 'jump'")


class NoData(_Condition, tag="no_data"):
    """Breach when the key had no write at all in the bucket."""


Condition = Threshold | Range | Expected | Zero | Drift | Anomaly | Share | NoData


@dataclass(frozen=True)
class Channel:
    """Where notifications go. Secrets are never in the file: ``*_env`` names a variable."""

    name: str
    type: str  # webhook | slack | email | log
    url: str = ""
    url_env: str = ""
    to: tuple[str, ...] = ()
    sender: str = "tally@localhost"
    host: str = "127.0.0.1"
    port: int = 25
    username: str = ""
    password_env: str = ""
    starttls: bool = False
    source: str = ""  # file:line, for messages


@dataclass(frozen=True)
class Monitor:
    """One rule. ``key`` may hold ``*`` (one segment per matching key); ``path`` may hold one
    ``*`` segment (one segment per match); otherwise ``expression`` over concrete paths."""

    name: str
    key: str
    granularity: Granularity
    condition: Condition
    path: str = ""
    expression: str = ""
    window: int = 1  # buckets aggregated into one value
    aggregate: str = "sum"
    gauge: bool = False  # ``path`` is a gauge: each bucket's last reading, not a sum
    for_s: int = 0
    keep_firing_for_s: int = 0
    notify_every_s: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    notify: tuple[str, ...] = ("log",)
    paused: bool = False
    count_above: float | None = None  # judge the number of segments whose value is above this
    source: str = ""  # file:line, for messages

    @property
    def history(self) -> int:
        """Buckets before the judged one that the condition needs."""
        c = self.condition
        extra = c.history if isinstance(c, Drift | Anomaly | Share) else 0
        if isinstance(c, Zero):
            extra = max(extra, c.buckets * 4)
        return extra + self.window - 1

    @property
    def counts_segments(self) -> bool:
        """True when segments are collapsed into one count (``count_segments_above``)."""
        return self.count_above is not None

    @property
    def segmented_by_key(self) -> bool:
        return "*" in self.key

    @property
    def segmented_by_path(self) -> bool:
        return "*" in self.path


@dataclass(frozen=True)
class MonitorFile:
    """Monitors, channels and report definitions loaded from one or more files."""

    monitors: tuple[Monitor, ...] = ()
    channels: dict[str, Channel] = field(default_factory=dict)
    reports: tuple[Report, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportItem:
    """One line and chart of a digest: a key and a path or expression."""

    title: str
    key: str
    path: str = ""
    expression: str = ""


@dataclass(frozen=True)
class Report:
    """A digest sent every ``every`` (1d or 1w) to ``notify`` channels."""

    name: str
    every: str
    granularity: Granularity
    items: tuple[ReportItem, ...]
    notify: tuple[str, ...] = ("log",)
    source: str = ""
