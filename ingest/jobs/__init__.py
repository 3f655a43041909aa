"""Job instrumentation on top of the thin client: one ``track()`` call per job run.

    jobs = JobTracker(tracker, key="event::resource")

    @jobs(tenant=lambda tenant_id, invoice_id: tenant_id)
    def sync_invoice(tenant_id, invoice_id): ...

    with jobs.run("billing.sync_invoice", tenant_id) as run:
        run.add_resources(3)

Framework hooks (imported lazily, so the client never needs the frameworks; each needs its
extra, e.g. ``pip install 'tally-pipeline[celery]'``):
``instrument_celery(app, tracker)``, ``instrumented_rq_worker(queues, tracker, connection=r)``,
``instrument_arq(WorkerSettings, tracker)``, ``broker.add_middleware(TallyMiddleware(tracker))``.
They are listed in ``__all__`` and ``dir()`` like the eager names.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from tally.ingest.jobs.names import SYSTEM, callable_name, job_name, tenant_key
from tally.ingest.jobs.patterns import JobFlow, enqueue_each, enqueue_for_tenant, report_result
from tally.ingest.jobs.run import (
    FAILURE,
    LIMITED,
    RETRY,
    SKIPPED,
    SUCCESS,
    Run,
    event_values,
    job_values,
)
from tally.ingest.jobs.tracking import (
    Clock,
    HookTenant,
    JobTracker,
    Trackable,
    active_run,
    current_run,
    tracked_entry,
)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time they load on first use
    from tally.ingest.jobs.arq import instrument_arq
    from tally.ingest.jobs.celery import CeleryHooks, instrument_celery
    from tally.ingest.jobs.dramatiq import TallyMiddleware
    from tally.ingest.jobs.rq import instrumented_rq_worker, rq_job_class, rq_worker_class

_LAZY = {
    "instrument_celery": "tally.ingest.jobs.celery",
    "CeleryHooks": "tally.ingest.jobs.celery",
    "instrumented_rq_worker": "tally.ingest.jobs.rq",
    "rq_worker_class": "tally.ingest.jobs.rq",
    "rq_job_class": "tally.ingest.jobs.rq",
    "instrument_arq": "tally.ingest.jobs.arq",
    "TallyMiddleware": "tally.ingest.jobs.dramatiq",
}


def __getattr__(name: str) -> Any:
    """Framework hooks, imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    """The eager names and the lazily imported framework hooks."""
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "FAILURE",
    "LIMITED",
    "RETRY",
    "SKIPPED",
    "SUCCESS",
    "SYSTEM",
    "CeleryHooks",
    "Clock",
    "HookTenant",
    "JobFlow",
    "JobTracker",
    "Run",
    "TallyMiddleware",
    "Trackable",
    "active_run",
    "callable_name",
    "current_run",
    "enqueue_each",
    "enqueue_for_tenant",
    "event_values",
    "instrument_arq",
    "instrument_celery",
    "instrumented_rq_worker",
    "job_name",
    "job_values",
    "report_result",
    "rq_job_class",
    "rq_worker_class",
    "tenant_key",
    "tracked_entry",
]
