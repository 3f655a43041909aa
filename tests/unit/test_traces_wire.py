"""The traces topic's records, the writer's fold and the shipper's refusals (no network)."""

from __future__ import annotations

import msgspec
import pytest

from tally.ingest import ClientSettings
from tally.schemas.wire import WireError
from tally.traces.codec import TraceCodec, TraceRecord
from tally.traces.ddl import TraceSchema
from tally.traces.fold import EXECUTION_COLUMNS, JOB_LOG_COLUMNS, LINE_COLUMNS, TraceFold
from tally.traces.model import Execution, Line, LogEvent
from tally.traces.transport import TraceShipper, trace_settings


def execution(i: int = 1, lines: int = 2) -> Execution:
    return Execution(
        id=f"{i:032x}", parent_id="", ref="task-1", job="calc", tenant="acme", key="event::calc",
        state="success", code="OK", error="", attempt=1, started_us=1_790_000_000_000_000 + i,
        duration_us=1500, tags={"customer": "42"}, sampled="sample",
        lines=[Line(s + 1, 0, 0, "block", f"step {s}", s * 10, 5, "ok") for s in range(lines)],
        events=[LogEvent(1, "started", "calc", 1, "[1]"), LogEvent(2, "finished", "calc", 1)],
    )  # fmt: skip


def test_codec_round_trips_and_routes_by_execution_id():
    codec = TraceCodec("host:1")
    records = [TraceRecord.of(execution(1)), TraceRecord.of(execution(2, lines=0))]
    decoded = codec.decode(codec.encode(records))
    assert decoded == records
    assert decoded[0].route == f"{1:032x}"


# Captured at b93ba97 (tuple buffer): ``TraceCodec("golden/traces")`` of executions 1 and 2.
GOLDEN_TRACES = bytes.fromhex(
    "9301ad676f6c64656e2f74726163657392dc0013d92030303030303030303030303030303030303030303030"
    "30303030303030303031a0a67461736b2d31a463616c63a461636d65ab6576656e743a3a63616c63a7737563"
    "63657373a24f4ba001cf00065bfeda25e001cd05dc81a8637573746f6d6572a23432a673616d706c65929b01"
    "0000a5626c6f636ba67374657020300005a26f6ba0c2009b020000a5626c6f636ba67374657020310a05a26f"
    "6ba0c200929701a773746172746564a463616c6301a35b315da0a09702a866696e6973686564a463616c6301"
    "a0a0a000a0a0dc0013d9203030303030303030303030303030303030303030303030303030303030303032a0"
    "a67461736b2d31a463616c63a461636d65ab6576656e743a3a63616c63a773756363657373a24f4ba001cf00"
    "065bfeda25e002cd05dc81a8637573746f6d6572a23432a673616d706c6590929701a773746172746564a463"
    "616c6301a35b315da0a09702a866696e6973686564a463616c6301a0a0a000a0a0"
)


# The same since ``Execution.hook_key`` (one more trailing field per execution).
GOLDEN_TRACES_HOOK_KEY = bytes.fromhex(
    "9301ad676f6c64656e2f74726163657392dc0014d92030303030303030303030303030303030303030303030"
    "30303030303030303031a0a67461736b2d31a463616c63a461636d65ab6576656e743a3a63616c63a7737563"
    "63657373a24f4ba001cf00065bfeda25e001cd05dc81a8637573746f6d6572a23432a673616d706c65929b01"
    "0000a5626c6f636ba67374657020300005a26f6ba0c2009b020000a5626c6f636ba67374657020310a05a26f"
    "6ba0c200929701a773746172746564a463616c6301a35b315da0a09702a866696e6973686564a463616c6301"
    "a0a0a000a0a0a0dc0014d9203030303030303030303030303030303030303030303030303030303030303032"
    "a0a67461736b2d31a463616c63a461636d65ab6576656e743a3a63616c63a773756363657373a24f4ba001cf"
    "00065bfeda25e002cd05dc81a8637573746f6d6572a23432a673616d706c6590929701a773746172746564a4"
    "63616c6301a35b315da0a09702a866696e6973686564a463616c6301a0a0a000a0a0a0"
)


def test_trace_records_encode_to_the_same_bytes_as_before():
    records = [TraceRecord.of(execution(1)), TraceRecord.of(execution(2, lines=0))]
    codec = TraceCodec("golden/traces")
    assert codec.encode(records) == GOLDEN_TRACES_HOOK_KEY
    assert codec.decode(GOLDEN_TRACES_HOOK_KEY) == records
    assert codec.decode(GOLDEN_TRACES) == records  # from clients before hook_key: ""


