"""One KRaft node: its config and properties, storage format, JVM, launch and readiness.

A node runs as a JVM subprocess in its own process group, so tests can stop, kill, pause
and resume it as a whole. :class:`EmbeddedKafka` is the handle of a running node.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient

from tally.embedded.kafka_install import RESOURCES, KafkaBrokerError, java_executable
from tally.embedded.lifecycle import StopsOnExit

LOG4J_CONFIG = RESOURCES / "log4j2.yaml"
LOG_NAME = "kafka.log"
PROPERTIES_NAME = "server.properties"
DATA_NAME = "data"
HEAP_MAX = "512m"
HEAP_MIN = "256m"
BIND_ERROR = "Address already in use"
T = TypeVar("T")


class PortInUse(KafkaBrokerError):
    """A chosen port was taken between picking it and the JVM binding it."""


# --------------------------------------------------------------------------- config


def free_ports(count: int = 2) -> list[int]:
    """Distinct currently-free TCP ports on 127.0.0.1."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def pick_ports(port: int | None) -> tuple[int, int]:
    """(broker, controller) ports: ``port`` if given, the rest free and distinct."""
    while True:
        first, second = free_ports(2)
        if port is None:
            return first, second
        if first != port:
            return port, first


def broker_config(
    port: int,
    controller_port: int,
    log_dir: Path,
    *,
    partitions_default: int = 4,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """server.properties for a combined broker+controller tuned for a small box."""
    config = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(partitions_default),
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "500",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
    }
    config.update(extra or {})
    return config


def render_properties(config: Mapping[str, str]) -> str:
    """Java .properties text (one ``key=value`` per line)."""
    lines = []
    for key, value in config.items():
        if "\n" in key or "\n" in str(value):
            raise ValueError(f"newline in config entry {key!r}")
        lines.append(f"{key}={str(value).replace(chr(92), chr(92) * 2)}")
    return "\n".join(lines) + "\n"


def random_cluster_id() -> str:
    """A 22-character base64url UUID, as ``kafka-storage random-uuid`` prints.

    Like Kafka's ``Uuid.randomUuid`` it never starts with ``-``, which the StorageTool
    command line would take for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _classpath(libs: Path) -> str:
    return str(libs / "*")


def jvm_args(libs: Path) -> list[str]:
    return [
        java_executable(),
        f"-Xms{HEAP_MIN}",
        f"-Xmx{HEAP_MAX}",
        "-XX:+UseSerialGC",
        "-XX:-UsePerfData",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-Dlog4j2.shutdownHookEnabled=false",  # console output is unbuffered anyway
        "-cp",
        _classpath(libs),
    ]


def format_storage(
    libs: Path, properties: Path, log_dir: Path, cluster_id: str | None = None
) -> None:
    """Run ``kafka.tools.StorageTool format`` unless ``log_dir`` is already formatted.

    Nodes of one cluster share ``cluster_id``; a single broker gets a random one.
    """
    if (log_dir / "meta.properties").exists():
        return
    cmd = [
        *jvm_args(libs),
        "kafka.tools.StorageTool", "format",
        f"--cluster-id={cluster_id or random_cluster_id()}",
        "-c", str(properties),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise KafkaBrokerError(f"storage format failed:\n{proc.stdout}{proc.stderr}")


# --------------------------------------------------------------------------- readiness


async def _probe_async(bootstrap: str, timeout: float) -> bool:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="tally-readiness-probe",
        request_timeout_ms=max(1000, int(timeout * 1000)),
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def probe(bootstrap: str, timeout: float = 5.0) -> bool:
    """True if the broker answers a metadata request listing itself.

    Runs its own event loop in a worker thread, so it is safe to call from inside a
    running loop (e.g. a pytest-asyncio fixture).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-probe") as pool:
        return pool.submit(asyncio.run, _probe_async(bootstrap, timeout)).result()


def _port_open(port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout):
        return True
    return False


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- broker


