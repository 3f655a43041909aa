"""Load monitors, channels and reports from YAML files.

Every problem is reported as ``file:line: reason`` and costs only the monitor (or channel,
report) it is in: the rest of the file, and every other file, still loads.

    channels:
      ops: {type: webhook, url: "http://127.0.0.1:9000/alerts"}
      chat: {type: slack, url_env: TALLY_SLACK_WEBHOOK}     # secret from the environment
      mail: {type: email, to: [ops@example.com], host: 127.0.0.1, port: 25}
    monitors:
      - name: cron-stopped
        key: event::cron
        path: jobs.billing__cron__schedule_invoices_job.count
        granularity: 1m
        condition: {type: expected, fewer_than: 1}
        for: 2m
        labels: {severity: page}
        annotations: {summary: "{{ monitor }}: {{ value }} runs in {{ bucket }}"}
        notify: [ops, chat]
    ready:                      # ready-made monitors, one line each (see ready.py)
      - cron_below_expected: {job: billing__cron__schedule_invoices_job, expected: 1}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tally.monitors import spec
from tally.monitors.channels import problems as channel_problems
from tally.monitors.files import files_of, load_file
from tally.read.errors import ReadError
from tally.read.expression import parse as parse_expression
from tally.read.patterns import KeyPattern, PathWildcard, check_path
from tally.read.timerange import parse_duration
from tally.schemas.granularity import Granularity, GranularityError

TEMPLATE_NAMES = (
    "monitor", "segment", "key", "value", "bucket", "since", "state", "url", "granularity",
)  # fmt: skip
_TEMPLATE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
CONDITIONS: dict[str, type] = {
    "threshold": spec.Threshold, "range": spec.Range, "expected": spec.Expected,
    "zero": spec.Zero, "drift": spec.Drift, "anomaly": spec.Anomaly, "share": spec.Share,
    "no_data": spec.NoData,
}  # fmt: skip
# Nominal lengths, to turn durations into bucket counts; buckets follow the calendar.
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
CHANNEL_TYPES = ("webhook", "slack", "email", "log")


class Invalid(ValueError):
    """A definition problem; ``line`` is 1-based."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


class Node(dict):
    """A YAML mapping that remembers the line of itself and of each key."""

    line: int = 0
    lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Node:
    result = Node()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[str(key)] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _line(node: Any, key: str | None = None) -> int:
    if isinstance(node, Node):
        return node.lines.get(key, node.line) if key else node.line
    return 0


