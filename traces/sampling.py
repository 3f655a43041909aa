"""Tail sampling: decided when a run ends, from its state, tags and a 1-in-N count per job."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

ALWAYS_STATES = frozenset({"failure"})


@dataclass(frozen=True)
class SamplingPolicy:
    """Which finished runs keep their trace lines.

    - a run whose state is ``failure`` (always) or in ``keep_states`` is kept (reason
      ``state:<state>``; ``failure`` for failures);
    - a run with a tag in ``keep_tags`` (a tag name, or ``name=value``) is kept (``tag:<t>``);
    - other runs are kept 1 in ``every`` per job (``per_job`` overrides; 1 keeps all, 0 none),
      counting from the job's first run, which is kept (``sample``).

    ``index_unsampled``: runs not kept still ship their index row and job-log events (no lines),
    so a bucket's executions are all listed and the job log is complete.
    """

    every: int = 100
    per_job: Mapping[str, int] = field(default_factory=dict)
    keep_states: frozenset[str] = frozenset({"retry"})
    keep_tags: frozenset[str] = frozenset()
    index_unsampled: bool = True


class Sampler:
    """Applies a ``SamplingPolicy``; one per process (counters per job, bounded)."""

    def __init__(self, policy: SamplingPolicy) -> None:
        self.policy = policy
        self._counters: dict[str, itertools.count] = {}

    def reason(self, job: str, state: str, tags: Mapping[str, str]) -> str:
        """Why this run's trace is kept, or ``""`` when it is not."""
        policy = self.policy
        if state in ALWAYS_STATES:
            return state
        if state in policy.keep_states:
            return f"state:{state}"
        if policy.keep_tags and tags:
            for name, value in tags.items():
                if name in policy.keep_tags:
                    return f"tag:{name}"
                pair = f"{name}={value}"
                if pair in policy.keep_tags:
                    return f"tag:{pair}"
        every = policy.per_job.get(job, policy.every)
        if every <= 0:
            return ""
        if every == 1:
            return "sample"
        counter = self._counters.get(job)
        if counter is None:
            if len(self._counters) >= 10_000:
                self._counters.clear()
            counter = self._counters[job] = itertools.count()
        return "sample" if next(counter) % every == 0 else ""
