"""CPU and memory of the processes under test (psutil), in named groups.

``sample()`` returns each group's CPU % (of one core) and RSS since the previous sample;
``summary()`` gives CPU seconds over the whole window from ``cpu_times`` (exact, unlike
averaged percentages), plus the machine's busy CPU seconds not spent in any watched process:
on a shared machine that is everyone else's load.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class GroupUsage:
    """A group's totals over the window."""

    name: str
    pids: list[int]
    cpu_s: float
    cpu_pct_avg: float
    cpu_pct_max: float
    rss_mb_max: float


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


class ResourceSampler:
    """Samples named groups of processes; processes that exit keep their last figures."""

    def __init__(self, groups: Mapping[str, Sequence[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self._procs: dict[int, psutil.Process] = {}
        self._cpu0: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._rss_max: dict[int, float] = {}
        self._pct_max: dict[str, float] = {}
        self._last_t = time.monotonic()
        self._t0 = self._last_t
        self._busy0 = _busy_seconds()
        self._prev: dict[int, float] = {}
        for pids in self.groups.values():
            for pid in pids:
                self._watch(pid)

    def _watch(self, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
            cpu = _cpu_seconds(proc)
        except psutil.Error:
            return
        self._procs[pid] = proc
        self._cpu0[pid] = self._cpu_last[pid] = self._prev[pid] = cpu
        self._rss_max[pid] = 0.0

    def sample(self) -> dict[str, dict[str, float]]:
        """``{group: {"cpu_pct": ..., "rss_mb": ...}}`` since the previous sample."""
        now = time.monotonic()
        dt = max(now - self._last_t, 1e-6)
        self._last_t = now
        out: dict[str, dict[str, float]] = {}
        for name, pids in self.groups.items():
            cpu_pct = rss = 0.0
            for pid in pids:
                proc = self._procs.get(pid)
                if proc is None:
                    continue
                try:
                    cpu = _cpu_seconds(proc)
                    mb = proc.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                cpu_pct += 100 * (cpu - self._prev[pid]) / dt
                self._prev[pid] = self._cpu_last[pid] = cpu
                self._rss_max[pid] = max(self._rss_max[pid], mb)
                rss += mb
            self._pct_max[name] = max(self._pct_max.get(name, 0.0), cpu_pct)
            out[name] = {"cpu_pct": round(cpu_pct, 1), "rss_mb": round(rss, 1)}
        return out

    def summary(self) -> tuple[list[GroupUsage], float, float]:
        """Per-group usage, the window in seconds, and busy CPU seconds of other processes."""
        self.sample()
        window = max(self._last_t - self._t0, 1e-6)
        usages = []
        ours = 0.0
        for name, pids in self.groups.items():
            known = [p for p in pids if p in self._procs]
            if not known:
                continue  # e.g. Kafka and ClickHouse of an external pipeline
            cpu = sum(self._cpu_last[p] - self._cpu0[p] for p in known)
            ours += cpu
            usages.append(
                GroupUsage(
                    name=name,
                    pids=known,
                    cpu_s=round(cpu, 2),
                    cpu_pct_avg=round(100 * cpu / window, 1),
                    cpu_pct_max=round(self._pct_max.get(name, 0.0), 1),
                    rss_mb_max=round(max((self._rss_max[p] for p in known), default=0.0), 1),
                )
            )
        others = max(0.0, _busy_seconds() - self._busy0 - ours)
        return usages, window, round(others, 2)
