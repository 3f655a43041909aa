"""Everything one load-test run is told, built once by the CLI (or a test) and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tally.clickhouse.settings import DEFAULT_DATABASE
from tally.kafka.settings import AGGREGATOR_GROUP, EVENTS_TOPIC
from tally.loadtest.pacing import RateProfile
from tally.loadtest.scenarios import Scenario
from tally.loadtest.workloads import Cardinality
from tally.schemas.ddl import identifier

MICRO_TOPIC = "tally.loadtest.micro"
PROFILES = ("none", "aggregator", "producer", "clickhouse", "catchup")


@dataclass(frozen=True)
class RunConfig:
    """Load shape, the pipeline to drive (embedded unless ``bootstrap`` is set), and phases."""

    scenario: str = "mixed"
    rate: float = 20_000
    duration_s: float = 60
    ramp_s: float = 5
    burst_factor: float = 1.0
    burst_every_s: float = 0
    burst_length_s: float = 0
    producers: int = 2
    customers: int = 200
    resellers: int = 20
    products: int = 5_000
    tenants: int = 20
    pool: int = 50_000
    seed: int = 7
    time_zone: str = "UTC"
    # The embedded stack (ignored when bootstrap is given).
    partitions: int = 8
    aggregators: int = 2
    flush_interval_s: float = 1.0
    aggregator_args: tuple[str, ...] = ()  # extra ``tally.aggregator run`` flags
    # An external pipeline: aggregators are assumed to run already.
    bootstrap: str | None = None
    clickhouse_url: str | None = None
    clickhouse_user: str = "default"
    topic: str = EVENTS_TOPIC
    group: str = AGGREGATOR_GROUP
    database: str = DEFAULT_DATABASE
    aggregator_pids: tuple[int, ...] = ()
    # Phases (0 or False skips one).
    micro_calls: int = 50_000
    baselines: bool = True
    baseline_events: int = 2_000_000
    naive_events: int = 1_000_000
    naive_database: str = "tally_naive"
    catchup: bool = True
    catchup_max_s: float = 180
    timeline_keys: int = 1_000
    query_runs: int = 10
    probe_interval_s: float = 0.25
    parts_period_s: float = 3.0
    drain_timeout_s: float = 300
    profile: str = "none"  # none | aggregator | producer | clickhouse | catchup
    out_dir: Path = Path("loadtest-results/latest")
    keep_data: bool = False

    def __post_init__(self) -> None:
        if (self.bootstrap is None) != (self.clickhouse_url is None):
            raise ValueError("give both --bootstrap and --clickhouse-url, or neither")
        if self.producers < 1:
            raise ValueError("producers must be >= 1")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}")
        self.rate_profile()  # validates the load shape
        identifier(self.database)  # both end up in SQL text: only plain identifiers
        identifier(self.naive_database)
        self.scenario_spec()

    @property
    def embedded(self) -> bool:
        """True when the run starts (and stops) its own stack."""
        return self.bootstrap is None

    def rate_profile(self) -> RateProfile:
        """The target rate over time."""
        return RateProfile(
            rate=self.rate,
            duration_s=self.duration_s,
            ramp_s=self.ramp_s,
            burst_factor=self.burst_factor,
            burst_every_s=self.burst_every_s,
            burst_length_s=self.burst_length_s,
        )

    def scenario_spec(self) -> Scenario:
        """The job mix and cardinality."""
        return Scenario(
            name=self.scenario,
            cardinality=Cardinality(
                customers=self.customers,
                resellers=self.resellers,
                products=self.products,
                tenants=self.tenants,
            ),
            pool=self.pool,
            seed=self.seed,
        )
