"""The demo's ports: the ones asked for, else the defaults, else free ones (never a clash)."""

from __future__ import annotations

from tally.api.server import PortInUse, check_port
from tally.embedded.kafka_node import free_ports

DEFAULTS = {"kafka": 9092, "clickhouse": 8123, "api": 8700}


def pick_ports(asked: dict[str, int | None]) -> dict[str, int]:
    """A port per part: the one asked for (as is: a taken one fails later with its flag),
    else its default if free, else a free port."""
    chosen: dict[str, int] = {}
    spare = iter(free_ports(len(DEFAULTS)))
    for name, default in DEFAULTS.items():
        port = asked.get(name)
        if port is None:
            try:
                check_port("127.0.0.1", default)
                port = default
            except PortInUse:
                port = next(spare)
        chosen[name] = port
    return chosen
