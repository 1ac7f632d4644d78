"""Committed offsets and group metadata, kept durably in the internal topic `__consumer_offsets`.

Owns that topic (one partition, flush "always", no time or size retention; created by the first
write) and the state it holds: per group, the committed offset of each (topic, partition), and
the group's last stored metadata. It knows nothing of rebalances: the group coordinator (groups.py) decides what to
store and when; this module appends it, answers once it is durable, rebuilds it at start, and
keeps the log bounded. It reads and writes the log only through the public Partition API.

Records (Kafka v2 batches; keys and values are compact JSON, UTF-8):

    offset commit   key   ["offset", group, topic, partition]
                    value {"offset": O, "leader_epoch": E, "metadata": M, "commit_ms": T,
                           "expire_ms": X or null}
    group metadata  key   ["group", group]
                    value {"protocol_type": P or null, "generation": G, "protocol": N or null,
                           "leader": L or null, "state_ms": T or null,
                           "members": [{"member_id", "instance_id", "client_id", "client_host",
                                        "session_timeout_ms", "rebalance_timeout_ms",
                                        "subscription": base64, "assignment": base64}, ...]}
    deletion        the same key with a null value (a tombstone)

Replaying every record from the log start in order rebuilds the state (later records win,
tombstones delete). The storage engine does not compact, so this module does it itself: when
more than `compact_bytes` (or the size of the last snapshot, if larger) were appended since the
last snapshot, and every `compact_interval_s`, it appends a snapshot (one upsert record per live
key, appended without a yield so nothing interleaves), waits until it is durable, then moves the
log start to the snapshot's first offset (`delete_records`), and whole old segments go. A crash
at any point replays a suffix that still starts at or before a complete snapshot, so the state
is the same.

Ordering: a write is appended at once (offsets assigned in call order) and applied to the
in-memory state when it is durable, strictly in log order; until then it is "pending" (OffsetFetch
with require_stable answers UNSTABLE_OFFSET_COMMIT for a partition with a pending commit). A
snapshot includes pending writes, since they precede it in the log.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import json
import logging
import time
from collections.abc import Iterable

from pstream import _core

_log = logging.getLogger("pstream.offsets")

OFFSETS_TOPIC = "__consumer_offsets"
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC})
COMPACT_BYTES = 16 << 20
COMPACT_INTERVAL_S = 600.0
SEGMENT_BYTES = 4 << 20
BATCH_BYTES = 256 << 10        # records per appended batch, at most about this many bytes
MAX_BATCH_BYTES = 16 << 20     # the topic's max.message.bytes: one big record still fits

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


# --- encoding ------------------------------------------------------------------------------------

def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def offset_key(group: str, topic: str, partition: int) -> bytes:
    return _dumps(["offset", group, topic, partition])


def group_key(group: str) -> bytes:
    return _dumps(["group", group])


def offset_value(c: CommittedOffset) -> bytes:
    return _dumps({"offset": c.offset, "leader_epoch": c.leader_epoch, "metadata": c.metadata,
                   "commit_ms": c.commit_ms, "expire_ms": c.expire_ms})


def group_value(meta: dict) -> bytes:
    return _dumps(meta)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class OffsetState:
    """What the records say: offsets[group][(topic, partition)] and groups[group] (metadata dicts)."""

    def __init__(self) -> None:
        self.offsets: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        self.groups: dict[str, dict] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Applies one record; raises ValueError (or KeyError, TypeError) for one it cannot read."""
        k = json.loads(key)
        if k[0] == "offset":
            group, tp = k[1], (k[2], int(k[3]))
            if value is None:
                per = self.offsets.get(group)
                if per is not None:
                    per.pop(tp, None)
                    if not per:
                        del self.offsets[group]
            else:
                v = json.loads(value)
                self.offsets.setdefault(group, {})[tp] = CommittedOffset(
                    int(v["offset"]), int(v.get("leader_epoch", -1)), str(v.get("metadata", "")),
                    int(v.get("commit_ms", 0)), v.get("expire_ms"))
        elif k[0] == "group":
            if value is None:
                self.groups.pop(k[1], None)
            else:
                meta = json.loads(value)
                if not isinstance(meta, dict):
                    raise ValueError("group metadata is not an object")
                self.groups[k[1]] = meta
        else:
            raise ValueError(f"unknown record type {k[0]!r}")

    def records(self) -> list[Record]:
        """Every live key as one upsert: a snapshot."""
        out: list[Record] = [(group_key(g), group_value(m)) for g, m in self.groups.items()]
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


@dataclasses.dataclass(slots=True)
class _Pending:
    last_offset: int
    records: list[Record]


