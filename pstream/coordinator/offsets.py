"""Committed offsets and group metadata, kept durably in the compacted internal topic `__consumer_offsets`.

Owns that topic (one partition, flush "always", cleanup.policy=compact, no time or size
retention; created by the first write) and the state it holds: per group, the committed offset
of each (topic, partition), and the group's last stored metadata. It knows nothing of
rebalances: the group coordinator (groups.py) decides what to store and when; this module
appends it, answers once it is durable and rebuilds it at start. It reads and writes the log
only through the public Partition API.

In cluster mode the topic has offsets.topic.num.partitions replicated partitions, and a broker
keeps one store for each partition it leads (pstream/cluster/group_shards.py); a write then
counts once the partition's in-sync replicas hold it (`committed`), not once it is durable here.

Records are Kafka's own (group-coordinator's OffsetCommitKey/Value and GroupMetadataKey/Value,
the versions Kafka 3.9 writes), so Kafka's tools read this topic as they read Kafka's. A key or
value is its int16 version, then its fields: big-endian integers, strings as int16 length +
UTF-8 (-1: null), bytes as int32 length + bytes, arrays as int32 count + items.

    offset commit   key   v1  group, topic, partition int32
                    value v3  offset int64, leader epoch int32, metadata, commit time int64
                          v1  (a commit that gave a retention time, OffsetCommit v1-v4)
                              offset int64, metadata, commit time int64, expire time int64
    group metadata  key   v2  group
                    value v3  protocol type, generation int32, protocol (nullable),
                              leader (nullable), state time int64 (-1: none), members:
                              [member id, instance id (nullable), client id, client host,
                               rebalance timeout int32, session timeout int32,
                               subscription bytes, assignment bytes]
    deletion        the same key with a null value (a tombstone): OffsetDelete, DeleteGroups,
                    expired offsets, a deleted topic's offsets

Values of versions 0-3 are read (what older Kafka versions wrote); a record of any other
kind is skipped with a warning.

The storage engine's log cleaner compacts the topic (pstream.storage.cleaner): once the closed
segments hold enough overwritten keys (min.cleanable.dirty.ratio), only each key's latest
record is kept, and a tombstone itself goes delete.retention.ms after it was first cleaned,
so the log stays about the size of the live state. Replay takes each key's latest record from
the log start (Partition.latest: found in the core, no Python object for an overwritten
record; a tombstoned key is absent), which rebuilds the state whatever the cleaner did.
The replay runs before the broker serves anyone, and `open()` is safe to call from another
thread (the broker runs it off the event loop).

Upgrade: before this, pstream wrote compact JSON keys and values (["offset", group, topic,
partition], ["group", group]) and bounded the log with snapshots and delete_records. Replay
reads those too, as a layer under the records in Kafka's format (which always come later).
When a JSON key is still live, `open()` writes the whole state again in Kafka's format, then a
tombstone for each live JSON key (in that order: a crash in between replays to the same state
and migrates again), so the cleaner can drop them all.

Ordering: a write is appended at once (offsets assigned in call order) and applied to the
in-memory state when it is durable, strictly in log order; until then it is "pending" (OffsetFetch
with require_stable answers UNSTABLE_OFFSET_COMMIT for a partition with a pending commit).

Transactions (TxnOffsetCommit): offsets committed inside a transaction are appended as a
transactional batch of the producer (Kafka's format, base sequence 0) and stay pending for that
producer until its transaction's marker lands on this topic: COMMIT applies them, ABORT drops
them (`end_txn`). Replay skips the records of aborted transactions (the partition's aborted-
transaction index) and holds those of open ones as pending again; while any exist it reads the
log in Python, record by record, instead of the core's latest().
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Iterable

from pstream import _core

_log = logging.getLogger("pstream.offsets")

OFFSETS_TOPIC = "__consumer_offsets"
SEGMENT_BYTES = 4 << 20        # small, so the cleaner (which never touches the active segment) starts early
BATCH_BYTES = 256 << 10        # records per appended batch, at most about this many bytes
MAX_BATCH_BYTES = 16 << 20     # the topic's max.message.bytes: one big record still fits

# Key versions: 0 and 1 are an offset commit, 2 group metadata (Kafka's CoordinatorRecordType).
OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2
OFFSET_VALUE_VERSION = 3
OFFSET_VALUE_EXPIRING_VERSION = 1
GROUP_VALUE_VERSION = 3

TopicPartition = tuple[str, int]
Record = tuple[bytes, "bytes | None"]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclasses.dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_ms: int = 0
    expire_ms: int | None = None   # set only by OffsetCommit v1 timestamps and v2-v4 retention times


# --- Kafka's record formats ----------------------------------------------------------------------

_i16, _i32, _i64 = struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")


class _Writer:
    def __init__(self, version: int) -> None:
        self.out = bytearray(_i16.pack(version))

    def int16(self, v: int) -> _Writer:
        self.out += _i16.pack(v)
        return self

    def int32(self, v: int) -> _Writer:
        self.out += _i32.pack(v)
        return self

    def int64(self, v: int) -> _Writer:
        self.out += _i64.pack(v)
        return self

    def string(self, s: str | None) -> _Writer:
        if s is None:
            return self.int16(-1)
        data = s.encode()
        self.out += _i16.pack(len(data)) + data
        return self

    def bytes(self, b: bytes) -> _Writer:
        self.out += _i32.pack(len(b)) + b
        return self


class _Reader:
    """Reads one key or value; ValueError for anything short, malformed or left over."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = bytes(data), 0

    def _take(self, fmt: struct.Struct) -> int:
        if self.pos + fmt.size > len(self.data):
            raise ValueError(f"record ends inside a field at byte {self.pos}")
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return value

    def int16(self) -> int:
        return self._take(_i16)

    def int32(self) -> int:
        return self._take(_i32)

    def int64(self) -> int:
        return self._take(_i64)

    def _span(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"a length of {n} at byte {self.pos} does not fit the record")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def string(self, nullable: bool = False) -> str | None:
        n = self.int16()
        if n == -1 and nullable:
            return None
        return self._span(n).decode()   # UnicodeDecodeError is a ValueError

    def bytes(self) -> bytes:
        return self._span(self.int32())

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} bytes left after the record's fields")


