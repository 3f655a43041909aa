"""The seeds' cron -> schedule -> resource pattern, as three decorators sharing one client.

- ``flow.cron``: a global trigger that enqueues one schedule job per tenant; every tenant
  scheduled counts as a resource. Key ``event::cron`` (no per-tenant key; tenant ``system``).
- ``flow.schedule``: a tenant's scheduler that enqueues resource jobs and counts them.
  Keys ``event::schedule`` and ``event::schedule::<tenant>``.
- ``flow.resource``: the job that does the work and reports a result state and code.
  Keys ``event::resource`` and ``event::resource::<tenant>``.

Each is a ``JobTracker``: use ``@flow.cron``, ``@flow.schedule(tenant=...)`` or
``with flow.resource.run(name, tenant) as run:``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tally.ingest.jobs.tracking import (
    Clock,
    ExceptionTypes,
    JobTracker,
    Trackable,
    current_run,
)


@dataclass(eq=False)
class JobFlow:
    """Cron, schedule and resource trackers; ``limited`` names lock/limiter-busy exceptions."""

    tracker: Trackable
    limited: ExceptionTypes = ()
    cron_key: str = "event::cron"
    schedule_key: str = "event::schedule"
    resource_key: str = "event::resource"
    clock: Clock | None = None  # a simulated clock for all three (``JobTracker.clock``)
    cron: JobTracker = field(init=False)
    schedule: JobTracker = field(init=False)
    resource: JobTracker = field(init=False)

    def __post_init__(self) -> None:
        limited, clock = self.limited, self.clock
        self.cron = JobTracker(
            self.tracker, self.cron_key, tenant_keys=False, limited=limited, clock=clock
        )
        self.schedule = JobTracker(self.tracker, self.schedule_key, limited=limited, clock=clock)
        self.resource = JobTracker(self.tracker, self.resource_key, limited=limited, clock=clock)

    @property
    def errors(self) -> int:
        """Instrumentation problems counted by the three trackers."""
        return self.cron.errors + self.schedule.errors + self.resource.errors


def enqueue_for_tenant(enqueue: Callable[..., object], tenant: object, *args: object) -> object:
    """In a cron: ``enqueue(tenant, *args)`` and count the tenant as scheduled."""
    result = enqueue(tenant, *args)
    current_run().add_resources(1)
    return result


def enqueue_each(enqueue: Callable[..., object], calls: Iterable[tuple]) -> int:
    """In a scheduler: ``enqueue(*call)`` for each call, counting each as a resource."""
    run = current_run()
    done = 0
    for call in calls:
        enqueue(*call)
        run.add_resources(1)
        done += 1
    return done


def report_result(state: str | None = None, code: str | None = None) -> None:
    """In a resource job: report its result state (e.g. ``duplicate``) and code (e.g. ``OK``)."""
    current_run().result(state, code)
