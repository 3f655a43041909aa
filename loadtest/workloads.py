"""Realistic job workloads shaped like the seeds' tracking payloads.

- calculation jobs (``commodity::events::product_target::calculation``): states, result codes,
  duration count/sum/square, price and margin aggregates; fanned out to the global key and the
  per customer, per reseller and per product-target keys;
- batched refresh jobs (``commodity::events::source::details::all``): products count/success/
  failure per batch;
- cron -> schedule -> resource jobs per tenant, with a ``system`` tenant: ``event::cron``,
  ``event::schedule`` and ``event::schedule::<tenant>`` with ``total``/``jobs``/``tenants``.

All values are integers (durations in ms, money in cents), so totals are exact to the unit in
any summation order. Generation is deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

CALC_KEY = "commodity::events::product_target::calculation"
REFRESH_KEY = "commodity::events::source::details::all"
STATES = ("success", "failure", "skipped", "duplicate", "deleted", "inactive")
STATE_WEIGHTS = (80, 3, 8, 3, 3, 3)
CODES = ("OK", "OUT_OF_STOCK", "UNSUPPORTED", "NO_OFFERS", "PRICE_LIMIT")
CRON_JOBS = ("billing__cron__schedule_invoices_job", "commodity__cron__resellers__schedule_job")
SCHEDULE_JOBS = ("billing__tenants__schedule_invoices_job", "commodity__resellers__schedule_job")


@dataclass(frozen=True, slots=True)
class TrackedEvent:
    """One ``track`` call: keys it fans out to, nested values, time and routing key."""

    keys: tuple[str, ...]
    values: dict
    at: int
    route: str | None = None


@dataclass(frozen=True)
class Cardinality:
    """How many distinct tenants, customers, resellers and products the workload touches."""

    customers: int = 200
    resellers: int = 20
    products: int = 5_000
    tenants: int = 20


class Workload:
    """A weighted mix of the seeds' job kinds."""

    def __init__(
        self,
        cardinality: Cardinality | None = None,
        seed: int = 7,
        mix: tuple[int, int, int] = (90, 6, 4),
    ) -> None:
        self.card = cardinality or Cardinality()
        self.rng = random.Random(seed)
        self.mix = mix

    def events(self, count: int, start: int, spread_s: int) -> Iterator[TrackedEvent]:
        """``count`` events with times spread evenly over ``spread_s`` seconds from ``start``."""
        kinds = self.rng.choices(
            (self.calculation, self.refresh, self.scheduling), self.mix, k=count
        )
        for i, kind in enumerate(kinds):
            yield kind(start + (i * spread_s) // max(count, 1))

    def calculation(self, at: int) -> TrackedEvent:
        """A product-target calculation, fanned out to four keys."""
        rng, card = self.rng, self.card
        product = rng.randrange(card.products)
        customer = product % card.customers
        reseller = customer % card.resellers
        state = rng.choices(STATES, STATE_WEIGHTS)[0]
        duration = rng.randint(5, 900)
        values: dict = {
            "count": 1,
            state: 1,
            "duration": {"count": 1, "sum": duration, "square": duration * duration},
        }
        if state == "success":
            price = rng.randint(100, 50_000)
            margin = rng.randint(-500, 5_000)
            values["codes"] = {rng.choices(CODES, (90, 4, 2, 2, 2))[0]: 1}
            values["price"] = {"count": 1, "sum": price}
            values["margin"] = {"count": 1, "sum": margin, "square": margin * margin}
        keys = (
            CALC_KEY,
            f"{CALC_KEY}::customer::{customer}",
            f"{CALC_KEY}::reseller::{reseller}",
            f"{CALC_KEY}::product_target::{product}",
        )
        return TrackedEvent(keys, values, at, route=keys[1])

    def refresh(self, at: int) -> TrackedEvent:
        """A batched product refresh touching many products."""
        rng = self.rng
        products = rng.randint(1, 200)
        failed = rng.choices((0, rng.randint(0, products)), (9, 1))[0]
        ok = int(failed == 0)
        values = {
            "count": 1,
            "success": ok,
            "failure": 1 - ok,
            "duration": rng.randint(50, 5_000),
            "products": {"count": products, "success": products - failed, "failure": failed},
        }
        return TrackedEvent((REFRESH_KEY,), values, at)

    def scheduling(self, at: int) -> TrackedEvent:
        """A cron trigger or a per-tenant schedule job (tenant ``system`` included)."""
        rng = self.rng
        state = rng.choices(("success", "failure", "limited"), (95, 2, 3))[0]
        if rng.random() < 0.2:
            job = rng.choice(CRON_JOBS)
            body = self._job_values(state, resources=rng.randint(0, self.card.tenants))
            return TrackedEvent(("event::cron",), {"total": body, "jobs": {job: body}}, at)
        tenant = "system" if rng.random() < 0.1 else f"tenant{rng.randrange(self.card.tenants)}"
        job = rng.choice(SCHEDULE_JOBS)
        body = self._job_values(state, resources=rng.randint(0, 1_000))
        values = {"total": body, "jobs": {job: body}, "tenants": {tenant: body}}
        keys = ("event::schedule", f"event::schedule::{tenant}")
        return TrackedEvent(keys, values, at, route=keys[1])

    def _job_values(self, state: str, resources: int) -> dict:
        return {
            "count": 1,
            "duration": self.rng.randint(1, 3_000),
            "resources": resources if state == "success" else 0,
            "state": {
                "success": int(state == "success"),
                "failure": int(state == "failure"),
                "limited": int(state == "limited"),
            },
        }
