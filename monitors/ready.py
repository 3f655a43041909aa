"""Ready-made monitors for what the job instrumentation emits (docs/jobs.md), one YAML line each:

    ready:
      - cron_below_expected: {job: billing__cron__schedule_invoices_job, window: 1h, expected: 1}
      - scheduler_idle: {job: billing__tenants__schedule_invoices_job, idle_for: 30m}

Every parameter has a default except ``job`` (and ``queue`` for queue depth and stuck); ``notify``,
``labels``, ``for`` and ``granularity`` pass through to the monitor. ``for`` is pending time
*after* the condition holds: ``scheduler_idle`` with ``idle_for: 30m, for: 30m`` alerts after
about an hour idle (``tally monitors list`` shows the effective durations). Keys and paths
follow the job shape: ``event::cron`` / ``event::schedule[::<tenant>]`` / ``event::job`` with
``jobs.<job>.{count,resources,duration.sum,duration.count,state.*,retries,queue_lag.*}``
(``duration`` and ``queue_lag`` are distributions; monitors read their ``.sum``/``.count``
counters). Queue depth is the sampler's gauge ``depth`` under
``event::queue::<framework>::<queue>`` (``queue: rq::default``).

Each one is a YAML file of ``monitors/builtin/`` (``params``: defaults, ``null`` for a required
text; ``monitor``: the definition, ``${param}`` replaced), loaded like any definition. Here is
only what is not data: filling the template, and parameters computed from others.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from tally.schemas.yaml_config import Invalid, convert, parse

BUILTIN_DIR = Path(__file__).parent / "builtin"
PASS_THROUGH = ("notify", "labels", "annotations", "for", "keep_firing_for", "notify_every",
                "granularity", "name")  # fmt: skip
_PARAM = re.compile(r"\$\{([a-z_]+)\}")


class ReadyMade(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One file of ``monitors/builtin/``: parameter defaults and the monitor template."""

    params: dict[str, Any]
    monitor: dict[str, Any]


def _load(file: Path) -> ReadyMade:
    _, data = parse(file.read_text(encoding="utf-8"))
    return convert(data, ReadyMade)


READY: dict[str, ReadyMade] = {f.stem: _load(f) for f in sorted(BUILTIN_DIR.glob("*.yaml"))}
# Parameters computed from numeric others: "3 jobs failing" is a count of segments above 2.
DERIVED: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "failure_cluster": (("jobs",), lambda p: {"jobs_above": p["jobs"] - 1}),
}


def _fill(template: Any, params: dict[str, Any]) -> Any:
    """``template`` with each ``${name}`` replaced; a value that is only ``${name}`` takes the
    parameter's type (a number stays a number)."""
    if isinstance(template, dict):
        return {k: _fill(v, params) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, params) for v in template]
    if not isinstance(template, str):
        return template
    whole = _PARAM.fullmatch(template)
    if whole:
        return params[whole.group(1)]
    return _PARAM.sub(lambda m: str(params[m.group(1)]), template)


def expand(entry: Any) -> list[dict[str, Any]]:
    """The monitor mappings of one ``ready:`` entry (``{name: {params}}``)."""
    if not isinstance(entry, dict) or len(entry) != 1:
        raise Invalid(f"a ready entry is one of {sorted(READY)} with its parameters")
    ((kind, given),) = entry.items()
    if kind not in READY:
        raise Invalid(f"unknown ready-made monitor {kind!r}; one of {sorted(READY)}")
    if given is not None and not isinstance(given, dict):
        raise Invalid(f"{kind} takes a mapping of parameters")
    ready, given = READY[kind], given or {}
    for name, default in ready.params.items():
        if default is None and not isinstance(given.get(name), str):
            raise Invalid(f"{kind} needs '{name}' (text)")
    unknown = sorted(set(given) - set(ready.params) - set(PASS_THROUGH))
    if unknown:
        known = ", ".join(sorted((set(ready.params) | set(PASS_THROUGH)) - {"name"}))
        raise Invalid(f"{kind} has no parameter {unknown[0]!r}; it takes {known}")
    params = {**ready.params, **given}
    params = {**params, **_fill({k: v for k, v in params.items() if k not in given}, params)}
    if kind in DERIVED:
        numeric, derive = DERIVED[kind]
        for name in numeric:
            if isinstance(params[name], bool) or not isinstance(params[name], int | float):
                raise Invalid(f"{kind} needs '{name}' (a number)")
        params.update(derive(params))
    definition = _fill(ready.monitor, params)
    definition.update({k: given[k] for k in PASS_THROUGH if k in given})
    return [definition]
