"""Real Apache Kafka broker (single-node KRaft) for tests and the demo.

The broker jars come from Maven Central (``embedded/kafka/pom.xml``) into a versioned
cache; the broker runs as a JVM subprocess in its own process group, so tests can stop,
kill, pause and resume it as a whole.

CLI::

    python -m tally.embedded.kafka_broker install
    python -m tally.embedded.kafka_broker run --dir DIR [--port P]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.commit import OffsetFetchRequest
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from tally.embedded.lifecycle import StopsOnExit

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
RESOURCES = Path(__file__).resolve().parent / "kafka"
POM = RESOURCES / "pom.xml"
LOG4J_CONFIG = RESOURCES / "log4j2.yaml"
MARKER = ".tally-complete"
LOG_NAME = "kafka.log"
PROPERTIES_NAME = "server.properties"
DATA_NAME = "data"
HEAP_MAX = "512m"
HEAP_MIN = "256m"
BIND_ERROR = "Address already in use"
_INSTALL_HINT = "On Debian/Ubuntu: apt-get install maven openjdk-17-jre-headless"


class KafkaBrokerError(RuntimeError):
    """The broker could not be installed, started or reached."""


class _PortInUse(KafkaBrokerError):
    """A chosen port was taken between picking it and the JVM binding it."""


# --------------------------------------------------------------------------- install


def default_cache_dir() -> Path:
    """``$TALLY_CACHE_DIR`` or ``~/.cache/tally``."""
    env = os.environ.get("TALLY_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tally"


def libs_dir(cache_dir: Path | None = None) -> Path:
    """Where the broker jars live (may not be installed yet)."""
    return (cache_dir or default_cache_dir()) / f"kafka-{KAFKA_VERSION}" / "libs"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def is_installed(cache_dir: Path | None = None) -> bool:
    """True when the jar cache is complete and matches the current pom.xml."""
    return _is_complete(libs_dir(cache_dir))


def _is_complete(libs: Path) -> bool:
    marker = libs / MARKER
    try:
        return marker.read_text().strip() == _pom_digest()
    except OSError:
        return False


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KafkaBrokerError(f"`{name}` not found on PATH. {_INSTALL_HINT}")
    return path


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH; must be Java >= 17."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else _require_tool("java")
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=True
        ).stderr
    except (OSError, subprocess.SubprocessError) as exc:
        raise KafkaBrokerError(f"cannot run {java} -version: {exc}. {_INSTALL_HINT}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0_x" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise KafkaBrokerError(
            f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+, {java} is: {out.strip()!r}. "
            f"{_INSTALL_HINT}"
        )
    return java


def install(cache_dir: Path | None = None) -> Path:
    """Download the broker jars once (via Maven) and return the libs directory.

    Idempotent: Maven runs only when the marker file (written last) is missing or
    belongs to a different pom.xml. Downloads go to a temporary sibling directory
    that is renamed into place, so concurrent or interrupted installs are safe.
    """
    libs = libs_dir(cache_dir)
    if is_installed(cache_dir):
        return libs
    mvn = _require_tool("mvn")
    java_executable()
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = libs.parent / f"libs.tmp-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _copy_dependencies(mvn, staging)
        (staging / MARKER).write_text(_pom_digest() + "\n")
        _move_into_place(staging, libs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not is_installed(cache_dir):
        raise KafkaBrokerError(f"install finished but {libs} is incomplete")
    return libs


def _copy_dependencies(mvn: str, target: Path) -> None:
    cmd = [
        mvn, "-B", "-q", "-f", str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={target}",
        "-DincludeScope=runtime",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=target.parent, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise KafkaBrokerError(f"maven failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    if not any(target.glob("kafka_2.13-*.jar")):
        raise KafkaBrokerError(f"maven succeeded but no kafka jar in {target}")


def _move_into_place(staging: Path, libs: Path) -> None:
    """Replace an incomplete or outdated ``libs`` with ``staging``; tolerate a concurrent winner."""
    if libs.exists() and not _is_complete(libs):
        shutil.rmtree(libs, ignore_errors=True)
    with contextlib.suppress(FileExistsError, OSError):
        staging.rename(libs)  # fails if a concurrent install got there first


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


def _pick_ports(port: int | None) -> tuple[int, int]:
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


def _jvm_args(libs: Path) -> list[str]:
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
        *_jvm_args(libs),
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
        self.process, log_offset = _launch(self.command, self.workdir, self.log_path)
        _wait_ready(self, log_offset, timeout)
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


def _launch(
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


def _wait_ready(broker: EmbeddedKafka, log_offset: int, timeout: float) -> None:
    """Block until the broker answers metadata; raise with the log tail otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        output = _read_from(broker.log_path, log_offset)
        if BIND_ERROR in output:
            broker.kill()
            raise _PortInUse(f"port in use; broker log:\n{_tail(output)}")
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


