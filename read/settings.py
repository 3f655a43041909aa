"""Settings of the read side, built once at the entry point and passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from tally.clickhouse.settings import (
    CONNECTION,
    DATABASE,
    DEFAULT_DATABASE,
    ClickHouseSettings,
    clickhouse_from,
)
from tally.schemas.ddl import identifier
from tally.schemas.settings_table import SettingsTable

# A read "as of settled" stops this long before now (read/settled.py): the client's batching
# and send retries (a few seconds) plus the aggregators' flush interval (2 s) and its pacing.
DEFAULT_SETTLE_S = 10.0


@dataclass(frozen=True)
class ReadSettings:
    """Where the rollups are and how much one request may ask for."""

    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    database: str = DEFAULT_DATABASE
    query_timeout_s: float = 30.0
    max_buckets: int = 20_000
    max_points: int = 200_000  # values per series or values response (rows x buckets)
    max_keys: int = 10_000
    max_sql_rows: int = 10_000
    settle_s: float = DEFAULT_SETTLE_S

    def __post_init__(self) -> None:
        identifier(self.database)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ReadSettings:
        """``TALLY_CLICKHOUSE_URL``/``_USER``/``_PASSWORD``/``_CA_CERT``, ``TALLY_DATABASE``."""
        env = os.environ if env is None else env
        values = (CONNECTION + SettingsTable((DATABASE,))).resolve({}, env)
        base = {"clickhouse": clickhouse_from(values), "database": values["database"]}
        return cls(**{**base, **overrides})  # type: ignore[arg-type]
