"""Hook pieces that need no framework: lazy exports, one run per task, tenants per task.

Each framework's own hook tests run in that framework's virtualenv (tests/frameworks/).
"""

from __future__ import annotations

import subprocess
import sys

from tally.ingest.jobs import JobFlow, JobTracker, current_run, tracked_entry
from tally.ingest.jobs.testing import RecordingTracker
from tally.ingest.jobs.tracking import ACTIVE_RUN

HOOKS = ("instrument_celery", "instrumented_rq_worker", "instrument_arq", "TallyMiddleware")


def test_the_client_and_job_core_do_not_import_any_framework():
    code = (
        "import sys, tally.ingest, tally.ingest.jobs as j; "
        "j.JobTracker; j.JobFlow; dir(j); "
        "print(sorted(m for m in ('celery', 'rq', 'arq', 'dramatiq', 'redis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dir_and_all_list_the_lazily_imported_hooks():
    import tally.ingest.jobs as jobs

    for name in HOOKS:
        assert name in dir(jobs) and name in jobs.__all__
    assert set(jobs.__all__) <= set(dir(jobs))


def run_as_hook(hook: JobTracker, task_name: str, func, *args, tenant=None):
    """What every hook does around a task: start, set the entry and the run, call, finish."""
    run = hook.start(hook.name(task_name), tenant)
    run.entry = tracked_entry(func)
    token = ACTIVE_RUN.set(run)
    error = None
    try:
        func(*args)
    except Exception as exc:
        error = exc
    ACTIVE_RUN.reset(token)
    hook.finish(run, error)


class LockBusy(Exception):
    pass


def test_a_decorator_adopts_the_hook_run_of_its_own_task():
    recorder = RecordingTracker()
    hook = JobTracker(recorder, "event::job")
    flow = JobFlow(recorder, limited=(LockBusy,))

    @flow.resource(name="calc.CalculateJob", tenant=lambda tenant, n: tenant)
    def calculate(tenant: str, n: int) -> None:
        if n < 0:
            raise LockBusy
        if n == 0:
            return current_run().skip()
        current_run().result(code="OK")
        current_run().add_resources(n)

    run_as_hook(hook, "app.tasks.calculate", calculate, "acme", 3, tenant="hook-guess")
    run_as_hook(hook, "app.tasks.calculate", calculate, "acme", 0)
    run_as_hook(hook, "app.tasks.calculate", calculate, "acme", -1)

    assert len(recorder.calls) == 3  # one event per run, not two
    ok, skipped, limited = (c.flat for c in recorder.calls)
    assert recorder.calls[0].keys == (
        "event::resource",
        "event::resource::acme",
        "event::job",
        "event::job::acme",
    )
    assert ok["jobs.calc__calculate_job.resources"] == 3 and ok["total.codes.OK"] == 1
    assert "jobs.app__tasks__calculate.count" not in ok  # one name: the decorator's
    assert skipped["total.state.skipped"] == 1 and "total.state.success" not in skipped
    assert limited["total.state.limited"] == 1  # the decorator's limited type counts


def test_a_cron_decorator_files_its_run_under_system_not_the_hooks_tenant():
    recorder = RecordingTracker()
    hook = JobTracker(recorder, "event::job")
    flow = JobFlow(recorder)

    @flow.cron(name="calc.cron.CalculateJob")
    def cron(batch: int) -> None:
        current_run().add_resources(2)

    assert cron.tally_tenant  # so hooks do not ask their tenant function for it
    run_as_hook(hook, "app.tasks.cron", cron, 42, tenant=42)
    [call] = recorder.calls
    assert call.keys == ("event::cron", "event::job", "event::job::system")
    assert call.flat["tenants.system.resources"] == 2


def test_a_decorated_helper_called_inside_another_task_is_its_own_run():
    recorder = RecordingTracker()
    hook = JobTracker(recorder, "event::job")
    jobs = JobTracker(recorder, "event::resource")

    @jobs(name="helper")
    def helper() -> None:
        current_run().add_resources(1)

    def task() -> None:  # not decorated: the hook's run stays the task's
        helper()

    run_as_hook(hook, "app.tasks.task", task)
    inner, outer = recorder.calls
    assert inner.keys == ("event::resource", "event::resource::system")
    assert outer.keys == ("event::job", "event::job::system")
    assert outer.flat["jobs.app__tasks__task.count"] == 1


def test_hook_tenants_per_task_from_a_mapping_or_a_callable():
    hook = JobTracker(RecordingTracker(), "event::job")
    per_task = {"shop.tasks.order": lambda order, shop: shop, "shop__tasks__refund": "acme"}
    assert hook.hook_tenant(per_task, "shop.tasks.order", (1, "globex"), {}) == "globex"
    assert hook.hook_tenant(per_task, "shop.tasks.refund", (), {}) == "acme"  # sanitised name
    assert hook.hook_tenant(per_task, "shop.tasks.nightly", (3,), {}) is None  # -> system
    assert hook.hook_tenant(lambda first, *_: first, "x", ("t",), {}) == "t"
    assert hook.hook_tenant(None, "x", ("t",), {}) is None
    assert hook.hook_tenant(lambda: 1 / 0, "x", (), {}) is None and hook.errors == 1


class Shipped(list):
    """A trace shipper that keeps what it is given."""

    def ship(self, execution) -> bool:
        self.append(execution)
        return True


def test_an_adopted_run_is_filed_under_the_decorator_with_the_hook_key_beside():
    from tally.traces import SamplingPolicy, TraceRecorder

    shipped = Shipped()
    recorder = RecordingTracker()
    hook = JobTracker(
        recorder, "event::job", traces=TraceRecorder(shipped, SamplingPolicy(every=1))
    )
    flow = JobFlow(recorder)

    @flow.resource(name="calc.CalculateJob", tenant=lambda tenant: tenant)
    def calculate(tenant: str) -> None:
        current_run().result(code="OK")

    def plain(tenant: str) -> None:
        return None

    run_as_hook(hook, "app.tasks.calculate", calculate, "acme")
    run_as_hook(hook, "app.tasks.plain", plain, "acme")
    adopted, own = shipped
    assert (adopted.key, adopted.hook_key, adopted.tenant) == (
        "event::resource",
        "event::job",
        "acme",
    )
    assert (own.key, own.hook_key) == ("event::job", "")
