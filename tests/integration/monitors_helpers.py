"""Helpers for the monitor tests: records stamped on an explicit clock, a real HTTP receiver
and a real SMTP server, and a service wired to a stack."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from tally.embedded.stack import Stack
from tally.ingest.flatten import flatten
from tally.monitors.lease import AlwaysHeld
from tally.monitors.notify import Notifier
from tally.monitors.service import MonitorService
from tally.monitors.store import Store
from tally.monitors.watermark import KafkaWatermark
from tally.read import AsyncReader, ReadSettings
from tally.schemas.limits import Limits
from tally.schemas.wire import BatchEncoder

GRACE = 5.0


async def send_at(stack: Stack, stamp: float, events: list[tuple[float, list[str], dict]]) -> None:
    """Send events as the client would have at ``stamp`` (the record's timestamp), one record
    per partition, each event to the partition of its last key (the client's routing)."""
    encoder = BatchEncoder("monitor-test")
    by_partition: dict[int, list] = {}
    partitions = stack.config.partitions
    for at, keys, values in events:
        paths, numbers = flatten(values, Limits())
        p = zlib.crc32(keys[-1].encode()) % partitions
        by_partition.setdefault(p, []).append((int(at), keys, paths, numbers))
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap)
    await producer.start()
    try:
        for p, items in by_partition.items():
            payload = encoder.encode(items)
            await producer.send_and_wait(
                stack.config.topic, payload, partition=p, timestamp_ms=int(stamp * 1000)
            )
    finally:
        await producer.stop()


async def wait_committed(watermark: KafkaWatermark, timeout: float = 90) -> None:
    """Until the aggregators have committed every record (lag 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await watermark.refresh()
        if watermark.lag() == 0 and watermark._committed:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"aggregators did not commit everything in {timeout}s")


@dataclass
class Receiver:
    """A real local HTTP server recording JSON bodies per path."""

    bodies: dict[str, list[dict]] = field(default_factory=dict)
    fail_first: int = 0
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> str:
        async def handle(request: web.Request) -> web.Response:
            if self.fail_first > 0:
                self.fail_first -= 1
                return web.Response(status=503)
            self.bodies.setdefault(request.path, []).append(await request.json())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class Hanging:
    """A real local HTTP server that accepts every connection, reads the request and never
    answers (a receiver that hangs); counts the requests it got."""

    requests: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)
            if (await reader.readline()).startswith(b"POST "):
                self.requests += 1
            await asyncio.Event().wait()  # never answer

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()


class Mailbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode())
        )
        return "250 OK"


def smtp_server() -> tuple[Controller, Mailbox]:
    from tally.embedded.kafka_node import free_ports

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_ports(1)[0])
    controller.start()
    return controller, mailbox


def read_settings(stack: Stack) -> ReadSettings:
    return ReadSettings(clickhouse=stack.clickhouse_settings, database=stack.config.database)


def service(stack: Stack, paths: list[Path], base_url: str = "http://dash") -> MonitorService:
    """A service on the stack with the Kafka watermark and a single replica."""
    settings = read_settings(stack)
    return MonitorService(
        paths=paths, reader=AsyncReader(settings), store=Store(settings),
        watermark=KafkaWatermark(stack.kafka.bootstrap, stack.config.topic, stack.config.group,
                                 GRACE),
        notifier=Notifier({}, external_url=base_url, backoff_s=0.05), lease=AlwaysHeld(),
        base_url=base_url, tick_s=1.0,
    )  # fmt: skip


def kinds(bodies: list[dict]) -> list[tuple[str, str, str]]:
    """(status, alertname, segment) of Alertmanager payloads."""
    out = []
    for b in bodies:
        for a in b["alerts"]:
            out.append((a["status"], a["labels"]["alertname"], a["labels"].get("segment", "")))
    return out


def dumps(value: object) -> str:
    return json.dumps(value, indent=1, sort_keys=True)
