"""The decorator and the context manager that measure a job as one run.

Inside a framework hook's run of the same task (``Run.entry`` is this wrapper) the decorator
starts no run of its own: it adopts the hook's run (``JobTracker.adopt``), so the task is
tracked once, with the decorator's name, tenant and keys plus the hook's lag and attempt, and
the hook finishes it. With traces, a run the decorator starts records the call's arguments
(``[args, kwargs]``, redacted and bounded by the recorder's ``ArgsPolicy``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tally.ingest.jobs.names import callable_name, job_name
from tally.ingest.jobs.run import ACTIVE_RUN, Run, TenantOf

if TYPE_CHECKING:  # the tracker builds decorators; they only call it
    from contextvars import Token

    from tally.ingest.jobs.tracking import JobTracker


class JobDecorator:
    """Wraps a sync or async job function; built by ``JobTracker.__call__``."""

    __slots__ = ("jobs", "name", "pass_run", "tenant")

    def __init__(
        self, jobs: JobTracker, name: str | None, tenant: object | TenantOf, pass_run: bool
    ) -> None:
        self.jobs = jobs
        self.name = name
        self.tenant = tenant
        self.pass_run = pass_run

    def __call__(self, func: Callable) -> Callable:
        """The instrumented function (same signature, minus ``run`` when ``pass_run``)."""
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError("generator jobs are not supported: decorate the consuming function")
        job = job_name(self.name) if self.name else callable_name(func)
        wrapper = (
            self._async(func, job) if inspect.iscoroutinefunction(func) else self._sync(func, job)
        )
        wrapper.tally_job = job  # type: ignore[attr-defined]
        # the decorator decides the tenant: a hook need not ask its own tenant function
        wrapper.tally_tenant = self.tenant is not None or not self.jobs.tenant_keys  # type: ignore[attr-defined]
        return wrapper

    def _sync(self, func: Callable, job: str) -> Callable:
        jobs, tenant, pass_run = self.jobs, self.tenant, self.pass_run
        dynamic = callable(tenant)
        start, finish, tenant_of, active = jobs.start, jobs.finish, jobs.tenant_of, ACTIVE_RUN

        adopt = jobs.adopt

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outer = active.get()
            if outer is not None and outer.entry is wrapper:  # the hook's run of this task
                adopt(outer, job, tenant, args, kwargs)
                return func(*args, run=outer, **kwargs) if pass_run else func(*args, **kwargs)
            run = start(
                job,
                tenant_of(tenant, args, kwargs) if dynamic else tenant,
                args=[list(args), kwargs] if jobs.traces is not None else None,
            )
            token = active.set(run)
            try:
                result = func(*args, run=run, **kwargs) if pass_run else func(*args, **kwargs)
            except BaseException as exc:
                active.reset(token)
                finish(run, exc)
                raise
            active.reset(token)
            finish(run)
            return result

        return wrapper

    def _async(self, func: Callable, job: str) -> Callable:
        jobs, tenant, pass_run = self.jobs, self.tenant, self.pass_run
        dynamic = callable(tenant)
        start, finish, tenant_of, active = jobs.start, jobs.finish, jobs.tenant_of, ACTIVE_RUN

        adopt = jobs.adopt

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            outer = active.get()
            if outer is not None and outer.entry is wrapper:  # the hook's run of this task
                adopt(outer, job, tenant, args, kwargs)
                if pass_run:
                    return await func(*args, run=outer, **kwargs)
                return await func(*args, **kwargs)
            run = start(
                job,
                tenant_of(tenant, args, kwargs) if dynamic else tenant,
                args=[list(args), kwargs] if jobs.traces is not None else None,
            )
            token = active.set(run)
            try:
                if pass_run:
                    result = await func(*args, run=run, **kwargs)
                else:
                    result = await func(*args, **kwargs)
            except BaseException as exc:
                active.reset(token)
                finish(run, exc)
                raise
            active.reset(token)
            finish(run)
            return result

        return wrapper


@dataclass(slots=True, eq=False)
class RunScope:
    """``with jobs.run("name", tenant) as run:`` (or ``async with``): the block is one run."""

    jobs: JobTracker
    job: str
    tenant: object
    due_at: float | None
    attempt: int | None
    _run: Run = field(init=False)
    _token: Token[Run | None] = field(init=False)

    def __enter__(self) -> Run:
        run = self.jobs.start(self.job, self.tenant, due_at=self.due_at, attempt=self.attempt)
        self._run = run
        self._token = ACTIVE_RUN.set(run)
        return run

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        ACTIVE_RUN.reset(self._token)
        self.jobs.finish(self._run, exc)
        return False

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        return self.__exit__(exc_type, exc, tb)
