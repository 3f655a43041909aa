"""The monitor service's own Prometheus metrics, on a registry each service owns (no global
state), served at ``/metrics`` by a small aiohttp server in the service's event loop."""

from __future__ import annotations

import errno

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from tally.engine.metric_factory import MetricFactory


class MetricsPortInUse(RuntimeError):
    """The metrics port is taken."""


class MonitorMetrics:
    """Evaluation lag, the outbox and deliveries of one monitor service."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        m = MetricFactory(self.registry)
        self.evaluations = m.counter("tally_monitor_evaluations", "Evaluation ticks completed")
        self.evaluation_lag = m.gauge(
            "tally_monitor_evaluation_lag_seconds",
            "Seconds from the end of the newest judged bucket to now, per monitor",
            ["monitor"],
        )
        self.evaluation_seconds = m.histogram(
            "tally_monitor_evaluation_seconds",
            "Time of one evaluation tick (all monitors, no delivery)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.outbox_pending = m.gauge(
            "tally_monitor_outbox_pending",
            "Notifications waiting in the outbox, per channel (as of the last delivery pass)",
            ["channel"],
        )
        self.deliveries = m.counter(
            "tally_monitor_deliveries",
            "Deliveries finished, per channel and outcome (delivered, failed, skipped)",
            ["channel", "outcome"],
        )
        self.delivery_seconds = m.histogram(
            "tally_monitor_delivery_seconds",
            "Time of one delivery including its retries",
            ["channel"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self._runner: web.AppRunner | None = None

    async def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose ``/metrics`` on ``host:port`` (0 picks a free port); returns the port."""

        async def metrics(_: web.Request) -> web.Response:
            body = generate_latest(self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self.close()
            if exc.errno == errno.EADDRINUSE:
                raise MetricsPortInUse(
                    f"metrics port {host}:{port} is already in use: pass --metrics-port 0 for a"
                    " free port, or another port"
                ) from None
            raise
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
