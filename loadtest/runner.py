"""One load-test run, start to finish: stack, micro-benchmark, load, drain, checks, baselines.

Phases, in order (each figure in the report comes from one of them):
 1. start the embedded stack (or use the given brokers and ClickHouse);
 2. ``track()`` micro-benchmark on its own topic;
 3. load: N producer processes paced by the rate profile; meanwhile the monitor samples
    produced/aggregated events, lag, CPU and RSS each second, the probe measures freshness
    and ``parts`` samples ClickHouse's inserts, new/active parts and merges every few seconds;
 4. drain: wait until every tracked event is visible in the rollups;
 5. exactness (expected totals merged from the producers vs the rollups), storage before and
    after ``OPTIMIZE FINAL``;
 6. baselines in a fresh process: bare consume + decode, decode, fold, the naive design;
 7. catch-up: one fresh aggregator replays the whole topic flat out;
 8. the 30-day hourly timeline on seeded rollups.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context

from tally.loadtest.baselines import BaselineResult, BaselineSpec, run_baselines
from tally.loadtest.catchup import CatchupResult, CatchupSpec, run_catchup
from tally.loadtest.config import MICRO_TOPIC, RunConfig
from tally.loadtest.endpoints import Endpoints, password_from_env
from tally.loadtest.exactness import Comparison, compare, fetch_totals
from tally.loadtest.fleet import Fleet
from tally.loadtest.freshness import FreshnessProbe, FreshnessSummary
from tally.loadtest.lag import LagProbe
from tally.loadtest.microbench import KindResult, bench_track
from tally.loadtest.monitor import Monitor, Sample, aggregated_events
from tally.loadtest.parts import PartsSample, PartsSampler
from tally.loadtest.producer import ProducerResult, ProducerSpec
from tally.loadtest.profiler import FlameRecorder
from tally.loadtest.resources import GroupUsage, ResourceSampler
from tally.loadtest.scenarios import INTERNAL_PREFIX, PROBE_KEY
from tally.loadtest.sendlog import merge_totals
from tally.loadtest.storage import TableSize, optimize_final, rows_by_class, table_size
from tally.loadtest.timeline30d import TimelineResult, run_timeline

GRANULARITIES = ("1m", "1h", "1d")
Notify = Callable[[str], None]


@dataclass
class RunData:
    """Everything measured; ``report.build`` turns it into the report."""

    config: RunConfig
    run_id: str
    started_at: float
    endpoints: Endpoints | None = None
    micro: list[KindResult] = field(default_factory=list)
    origin: float = 0.0
    load_end: float = 0.0
    producers: list[ProducerResult] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    drained: bool = False
    drain_s: float = 0.0
    freshness: FreshnessSummary | None = None
    probes: list[tuple[float, float | None]] = field(default_factory=list)
    usage: list[GroupUsage] = field(default_factory=list)
    parts: list[PartsSample] = field(default_factory=list)
    part_limits: dict[str, int] = field(default_factory=dict)
    usage_window_s: float = 0.0
    other_cpu_s: float = 0.0
    comparison: Comparison | None = None
    size_before: TableSize | None = None
    size_after: TableSize | None = None
    size_final: TableSize | None = None
    rows_by_class: list[dict] = field(default_factory=list)
    baselines: BaselineResult | None = None
    catchup: CatchupResult | None = None
    catchup_exact: bool | None = None
    timeline: TimelineResult | None = None
    flame: str | None = None
    errors: list[str] = field(default_factory=list)
    finished_at: float = 0.0


def run(
    config: RunConfig,
    notify: Notify = lambda _: None,
    on_sample: Callable[[Sample], None] | None = None,
) -> RunData:
    """Run every phase; ``notify`` gets one line per phase, ``on_sample`` each sample."""
    data = RunData(config, uuid.uuid4().hex[:8], time.time())
    config.out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as cleanup:
        endpoints = data.endpoints = _endpoints(config, cleanup, notify)
        client = endpoints.clickhouse()
        if config.micro_calls:
            notify(f"track() micro-benchmark ({config.micro_calls:,} calls per event shape)")
            asyncio.run(_create_topic(endpoints.bootstrap, MICRO_TOPIC))
            data.micro = bench_track(endpoints.bootstrap, MICRO_TOPIC, config.micro_calls)
        totals_before = Counter() if config.embedded else fetch_totals(client, config.database)
        data.size_before = table_size(client, config.database, "rollups")
        expected = _load(config, endpoints, data, cleanup, notify, on_sample)
        notify("exactness: rollups vs expected totals")
        actual = fetch_totals(client, config.database)
        actual.subtract(totals_before)
        actual = Counter({s: v for s, v in actual.items() if not s[1].startswith(INTERNAL_PREFIX)})
        actual = Counter({s: v for s, v in actual.items() if v != 0 or s in expected})
        data.comparison = compare(expected, actual)
        data.size_after = table_size(client, config.database, "rollups")
        notify("OPTIMIZE TABLE rollups FINAL")
        optimize_final(client, config.database, "rollups")
        data.size_final = table_size(client, config.database, "rollups")
        data.rows_by_class = rows_by_class(client, config.database)
        _after_load(config, endpoints, data, expected, client, notify)
    if not config.keep_data and config.embedded:
        stack_dir = config.out_dir / "stack"
        for log in stack_dir.glob("aggregator-*.log"):  # keep the logs, drop the data
            shutil.move(log, config.out_dir / log.name)
        shutil.rmtree(stack_dir, ignore_errors=True)
    data.finished_at = time.time()
    return data


def _endpoints(config: RunConfig, cleanup: contextlib.ExitStack, notify: Notify) -> Endpoints:
    if not config.embedded:
        assert config.bootstrap and config.clickhouse_url
        return Endpoints(
            bootstrap=config.bootstrap,
            clickhouse_url=config.clickhouse_url,
            topic=config.topic,
            group=config.group,
            database=config.database,
            clickhouse_user=config.clickhouse_user,
            clickhouse_password=password_from_env(),
            aggregator_pids=config.aggregator_pids,
        )
    from tally.embedded.stack import StackConfig, start_stack

    notify(
        f"starting Kafka (KRaft), ClickHouse (chDB) and {config.aggregators} aggregators "
        f"({config.partitions} partitions)"
    )
    workdir = config.out_dir / "stack"
    shutil.rmtree(workdir, ignore_errors=True)
    stack = start_stack(
        workdir,
        StackConfig(
            partitions=config.partitions,
            aggregators=config.aggregators,
            topic=config.topic,
            group=config.group,
            database=config.database,
            flush_interval_s=config.flush_interval_s,
            time_zone=config.time_zone,
            extra_args=list(config.aggregator_args),
        ),
    )
    cleanup.callback(stack.stop)
    return Endpoints.of_stack(
        stack,
        topic=config.topic,
        group=config.group,
        database=config.database,
        aggregator_pids=tuple(p.pid for p in stack.aggregators),
        kafka_pid=stack.kafka.pid,
        clickhouse_pid=stack.clickhouse.pid,
        flush_interval_s=config.flush_interval_s,
        partitions=config.partitions,
    )


async def _create_topic(bootstrap: str, topic: str) -> None:
    from tally.kafka.admin import create_topic

    await create_topic(bootstrap, topic, 1)


def _load(
    config: RunConfig,
    endpoints: Endpoints,
    data: RunData,
    cleanup: contextlib.ExitStack,
    notify: Notify,
    on_sample: Callable[[Sample], None] | None,
) -> Counter:
    """Phases 3 and 4; returns the merged expected totals."""
    profile, scenario = config.rate_profile(), config.scenario_spec()
    specs = [
        ProducerSpec(
            index=i,
            producers=config.producers,
            bootstrap=endpoints.bootstrap,
            topic=endpoints.topic,
            scenario=scenario,
            profile=profile,
            time_zone=config.time_zone,
            granularities=GRANULARITIES,
        )
        for i in range(config.producers)
    ]
    notify(f"spawning {config.producers} producers (pool {config.pool:,} templates each)")
    fleet = Fleet(specs)
    cleanup.callback(fleet.terminate)
    fleet.spawn()
    lag = LagProbe(endpoints.bootstrap, endpoints.topic, endpoints.group)
    lag.start()
    cleanup.callback(lag.close)
    groups = {
        "aggregators": list(endpoints.aggregator_pids),
        "kafka": [endpoints.kafka_pid] if endpoints.kafka_pid else [],
        "clickhouse": [endpoints.clickhouse_pid] if endpoints.clickhouse_pid else [],
        "producers": fleet.pids,
        "loadtest (monitor, probe)": [os.getpid()],
    }
    resources = ResourceSampler(groups)
    client = endpoints.clickhouse()
    before = aggregated_events(client, endpoints.database)
    probe = FreshnessProbe(
        endpoints.bootstrap,
        endpoints.topic,
        endpoints.clickhouse,
        endpoints.database,
        interval_s=config.probe_interval_s,
        key=f"{PROBE_KEY}::{data.run_id}",
    )
    probe.start()
    cleanup.callback(probe.stop)
    notify(
        f"load: {config.rate:,.0f} events/s for {config.duration_s:.0f}s "
        f"(ramp {config.ramp_s:.0f}s, scenario {config.scenario})"
    )
    data.origin = origin = fleet.go()
    monitor = Monitor(
        fleet, lag, resources, endpoints.clickhouse, endpoints.database, profile, origin,
        aggregated_before=before, on_sample=on_sample,
    )  # fmt: skip
    parts = PartsSampler(endpoints.clickhouse, endpoints.database, origin, config.parts_period_s)
    time.sleep(max(0.0, origin - time.time()))
    probe.sending.set()
    monitor.start()
    parts.start()
    cleanup.callback(parts.stop)
    flame = _start_profile(config, endpoints, fleet)
    time.sleep(max(0.0, origin + config.duration_s - time.time()))
    probe.sending.clear()
    data.load_end = time.time()
    notify("load done; producers flushing")
    data.producers = fleet.collect(timeout=600)
    for r in data.producers:
        if r.error:
            data.errors.append(f"producer {r.index}: {r.error}")
    tracked = sum(r.tracked for r in data.producers)
    notify(f"draining: waiting until all {tracked:,} events are visible in the rollups")
    data.drained = _drain(monitor, probe, tracked, data.load_end + config.drain_timeout_s)
    data.drain_s = time.time() - data.load_end
    monitor.stop()
    parts.stop()
    probe.stop()
    if flame is not None:
        data.flame = str(flame.wait() or "") or None
    data.samples = monitor.samples
    data.parts, data.part_limits = parts.samples, parts.limits
    data.freshness = probe.summary(until=data.load_end)
    data.probes = [(p.tracked_at - origin, p.freshness_s) for p in probe.probes]
    data.usage, data.usage_window_s, data.other_cpu_s = resources.summary()
    return merge_totals(r.totals for r in data.producers)


def _start_profile(config: RunConfig, endpoints: Endpoints, fleet: Fleet) -> FlameRecorder | None:
    pids = {
        "aggregator": list(endpoints.aggregator_pids),
        "producer": fleet.pids,
        "clickhouse": [endpoints.clickhouse_pid] if endpoints.clickhouse_pid else [],
    }.get(config.profile, [])
    if not pids:
        return None
    output = config.out_dir / f"flame-{config.profile}.svg"
    native = config.profile == "clickhouse"
    return FlameRecorder(pids[0], config.duration_s * 0.8, output, native=native, gil=not native)


def _drain(monitor: Monitor, probe: FreshnessProbe, tracked: int, deadline: float) -> bool:
    while time.time() < deadline:
        latest = monitor.latest()
        if latest and (latest.aggregated or 0) >= tracked and probe.outstanding() == 0:
            return True
        time.sleep(0.25)
    return False


def _after_load(
    config: RunConfig,
    endpoints: Endpoints,
    data: RunData,
    expected: Counter,
    client,
    notify: Notify,
) -> None:
    """Phases 6 to 8."""
    tracked = sum(r.tracked for r in data.producers)
    if config.baselines:
        notify("baselines: bare consume + decode, decode, fold, naive raw rows (fresh process)")
        start = int(data.origin) // 3600 * 3600
        end = (int(data.load_end) // 3600 + 1) * 3600
        achieved = tracked / max(config.duration_s, 1e-6)
        spec = BaselineSpec(
            endpoints=endpoints,
            group=f"tally-loadtest-bare-{data.run_id}",
            max_events=config.baseline_events,
            naive_events=config.naive_events,
            flush_events=max(5_000, round(achieved * config.flush_interval_s)),
            naive_database=config.naive_database,
            window=(start, end),
            query_runs=config.query_runs,
        )
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            data.baselines = pool.submit(run_baselines, spec).result()
    if config.catchup:
        notify("catch-up: one fresh aggregator replays the whole topic")
        data.catchup = run_catchup(
            CatchupSpec(
                endpoints=endpoints,
                workdir=config.out_dir,
                group=f"tally-loadtest-catchup-{data.run_id}",
                flush_interval_s=config.flush_interval_s,
                max_s=config.catchup_max_s,
                clickhouse_pid=endpoints.clickhouse_pid,
                profile=config.out_dir / "flame-catchup.svg"
                if config.profile == "catchup"
                else None,
            )
        )
        if (config.out_dir / "flame-catchup.svg").exists() and config.profile == "catchup":
            data.flame = str(config.out_dir / "flame-catchup.svg")
        # The replay covers the whole topic: only a topic this run created holds exactly
        # what was expected (an external topic may hold earlier runs too).
        if data.catchup.complete and config.embedded:
            actual = fetch_totals(client, data.catchup.database)
            actual = Counter(
                {s: v for s, v in actual.items() if not s[1].startswith(INTERNAL_PREFIX)}
            )
            data.catchup_exact = compare(expected, actual).exact
    if config.timeline_keys:
        notify(f"30-day hourly timeline: seeding {config.timeline_keys:,} keys, timing the query")
        data.timeline = run_timeline(client, keys=config.timeline_keys, runs=config.query_runs * 3)


def config_dict(config: RunConfig) -> dict:
    """The config as JSON-friendly values."""
    out = asdict(config)
    out["out_dir"] = str(config.out_dir)
    out["aggregator_pids"] = list(config.aggregator_pids)
    return out
