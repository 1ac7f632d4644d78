"""Transaction coordinator state, kept durably in the compacted internal topic `__transaction_state`.

Owns that topic (one partition, flush "always", cleanup.policy=compact, no time or size
retention; created by the first write) and the records in it: per transactional id, its latest
metadata. In cluster mode the topic has transaction.state.log.num.partitions replicated
partitions, and a broker keeps one log for each partition it leads (cluster/txn_shards.py). The coordinator (transactions.py) decides what to store; this module writes it,
answers once it is durable and rebuilds the state at start.

Records are Kafka's own (TransactionLogKey v0, TransactionLogValue v0, what Kafka 3.9 writes),
so Kafka's DumpLogSegments --transaction-log-decoder reads them:

    key    version int16 = 0 | transactional id string (int16 length + UTF-8)
    value  version int16 = 0 | producer id int64 | producer epoch int16 | timeout ms int32 |
           state int8 | partitions: int32 count (-1: none) x [topic string | int32 n x int32] |
           last update time int64 | start time int64 (-1: never started)
    a null value (tombstone): the id expired

Value v1 (the flexible encoding Kafka 4 writes) is not read yet: such a record is skipped with
a warning. Kafka does not store the previous producer id and epoch (KIP-360's retry check):
after a restart they are unknown, as in Kafka.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import struct
import time
from collections.abc import Awaitable, Callable

from pstream import _core

_log = logging.getLogger("pstream.txn_log")

TXN_TOPIC = "__transaction_state"
SEGMENT_BYTES = 4 << 20
MAX_BATCH_BYTES = 1 << 20
KEY_VERSION = 0
VALUE_VERSION = 0

_i8, _i16, _i32, _i64 = struct.Struct(">b"), struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")


class TxnState(enum.IntEnum):
    """Kafka's TransactionState ids (the byte stored) and names (what Describe/ListTransactions say)."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))


@dataclasses.dataclass(slots=True)
class TxnMetadata:
    """One transactional id's state. Replaced, never changed in place: a new value is written
    and installed once durable."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: frozenset[tuple[str, int]] = frozenset()
    last_update_ms: int = -1
    start_ms: int = -1
    # In memory only, as in Kafka: the id and epoch before the last bump (KIP-360 retries).
    last_producer_id: int = -1
    last_producer_epoch: int = -1

    def but(self, **changes) -> TxnMetadata:
        return dataclasses.replace(self, last_update_ms=now_ms(), **changes)


def now_ms() -> int:
    return int(time.time() * 1000)


def txn_key(transactional_id: str) -> bytes:
    raw = transactional_id.encode()
    return _i16.pack(KEY_VERSION) + _i16.pack(len(raw)) + raw


def txn_value(meta: TxnMetadata) -> bytes:
    out = bytearray(_i16.pack(VALUE_VERSION))
    out += _i64.pack(meta.producer_id) + _i16.pack(meta.producer_epoch) + _i32.pack(meta.timeout_ms)
    out += _i8.pack(int(meta.state))
    if meta.state == TxnState.EMPTY:
        out += _i32.pack(-1)     # Kafka writes no partitions (null) for Empty
    else:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(meta.partitions):
            by_topic.setdefault(topic, []).append(partition)
        out += _i32.pack(len(by_topic))
        for topic, parts in by_topic.items():
            raw = topic.encode()
            out += _i16.pack(len(raw)) + raw + _i32.pack(len(parts))
            for p in parts:
                out += _i32.pack(p)
    out += _i64.pack(meta.last_update_ms) + _i64.pack(meta.start_ms)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: struct.Struct) -> int:
        if self.pos + fmt.size > len(self.data):
            raise ValueError("record ends early")
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return value

    def string(self) -> str:
        n = self.take(_i16)
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"bad string length {n}")
        self.pos += n
        return self.data[self.pos - n:self.pos].decode()


def record_batch(meta: TxnMetadata) -> bytes:
    """The one-record batch that stores meta (a tombstone when its state is Dead)."""
    value = None if meta.state == TxnState.DEAD else txn_value(meta)
    return _core.encode_batch([(txn_key(meta.transactional_id), value, None, None)])


def decode_key(key: bytes) -> str:
    r = _Reader(key)
    version = r.take(_i16)
    if version != KEY_VERSION:
        raise ValueError(f"transaction log key version {version}")
    return r.string()


def decode_value(transactional_id: str, value: bytes) -> TxnMetadata:
    r = _Reader(value)
    version = r.take(_i16)
    if version != VALUE_VERSION:
        raise ValueError(f"transaction log value version {version}")
    producer_id, epoch, timeout = r.take(_i64), r.take(_i16), r.take(_i32)
    state = TxnState(r.take(_i8))
    partitions = set()
    for _ in range(max(r.take(_i32), 0)):
        topic = r.string()
        for _ in range(r.take(_i32)):
            partitions.add((topic, r.take(_i32)))
    return TxnMetadata(transactional_id, producer_id, epoch, timeout, state, frozenset(partitions),
                       r.take(_i64), r.take(_i64))


def txn_topic_settings(segment_bytes: int = SEGMENT_BYTES) -> dict:
    """The topic's settings (TopicConfig fields), the broker's alone."""
    return dict(flush="always", cleanup_policy="compact", retention_ms=None, retention_bytes=None,
                segment_bytes=segment_bytes, max_message_bytes=MAX_BATCH_BYTES)


class TransactionLog:
    """The durable state behind the transaction coordinator: `open()` once (replays the
    topic; from any thread, before the coordinator starts), then `await write(...)` from
    the event loop."""

    def __init__(self, log, *, segment_bytes: int = SEGMENT_BYTES, partition: int = 0,
                 committed: Callable[[int], Awaitable] | None = None) -> None:
        """partition: the one of the topic this log keeps (cluster mode: one per partition this
        broker leads); committed: cluster mode, awaits until the in-sync replicas hold an offset
        (raises once this broker no longer leads); a durable write counts only then."""
        self.log = log
        self.segment_bytes = segment_bytes
        self.index = partition
        self.committed = committed
        self.part = None

    def internal_settings(self) -> dict:
        return txn_topic_settings(self.segment_bytes)

    def _attach(self, topic) -> None:
        wanted = self.internal_settings()
        if topic.overrides != wanted:
            topic.replace_config(**wanted)
        self.part = topic.partition(self.index)

    def open(self) -> dict[str, TxnMetadata]:
        """Every live transactional id's latest metadata, replayed from the topic."""
        if TXN_TOPIC not in self.log:
            return {}
        self._attach(self.log.get_topic(TXN_TOPIC))
        out, skipped = {}, 0
        for key, value in self.part.latest(self.part.log_start_offset).items():
            try:
                txn_id = decode_key(key)
                out[txn_id] = decode_value(txn_id, value)
            except (ValueError, UnicodeDecodeError):
                skipped += 1
        if skipped:
            _log.warning("%s: skipped %d records pstream cannot read", TXN_TOPIC, skipped)
        return out

    async def write(self, meta: TxnMetadata, durable: bool = True) -> None:
        """Appends meta (a tombstone when its state is Dead); returns once durable, or with
        durable=False once appended (the next durable write covers it)."""
        if self.part is None:   # created by the first write, on the disk pool
            await self.log.create_topic_async(TXN_TOPIC, 1, **self.internal_settings())
            self._attach(self.log.get_topic(TXN_TOPIC))
        offset = await self.part.wait_appended(self.part.submit_batch(record_batch(meta), wait=durable))
        if durable and self.committed is not None:
            await self.committed(offset)