def offset_key(group: str, topic: str, partition: int) -> bytes:
    return bytes(_Writer(OFFSET_KEY_VERSION).string(group).string(topic).int32(partition).out)


def group_key(group: str) -> bytes:
    return bytes(_Writer(GROUP_KEY_VERSION).string(group).out)


def offset_value(c: CommittedOffset) -> bytes:
    if c.expire_ms is not None:   # only value v1 has an expire time (and no leader epoch), as in Kafka
        w = _Writer(OFFSET_VALUE_EXPIRING_VERSION).int64(c.offset).string(c.metadata).int64(c.commit_ms)
        return bytes(w.int64(c.expire_ms).out)
    w = _Writer(OFFSET_VALUE_VERSION).int64(c.offset).int32(c.leader_epoch).string(c.metadata).int64(c.commit_ms)
    return bytes(w.out)


def group_value(meta: dict) -> bytes:
    """GroupMetadataValue v3 from the coordinator's metadata dict (see OffsetState.groups)."""
    state_ms = meta.get("state_ms")
    w = _Writer(GROUP_VALUE_VERSION).string(meta.get("protocol_type") or "").int32(meta.get("generation", 0))
    w.string(meta.get("protocol")).string(meta.get("leader")).int64(-1 if state_ms is None else state_ms)
    members = meta.get("members", ())
    w.int32(len(members))
    for m in members:
        w.string(m["member_id"]).string(m.get("instance_id")).string(m.get("client_id", ""))
        w.string(m.get("client_host", "")).int32(m["rebalance_timeout_ms"]).int32(m["session_timeout_ms"])
        w.bytes(unb64(m.get("subscription", ""))).bytes(unb64(m.get("assignment", "")))
    return bytes(w.out)


_value_v3_head = struct.Struct(">hqih")   # version, offset, leader epoch, metadata length
_value_v1_head = struct.Struct(">hqh")    # version, offset, metadata length (v0 and v1)