def test_a_writer_from_before_hook_key_reads_todays_executions():
    fields = msgspec.structs.fields(Execution)
    assert fields[-1].name == "hook_key"
    before = msgspec.defstruct(
        "ExecutionBefore",
        [(f.name, f.type) if f.required else (f.name, f.type, f.default) for f in fields[:-1]],
        array_like=True,
    )  # fmt: skip
    today = msgspec.structs.replace(execution(1), hook_key="event::job")
    read = msgspec.msgpack.decode(msgspec.msgpack.encode(today), type=before)
    assert (read.id, read.key, read.traceback) == (today.id, "event::calc", "")


def test_fold_writes_the_hook_key_of_an_adopted_run():
    fold = TraceFold()
    codec = TraceCodec("host:1")
    adopted = msgspec.structs.replace(execution(1), hook_key="event::job")
    assert (
        fold.add_record(codec.encode([TraceRecord.of(adopted), TraceRecord.of(execution(2))]), 1, 0)
        == []
    )
    column = EXECUTION_COLUMNS.index("hook_key")
    assert [r[column] for r in fold.rows().executions] == ["event::job", ""]


@pytest.mark.parametrize("payload", [b"", b"\x93\x01\x02", msgspec.msgpack.encode([1, "s", []])])
def test_codec_rejects_what_is_not_a_trace_record(payload):
    with pytest.raises(WireError):
        TraceCodec("x").decode(payload)


def test_fold_builds_rows_for_the_three_tables_and_dead_letters_bad_records():
    fold = TraceFold()
    codec = TraceCodec("host:1")
    good = codec.encode([TraceRecord.of(execution(1))])
    bad = msgspec.structs.replace(execution(2), id="")
    bad_id = codec.encode([TraceRecord.of(bad), TraceRecord.of(execution(3))])
    assert fold.add_record(good, 10, 0) == []
    rejects = fold.add_record(bad_id, 11, 0)
    assert [(r.offset, r.index, r.reason) for r in rejects] == [(11, 0, "bad_execution")]
    assert [(r.offset, r.index, r.reason) for r in fold.add_record(b"junk", 12, 0)] == [
        (12, -1, "bad_trace_record")
    ]
    rows = fold.rows()
    assert fold.events == 2 and len(rows.executions) == 2
    assert all(len(r) == len(EXECUTION_COLUMNS) for r in rows.executions)
    assert len(rows.lines) == 4 and all(len(r) == len(LINE_COLUMNS) for r in rows.lines)
    assert [r[JOB_LOG_COLUMNS.index("event")] for r in rows.job_log] == ["started", "finished"] * 2
    fold.clear()
    assert len(fold) == 0 and fold.events == 0


def test_the_trace_shipper_refuses_metric_events_and_has_its_own_spool(tmp_path):
    settings = trace_settings(ClientSettings(bootstrap_servers="127.0.0.1:1", spool_dir=tmp_path))
    assert settings.topic == "tally.traces"
    assert settings.spool_dir == tmp_path.with_name(f"{tmp_path.name}-traces")
    shipper = TraceShipper(settings)
    try:
        assert shipper.track("k", {"count": 1}) is False
        assert shipper.stats().invalid == 1
    finally:
        shipper.close(timeout=0.1)


def test_schema_rejects_unsafe_names_and_a_zero_dedup_window():
    with pytest.raises(ValueError):
        TraceSchema(database="tally; DROP")
    with pytest.raises(ValueError):
        TraceSchema(dedup_window=0)
    ddl = "\n".join(TraceSchema(lines_ttl_days=3).statements())
    assert "bloom_filter(0.001)" in ddl and "INTERVAL 3 DAY" in ddl and "ZSTD" in ddl


def test_the_metrics_spool_never_adopts_trace_records(tmp_path):
    from tally.ingest.spool import Spool

    metrics_dir = tmp_path / "spool"
    traces_dir = trace_settings(
        ClientSettings(bootstrap_servers="x:1", spool_dir=metrics_dir)
    ).spool_dir
    dead = Spool(traces_dir, "dead-trace-process", 1 << 20)
    assert dead.put(0, b"trace record", 1)
    dead.close()
    metrics = Spool(metrics_dir, "live", 1 << 20)
    assert metrics.adopt_orphans() == 0 and len(metrics) == 0
    metrics.close()
    assert len(Spool(traces_dir, "next-trace-process", 1 << 20)) == 1  # the traces' own adopt
