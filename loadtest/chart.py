"""A PNG of the run: throughput, freshness and lag over time (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def moving_mean(values: list, window: int) -> list:
    """Centred mean over ``window`` samples (None entries skipped); flushes arrive in steps."""
    out = []
    half = window // 2
    for i in range(len(values)):
        near = [v for v in values[max(0, i - half) : i + half + 1] if v is not None]
        out.append(sum(near) / len(near) if near else None)
    return out


def write_chart(report: dict, path: Path) -> Path:
    """Three stacked panels sharing the time axis (seconds since the load started)."""
    rows = report["timeline"]
    t = [r["t"] for r in rows]
    fig, (top, mid, low) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    title = report["run"]["config"]
    fig.suptitle(
        f"tally load test {report['run']['id']}: scenario {title['scenario']}, "
        f"target {title['rate']:,.0f} events/s, {title['producers']} producers"
    )

    top.plot(t, [r["target_rate"] for r in rows], "k--", lw=1, label="target")
    mids = [r.get("t_mid", r["t"]) for r in rows]  # a rate belongs to its interval's middle
    top.plot(mids, [r.get("produced_rate") for r in rows], lw=1.2, label="produced (track)")
    aggregated = [r.get("aggregated_rate") for r in rows]
    top.plot(mids, aggregated, lw=0.6, alpha=0.45, color="tab:orange", label="aggregated (1 s)")
    top.plot(
        mids,
        moving_mean(aggregated, 10),
        lw=1.4,
        color="tab:orange",
        label="aggregated (10 s mean)",
    )
    top.set_ylabel("events/s")
    top.legend(loc="upper right")
    top.grid(alpha=0.3)

    fresh = report["freshness"].get("probes_series", [])
    seen = [(x, f) for x, f in fresh if f is not None]
    if seen:
        mid.plot([x for x, _ in seen], [f for _, f in seen], ".", ms=3, label="probe")
    for q in ("p50_s", "p99_s"):
        value = report["freshness"].get(q)
        if value is not None:
            mid.axhline(value, ls=":", lw=1, color="gray")
            mid.annotate(f"{q[:3]} {value:.2f}s", (t[0] if t else 0, value), fontsize=8)
    mid.set_ylabel("freshness (s)")
    mid.grid(alpha=0.3)

    low.plot(t, [r.get("lag_records") for r in rows], color="tab:red", lw=1.2)
    low.set_ylabel("consumer lag (records)", color="tab:red")
    cpu = low.twinx()
    cpu.plot(t, [r.get("aggregators_cpu_pct") for r in rows], color="tab:green", lw=1)
    cpu.set_ylabel("aggregators CPU %", color="tab:green")
    low.set_xlabel("seconds since the load started")
    low.grid(alpha=0.3)
    duration = title["duration_s"]
    for ax in (top, mid, low):
        ax.axvline(duration, color="gray", lw=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
