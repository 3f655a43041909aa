"""A new user's Celery app, instrumented as docs/jobs.md's quickstart says.

A cron queues one schedule task per tenant, each schedule task queues ``SHOP_PER_TENANT``
calculations, and a calculation sometimes skips, fails, hits a busy lock, is a duplicate or
succeeds with a result code. Every calculation first counts its own outcome in the Redis hash
``truth`` (``<tenant>|state|<state>``, ``<tenant>|code|<code>``), the numbers ClickHouse must
match. Runs in ``.venvs/celery``: ``celery -A celery_shop worker``.
"""

from __future__ import annotations

import os
import random

from celery import Celery
from redis import Redis

from tally.ingest import ClientSettings, Tracker
from tally.ingest.jobs import JobFlow, current_run, instrument_celery, report_result

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TENANTS = os.environ.get("SHOP_TENANTS", "acme,globex").split(",")
PER_TENANT = int(os.environ.get("SHOP_PER_TENANT", "100"))


class TenantLocked(Exception):
    """Another worker holds the tenant's lock."""


app = Celery("shop", broker=REDIS_URL)
tracker = Tracker(ClientSettings.from_env())
instrument_celery(app, tracker, tenant={"shop.audit": lambda tenant: tenant})
flow = JobFlow(tracker, limited=(TenantLocked,))
truth = Redis.from_url(REDIS_URL)


def outcome(tenant: str, state: str, code: str | None = None) -> None:
    """The task's own count of how it ended."""
    truth.hincrby("truth", f"{tenant}|state|{state}", 1)
    if code is not None:
        truth.hincrby("truth", f"{tenant}|code|{code}", 1)


@app.task(name="shop.cron")
@flow.cron(name="shop.CronJob")
def cron(batch: int) -> None:
    for tenant in TENANTS:
        schedule.delay(tenant, batch)
        current_run().add_resources(1)


@app.task(name="shop.schedule")
@flow.schedule(name="shop.ScheduleJob", tenant=lambda tenant, batch: tenant)
def schedule(tenant: str, batch: int) -> None:
    for i in range(PER_TENANT):
        calculate.delay(tenant, batch, i)
    current_run().add_resources(PER_TENANT)
    truth.hincrby("truth", "enqueued", PER_TENANT)
    audit.delay(tenant)


@app.task(name="shop.calculate")
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


@app.task(name="shop.audit")
def audit(tenant: str) -> None:
    """A plain task: the hook alone tracks it, with the tenant from the hook's mapping."""
