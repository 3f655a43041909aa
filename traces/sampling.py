"""Tail sampling: decided when a run ends, from its state, tags and its execution id."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

ALWAYS_STATES = frozenset({"failure"})


def keep_one_in(execution_id: str, every: int) -> bool:
    """Whether ``execution_id`` is one of the 1 in ``every`` kept (1 keeps all, 0 none).

    A stable hash (the first 8 bytes of BLAKE2b of the id, as an unsigned big-endian
    integer, modulo ``every``; kept when 0), never Python's salted ``hash()``: every process
    decides the same for an id, so fork-per-job workers and cron scripts sample at the
    configured rate, and a replayed execution gets the same decision.
    """
    if every <= 0:
        return False
    if every == 1:
        return True
    digest = hashlib.blake2b(execution_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % every == 0


@dataclass(frozen=True)
class SamplingPolicy:
    """Which finished runs keep their trace lines.

    - a run whose state is ``failure`` (always) or in ``keep_states`` is kept (reason
      ``state:<state>``; ``failure`` for failures);
    - a run with a tag in ``keep_tags`` (a tag name, or ``name=value``) is kept (``tag:<t>``);
    - other runs are kept 1 in ``every`` per job (``per_job`` overrides; 1 keeps all, 0 none),
      decided by a stable hash of the execution id (``keep_one_in``), the same in every
      process (``sample``).

    ``index_unsampled``: runs not kept still ship their index row and job-log events (no lines),
    so a bucket's executions are all listed and the job log is complete.
    """

    every: int = 100
    per_job: Mapping[str, int] = field(default_factory=dict)
    keep_states: frozenset[str] = frozenset({"retry"})
    keep_tags: frozenset[str] = frozenset()
    index_unsampled: bool = True


@dataclass(frozen=True)
class Sampler:
    """Applies a ``SamplingPolicy``; stateless, so any process decides the same."""

    policy: SamplingPolicy

    def reason(self, job: str, state: str, tags: Mapping[str, str], execution_id: str) -> str:
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
        return "sample" if keep_one_in(execution_id, every) else ""