def start_kafka(
    workdir: Path,
    *,
    port: int | None = None,
    partitions_default: int = 4,
    extra_config: dict[str, str] | None = None,
    timeout: float = 60,
    cache_dir: Path | None = None,
) -> EmbeddedKafka:
    """Install if needed, format ``workdir/data`` once, start the broker, wait until ready.

    An already formatted ``workdir`` is reused (data survives restarts). Without
    ``port`` two free ports are picked, retrying if another process grabs one first.
    """
    libs = install(cache_dir)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 3
    for attempt in range(1, attempts + 1):
        broker_port, controller_port = _pick_ports(port)
        try:
            return _start_once(
                libs, workdir, broker_port, controller_port,
                partitions_default, extra_config, timeout,
            )  # fmt: skip
        except _PortInUse:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _start_once(
    libs: Path,
    workdir: Path,
    port: int,
    controller_port: int,
    partitions_default: int,
    extra_config: Mapping[str, str] | None,
    timeout: float,
) -> EmbeddedKafka:
    started = time.monotonic()
    log_dir = workdir / DATA_NAME
    properties = workdir / PROPERTIES_NAME
    config = broker_config(
        port, controller_port, log_dir, partitions_default=partitions_default, extra=extra_config
    )
    properties.write_text(render_properties(config))
    format_storage(libs, properties, log_dir)
    command = [*_jvm_args(libs), "kafka.Kafka", str(properties)]
    log_path = workdir / LOG_NAME
    process, log_offset = _launch(command, workdir, log_path)
    broker = EmbeddedKafka(
        bootstrap=f"127.0.0.1:{port}",
        workdir=workdir,
        port=port,
        controller_port=controller_port,
        command=command,
        log_path=log_path,
        process=process,
    )
    try:
        _wait_ready(broker, log_offset, timeout)
    except BaseException:
        broker.kill()
        raise
    broker.ready_seconds = time.monotonic() - started
    return broker


# --------------------------------------------------------------------------- offsets


async def committed_offsets(
    bootstrap: str,
    group: str,
    partitions: Sequence[TopicPartition] | None = None,
    *,
    timeout: float = 30,
) -> dict[TopicPartition, OffsetAndMetadata]:
    """Committed offsets (with metadata) of ``group``; partitions without one are omitted.

    Unlike ``AIOKafkaAdminClient.list_consumer_group_offsets`` this retries group-level
    errors: aiokafka 0.14 ignores the response's top-level error code, so while the
    coordinator is still loading (right after a broker restart) it returns ``{}``.
    """
    by_topic: dict[str, list[int]] = {}
    for tp in partitions or ():
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    request = OffsetFetchRequest(group, list(by_topic.items()) if partitions else None)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tally-offsets")
    await admin.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                coordinator = await admin.find_coordinator(group)
                response = await admin._send_request(request, coordinator)
                error = for_code(getattr(response, "error_code", 0))
                if error.errno == 0:
                    return _offsets_from(response)
                if not error.retriable:
                    raise error(f"offset fetch for group {group!r}")
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


def _offsets_from(response: Any) -> dict[TopicPartition, OffsetAndMetadata]:
    offsets = {}
    for topic, parts in response.topics:
        for partition, offset, metadata, code in parts:
            if code:
                raise for_code(code)(f"offset fetch for {topic}[{partition}]")
            if offset >= 0:
                offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, metadata)
    return offsets


# --------------------------------------------------------------------------- CLI


def _run_foreground(workdir: Path, port: int | None, partitions: int) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with start_kafka(workdir, port=port, partitions_default=partitions) as broker:
        print(broker.bootstrap, flush=True)
        print(
            f"kafka {KAFKA_VERSION} pid={broker.pid} ready in {broker.ready_seconds:.1f}s; "
            f"log {broker.log_path}",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            if not broker.running:
                print(f"broker died:\n{broker.log_tail()}", file=sys.stderr)
                return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tally.embedded.kafka_broker")
    sub = parser.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("install", help="download the broker jars; print the libs dir")
    inst.add_argument("--cache-dir", type=Path, default=None)
    run = sub.add_parser("run", help="run a broker in the foreground until SIGTERM/SIGINT")
    run.add_argument("--dir", type=Path, required=True, help="work/data directory")
    run.add_argument("--port", type=int, default=None, help="PLAINTEXT port (default: free)")
    run.add_argument("--partitions", type=int, default=4, help="num.partitions default")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "install":
            print(install(args.cache_dir))
            return 0
        return _run_foreground(args.dir, args.port, args.partitions)
    except KafkaBrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
