"""Two monitor replicas (real processes) elected by the Kafka lease; the leader is killed with
kill -9 while its alert is firing. Every transition is notified exactly once: the firing alert
is not re-sent by the replica that takes over, nor by the killed one when it comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tally.monitors.store import Store

from .monitors_helpers import GRACE, Receiver, kinds, read_settings, send_at, wait_committed
from .test_monitors_e2e import JOB, cron

pytestmark = pytest.mark.integration

YAML = """
channels:
  hook: {type: webhook, url: "%s/alertmanager"}
monitors:
  - name: cron-stopped
    key: event::cron
    path: jobs.%s.count
    granularity: 1m
    condition: {type: expected, fewer_than: 1}
    for: 2m
    notify: [hook]
"""


def start(stack, tmp_path: Path, name: str, clock: Path) -> subprocess.Popen:
    log = (tmp_path / f"{name}.log").open("ab")
    command = [
        sys.executable, "-m", "tally.cli", "monitors", "run", str(tmp_path / "m.yaml"),
        "--bootstrap", stack.kafka.bootstrap, "--clickhouse-url", stack.clickhouse.url,
        "--tick", "0.5", "--grace", str(GRACE), "--lease-session-ms", "6000",
        "--clock-file", str(clock), "--data-dir", str(tmp_path / "data"),
        "--base-url", "http://dash",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env["TALLY_CLICKHOUSE_PASSWORD"] = stack.clickhouse_password
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)  # fmt: skip
    log.close()
    return proc


def leader(tmp_path: Path, procs: dict[str, subprocess.Popen]) -> str | None:
    """The replica whose log last says it holds the lease (and is alive)."""
    for name, proc in procs.items():
        text = (tmp_path / f"{name}.log").read_text()
        held = text.rfind("lease held")
        if proc.poll() is None and held >= 0 and held > text.rfind("lease lost"):
            return name
    return None


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_kill_9_of_the_leader_while_firing_notifies_each_transition_once(
    make_stack, tmp_path: Path
) -> None:
    stack = make_stack(partitions=2, aggregators=1, flush_interval_s=0.5)
    asyncio.run(scenario(stack, tmp_path))


async def scenario(stack, tmp_path: Path) -> None:
    receiver = Receiver()
    url = await receiver.start()
    (tmp_path / "m.yaml").write_text(YAML % (url, JOB))
    base = int(time.time()) // 60 * 60 - 30 * 60
    minute = lambda i: base + i * 60  # noqa: E731
    clock = tmp_path / "clock"
    clock.write_text(str(minute(5) + GRACE + 1))
    for i in (0, 1, 2, 3, 4, 8, 9):  # the cron stops in minutes 5-7
        await send_at(stack, minute(i) + 30, [cron(minute(i) + 10)])
    store = Store(read_settings(stack))
    await store.start()
    from tally.monitors.watermark import KafkaWatermark

    watermark = KafkaWatermark(stack.kafka.bootstrap, stack.config.topic, stack.config.group)
    await wait_committed(watermark)
    await watermark.close()
    procs = {"a": start(stack, tmp_path, "a", clock), "b": start(stack, tmp_path, "b", clock)}

    async def judged(bucket: int) -> bool:
        states = await store.states("cron-stopped")
        return any(s.last_bucket >= bucket for s in states.values())

    async def bodies(n: int) -> bool:
        return len(receiver.bodies.get("/alertmanager", [])) >= n

    try:
        await until(lambda: judged(minute(4)), 90, "the first evaluation")
        clock.write_text(str(minute(7) + GRACE + 1))  # minutes 5 and 6 empty: fires at 6
        await until(lambda: bodies(1), 60, "the firing notification")
        first = leader(tmp_path, procs)
        assert first is not None
        os.killpg(procs[first].pid, signal.SIGKILL)  # the leader dies while firing
        procs[first].wait()
        clock.write_text(str(minute(8) + GRACE + 1))  # minute 7 still empty: stays firing
        await until(lambda: judged(minute(7)), 90, "the other replica taking over")
        other = leader(tmp_path, procs)
        assert other is not None and other != first
        procs[first] = start(stack, tmp_path, first, clock)  # the killed one comes back
        clock.write_text(str(minute(9) + GRACE + 1))  # minute 8: the cron ran: resolves
        await until(lambda: bodies(2), 60, "the resolved notification")
        await until(lambda: judged(minute(8)), 30, "state after the resolution")
        await asyncio.sleep(3)  # several ticks of both replicas
        assert kinds(receiver.bodies["/alertmanager"]) == [
            ("firing", "cron-stopped", ""), ("resolved", "cron-stopped", ""),
        ]  # fmt: skip
        assert await store.delivery_counts() == {"delivered": 2}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        await store.close()
        await receiver.stop()