def decode_offset_key(key: bytes) -> tuple[str, str, int]:
    """(group, topic, partition) of an offset commit key (v0 or v1, the same fields); written out
    rather than with _Reader: replay reads one per commit ever made."""
    try:
        (group_len,) = _i16.unpack_from(key, 2)
        group_end = 4 + group_len
        (topic_len,) = _i16.unpack_from(key, group_end)
        topic_end = group_end + 2 + topic_len
        (partition,) = _i32.unpack_from(key, topic_end)
    except struct.error:
        raise ValueError("offset commit key cut short") from None
    if group_len < 0 or topic_len < 0 or topic_end + 4 != len(key):
        raise ValueError("offset commit key with bad lengths")
    return key[4:group_end].decode(), key[group_end + 2:topic_end].decode(), partition


def decode_offset_value(value: bytes) -> CommittedOffset:
    """An offset commit value of version 0-3 (what Kafka wrote over the years)."""
    try:
        version = _i16.unpack_from(value, 0)[0]
        if version == 3 or version == 2:
            if version == 3:
                _v, offset, leader_epoch, meta_len = _value_v3_head.unpack_from(value, 0)
                pos = _value_v3_head.size
            else:
                _v, offset, meta_len = _value_v1_head.unpack_from(value, 0)
                leader_epoch, pos = -1, _value_v1_head.size
        elif version in (0, 1):
            _v, offset, meta_len = _value_v1_head.unpack_from(value, 0)
            leader_epoch, pos = -1, _value_v1_head.size
        else:
            raise ValueError(f"offset commit value version {version} is not one pstream reads (0-3)")
        if meta_len < 0:
            raise ValueError("offset commit value with a null metadata")
        metadata = value[pos:pos + meta_len].decode()
        pos += meta_len
        (commit_ms,) = _i64.unpack_from(value, pos)
        pos += 8
        expire_ms = None
        if version == 1:
            (expire_ms,) = _i64.unpack_from(value, pos)
            pos += 8
            expire_ms = None if expire_ms == -1 else expire_ms
    except struct.error:
        raise ValueError("offset commit value cut short") from None
    if pos != len(value):
        raise ValueError(f"{len(value) - pos} bytes left after an offset commit value")
    return CommittedOffset(offset, leader_epoch, metadata, commit_ms, expire_ms)


def decode_group_value(value: bytes) -> dict:
    """GroupMetadataValue v0-3 as the coordinator's metadata dict."""
    r = _Reader(value)
    version = r.int16()
    if not 0 <= version <= 3:
        raise ValueError(f"group metadata value version {version} is not one pstream reads (0-3)")
    meta = {"protocol_type": r.string() or None, "generation": r.int32(), "protocol": r.string(nullable=True),
            "leader": r.string(nullable=True)}
    state_ms = r.int64() if version >= 2 else -1
    meta["state_ms"] = None if state_ms == -1 else state_ms
    members = []
    for _ in range(r.int32()):
        m = {"member_id": r.string()}
        m["instance_id"] = r.string(nullable=True) if version >= 3 else None
        m["client_id"], m["client_host"] = r.string(), r.string()
        rebalance = r.int32() if version >= 1 else None
        m["session_timeout_ms"] = r.int32()
        m["rebalance_timeout_ms"] = m["session_timeout_ms"] if rebalance is None else rebalance
        m["subscription"], m["assignment"] = b64(r.bytes()), b64(r.bytes())
        members.append(m)
    meta["members"] = members
    r.end()
    return meta


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _is_legacy(key: bytes) -> bool:
    """A key pstream wrote before Kafka's formats: compact JSON, an array."""
    return key[:1] == b"["


