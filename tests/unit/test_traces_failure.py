"""Failed runs: exception message and bounded traceback; job arguments, redacted or off."""

from __future__ import annotations

import contextlib

from tally.ingest.jobs import JobTracker
from tally.ingest.jobs.testing import RecordingTracker
from tally.traces import SamplingPolicy, TraceRecorder
from tally.traces.args import REDACTED, ArgsPolicy
from tally.traces.failure import cut_tail
from tally.traces.limits import TraceLimits


class Shipped(list):
    def ship(self, execution: object) -> bool:
        self.append(execution)
        return True


class PaymentDeclined(Exception):
    pass


def failing_run(recorder: TraceRecorder, text: str) -> object:
    jobs = JobTracker(RecordingTracker(), "event::pay", traces=recorder)

    @jobs(name="charge")
    def charge(order: int, *, card_token: str, meta: dict) -> None:
        raise PaymentDeclined(text)

    with contextlib.suppress(PaymentDeclined):
        charge(100296, card_token="tok_live_1", meta={"Authorization": "Bearer x", "n": 1})
    (execution,) = recorder.shipper
    return execution


def test_the_decorator_records_message_traceback_and_redacted_args():
    execution = failing_run(TraceRecorder(Shipped(), SamplingPolicy(every=1)), "card declined")
    assert (execution.state, execution.error) == ("failure", "PaymentDeclined")
    assert execution.message == "card declined"
    assert execution.traceback.endswith("PaymentDeclined: card declined\n")
    assert ", in charge\n" in execution.traceback
    args = execution.events[0].args
    assert args == (
        f'[[100296],{{"card_token":"{REDACTED}","meta":{{"Authorization":"{REDACTED}","n":1}}}}]'
    )


def test_args_can_be_off_or_redacted_by_a_hook_and_a_failing_hook_records_nothing():
    off = TraceRecorder(Shipped(), SamplingPolicy(every=1), args=ArgsPolicy(record=False))
    assert failing_run(off, "x").events[0].args == ""
    mine = ArgsPolicy(redact=lambda value: {"orders": value[0]})
    custom = TraceRecorder(Shipped(), SamplingPolicy(every=1), args=mine)
    assert failing_run(custom, "x").events[0].args == '{"orders":[100296]}'
    broken = ArgsPolicy(redact=lambda value: 1 / 0)
    failed = TraceRecorder(Shipped(), SamplingPolicy(every=1), args=broken)
    assert "tok_live" not in failing_run(failed, "x").events[0].args


def test_a_long_traceback_keeps_its_end_within_the_limit():
    limits = TraceLimits(max_traceback_bytes=2048, max_message_bytes=100)
    recorder = TraceRecorder(Shipped(), SamplingPolicy(every=1), limits)
    execution = failing_run(recorder, "é" * 5000 + " the end")
    assert len(execution.traceback.encode()) <= 2048
    assert execution.traceback.startswith("…[truncated] ")
    assert execution.traceback.endswith(" the end\n")
    assert len(execution.message.encode()) <= 100 and execution.message.endswith("…[truncated]")
    assert cut_tail("short", 10) == "short"