@dataclass
class EmbeddedKafka(StopsOnExit):
    """A running single-node KRaft broker; stop it with :meth:`stop` or ``with``."""

    bootstrap: str
    workdir: Path
    port: int
    controller_port: int
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    ready_seconds: float = 0.0

    @property
    def pid(self) -> int:
        """JVM pid; also the id of its process group."""
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:  # not reaped yet, so the pgid is still ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (controlled shutdown), wait up to ``timeout``, then SIGKILL the group."""
        self._signal_group(signal.SIGTERM)
        self._signal_group(signal.SIGCONT)  # a paused JVM cannot handle SIGTERM
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole group (simulates a crash) and reap it."""
        self._signal_group(signal.SIGKILL)
        self.process.wait()

    def pause(self, timeout: float = 5) -> None:
        """SIGSTOP: the broker keeps its sockets but stops answering (an outage).

        Returns once every JVM thread is stopped: group-stop takes a few ms, during
        which a request sent right after the signal can still be served.
        """
        self._signal_group(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not _all_threads_stopped(self.pid) and time.monotonic() < deadline:
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._signal_group(signal.SIGCONT)

    def restart(self, timeout: float = 60) -> None:
        """Stop if running, then start again on the same data and ports."""
        if self.running:
            self.stop()
        started = time.monotonic()
        self.process, log_offset = launch(self.command, self.workdir, self.log_path)
        wait_ready(self, log_offset, timeout)
        self.ready_seconds = time.monotonic() - started

    def log_tail(self, lines: int = 60) -> str:
        return _tail(_read_from(self.log_path, 0), lines)


def _all_threads_stopped(pid: int) -> bool:
    """True if every thread of ``pid`` is stopped (Linux /proc; elsewhere after a beat)."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        time.sleep(0.1)
        return True
    for task in tasks.iterdir():
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread exited meanwhile
        if state not in ("T", "t"):
            return False
    return True


def launch(
    command: Sequence[str], workdir: Path, log_path: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the JVM in a new session, appending to ``log_path``; also return the log offset."""
    with log_path.open("ab") as log:
        log.write(f"\n===== tally: starting broker at {time.ctime()} =====\n".encode())
        log.flush()
        offset = log.tell()
        process = subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, offset


def wait_ready(broker: EmbeddedKafka, log_offset: int, timeout: float) -> None:
    """Block until the broker answers metadata; raise with the log tail otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        output = _read_from(broker.log_path, log_offset)
        if BIND_ERROR in output:
            broker.kill()
            raise PortInUse(f"port in use; broker log:\n{_tail(output)}")
        if not broker.running:
            raise KafkaBrokerError(
                f"broker exited with code {broker.process.returncode}; "
                f"log {broker.log_path}:\n{_tail(output)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            broker.kill()
            raise KafkaBrokerError(
                f"broker not ready after {timeout:.0f}s; log {broker.log_path}:\n{_tail(output)}"
            )
        if _port_open(broker.port) and probe(broker.bootstrap, min(5.0, max(remaining, 1.0))):
            return
        time.sleep(0.2)


def launch_node(
    command: Sequence[str], workdir: Path, port: int, controller_port: int
) -> tuple[EmbeddedKafka, int]:
    """Launch a node logging to ``workdir/kafka.log``; its handle and the log offset."""
    log_path = workdir / LOG_NAME
    process, log_offset = launch(command, workdir, log_path)
    node = EmbeddedKafka(
        bootstrap=f"127.0.0.1:{port}",
        workdir=workdir,
        port=port,
        controller_port=controller_port,
        command=list(command),
        log_path=log_path,
        process=process,
    )
    return node, log_offset


def retry_port_clash(start: Callable[[], T], attempts: int) -> T:
    """``start()``, called again (it picks its ports anew) while a port clash takes up to
    ``attempts`` tries."""
    for attempt in range(1, attempts + 1):
        try:
            return start()
        except PortInUse:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")