class OffsetState:
    """What the records say: offsets[group][(topic, partition)] and groups[group] (metadata dicts:
    protocol_type, generation, protocol, leader, state_ms, members [{member_id, instance_id,
    client_id, client_host, session_timeout_ms, rebalance_timeout_ms, subscription and
    assignment in base64}])."""

    def __init__(self) -> None:
        self.offsets: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        self.groups: dict[str, dict] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Applies one record in Kafka's format; raises ValueError (or KeyError, TypeError,
        IndexError) for one it cannot read."""
        version = key[1] if len(key) >= 2 and key[0] == 0 else -1
        if version in (0, 1):
            group, topic, partition = decode_offset_key(key)
            self._set_offset(group, (topic, partition), None if value is None else decode_offset_value(value))
            return
        r = _Reader(key)
        version = r.int16()
        if version == GROUP_KEY_VERSION:
            group = r.string()
            r.end()
            self._set_group(group, None if value is None else decode_group_value(value))
        else:
            raise ValueError(f"key version {version} is not an offset commit or group metadata record")

    def _set_offset(self, group: str, tp: TopicPartition, committed: CommittedOffset | None) -> None:
        if committed is not None:
            self.offsets.setdefault(group, {})[tp] = committed
            return
        per = self.offsets.get(group)
        if per is not None:
            per.pop(tp, None)
            if not per:
                del self.offsets[group]

    def _set_group(self, group: str, meta: dict | None) -> None:
        if meta is None:
            self.groups.pop(group, None)
        else:
            self.groups[group] = meta

    def apply_legacy(self, key: bytes, value: bytes | None) -> None:
        """Applies one of pstream's JSON records of before (see the module doc)."""
        k = json.loads(key)
        if k[0] == "offset":
            committed = None
            if value is not None:
                v = json.loads(value)
                committed = CommittedOffset(int(v["offset"]), int(v.get("leader_epoch", -1)),
                                            str(v.get("metadata", "")), int(v.get("commit_ms", 0)), v.get("expire_ms"))
            self._set_offset(k[1], (k[2], int(k[3])), committed)
        elif k[0] == "group":
            meta = None if value is None else json.loads(value)
            if meta is not None and not isinstance(meta, dict):
                raise ValueError("group metadata is not an object")
            self._set_group(k[1], meta)
        else:
            raise ValueError(f"unknown record type {k[0]!r}")

    def fill_from(self, older: OffsetState) -> None:
        """Adds what `older` holds and this state does not: records in Kafka's format always
        come after the JSON ones in the log, so they win."""
        for group, per in older.offsets.items():
            mine = self.offsets.setdefault(group, {})
            for tp, committed in per.items():
                mine.setdefault(tp, committed)
        for group, meta in older.groups.items():
            self.groups.setdefault(group, meta)

    def records(self) -> list[Record]:
        """Every live key as one upsert, in Kafka's formats. Group metadata that cannot be
        written (an older pstream's, missing fields) is written without its members, as the
        coordinator restores such a group, or else as an empty group."""
        out: list[Record] = []
        for group, meta in self.groups.items():
            for attempt in (meta, {**meta, "members": []}, {}):   # {}: an empty group, generation 0
                try:
                    out.append((group_key(group), group_value(attempt)))
                    break
                except (KeyError, TypeError, ValueError, AttributeError, struct.error):
                    continue
        for group, per in self.offsets.items():
            out.extend((offset_key(group, t, p), offset_value(c)) for (t, p), c in per.items())
        return out


def _batches(records: list[Record]) -> Iterable[list[Record]]:
    chunk, size = [], 0
    for rec in records:
        rec_size = len(rec[0]) + (len(rec[1]) if rec[1] is not None else 0) + 32
        if chunk and size + rec_size > BATCH_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(rec)
        size += rec_size
    if chunk:
        yield chunk


def offsets_topic_settings(segment_bytes: int = SEGMENT_BYTES) -> dict:
    """The topic's settings (TopicConfig fields), the broker's alone (OffsetStore.internal_settings)."""
    return dict(flush="always", cleanup_policy="compact", retention_ms=None, retention_bytes=None,
                segment_bytes=segment_bytes, max_message_bytes=MAX_BATCH_BYTES)


@dataclasses.dataclass(slots=True)
class _Pending:
    last_offset: int
    records: list[Record]


