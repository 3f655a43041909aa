"""What a monitor is: typed, validated definitions built from YAML by :mod:`loader`."""

from __future__ import annotations

from dataclasses import dataclass, field

from tally.schemas.granularity import Granularity

AGGREGATES = ("sum", "mean", "min", "max", "last")
DIRECTIONS = ("up", "down", "both")


@dataclass(frozen=True)
class Threshold:
    """Breach when the value is above ``above`` or below ``below`` (either or both)."""

    above: float | None = None
    below: float | None = None
    kind = "threshold"


@dataclass(frozen=True)
class Range:
    """Breach when the value leaves ``[min, max]``."""

    min: float
    max: float
    kind = "range"


@dataclass(frozen=True)
class Expected:
    """Counts against an expectation: a missing bucket counts as 0 (a stopped cron fires)."""

    fewer_than: float | None = None
    more_than: float | None = None
    kind = "expected"


@dataclass(frozen=True)
class Zero:
    """Breach once the value has been 0 for ``buckets`` consecutive active buckets.

    With ``active`` (a path), only buckets where that path is > 0 count (a scheduler that ran
    but touched nothing); other buckets neither count nor break the streak.
    """

    buckets: int
    active: str | None = None
    kind = "zero"


@dataclass(frozen=True)
class Drift:
    """CUSUM over the last ``history`` buckets: S = max(0, S + (x - mean)/sd - k) > h, with
    mean and sd from the oldest two thirds of those buckets (the baseline)."""

    history: int = 30
    k: float = 0.5
    h: float = 4.0
    direction: str = "up"
    min_sd: float = 1e-9
    kind = "drift"


@dataclass(frozen=True)
class Anomaly:
    """Hampel: |x - median| > k * max(1.4826 * MAD, floor) over the previous ``history``."""

    history: int = 30
    k: float = 3.0
    floor: float = 1.0
    direction: str = "both"
    kind = "anomaly"


@dataclass(frozen=True)
class Share:
    """A segment's share of the total over all segments: above ``above``, or more than
    ``jump`` over its mean share in the previous ``history`` buckets."""

    above: float | None = None
    jump: float | None = None
    history: int = 30
    min_total: float = 0.0
    kind = "share"


@dataclass(frozen=True)
class NoData:
    """Breach when the key had no write at all in the bucket."""

    kind = "no_data"


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
