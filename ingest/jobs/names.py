"""Names that become key parts and path segments: no dots (path separators), no ``::``.

``job_name("billing.cron.ScheduleInvoicesJob")`` -> ``billing__cron__schedule_invoices_job``,
like the seeds' ``self.class.name.underscore.gsub('/', '__')``. Tenant slugs keep their case
but lose every character other than letters, digits, ``_`` and ``-`` (the seeds' ``tr(':',
'_')``, made safe for dotted paths too).
"""

from __future__ import annotations

import re

SYSTEM = "system"
# The job trackers' keys start so: ``JobTracker``'s ``event::job``, the cron -> schedule ->
# resource pattern's ``event::cron``/``event::schedule``/``event::resource`` (each also
# ``<key>::<tenant>`` per tenant). Key lists show them first.
JOB_KEY_PREFIX = "event::"
MAX_JOB = 160
MAX_TENANT = 128
MAX_LABEL = 64

_SEPARATORS = re.compile(r"[.:/\\]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_UNSAFE_JOB = re.compile(r"[^a-z0-9_]+")
_UNSAFE_LABEL = re.compile(r"[^A-Za-z0-9_-]+")
_SAFE_LABEL = re.compile(r"[A-Za-z0-9_-]+")


def job_name(name: str) -> str:
    """A dot-free snake_case job name; module/class separators become ``__``."""
    name = name.replace("<locals>", "").replace("<lambda>", "lambda")
    parts = []
    for part in _SEPARATORS.split(name):
        snake = _UNSAFE_JOB.sub("_", _CAMEL.sub("_", part).lower()).strip("_")
        if snake:
            parts.append(snake)
    return "__".join(parts)[:MAX_JOB].rstrip("_") or "job"


def callable_name(func: object) -> str:
    """``module.qualname`` of a function (``__main__`` dropped), sanitised with ``job_name``."""
    module = getattr(func, "__module__", None) or ""
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", "job")
    full = qualname if module in ("", "__main__") else f"{module}.{qualname}"
    return job_name(full)


def label(value: object, limit: int = MAX_LABEL, default: str = "unknown") -> str:
    """A path segment from ``value``: unsafe characters become ``_``; empty gives ``default``."""
    text = value if type(value) is str else str(value)
    if len(text) <= limit and _SAFE_LABEL.fullmatch(text):
        return text
    text = _UNSAFE_LABEL.sub("_", text)[:limit]
    return text or default


def tenant_key(tenant: object) -> str:
    """The tenant's key part and path segment; ``system`` when there is none."""
    if tenant is None or tenant == "":
        return SYSTEM
    return label(tenant, MAX_TENANT, SYSTEM)
