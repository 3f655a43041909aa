"""The report as rich tables in the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def _pairs(title: str, pairs: list[tuple[str, object]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for name, value in pairs:
        table.add_row(name, _fmt(value))
    return table


def render(report: dict, console: Console) -> None:
    """Print every section that was measured."""
    load, fresh, storage = report["load"], report["freshness"], report["storage"]
    console.print(
        _pairs(
            "Load",
            [
                ("target events", load["target_events"]),
                ("tracked events", load["tracked_events"]),
                ("generator kept up", load["generator_kept_up"]),
                ("average produced rate /s", load["average_rate"]),
                ("steady produced rate /s", load["steady_produced_rate"]),
                ("steady aggregated rate /s", load["steady_aggregated_rate"]),
                ("events per Kafka record", load["events_per_record"]),
                ("drained / drain s", f"{_fmt(load['drained'])} / {load['drain_s']}"),
                (
                    "lag records max / mean / end",
                    (
                        f"{_fmt(load['lag_records_max'])} / {_fmt(load['lag_records_mean'])}"
                        f" / {_fmt(load['lag_records_at_end'])}"
                    ),
                ),
                (
                    "freshness p50 / p99 / max s",
                    (
                        f"{_fmt(fresh.get('p50_s'))} / {_fmt(fresh.get('p99_s'))}"
                        f" / {_fmt(fresh.get('max_s'))}"
                    ),
                ),
                ("probes seen / sent", f"{fresh.get('visible')} / {fresh.get('probes')}"),
                ("exact", report["exactness"]["exact"]),
                (
                    "expected / actual slots",
                    (
                        f"{_fmt(report['exactness']['expected_slots'])} / "
                        f"{_fmt(report['exactness']['actual_slots'])}"
                    ),
                ),
            ],
        )
    )
    usage = Table(title="CPU and memory during the run", title_justify="left")
    for column in ("group", "CPU s", "avg %", "max %", "max RSS MB/process"):
        usage.add_column(column, justify="right" if column != "group" else "left")
    for g in report["resources"]["groups"]:
        usage.add_row(
            g["name"], _fmt(g["cpu_s"]), _fmt(g["cpu_pct_avg"]), _fmt(g["cpu_pct_max"]),
            _fmt(g["rss_mb_max"]),
        )  # fmt: skip
    usage.add_row("other processes", _fmt(report["resources"]["other_processes_cpu_s"]), "", "", "")
    console.print(usage)
    parts = report.get("parts") or {}
    if parts.get("samples"):
        keys = (
            "inserts_per_s", "new_parts_per_s_total", "new_parts_per_s", "active_parts_max",
            "fullest_partition_max", "merges_running_max", "DelayedInserts", "RejectedInserts",
            "too_many_parts_errors", "first_too_many_parts_s", "limits",
        )  # fmt: skip
        console.print(_pairs("ClickHouse parts", [(k, parts.get(k)) for k in keys]))
    if storage:
        flat = [(k.replace("_", " "), v) for k, v in storage.items() if not isinstance(v, list)]
        console.print(_pairs("Storage (rollups)", flat))
        by_class = Table(title="Rows after OPTIMIZE FINAL by key class", title_justify="left")
        for column in ("granularity", "keys", "class", "rows", "rows/event"):
            by_class.add_column(column, justify="left" if column == "class" else "right")
        for row in storage.get("rows_after_optimize_by_class", []):
            by_class.add_row(
                row["granularity"], _fmt(row["keys"]), row["class"], _fmt(row["rows"]),
                _fmt(row["rows_per_event"]),
            )  # fmt: skip
        console.print(by_class)
    if report["micro"]:
        micro = Table(title="track() per call (µs)", title_justify="left")
        for column in ("event", "leaves", "median", "p99", "bare median", "net median"):
            micro.add_column(column, justify="right" if column != "event" else "left")
        for m in report["micro"]:
            micro.add_row(
                m["kind"], str(m["leaves"]), _fmt(m["track"]["median_us"]),
                _fmt(m["track"]["p99_us"]), _fmt(m["bare"]["median_us"]),
                _fmt(m["net_median_us"]),
            )  # fmt: skip
        console.print(micro)
    _baselines(report, console)
    if report.get("profile"):
        hot = Table(title=f"Hot paths ({report['files']['flame']})", title_justify="left")
        for column in ("function", "self %", "total %"):
            hot.add_column(column, justify="left" if column == "function" else "right")
        for f in report["profile"]:
            hot.add_row(f["function"], _fmt(f["self_pct"]), _fmt(f["total_pct"]))
        console.print(hot)
    targets = Table(title="Targets", title_justify="left")
    for column in ("target", "goal", "measured", "met"):
        targets.add_column(column)
    for t in report["targets"]:
        met = {True: "[green]met", False: "[red]missed", None: "-"}[t["met"]]
        targets.add_row(t["name"], t["target"], _fmt(t["measured"]), met)
    console.print(targets)


def _baselines(report: dict, console: Console) -> None:
    base, catchup = report.get("baselines"), report.get("catchup")
    rates = Table(title="Throughput, same topic (events/s)", title_justify="left")
    for column in ("what", "events", "per wall s", "per CPU s"):
        rates.add_column(column, justify="right" if column != "what" else "left")
    if base:
        for name, key in (
            ("bare consume + decode (limit)", "consume_decode"),
            ("decode only (in memory)", "decode_only"),
            ("fold only: add_record", "fold_only"),
            ("fold + rows() per flush", "fold_rows"),
        ):
            r = base.get(key)
            if r:
                rates.add_row(name, _fmt(r["events"]), _fmt(r["events_per_s"]),
                              _fmt(r["events_per_cpu_s"]))  # fmt: skip
        naive = base["naive"]
        if naive.get("total"):
            rates.add_row(
                "naive: expand + insert raw rows", _fmt(naive["events"]),
                _fmt(naive["total"]["events_per_s"]), "-",
            )  # fmt: skip
    if catchup:
        rates.add_row(
            "aggregator catch-up (fold, insert, commit)", _fmt(catchup["events"]),
            _fmt(catchup["events_per_s"]), _fmt(catchup["events_per_cpu_s"]),
        )  # fmt: skip
    rates.add_row("end to end, steady (embedded stack)", "-",
                  _fmt(report["load"]["steady_aggregated_rate"]), "-")  # fmt: skip
    console.print(rates)
    if base and base["queries"]:
        q = Table(title="Queries: rollup views vs naive raw rows (p50 ms)", title_justify="left")
        columns = ("query", "rollups", "rollups server", "naive", "naive server", "naive/rollups")
        for column in (*columns, "same answer"):
            q.add_column(column, justify="right" if column != "query" else "left")
        for item in base["queries"]:
            q.add_row(
                item["name"], _fmt(item["rollups"]["p50_ms"]),
                _fmt(item["rollups"]["server_p50_ms"]), _fmt(item["naive"]["p50_ms"]),
                _fmt(item["naive"]["server_p50_ms"]), _fmt(item["naive_over_rollups"]),
                _fmt(item["same_answer"]),
            )  # fmt: skip
        floor = base.get("select_1")
        if floor:
            q.add_row("SELECT 1 (round trip)", _fmt(floor["p50_ms"]), _fmt(floor["server_p50_ms"]))
        console.print(q)
        naive = base["naive"]
        console.print(
            _pairs(
                "Naive design storage",
                [
                    ("raw rows per event", naive["rows_per_event"]),
                    ("bytes per event", naive["bytes_per_event"]),
                    ("insert rows/s", naive["insert_rows_per_s"]),
                ],
            )
        )
    t30 = report.get("timeline_30d")
    if t30:
        console.print(
            _pairs(
                "30-day hourly timeline of one key (clickhouse-connect over HTTP)",
                [
                    (
                        "seeded rows (unmerged / merged)",
                        f"{t30['rows_unmerged']:,} / {t30['rows']:,}",
                    ),
                    ("buckets returned", t30["buckets_returned"]),
                    (
                        "p50 / p99 ms, unmerged",
                        f"{t30['unmerged']['p50_ms']} / {t30['unmerged']['p99_ms']}",
                    ),
                    (
                        "p50 / p99 ms, merged",
                        f"{t30['merged']['p50_ms']} / {t30['merged']['p99_ms']}",
                    ),
                    (
                        "server-side p50 ms, unmerged / merged",
                        f"{t30['unmerged']['server_p50_ms']} / {t30['merged']['server_p50_ms']}",
                    ),
                    ("SELECT 1 round trip p50 ms", t30["select_1"]["p50_ms"]),
                ],
            )
        )
    ratios = report.get("ratios") or {}
    if ratios:
        console.print(_pairs("Same-run ratios", list(ratios.items())))
