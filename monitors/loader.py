"""Load monitors, channels and reports from YAML files (the loader dashboards use:
:mod:`tally.schemas.yaml_config`; the shapes in :mod:`schema`, the rest in :mod:`build`).

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
    ready:                      # ready-made monitors, one line each (monitors/builtin/)
      - cron_below_expected: {job: billing__cron__schedule_invoices_job, expected: 1}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tally.monitors import build, spec
from tally.monitors.channels import problems as channel_problems
from tally.monitors.files import files_of, load_file
from tally.monitors.ready import expand
from tally.monitors.schema import ChannelDef, MonitorDef, ReportDef
from tally.schemas.yaml_config import Invalid, Where, convert, line_of, parse

SECTIONS = {"monitors": list, "channels": dict, "ready": list, "reports": list}


class _File:
    """One file being loaded: its node tree (for lines) and the errors so far."""

    def __init__(self, name: str, node: yaml.Node | None) -> None:
        self.name, self.node = name, node
        self.errors: list[str] = []

    def line(self, where: Where) -> int:
        return line_of(self.node, where) or 0

    def error(self, exc: Invalid, base: Where, prefix: str = "") -> None:
        self.errors.append(f"{self.name}:{self.line((*base, *exc.where))}: {prefix}{exc.reason}")


def _monitors(f: _File, raws: list[tuple[Any, Where, str]]) -> list[spec.Monitor]:
    """Each ``(mapping, where, prefix)`` as a monitor; a repeated name is an error."""
    out: list[spec.Monitor] = []
    seen: set[str] = set()
    for raw, base, prefix in raws:
        try:
            m = build.monitor(convert(raw, MonitorDef), f"{f.name}:{f.line(base)}")
            if m.name in seen:
                raise Invalid(f"monitor name {m.name!r} is used twice", ("name",))
            seen.add(m.name)
            out.append(m)
        except Invalid as exc:
            # a ready-made monitor's fields are not in the file: the entry's line
            f.error(Invalid(exc.reason) if prefix else exc, base, prefix)
    return out


def _ready(f: _File, entries: list[Any]) -> list[tuple[Any, Where, str]]:
    """The monitor mappings of the ``ready:`` entries (errors name the entry's line)."""
    raws: list[tuple[Any, Where, str]] = []
    for i, entry in enumerate(entries):
        try:
            raws.extend((m, ("ready", i), "ready ") for m in expand(entry))
        except Invalid as exc:
            f.error(exc, ("ready", i))
    return raws


def load_text(text: str, filename: str) -> spec.MonitorFile:
    """Parse one file's text; problems become ``errors`` (``file:line: reason``)."""
    try:
        node, document = parse(text)
    except Invalid as exc:
        return spec.MonitorFile(errors=(f"{filename}:{exc.line or 0}: invalid {exc.reason}",))
    if document is None:
        return spec.MonitorFile()
    if not isinstance(document, dict):
        return spec.MonitorFile(errors=(f"{filename}:1: the file must be a mapping",))
    f = _File(filename, node)
    sections = {key: kind() for key, kind in SECTIONS.items()}
    for key, value in document.items():
        if key not in SECTIONS:
            f.error(Invalid(f"unknown field {key!r} in the file", (key,)), ())
        elif value is not None and not isinstance(value, SECTIONS[key]):
            what = "a list" if SECTIONS[key] is list else "a mapping"
            f.error(Invalid(f"{key!r} must be {what}", (key,)), ())
        elif value is not None:
            sections[key] = value
    channels: dict[str, spec.Channel] = {}
    for name, raw in sections["channels"].items():
        try:
            source = f"{filename}:{f.line(('channels', name))}"
            channels[str(name)] = build.channel(str(name), convert(raw, ChannelDef), source)
        except Invalid as exc:
            f.error(exc, ("channels", name))
    raws = [(m, ("monitors", i), "") for i, m in enumerate(sections["monitors"])]
    monitors = _monitors(f, raws + _ready(f, sections["ready"]))
    reports = []
    for i, raw in enumerate(sections["reports"]):
        try:
            source = f"{filename}:{f.line(('reports', i))}"
            reports.append(build.report(convert(raw, ReportDef), source))
        except Invalid as exc:
            f.error(exc, ("reports", i))
    return spec.MonitorFile(tuple(monitors), channels, tuple(reports), tuple(f.errors))


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
