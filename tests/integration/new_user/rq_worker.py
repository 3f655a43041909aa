"""The RQ worker of rq_shop.py, set up as docs/jobs.md's quickstart says."""

from rq_shop import redis, tracker

from tally.ingest.jobs import instrumented_rq_worker

tenants = {"rq_shop.audit": lambda tenant: tenant}
worker = instrumented_rq_worker(["default"], tracker, connection=redis, tenant=tenants)
worker.work()
