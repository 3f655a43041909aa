"""Client settings: built once by the application and passed to ``Tracker``."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tally.ingest.codec import WIRE_VERSION
from tally.kafka.security import KafkaSecurity
from tally.kafka.settings import BOOTSTRAP, EVENTS_TOPIC, SECURITY, TOPIC, security_from
from tally.schemas.limits import Limits
from tally.schemas.settings_table import SettingsTable


def default_source() -> str:
    """A producer identity for debugging: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# The client's Kafka settings (``TALLY_KAFKA_*``, ``TALLY_TOPIC``), declared in ``tally.kafka``.
KAFKA = SettingsTable((BOOTSTRAP, TOPIC)) + SECURITY


@dataclass(frozen=True)
class ClientSettings:
    """Everything the thin client needs; no environment reads happen deeper in the code.

    Overflow policy: the in-memory buffer holds at most ``buffer_events`` events and the
    sender holds at most ``pending_bytes`` of encoded records awaiting the broker. Past
    those bounds, records go to ``spool_dir`` when set (bounded by ``spool_bytes``); what
    still does not fit is dropped, newest first, and counted in ``TrackerStats``.

    ``record_bytes`` caps one encoded Kafka record (before compression). Keep it below the
    broker's ``message.max.bytes`` / the topic's ``max.message.bytes`` (Kafka's default is
    1 MiB; the default here leaves room for batch headers and lz4's worst case). A record the
    broker still refuses as too large is split in half and sent again; one event that cannot
    fit a record is rejected by ``track`` and counted (``too_large``).

    ``source`` names the producer inside every record and its spool directory. A forked child
    never reuses its parent's: it uses ``source`` plus its own pid and a random suffix.

    ``flush_on_sigterm``: if SIGTERM would otherwise kill the process outright (no handler
    installed, as in plain scripts), the tracker installs one that closes it (deliver or spool)
    and then dies of SIGTERM as before. Frameworks with their own handler exit through
    ``atexit``, which closes the tracker too.

    ``fold`` (default on; ``TALLY_CLIENT_FOLD=0`` turns it off): the sender thread sums what
    it holds before encoding, records with the same route, keys, UTC minute and shape, as the
    aggregator would (``ingest/outbox/folding.py``). Rollups are the same either way; fewer
    events cross the wire. The fold window is the linger period, so latency does not grow.

    ``wire_version`` (``TALLY_WIRE_VERSION``; default 2, the version by record type): the
    metrics records' wire version; 4 writes narrow typed columns, which pay in records of
    several hundred events or more (BENCHMARKS.md, "Session 5"). Aggregators older than
    version 4 dead-letter it as ``unknown_version``: upgrade them first.
    """

    bootstrap_servers: str
    topic: str = EVENTS_TOPIC
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    limits: Limits = field(default_factory=Limits)
    strict: bool = False
    linger_ms: int = 50
    buffer_events: int = 200_000
    record_events: int = 2_000
    record_bytes: int = 900 * 1024
    pending_bytes: int = 64 * 1024 * 1024
    compression: str | None = "lz4"
    request_timeout_ms: int = 30_000
    spool_dir: Path | None = None
    spool_bytes: int = 1024 * 1024 * 1024
    close_timeout_s: float = 10.0
    flush_on_sigterm: bool = True
    fold: bool = True
    source: str = field(default_factory=default_source)
    wire_version: int = WIRE_VERSION

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> ClientSettings:
        """Settings from the environment (``env``, default ``os.environ``); ``overrides`` win.

        ============================== ================== ==========================
        variable                       default            field
        ============================== ================== ==========================
        ``TALLY_KAFKA_BOOTSTRAP``      ``127.0.0.1:9092`` ``bootstrap_servers``
        ``TALLY_TOPIC``                ``tally.events``   ``topic``
        ``TALLY_STRICT``               off                ``strict`` (``1``/``true``/``yes``)
        ``TALLY_RECORD_BYTES``         ``921600``         ``record_bytes`` (at least 1024)
        ``TALLY_SPOOL_DIR``            unset: no spool    ``spool_dir``
        ``TALLY_CLIENT_FOLD``          on                 ``fold`` (``0``/``false``/``no``: off)
        ``TALLY_WIRE_VERSION``         ``2``              ``wire_version`` (2, 3 or 4)
        ``TALLY_KAFKA_SECURITY_PROTOCOL`` ``PLAINTEXT``   ``security.protocol``
        ``TALLY_KAFKA_SASL_MECHANISM`` ``PLAIN``          ``security.sasl_mechanism``
        ``TALLY_KAFKA_SASL_USERNAME``  unset              ``security.sasl_username``
        ``TALLY_KAFKA_SASL_PASSWORD``  unset              ``security.sasl_password``
        ``TALLY_KAFKA_SSL_CAFILE``     unset: system CAs  ``security.ssl_cafile``
        ============================== ================== ==========================

        Every other field keeps its default unless passed in ``overrides``
        (``ClientSettings.from_env(linger_ms=20)``). docs/jobs.md lists them with the variables
        the query side reads (``TALLY_CLICKHOUSE_URL``, ``_USER``, ``_PASSWORD``).
        """
        env = dict(os.environ if env is None else env)
        kafka = KAFKA.resolve({}, env)
        values: dict[str, object] = {
            "bootstrap_servers": kafka["bootstrap"],
            "topic": kafka["topic"],
            "security": security_from(kafka),
            "strict": env.get("TALLY_STRICT", "") in ("1", "true", "yes"),
        }
        if env.get("TALLY_RECORD_BYTES"):
            values["record_bytes"] = int(env["TALLY_RECORD_BYTES"])
        if env.get("TALLY_CLIENT_FOLD", "").lower() in ("0", "false", "no", "off"):
            values["fold"] = False
        if env.get("TALLY_SPOOL_DIR"):
            values["spool_dir"] = Path(env["TALLY_SPOOL_DIR"])
        if env.get("TALLY_WIRE_VERSION"):
            values["wire_version"] = int(env["TALLY_WIRE_VERSION"])
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.wire_version not in (2, 3, 4):
            raise ValueError(f"wire_version must be 2, 3 or 4, not {self.wire_version}")
        if self.record_bytes < 1024:
            raise ValueError(f"record_bytes must be at least 1024, not {self.record_bytes}")
        if self.record_events < 1:
            raise ValueError(f"record_events must be at least 1, not {self.record_events}")