class OffsetStore:
    """The durable state behind the group coordinator. Call `open()` once (it replays the topic),
    then `await write(records)` from the event loop; `close()` stops the periodic compaction."""

    def __init__(self, log, *, compact_bytes: int = COMPACT_BYTES, compact_interval_s: float = COMPACT_INTERVAL_S,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.log = log
        self.segment_bytes = segment_bytes
        self.compact_bytes = compact_bytes
        self.compact_interval_s = compact_interval_s
        self.state = OffsetState()
        self.part = None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._pending_keys: collections.Counter[bytes] = collections.Counter()
        self._bytes_since_snapshot = 0
        self._last_snapshot_bytes = 0
        self._compacting = False
        self._compaction: asyncio.Task | None = None
        self._periodic: asyncio.Task | None = None

    # --- start ------------------------------------------------------------------------------

    def internal_settings(self) -> dict:
        """The topic's settings, the broker's alone: whatever created it (a client's Metadata
        auto-creation, an older version), they are put back at start and at the first write."""
        return dict(flush="always", retention_ms=None, retention_bytes=None, segment_bytes=self.segment_bytes,
                    max_message_bytes=MAX_BATCH_BYTES)

    def _enforce_settings(self, topic) -> None:
        wanted = self.internal_settings()
        if topic.overrides != wanted:
            _log.warning("%s: replacing settings %s with the broker's own %s", OFFSETS_TOPIC, topic.overrides, wanted)
            topic.replace_config(**wanted)

    def open(self) -> OffsetState:
        """Replays the topic, if there is one yet (it is created by the first write, as Kafka creates
        it on the first use of a group); returns the state."""
        if OFFSETS_TOPIC not in self.log:
            return self.state
        topic = self.log.get_topic(OFFSETS_TOPIC)
        self._enforce_settings(topic)
        self.part = topic.partition(0)
        skipped = records = 0
        offset = self.part.log_start_offset
        while True:
            data = self.part.read_batches(offset, 1 << 20)
            if not data:
                break
            for header, recs in _core.iter_batches(data):
                self._bytes_since_snapshot += header.size
                for rec in recs:
                    if rec.offset < offset or rec.key is None:
                        continue
                    try:
                        self.state.apply(rec.key, rec.value)
                        records += 1
                    except (ValueError, KeyError, TypeError, IndexError):
                        skipped += 1
                offset = header.last_offset + 1
        if skipped:
            _log.warning("%s: skipped %d records that are not pstream group records", OFFSETS_TOPIC, skipped)
        _log.info("%s: replayed %d records from offset %d: %d groups with offsets, %d with metadata",
                  OFFSETS_TOPIC, records, self.part.log_start_offset, len(self.state.offsets), len(self.state.groups))
        return self.state

    def start_compaction(self) -> None:
        """Starts the periodic snapshot (on the running loop)."""
        if self._periodic is None:
            self._periodic = asyncio.ensure_future(self._compact_periodically())

    async def _compact_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.compact_interval_s)
            if not self._compacting and self._bytes_since_snapshot > 0:
                await self.compact()

    def close(self) -> None:
        for task in (self._periodic, self._compaction):
            if task is not None:
                task.cancel()
        self._periodic = self._compaction = None

    # --- writes -----------------------------------------------------------------------------

    def append(self, records: list[Record]) -> int:
        """Appends records now, in call order; returns the last offset (-1 for none). The state
        changes once they are durable (`await durable(last)`)."""
        if self.part is None:
            topic = self.log.topic(OFFSETS_TOPIC, partitions=1, **self.internal_settings())
            self._enforce_settings(topic)   # it existed already: auto-created by a client's Metadata
            self.part = topic.partition(0)
        last = -1
        for chunk in _batches(records):
            batch = _core.encode_batch([(k, v, None, None) for k, v in chunk])
            base = self.part.append_batch(batch, wait=False)
            last = base + len(chunk) - 1
            self._pending.append(_Pending(last, chunk))
            self._pending_keys.update(k for k, _ in chunk)
            self._bytes_since_snapshot += len(batch)
        if not self._compacting and self._bytes_since_snapshot > max(self.compact_bytes, self._last_snapshot_bytes):
            self._compacting = True
            self._compaction = asyncio.ensure_future(self.compact())
        return last

    async def durable(self, last_offset: int) -> None:
        """Returns once every record up to last_offset is durable and applied (in log order)."""
        try:
            if last_offset >= 0 and self.part.durable_offset <= last_offset:
                await self.part.wait_durable(last_offset)   # raises after a failed fdatasync
        finally:
            self._apply_durable()

    async def write(self, records: list[Record]) -> None:
        await self.durable(self.append(records))

    def _apply_durable(self) -> None:
        durable = self.part.durable_offset
        while self._pending and self._pending[0].last_offset < durable:
            entry = self._pending.popleft()
            for key, value in entry.records:
                self.state.apply(key, value)
                self._pending_keys[key] -= 1
                if not self._pending_keys[key]:
                    del self._pending_keys[key]

    def is_pending(self, key: bytes) -> bool:
        """True while a write of this key is appended but not yet durable."""
        return key in self._pending_keys

    # --- compaction -------------------------------------------------------------------------

    def _image(self) -> list[Record]:
        """The state as the log's end describes it: the durable state with pending writes on top."""
        if not self._pending:
            return self.state.records()
        image = OffsetState()
        image.offsets = {g: dict(per) for g, per in self.state.offsets.items()}
        image.groups = dict(self.state.groups)
        for entry in self._pending:
            for key, value in entry.records:
                image.apply(key, value)
        return image.records()

    async def compact(self) -> None:
        """Writes a snapshot, waits for it to be durable, then deletes the log before it."""
        if self.part is None:
            return
        self._compacting = True
        try:
            records = self._image()
            start = self.part.log_end_offset
            self._bytes_since_snapshot = 0
            last = self.append(records) if records else start - 1
            self._last_snapshot_bytes = self._bytes_since_snapshot
            self._bytes_since_snapshot = 0
            if last >= 0:
                await self.durable(last)
            if start > self.part.log_start_offset:
                self.part.delete_records(start)
                _log.info("%s: snapshot of %d records at offset %d; the log before it is deleted",
                          OFFSETS_TOPIC, len(records), start)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("%s: compaction failed", OFFSETS_TOPIC)
        finally:
            self._compacting = False
            if self._compaction is asyncio.current_task():
                self._compaction = None
