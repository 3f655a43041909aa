"""From checked YAML shapes (:mod:`schema`) to :mod:`spec` objects: the rules that need a
parser (keys, paths, expressions, durations, granularities) or several fields at once. Each
problem is an :class:`~tally.schemas.yaml_config.Invalid` naming the field it is about."""

from __future__ import annotations

import re

import msgspec

from tally.monitors import spec
from tally.monitors.schema import ChannelDef, Duration, MonitorDef, Names, ReportDef, Scalar
from tally.read.errors import ReadError
from tally.read.expression import parse as parse_expression
from tally.read.patterns import KeyPattern, PathWildcard, check_path
from tally.read.timerange import parse_duration
from tally.schemas.granularity import Granularity, GranularityError
from tally.schemas.yaml_config import Invalid

TEMPLATE_NAMES = (
    "monitor", "segment", "key", "value", "bucket", "since", "state", "url", "granularity",
)  # fmt: skip
_TEMPLATE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
# Nominal lengths, to turn durations into bucket counts; buckets follow the calendar.
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _seconds(value: Duration, *where: str) -> int:
    if isinstance(value, int):
        return value
    try:
        return parse_duration(value) if value not in ("0", "") else 0
    except ReadError as exc:
        raise Invalid(f"'{where[-1]}': {exc.reason}", where) from None


def _path(value: str, *where: str | int) -> str:
    try:
        PathWildcard.parse(value) if "*" in value else check_path(value)
    except ReadError as exc:
        raise Invalid(exc.reason, where) from None
    return value


def _granularity(text: str) -> tuple[Granularity, int]:
    """The granularity and its nominal length in seconds."""
    try:
        g = Granularity.parse(text)
    except GranularityError as exc:
        raise Invalid(str(exc), ("granularity",)) from None
    if g.unit not in UNIT_SECONDS:
        raise Invalid("monitors use minute, hour, day or week granularities", ("granularity",))
    return g, UNIT_SECONDS[g.unit] * g.n


def _strings(values: dict[str, Scalar] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (values or {}).items()}


def _names(value: Names) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _condition(d: MonitorDef, length: int) -> spec.Condition:
    c = d.condition
    segmented = "*" in d.key or "*" in d.path
    if isinstance(c, spec.Zero):
        if c.active is not None:
            _path(c.active, "condition", "active")
        if c.for_ is not None:
            buckets = max(1, _seconds(c.for_, "condition", "for") // length)
            c = msgspec.structs.replace(c, buckets=buckets, for_=None)
    if isinstance(c, spec.Share) and not segmented:
        raise Invalid("a share condition needs a key pattern or path wildcard", ("condition",))
    return c


def _annotations(d: MonitorDef) -> dict[str, str]:
    annotations = _strings(d.annotations)
    for name, text in annotations.items():
        for used in _TEMPLATE.findall(text):
            if used not in TEMPLATE_NAMES:
                known = ", ".join(TEMPLATE_NAMES)
                reason = f"annotation {name!r} uses unknown {{{{ {used} }}}}; known: {known}"
                raise Invalid(reason, ("annotations",))
    return annotations


def _check_reads(d: MonitorDef) -> None:
    """The key pattern, the path (or wildcard) and the expression parse."""
    try:
        KeyPattern.parse(d.key)
    except ReadError as exc:
        raise Invalid(exc.reason, ("key",)) from None
    if d.path:
        _path(d.path, "path")
    try:
        if d.expression:
            parse_expression(d.expression)
    except ReadError as exc:
        raise Invalid(exc.reason, ("expression",)) from None


def _check_segments(d: MonitorDef, c: spec.Condition) -> None:
    """``count_segments_above`` and ``gauge`` against the key, path and condition."""
    if d.count_segments_above is not None:
        where = ("count_segments_above",)
        if not ("*" in d.key or "*" in d.path):
            reason = "'count_segments_above' needs a key pattern or a path wildcard"
            raise Invalid(reason, where)
        if isinstance(c, spec.Share):
            raise Invalid("it cannot be used with share", where)
    if d.gauge and (not d.path or "*" in d.path or isinstance(c, spec.Zero)):
        reason = "a gauge monitor reads one concrete 'path' (no expression, wildcard or zero)"
        raise Invalid(reason, ("gauge",))


def monitor(d: MonitorDef, source: str) -> spec.Monitor:
    """The monitor ``d`` defines (``source``: its ``file:line``)."""
    _check_reads(d)
    granularity, length = _granularity(d.granularity)
    window_s = length if d.window is None else _seconds(d.window, "window")
    if window_s % length or window_s <= 0:
        raise Invalid(f"'window' must be a multiple of {granularity}", ("window",))
    condition = _condition(d, length)
    annotations = _annotations(d)
    _check_segments(d, condition)
    return spec.Monitor(
        name=d.name, key=d.key, granularity=granularity, condition=condition, path=d.path,
        expression=d.expression, window=window_s // length, aggregate=d.aggregate, gauge=d.gauge,
        for_s=_seconds(d.for_, "for"), keep_firing_for_s=_seconds(d.keep_firing_for,
        "keep_firing_for"), notify_every_s=_seconds(d.notify_every, "notify_every"),
        labels=_strings(d.labels), annotations=annotations, notify=_names(d.notify),
        paused=d.paused, count_above=d.count_segments_above, source=source,
    )  # fmt: skip


def channel(name: str, d: ChannelDef, source: str) -> spec.Channel:
    """The channel ``d`` defines as ``name`` (``source``: its ``file:line``)."""
    return spec.Channel(
        name=name, type=d.type, url=d.url, url_env=d.url_env, to=_names(d.to), sender=d.sender,
        host=d.host, port=d.port, username=d.username, password_env=d.password_env,
        starttls=d.starttls, source=source,
    )  # fmt: skip


def report(d: ReportDef, source: str) -> spec.Report:
    """The digest ``d`` defines (hourly buckets for a daily one, daily for a weekly one)."""
    items = []
    for i, item in enumerate(d.items):
        if item.path:
            _path(item.path, "items", i, "path")
        title = item.title or f"{item.key} {item.path or item.expression}"
        items.append(spec.ReportItem(title, item.key, item.path, item.expression))
    g = Granularity.parse("1h" if d.every == "1d" else "1d")
    return spec.Report(d.name, d.every, g, tuple(items), _names(d.notify), source)
