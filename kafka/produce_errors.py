"""What a failed produce means: an outage to wait out, or a refusal that retrying cannot fix."""

from __future__ import annotations

import enum

from aiokafka.errors import (
    BrokerResponseError,
    DuplicateSequenceNumber,
    InvalidProducerEpoch,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnknownProducerId,
)


class Failure(enum.Enum):
    """How the sender treats a produce error."""

    OUTAGE = "outage"  # retriable: the broker is down, slow or moving leaders; back off
    TOO_LARGE = "too_large"  # the broker (or producer) refuses the record's size: split it
    REFUSED = "refused"  # non-retriable (authorization, bad config...): keep, back off, say so


_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)
# The producer's own idempotence state is off (e.g. after a refused batch): a new producer
# fixes it, so these count as outages, not as refusals of the records.
_PRODUCER_STATE = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    DuplicateSequenceNumber,
)


def classify(error: BaseException) -> Failure:
    """The kind of ``error`` raised by ``send`` or set on its delivery future."""
    if isinstance(error, _TOO_LARGE):
        return Failure.TOO_LARGE
    if isinstance(error, _PRODUCER_STATE):
        return Failure.OUTAGE
    if isinstance(error, BrokerResponseError) and not error.retriable:
        return Failure.REFUSED  # the broker answered, and the answer will not change by itself
    return Failure.OUTAGE


class Refused(KafkaError):
    """Raised inside the sender when the broker refused records with non-retriable errors."""


class Resize(Exception):
    """Raised inside the sender when produce batches must shrink: reconnect, then retry."""
