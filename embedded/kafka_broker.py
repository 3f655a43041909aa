"""Real Apache Kafka broker (single-node KRaft) for tests and the demo.

Installs the jars (``kafka_install``), starts one combined broker+controller node
(``kafka_node``) and reads a group's committed offsets.

CLI::

    python -m tally.embedded.kafka_broker install
    python -m tally.embedded.kafka_broker run --dir DIR [--port P]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.commit import OffsetFetchRequest
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from tally.embedded.kafka_install import KAFKA_VERSION, KafkaBrokerError, install
from tally.embedded.kafka_node import (
    DATA_NAME,
    PROPERTIES_NAME,
    EmbeddedKafka,
    broker_config,
    format_storage,
    jvm_args,
    launch_node,
    pick_ports,
    render_properties,
    retry_port_clash,
    wait_ready,
)


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

    def start() -> EmbeddedKafka:
        broker_port, controller_port = pick_ports(port)
        return _start_once(
            libs, workdir, broker_port, controller_port, partitions_default, extra_config, timeout
        )

    return retry_port_clash(start, 1 if port is not None else 3)


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
    command = [*jvm_args(libs), "kafka.Kafka", str(properties)]
    broker, log_offset = launch_node(command, workdir, port, controller_port)
    try:
        wait_ready(broker, log_offset, timeout)
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
