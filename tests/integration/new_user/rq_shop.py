"""A new user's RQ jobs, instrumented as docs/jobs.md's quickstart says (see celery_shop.py
for the flow and the ``truth`` counters). Runs in ``.venvs/rq``: ``python rq_worker.py``."""

from __future__ import annotations

import os
import random

from redis import Redis
from rq import Queue

from tally.ingest import ClientSettings, Tracker
from tally.ingest.jobs import JobFlow, current_run, report_result

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TENANTS = os.environ.get("SHOP_TENANTS", "acme,globex").split(",")
PER_TENANT = int(os.environ.get("SHOP_PER_TENANT", "100"))


class TenantLocked(Exception):
    """Another worker holds the tenant's lock."""


redis = Redis.from_url(REDIS_URL)
queue = Queue("default", connection=redis)
tracker = Tracker(ClientSettings.from_env())
flow = JobFlow(tracker, limited=(TenantLocked,))


def outcome(tenant: str, state: str, code: str | None = None) -> None:
    """The job's own count of how it ended."""
    redis.hincrby("truth", f"{tenant}|state|{state}", 1)
    if code is not None:
        redis.hincrby("truth", f"{tenant}|code|{code}", 1)


@flow.cron(name="shop.CronJob")
def cron(batch: int) -> None:
    for tenant in TENANTS:
        queue.enqueue(schedule, tenant, batch)
        current_run().add_resources(1)


@flow.schedule(name="shop.ScheduleJob", tenant=lambda tenant, batch: tenant)
def schedule(tenant: str, batch: int) -> None:
    for i in range(PER_TENANT):
        queue.enqueue(calculate, tenant, batch, i)
    current_run().add_resources(PER_TENANT)
    redis.hincrby("truth", "enqueued", PER_TENANT)
    queue.enqueue(audit, tenant)


@flow.resource(name="shop.CalculateJob", tenant=lambda tenant, batch, i: tenant)
def calculate(tenant: str, batch: int, i: int) -> None:
    roll = random.Random(f"{tenant}:{batch}:{i}").random()
    if roll < 0.1:
        outcome(tenant, "skipped")
        return current_run().skip()
    if roll < 0.2:
        outcome(tenant, "failure")
        raise LookupError("no source price")
    if roll < 0.25:
        outcome(tenant, "limited")
        raise TenantLocked(tenant)
    if roll < 0.3:
        outcome(tenant, "duplicate", "ALREADY_DONE")
        return report_result("duplicate", code="ALREADY_DONE")
    code = "OK" if roll < 0.8 else "OUT_OF_STOCK" if roll < 0.95 else "NO_PRICE"
    outcome(tenant, "success", code)
    report_result(code=code)


def audit(tenant: str) -> None:
    """A plain job: the hook alone tracks it, with the tenant from the hook's mapping."""