class OffsetStore:
    """The durable state behind the group coordinator. Call `open()` once (it replays the topic;
    from any thread, before the coordinator starts), then `await write(records)` from the event
    loop."""

    def __init__(self, log, *, segment_bytes: int = SEGMENT_BYTES, partition: int = 0,
                 committed: Callable[[int], Awaitable] | None = None) -> None:
        """partition: the one of the topic this store keeps (cluster mode: one store per partition
        this broker leads). committed: cluster mode, awaits until the in-sync replicas hold an
        offset (raises once this broker no longer leads); a write counts only then."""
        self.log = log
        self.segment_bytes = segment_bytes
        self.index = partition
        self.committed = committed
        self.state = OffsetState()
        self.part = None
        self.replayed = None   # {"records", "skipped", "legacy", "seconds"} once open() ran
        self._pending: collections.deque[_Pending] = collections.deque()
        self._pending_keys: collections.Counter[bytes] = collections.Counter()
        self._txn_pending: dict[int, dict[bytes, bytes | None]] = {}   # producer id -> key -> value

    # --- start ------------------------------------------------------------------------------

    def internal_settings(self) -> dict:
        """The topic's settings, the broker's alone: whatever created it (a client's Metadata
        auto-creation, an older version), they are put back at start and at the first write.
        The compaction settings not named here (dirty ratio, lags, delete.retention.ms) follow
        the broker's defaults, as Kafka's offsets topic does."""
        return offsets_topic_settings(self.segment_bytes)

    def _enforce_settings(self, topic) -> None:
        wanted = self.internal_settings()
        if topic.overrides != wanted:
            _log.warning("%s: replacing settings %s with the broker's own %s", OFFSETS_TOPIC, topic.overrides, wanted)
            topic.replace_config(**wanted)

    def open(self) -> OffsetState:
        """Replays the topic, if there is one yet (it is created by the first write, as Kafka creates
        it on the first use of a group), migrating pstream's older JSON records; returns the state.
        A second call returns the state without replaying again."""
        if self.replayed is not None or OFFSETS_TOPIC not in self.log:
            return self.state
        started = time.monotonic()
        topic = self.log.get_topic(OFFSETS_TOPIC)
        self._enforce_settings(topic)
        self.part = topic.partition(self.index)
        skipped = records = 0
        # pstream's JSON records of before: replayed apart, under those in Kafka's format (see
        # the module doc); legacy_live: the JSON keys whose latest record is not a tombstone.
        legacy, legacy_live = OffsetState(), set()
        start = self.part.log_start_offset
        state = self.part.producer_state   # replayed here, off the event loop
        # Each key's latest value, found in the core: no Python object for an overwritten record;
        # with transactions to sort out, in Python.
        latest = self._replay_transactional(state, start) if state.aborted or state.open_txns \
            else self.part.latest(start)
        for key, value in latest.items():
            try:
                if _is_legacy(key):
                    legacy.apply_legacy(key, value)
                    legacy_live.add(key)
                else:
                    self.state.apply(key, value)
                records += 1
            except (ValueError, KeyError, TypeError, IndexError):
                skipped += 1
        self.state.fill_from(legacy)
        if skipped:
            _log.warning("%s: skipped %d records that are not group records pstream reads", OFFSETS_TOPIC, skipped)
        if legacy_live:
            self._migrate(legacy_live)
        self.replayed = {"records": records, "skipped": skipped, "legacy": len(legacy_live),
                         "seconds": time.monotonic() - started}
        _log.info("%s: replayed %d live keys from offset %d in %.3f s: %d groups with offsets, %d with metadata",
                  OFFSETS_TOPIC, records, start, self.replayed["seconds"], len(self.state.offsets),
                  len(self.state.groups))
        return self.state

    def _replay_transactional(self, state, start: int) -> dict[bytes, bytes | None]:
        """Each key's latest committed value (None: a tombstone), the records of aborted
        transactions skipped and those of open ones pending again for their producer."""
        aborted: dict[int, list[tuple[int, int]]] = {}
        for txn in state.aborted:
            aborted.setdefault(txn.producer_id, []).append((txn.first_offset, txn.last_offset))
        latest: dict[bytes, bytes | None] = {}
        offset, end = start, self.part.high_watermark
        while offset < end:
            data = self.part.read_batches(offset, 1 << 20)
            if not data:
                break
            for header, records in _core.iter_batches(data):
                offset = header.last_offset + 1
                if header.is_control:
                    continue
                pid = header.producer_id
                if header.is_transactional and any(a <= header.base_offset <= b for a, b in aborted.get(pid, ())):
                    continue
                open_from = state.open_txns.get(pid) if header.is_transactional else None
                target = self._txn_pending.setdefault(pid, {}) \
                    if open_from is not None and header.base_offset >= open_from else latest
                for rec in records:
                    if rec.key is not None:
                        target[rec.key] = rec.value
        return {k: v for k, v in latest.items() if v is not None}

    def _migrate(self, legacy: set[bytes]) -> None:
        """Writes the state in Kafka's formats, then tombstones for pstream's old JSON keys."""
        upserts = self.state.records()
        for chunk in _batches(upserts + [(key, None) for key in sorted(legacy)]):
            self.part.append_batch(_core.encode_batch([(k, v, None, None) for k, v in chunk]))   # durable on return
        _log.warning("%s: rewrote %d records of an older pstream in Kafka's formats and deleted its %d JSON keys",
                     OFFSETS_TOPIC, len(upserts), len(legacy))

    # --- writes -----------------------------------------------------------------------------

    def append(self, records: list[Record]) -> int:
        """Appends records now, in call order; returns the last offset (-1 for none). The state
        changes once they are durable (`await durable(last)`)."""
        self._ensure_part()
        last = -1
        for chunk in _batches(records):
            batch = _core.encode_batch([(k, v, None, None) for k, v in chunk])
            base = self.part.append_batch(batch, wait=False)
            last = base + len(chunk) - 1
            self._pending.append(_Pending(last, chunk))
            self._pending_keys.update(k for k, _ in chunk)
        return last

    def _ensure_part(self):
        if self.part is None:
            topic = self.log.topic(OFFSETS_TOPIC, partitions=1, **self.internal_settings())
            self._enforce_settings(topic)   # it existed already: auto-created by a client's Metadata
            self.part = topic.partition(self.index)
        return self.part

    async def durable(self, last_offset: int) -> None:
        """Returns once every record up to last_offset is durable and applied (in log order)."""
        try:
            if last_offset >= 0 and self.part.durable_offset <= last_offset:
                await self.part.wait_durable(last_offset)   # raises after a failed fdatasync
            if last_offset >= 0 and self.committed is not None:
                await self.committed(last_offset)
        finally:
            self._apply_durable()

    async def write(self, records: list[Record]) -> None:
        await self.durable(self.append(records))

    def write_sync(self, records: list[Record]) -> None:
        """write() for a caller's thread when no event loop owns this store (the embedded log's
        consumers): appends, and applies the records once they are durable (flush "always":
        append_batch returns then). The caller keeps one thread at a time in here."""
        part = self._ensure_part()
        for chunk in _batches(records):
            part.append_batch(_core.encode_batch([(k, v, None, None) for k, v in chunk]))
            for key, value in chunk:
                self.state.apply(key, value)

    def _apply_durable(self) -> None:
        durable = self.part.high_watermark if self.committed is not None else self.part.durable_offset
        while self._pending and self._pending[0].last_offset < durable:
            entry = self._pending.popleft()
            for key, value in entry.records:
                self.state.apply(key, value)
                self._pending_keys[key] -= 1
                if not self._pending_keys[key]:
                    del self._pending_keys[key]

    def is_pending(self, key: bytes) -> bool:
        """True while a write of this key is appended but not yet durable, or is part of a
        transaction not yet decided."""
        return key in self._pending_keys or any(key in keys for keys in self._txn_pending.values())

    async def write_transactional(self, records: list[Record], producer_id: int, producer_epoch: int) -> None:
        """Appends records as a transactional batch of the producer (durable on return); they
        count once its transaction commits (end_txn)."""
        part = self._ensure_part()
        if not part.has_transactions:
            await self.log.run_blocking(part.note_transactions)
        state = part.producer_state_ready or await part.load_producer_state()
        token = state.begin(producer_id, producer_epoch, 0, len(records) - 1, transactional=True,
                            log_end_offset=part.log_end_offset)
        batch = _core.encode_batch([(k, v, None, None) for k, v in records], producer_id=producer_id,
                                   producer_epoch=producer_epoch, base_sequence=0, is_transactional=True)
        try:
            base = await part.append_batch_async(batch)
        except BaseException:
            state.abort(token)
            raise
        state.complete(token, base, base + len(records) - 1, now_ms())
        self._txn_pending.setdefault(producer_id, {}).update(records)

    def end_txn(self, producer_id: int, commit: bool) -> None:
        """The producer's transaction marker is durable here: its offsets count, or are dropped."""
        records = self._txn_pending.pop(producer_id, {})
        if commit:
            for key, value in records.items():
                self.state.apply(key, value)
