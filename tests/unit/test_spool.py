"""The client's disk spool and produce-error classes, without a broker."""

from __future__ import annotations

import os
import time

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
)

from tally.ingest.spool import QUARANTINE, Spool
from tally.kafka.produce_errors import Failure, classify


def test_records_come_back_in_order_of_birth_not_of_writing(tmp_path):
    spool = Spool(tmp_path, "me", 1 << 20)
    spool.put(0, b"late", born=300)
    spool.put(1, b"early", born=100)
    spool.put(2, b"middle", born=200)
    assert [r.payload for r in spool.peek(10)] == [b"early", b"middle", b"late"]
    spool.close()


def test_an_interrupted_rewrite_is_undone_by_the_next_owner(tmp_path):
    spool = Spool(tmp_path, "dead", 1 << 20)
    spool.put(0xFFFFFFFF, b"whole", born=100)
    (original,) = spool.peek(1)
    stem = original.path.name.removesuffix(".rec")
    # The owner died after writing the first piece of a rewrite, before deleting the original.
    spool.put(1, b"piece-0", born=100, stem=f"{stem}~0000")
    spool.close()
    successor = Spool(tmp_path, "next", 1 << 20)
    assert [r.payload for r in successor.peek(10)] == [b"whole"]  # no event twice
    (whole,) = successor.peek(1)
    successor.replace(whole, [(1, b"a"), (2, b"b")])
    assert [(r.partition, r.payload) for r in successor.peek(10)] == [(1, b"a"), (2, b"b")]
    assert all(r.born == 100 for r in successor.peek(10))  # pieces keep the original's age
    successor.close()


def test_unreadable_files_are_quarantined_and_counted(tmp_path):
    spool = Spool(tmp_path, "me", 1 << 20)
    spool.put(0, b"good", born=time.time_ns())
    (spool.dir / f"{time.time_ns():020d}-short.rec").write_bytes(b"\x00")
    (spool.dir / "not-a-number-name.rec").write_bytes(b"\x00\x00\x00\x00data")
    spool.close()
    spool = Spool(tmp_path, "me", 1 << 20)
    assert [r.payload for r in spool.peek(10)] == [b"good"]
    assert spool.take_quarantined() == 2 and spool.take_quarantined() == 0
    assert len(list((tmp_path / QUARANTINE).iterdir())) == 2
    assert len(spool) == 1
    spool.close()


def test_a_second_live_owner_of_the_same_name_gets_its_own_directory(tmp_path):
    first = Spool(tmp_path, "worker", 1 << 20)
    second = Spool(tmp_path, "worker", 1 << 20)  # same source, another live owner
    assert first.dir != second.dir
    second.put(0, b"x", born=1)
    second.close()
    third = Spool(tmp_path, "other", 1 << 20)  # adopts the closed owner's records only
    assert [r.payload for r in third.peek(10)] == [b"x"]
    assert first.dir.exists()
    first.close()
    third.close()


def test_the_quarantine_is_never_adopted_as_an_orphan(tmp_path):
    (tmp_path / QUARANTINE).mkdir()
    (tmp_path / QUARANTINE / "x.rec").write_bytes(b"\x00\x00\x00\x00junk")
    spool = Spool(tmp_path, "me", 1 << 20)
    assert len(spool) == 0
    spool.close()
    assert os.listdir(tmp_path / QUARANTINE) == ["x.rec"]


def test_produce_errors_are_told_apart():
    assert classify(MessageSizeTooLargeError()) is Failure.TOO_LARGE
    assert classify(RecordListTooLargeError()) is Failure.TOO_LARGE
    assert classify(TopicAuthorizationFailedError()) is Failure.REFUSED
    assert classify(KafkaConnectionError()) is Failure.OUTAGE
    assert classify(KafkaTimeoutError()) is Failure.OUTAGE
    assert classify(OutOfOrderSequenceNumber()) is Failure.OUTAGE  # a new producer fixes it
    assert classify(OSError("reset")) is Failure.OUTAGE