def _need(node: Node, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    if key not in node:
        if default is None:
            raise Invalid(node.line, f"'{key}' is required")
        return default
    value = node[key]
    if isinstance(kind, tuple) and float in kind and isinstance(value, int):
        value = float(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise Invalid(_line(node, key), f"'{key}' must be {_kind_name(kind)}, not {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {"str": "text", "float": "a number", "int": "an integer", "bool": "true/false",
             "list": "a list", "Node": "a mapping"}  # fmt: skip
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)


def _duration(node: Node, key: str, default: str = "0s") -> int:
    text = node.get(key, default)
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    try:
        return parse_duration(str(text)) if str(text) not in ("0", "") else 0
    except ReadError as exc:
        raise Invalid(_line(node, key), f"'{key}': {exc.reason}") from None


def _unknown(node: Node, allowed: Iterable[str], what: str) -> None:
    for key in node:
        if key not in allowed:
            raise Invalid(_line(node, key), f"unknown field '{key}' in {what}")


def condition(node: Any) -> spec.Condition:
    """A condition from its mapping (``type`` plus that type's fields)."""
    if not isinstance(node, Node):
        raise Invalid(0, "'condition' must be a mapping with a 'type'")
    kind = _need(node, "type", str)
    cls = CONDITIONS.get(kind)
    if cls is None:
        raise Invalid(
            _line(node, "type"), f"unknown condition type {kind!r}; one of {sorted(CONDITIONS)}"
        )
    fields = {f for f in cls.__dataclass_fields__}
    if kind == "zero":
        fields = {"for", "buckets", "active"}
    _unknown(node, fields | {"type"}, f"a {kind} condition")
    args: dict[str, Any] = {}
    for name in fields:
        if name not in node:
            continue
        value = node[name]
        if name in ("direction",):
            if value not in spec.DIRECTIONS:
                raise Invalid(_line(node, name), f"'direction' must be one of {spec.DIRECTIONS}")
        elif name == "active":
            args[name] = _checked_path(node, name)
            continue
        elif name == "for":
            continue
        elif name in ("history", "buckets"):
            value = _need(node, name, int)
            if value < 1 or value > 10_000:
                raise Invalid(_line(node, name), f"'{name}' must be between 1 and 10000")
        else:
            value = _need(node, name, float)
        args[name] = value
    if kind == "zero":
        if "for" not in node and "buckets" not in node:
            raise Invalid(node.line, "a zero condition needs 'for' (a duration) or 'buckets'")
        if "for" in node:
            args["buckets"] = -_duration(node, "for")  # resolved against the granularity
    try:
        result = cls(**args)
    except TypeError as exc:
        missing = str(exc).split("argument")[-1].strip(": ")
        raise Invalid(node.line, f"a {kind} condition needs {missing}") from None
    _check_condition(result, node)
    return result


def _check_condition(c: spec.Condition, node: Node) -> None:
    if isinstance(c, spec.Threshold) and c.above is None and c.below is None:
        raise Invalid(node.line, "a threshold needs 'above' or 'below'")
    if isinstance(c, spec.Expected) and c.fewer_than is None and c.more_than is None:
        raise Invalid(node.line, "an expected condition needs 'fewer_than' or 'more_than'")
    if isinstance(c, spec.Range) and c.min > c.max:
        raise Invalid(node.line, "a range needs min <= max")
    if isinstance(c, spec.Share) and c.above is None and c.jump is None:
        raise Invalid(node.line, "a share condition needs 'above' or 'jump'")


def _checked_path(node: Node, key: str) -> str:
    value = _need(node, key, str)
    try:
        if "*" in value:
            PathWildcard.parse(value)
        else:
            check_path(value)
    except ReadError as exc:
        raise Invalid(_line(node, key), exc.reason) from None
    return value


def _strings(node: Node, key: str) -> dict[str, str]:
    value = node.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise Invalid(_line(node, key), f"'{key}' must be a mapping of names to text")
    return {k: str(v) for k, v in value.items()}


def _templates(node: Node, annotations: dict[str, str]) -> None:
    for name, text in annotations.items():
        for used in _TEMPLATE.findall(text):
            if used not in TEMPLATE_NAMES:
                known = ", ".join(TEMPLATE_NAMES)
                reason = f"annotation {name!r} uses unknown {{{{ {used} }}}}; known: {known}"
                raise Invalid(_line(node, "annotations"), reason)


def _names(node: Node, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = node.get(key, list(default))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(_line(node, key), f"'{key}' must be a list of channel names")
    return tuple(value)


MONITOR_FIELDS = (
    "name", "key", "path", "expression", "granularity", "window", "aggregate", "gauge",
    "condition",
    "for", "keep_firing_for", "notify_every", "labels", "annotations", "notify", "paused",
    "count_segments_above",
)  # fmt: skip


def monitor(node: Any, source: str) -> spec.Monitor:
    """One monitor from its mapping."""
    if not isinstance(node, Node):
        raise Invalid(0, "each monitor must be a mapping")
    _unknown(node, MONITOR_FIELDS, "a monitor")
    name = _need(node, "name", str)
    if not _NAME.match(name):
        raise Invalid(_line(node, "name"), "a name is 1-200 letters, digits or _ . : -")
    key = _need(node, "key", str)
    try:
        KeyPattern.parse(key)
    except ReadError as exc:
        raise Invalid(_line(node, "key"), exc.reason) from None
    path = _checked_path(node, "path") if "path" in node else ""
    expression = _need(node, "expression", str) if "expression" in node else ""
    if bool(path) == bool(expression):
        raise Invalid(node.line, "a monitor needs exactly one of 'path' or 'expression'")
    if expression:
        try:
            parse_expression(expression)
        except ReadError as exc:
            raise Invalid(_line(node, "expression"), exc.reason) from None
    try:
        granularity = Granularity.parse(str(node.get("granularity", "1m")))
    except GranularityError as exc:
        raise Invalid(_line(node, "granularity"), str(exc)) from None
    if granularity.unit not in UNIT_SECONDS:
        reason = "monitors use minute, hour, day or week granularities"
        raise Invalid(_line(node, "granularity"), reason)
    length = UNIT_SECONDS[granularity.unit] * granularity.n
    window_s = _duration(node, "window", str(granularity))
    if window_s % length or window_s <= 0:
        raise Invalid(_line(node, "window"), f"'window' must be a multiple of {granularity}")
    aggregate = node.get("aggregate", "sum")
    if aggregate not in spec.AGGREGATES:
        raise Invalid(_line(node, "aggregate"), f"'aggregate' must be one of {spec.AGGREGATES}")
    if "condition" not in node:
        raise Invalid(node.line, "'condition' is required")
    try:
        cond = condition(node["condition"])
    except Invalid as exc:
        raise Invalid(exc.line or _line(node, "condition"), exc.reason) from None
    if isinstance(cond, spec.Zero) and cond.buckets < 0:
        cond = spec.Zero(max(1, -cond.buckets // length), cond.active)
    if isinstance(cond, spec.Share) and not ("*" in key or "*" in path):
        raise Invalid(
            _line(node, "condition"), "a share condition needs a key pattern or path wildcard"
        )
    annotations = _strings(node, "annotations")
    _templates(node, annotations)
    count_above = None
    if "count_segments_above" in node:
        count_above = _need(node, "count_segments_above", float)
        if not ("*" in key or "*" in path):
            reason = "'count_segments_above' needs a key pattern or a path wildcard"
            raise Invalid(_line(node, "count_segments_above"), reason)
        if isinstance(cond, spec.Share):
            raise Invalid(_line(node, "count_segments_above"), "it cannot be used with share")
    paused = node.get("paused", False)
    if not isinstance(paused, bool):
        raise Invalid(_line(node, "paused"), "'paused' must be true or false")
    gauge = node.get("gauge", False)
    if not isinstance(gauge, bool):
        raise Invalid(_line(node, "gauge"), "'gauge' must be true or false")
    if gauge and (not path or "*" in path or isinstance(cond, spec.Zero)):
        reason = "a gauge monitor reads one concrete 'path' (no expression, wildcard or zero)"
        raise Invalid(_line(node, "gauge"), reason)
    return spec.Monitor(
        name=name, key=key, granularity=granularity, condition=cond, path=path,
        expression=expression, window=window_s // length, aggregate=aggregate, gauge=gauge,
        for_s=_duration(node, "for"), keep_firing_for_s=_duration(node, "keep_firing_for"),
        notify_every_s=_duration(node, "notify_every"), labels=_strings(node, "labels"),
        annotations=annotations, notify=_names(node, "notify", ("log",)), paused=paused,
        count_above=count_above, source=source,
    )  # fmt: skip


CHANNEL_FIELDS = ("type", "url", "url_env", "to", "from", "host", "port", "username",
                  "password_env", "starttls")  # fmt: skip


def channel(name: str, node: Any, source: str = "") -> spec.Channel:
    """One notification channel (``source``: its ``file:line``)."""
    if not isinstance(node, Node):
        raise Invalid(0, f"channel {name!r} must be a mapping")
    _unknown(node, CHANNEL_FIELDS, f"channel {name!r}")
    kind = _need(node, "type", str)
    if kind not in CHANNEL_TYPES:
        raise Invalid(_line(node, "type"), f"channel type must be one of {CHANNEL_TYPES}")
    if kind in ("webhook", "slack") and not (node.get("url") or node.get("url_env")):
        raise Invalid(node.line, f"a {kind} channel needs 'url' or 'url_env'")
    to = node.get("to", [])
    to = [to] if isinstance(to, str) else to
    if kind == "email" and not to:
        raise Invalid(node.line, "an email channel needs 'to'")
    port = node.get("port", 25)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise Invalid(_line(node, "port"), "'port' must be a TCP port")
    return spec.Channel(
        name=name, type=kind, url=str(node.get("url", "")), url_env=str(node.get("url_env", "")),
        to=tuple(str(t) for t in to), sender=str(node.get("from", "tally@localhost")),
        host=str(node.get("host", "127.0.0.1")), port=port,
        username=str(node.get("username", "")), password_env=str(node.get("password_env", "")),
        starttls=bool(node.get("starttls", False)), source=source,
    )  # fmt: skip


def report(node: Any, source: str) -> spec.Report:
    """One scheduled digest."""
    if not isinstance(node, Node):
        raise Invalid(0, "each report must be a mapping")
    _unknown(node, ("name", "every", "granularity", "items", "notify"), "a report")
    name = _need(node, "name", str)
    every = str(node.get("every", "1d"))
    if every not in ("1d", "1w"):
        raise Invalid(_line(node, "every"), "'every' must be 1d or 1w")
    g = Granularity.parse("1h" if every == "1d" else "1d")
    items = []
    for raw in _need(node, "items", list):
        if not isinstance(raw, Node):
            raise Invalid(node.line, "each report item must be a mapping")
        _unknown(raw, ("title", "key", "path", "expression"), "a report item")
        path = _checked_path(raw, "path") if "path" in raw else ""
        expression = str(raw.get("expression", ""))
        if bool(path) == bool(expression):
            raise Invalid(raw.line, "a report item needs exactly one of 'path' or 'expression'")
        key = _need(raw, "key", str)
        items.append(
            spec.ReportItem(
                str(raw.get("title", f"{key} {path or expression}")), key, path, expression
            )
        )
    return spec.Report(name, every, g, tuple(items), _names(node, "notify", ("log",)), source)


def load_text(text: str, filename: str) -> spec.MonitorFile:
    """Parse one file's text; problems become ``errors`` (``file:line: reason``)."""
    from tally.monitors.ready import expand

    errors: list[str] = []
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        reason = getattr(exc, "problem", None) or str(exc)
        return spec.MonitorFile(errors=(f"{filename}:{line}: invalid YAML: {reason}",))
    if document is None:
        return spec.MonitorFile()
    if not isinstance(document, Node):
        return spec.MonitorFile(errors=(f"{filename}:1: the file must be a mapping",))
    try:
        _unknown(document, ("monitors", "channels", "ready", "reports"), "the file")
    except Invalid as exc:
        errors.append(f"{filename}:{exc.line}: {exc.reason}")
    channels: dict[str, spec.Channel] = {}
    for name, raw in (document.get("channels") or {}).items():
        try:
            where = f"{filename}:{_line(document['channels'], name) or _line(raw)}"
            channels[name] = channel(str(name), raw, where)
        except Invalid as exc:
            errors.append(
                f"{filename}:{exc.line or _line(document['channels'], name)}: {exc.reason}"
            )
    raws: list[tuple[Any, str]] = [(m, "") for m in _list(document, "monitors", filename, errors)]
    for entry in _list(document, "ready", filename, errors):
        try:
            raws.extend((m, "ready ") for m in expand(entry))
        except Invalid as exc:
            errors.append(f"{filename}:{exc.line or _line(entry)}: {exc.reason}")
    monitors: list[spec.Monitor] = []
    seen: set[str] = set()
    for raw, origin in raws:
        line = _line(raw)
        try:
            m = monitor(raw, f"{filename}:{line}")
            if m.name in seen:
                raise Invalid(_line(raw, "name"), f"monitor name {m.name!r} is used twice")
            seen.add(m.name)
            monitors.append(m)
        except Invalid as exc:
            errors.append(f"{filename}:{exc.line or line}: {origin}{exc.reason}")
    reports = []
    for raw in _list(document, "reports", filename, errors):
        try:
            reports.append(report(raw, f"{filename}:{_line(raw)}"))
        except Invalid as exc:
            errors.append(f"{filename}:{exc.line or _line(raw)}: {exc.reason}")
    return spec.MonitorFile(tuple(monitors), channels, tuple(reports), tuple(errors))


def _list(document: Node, key: str, filename: str, errors: list[str]) -> list[Any]:
    value = document.get(key) or []
    if not isinstance(value, list):
        errors.append(f"{filename}:{_line(document, key)}: '{key}' must be a list")
        return []
    return value


def load_paths(paths: Iterable[Path], env: Mapping[str, str] | None = None) -> spec.MonitorFile:
    """Load files and directories (``*.yaml``/``*.yml``), merging them; names must be unique.
    With ``env``, channels are checked against it (see :func:`merge`)."""
    return merge([load_file(f, load_text) for f in files_of(paths)], env)


def merge(
    files: Iterable[spec.MonitorFile], env: Mapping[str, str] | None = None
) -> spec.MonitorFile:
    """Definitions of several files as one: a repeated monitor name and a channel no file
    defines are errors; with ``env`` (the environment the notifier will use), so is a channel
    that cannot deliver in it (``url_env`` unset...). Such a channel stays defined: its notices
    are held until it is fixed."""
    monitors: list[spec.Monitor] = []
    channels: dict[str, spec.Channel] = {}
    reports: list[spec.Report] = []
    errors: list[str] = []
    names: set[str] = set()
    for loaded in files:
        errors.extend(loaded.errors)
        for m in loaded.monitors:
            if m.name in names:
                errors.append(f"{m.source}: monitor name {m.name!r} is already defined")
                continue
            names.add(m.name)
            monitors.append(m)
        channels.update(loaded.channels)
        reports.extend(loaded.reports)
    for m in monitors:
        for c in m.notify:
            if c != "log" and c not in channels:
                errors.append(f"{m.source}: monitor {m.name!r} notifies unknown channel {c!r}")
    if env is not None:
        errors.extend(channel_problems(channels, env))
    return spec.MonitorFile(tuple(monitors), channels, tuple(reports), tuple(errors))
