"""Transaction markers: the control batches that end a transaction on a partition.

A marker is a v2 batch with the transactional and control attributes (0x30), the producer's
id and epoch, base sequence -1 and one record (Kafka's EndTransactionMarker, byte for byte):

    key    version int16 = 0 | type int16 (ABORT = 0, COMMIT = 1)
    value  version int16 = 0 | coordinator epoch int32

Clients never deliver it; read-committed consumers use an ABORT to stop dropping the
aborted transaction's records. Kafka's other control types (KRaft's) never occur here.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from pstream import _core

ABORT, COMMIT = 0, 1
_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")


class Marker(NamedTuple):
    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int
    timestamp: int


def encode_marker(producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int = 0,
                  timestamp_ms: int | None = None) -> bytes:
    """The control batch ending producer_id's transaction (committed or aborted)."""
    key = _KEY.pack(0, COMMIT if commit else ABORT)
    value = _VALUE.pack(0, coordinator_epoch)
    return _core.encode_batch([(key, value, None, None)], producer_id=producer_id, producer_epoch=producer_epoch,
                              is_transactional=True, is_control=True, now_ms=timestamp_ms)


def decode_marker(batch) -> Marker | None:
    """The marker a control batch holds; None for a control record of another type (or one
    pstream cannot read, which a reader skips as Kafka's clients do)."""
    header, records = _core.decode_batch(batch)
    if not header.is_control or len(records) != 1 or records[0].key is None or len(records[0].key) != _KEY.size:
        return None
    version, kind = _KEY.unpack(records[0].key)
    if version != 0 or kind not in (ABORT, COMMIT):
        return None
    value = records[0].value
    coordinator_epoch = _VALUE.unpack_from(value)[1] if value is not None and len(value) >= _VALUE.size else -1
    return Marker(header.producer_id, header.producer_epoch, kind == COMMIT, coordinator_epoch,
                  header.max_timestamp)
