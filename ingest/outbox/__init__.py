"""One client outbox for every topic: buffer → accumulator → sender → Kafka, with a spool.

``Outbox[R]`` buffers typed records (``Record``: anything with a ``route``) and ships them
with a ``RecordCodec[R]``; ``Tracker`` (metrics) and ``TraceShipper`` (traces) are facades
over one each. Modules: ``outbox`` (buffer, lifecycle), ``lifecycle`` (exit, SIGTERM, fork
hooks), ``sender`` (thread, producer, retries), ``accumulator`` (pending records, spool merge),
``packer`` (encoding under the byte cap), ``folding`` (metrics summed before encoding),
``replay`` (spooled records), ``delivery`` (one produce round and its errors), ``facade`` (what
every facade offers).
"""

from tally.ingest.outbox.facade import OutboxFacade
from tally.ingest.outbox.outbox import DropMessages, Outbox
from tally.ingest.outbox.record import Record, RecordCodec

__all__ = ["DropMessages", "Outbox", "OutboxFacade", "Record", "RecordCodec"]
