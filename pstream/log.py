"""The embedded log: Log -> Topic -> Partition, in-process, no server.

    with pstream.Log("/var/lib/app/events", shards=2, flush="interval", flush_ms=10) as log:
        part = log.topic("orders", partitions=4).partition(0)
        offset = part.append(b"value", key=b"k")
        for rec in part.read(offset=0, max_records=100): ...
        await part.wait_for(offset)      # asyncio: wake when that offset exists

    Compacted topics keep each key's latest record (tombstones: append(None, key=k)):

        table = log.topic("users", cleanup_policy="compact", segment_bytes=1 << 20)
        table.partition(0).append(b"alice@example.com", key=b"alice")
        table.partition(0).append(None, key=b"bob")      # a tombstone: bob is deleted
        table.latest()                                   # {b"alice": b"alice@example.com"}

A Log owns a data directory, a pool of shard threads (one per core by default), a small
pool of disk threads (`DiskPool`: creating and deleting topics, partitions and configs,
producer state replays and snapshots, DeleteRecords, for callers on an event loop) and
the topics in it. Each partition is pinned to one shard by a stable hash of topic and
partition number. The broker holds the same Log and uses the raw-batch methods
(`append_batch`, `read_batches`) and the `*_async` ones; applications use the record-level ones.

Each partition owns its idempotent producers' state (`Partition.producer_state`, see
pstream/storage/producer_state.py): recovered from its snapshot and log on first use (on
the disk pool for asyncio callers), snapshotted by `Log.snapshot_producer_states()` and
when the Log closes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import shutil
import threading
import time
import fcntl
import uuid
import weakref
import zlib
from typing import Iterable, Iterator, NamedTuple

from pstream import _core
from pstream.errors import (CommitFailedError, ConfigError, DirectoryInUseError, LogClosedError, NotLocalPartitionError,
                            PStreamError, TransactionError, UnknownPartitionError, UnknownTopicError)
from pstream.consumer import Consumer, ConsumerGroups, LocalGroupOffsets, ServedGroupOffsets
from pstream.follow import Follower, follow_topic
from pstream.partitioner import StickyPartitioner
from pstream.storage import layout, txn_index
from pstream.storage.cleaner import DEFAULT_BACKOFF_MS, DEFAULT_DEDUPE_BUFFER_BYTES, LogCleaner
from pstream.storage.config import TopicConfig
from pstream.storage.metadata import read_topic_meta
from pstream.storage.markers import encode_marker
from pstream.storage.producer_state import SNAPSHOT_SUFFIX, ProducerStateManager
from pstream.storage.repair import cut_segments
from pstream.transaction import DEFAULT_TRANSACTIONAL_ID, EmbeddedTransactions, Transaction

LOG_START_FILE = "log-start-offset"
# What a partition's directory holds besides its segment-named files (<offset>.log, .index,
# .timeindex, .snapshot, .txnindex) that reset_partition removes: the leader epochs and the
# cleaner's progress. Kept: the log start offset (rewritten) and readable-offsets (republished).
RESET_FILES = ("leader-epoch-checkpoint", _core.CLEANER_CHECKPOINT)
_log = logging.getLogger("pstream.log")


INT64_MAX = (1 << 63) - 1
HAS_TRANSACTIONS = "has-transactions"   # in a partition directory: see Partition.has_transactions
# Reads of consumers more than this many records behind the end go to a reader thread.
INLINE_READ_LAG = 1000
_readers: concurrent.futures.ThreadPoolExecutor | None = None


def _cold_readers() -> concurrent.futures.ThreadPoolExecutor:
    global _readers
    if _readers is None:
        # O_DIRECT reads mostly wait on the disk: more threads than cores keep it busy.
        _readers = concurrent.futures.ThreadPoolExecutor(max_workers=4 * (os.cpu_count() or 1),
                                                         thread_name_prefix="pstream-reader")
    return _readers


def shard_for(topic: str, partition: int, shards: int, cores: int = 1) -> int:
    """The shard that owns a partition: stable across runs (CRC-32 of the topic, not hash()),
    and a topic's partitions go round-robin over the shards so they spread evenly (over the
    shards of its core, with several: the round-robin over cores comes first, owner_core)."""
    return (zlib.crc32(topic.encode()) + partition) // cores % shards


def owner_core(topic: str, partition: int, cores: int) -> int:
    """The core whose broker writes and serves a partition (`pstream serve --cores N`): a topic's
    partitions round-robin over the cores; internal topics (__consumer_offsets, ...) are core 0's,
    where the coordinators run."""
    if cores == 1 or topic.startswith("__"):
        return 0
    return (zlib.crc32(topic.encode()) + partition) % cores


class DiskPool:
    """A few threads for the Log's blocking disk work (fsyncs, renames, directory removal,
    log replays), so a caller on an event loop awaits it instead of stalling the loop.

    Bounded: `threads` workers (the work is mostly waiting on the disk, and most of it
    serializes on the Log's lock anyway); jobs beyond them queue in order. Owned by one Log,
    which closes it before it closes the partitions: jobs already queued finish, later ones
    are refused with LogClosedError, and no thread outlives close().
    """

    def __init__(self, threads: int = 2, name: str = "pstream-disk"):
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ConfigError(f"setting disk_threads must be a positive integer, got {threads!r}")
        self.threads = threads
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._closed = False

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        """Runs fn(*args, **kwargs) on a disk thread; its future."""
        if self._closed:
            raise LogClosedError("the log is closed")
        return self._executor.submit(fn, *args, **kwargs)

    async def run(self, fn, /, *args, **kwargs):
        """Awaits fn(*args, **kwargs) run on a disk thread (its result or its exception)."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def close(self) -> None:
        """Refuses new jobs, waits for the queued ones, joins the threads."""
        self._closed = True
        self._executor.shutdown(wait=True)


class Partition(_core.Partition):
    """One partition's log. Append and read from any thread; await new data in asyncio."""

    wait_readable = staticmethod(_core.wait_readable)   # how a Follower of partitions of a Log waits

    _producer_state: ProducerStateManager | None = None   # once recovered
    _producer_state_loading: asyncio.Future | None = None  # while a disk thread replays the log
    _producer_state_queue: list | None = None              # (fn, future) waiting for the replay
    _producer_state_stale = False                          # reset while replaying: replay again
    _stable_waiters: list | None = None                    # futures woken when a transaction ends
    _has_transactions: bool | None = None                  # read from the marker file once
    _replication_waiters: list | None = None               # cluster mode: (offset, future) of visible_future
    # Cluster mode: a follower's appends come from its leader and skip the producer state, so a
    # state recovered here is not kept current and is never snapshotted (a stale snapshot would
    # hide batches from the state a leader recovers, and let a producer's retries in again).
    follows_leader = False
    # Cluster mode, KIP-890: producers whose ongoing transaction its coordinator (on another
    # broker) confirmed holds this partition; one leaves when its marker is written here.
    _txn_verified: set[int] | None = None

    @property
    def producer_state(self) -> ProducerStateManager:
        """The idempotent producers' state of this partition (Kafka's ProducerStateManager),
        recovered from its snapshot and the log on first use: that can read the whole log,
        so code on an event loop uses `with_producer_state` or `load_producer_state` instead.
        Its methods are for one thread, the one that appends idempotent batches."""
        if self._producer_state is None:
            self._producer_state = self._recover_producer_state()
        return self._producer_state

    @property
    def producer_state_ready(self) -> ProducerStateManager | None:
        """The producer state if it is recovered and no call waits for it, else None (no disk work)."""
        return None if self._producer_state_queue else self._producer_state

    def with_producer_state(self, fn) -> asyncio.Future:
        """A future of fn(producer_state), called on the event loop as soon as the state is
        recovered: at once if it is, else once a disk thread replayed the log. The loop keeps
        serving meanwhile, and calls made while the replay runs are made in the order they
        came, all before any later one, so sequence checks keep the order batches arrived in."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        ready = self.producer_state_ready
        if ready is not None:
            _settle(done, fn, ready)
            return done
        if self._producer_state_queue is None:
            self._producer_state_queue = []
        self._producer_state_queue.append((fn, done))
        if self._producer_state_loading is None:
            self._start_producer_state_replay()
        return done

    def _start_producer_state_replay(self) -> None:
        self._producer_state_loading = asyncio.ensure_future(self._log._disk.run(self._recover_producer_state))
        self._producer_state_loading.add_done_callback(self._producer_state_recovered)

    async def load_producer_state(self) -> ProducerStateManager:
        """The producer state, recovered on a disk thread if it is not yet (see with_producer_state)."""
        return await self.with_producer_state(lambda state: state)

    def reset_producer_state(self) -> None:
        """Forgets the state: the next use reads it again from the snapshot and the log (after
        a failed partition revived, the batches whose appends failed are in the log now)."""
        self._producer_state = None
        if self._producer_state_loading is not None:
            self._producer_state_stale = True   # the replay running may have read the log before

    def _recover_producer_state(self) -> ProducerStateManager:
        state = ProducerStateManager(self.path)
        state.recover(self)
        return state

    def _producer_state_recovered(self, loading: asyncio.Future) -> None:
        self._producer_state_loading = None
        if self._producer_state_stale:
            self._producer_state_stale = False
            self._start_producer_state_replay()   # the queued calls wait for this one
            return
        queue, self._producer_state_queue = self._producer_state_queue or [], None
        if loading.cancelled() or loading.exception() is not None:
            error = LogClosedError("the log was closed") if loading.cancelled() else loading.exception()
            for _, done in queue:
                if not done.done():
                    done.set_exception(error)
            return
        self._producer_state = loading.result()
        for fn, done in queue:    # in arrival order, with nothing in between
            if not done.done():
                _settle(done, fn, self._producer_state)

    def read(self, offset: int = 0, max_records: int | None = None,
             max_bytes: int = 1 << 20, isolation_level: str = "read_uncommitted") -> Iterator[_core.Record]:
        """Records from `offset` on (rec.offset, .key, .value, .headers, .timestamp_ms).

        Stops at the end of the log as it was when each batch was read, or after
        max_records. Raises OffsetOutOfRangeError below the log start or past the end.
        Transaction markers are never records. With isolation_level "read_committed", as a
        Kafka consumer: stops at the last stable offset and skips aborted transactions' records.
        """
        if isolation_level not in ("read_uncommitted", "read_committed"):
            raise ValueError(f"isolation_level must be read_uncommitted or read_committed, got {isolation_level!r}")
        committed = isolation_level == "read_committed" and self.has_transactions
        if committed:
            self._log.recover_transactions()   # abandoned ones of an earlier run hold the LSO
            end = self.last_stable_offset
            aborted = self.producer_state.aborted_by_producer(offset)
        remaining = -1 if max_records is None else max_records
        while remaining != 0:
            if committed and offset >= end:
                return
            data = self.read_batches(offset, max_bytes)
            if not data:
                return
            for header, records in _core.iter_batches(data):
                if committed and header.base_offset >= end:
                    return
                skip = header.is_control or committed and header.is_transactional and any(
                    first <= header.base_offset <= last for first, last in aborted.get(header.producer_id, ()))
                for rec in () if skip else records:
                    if rec.offset < offset:
                        continue
                    yield rec
                    remaining -= 1
                    if remaining == 0:
                        return
                offset = header.last_offset + 1

    def follow(self, offset: int | None = None, *, timeout: float | None = None, max_bytes: int = 1 << 20,
               isolation_level: str = "read_uncommitted") -> Follower:
        """Records from `offset` (None: the high watermark, only new ones) on, as they become
        readable: `for rec in part.follow(...)` blocks with the GIL released, `async for` awaits.
        With a timeout, iteration ends after that many seconds without a record (pstream/follow.py)."""
        return Follower([self], [self.high_watermark if offset is None else offset], timeout=timeout,
                        max_bytes=max_bytes, isolation_level=isolation_level)

    def read_columns(self, offset: int = 0, max_records: int | None = None,
                     max_bytes: int = 1 << 20) -> _core.RecordColumns:
        """Records from `offset` on as numpy arrays, built in the core without a Python
        object per record: offsets, timestamps, key/value lengths (-1: null), header
        counts, and the keys and values each in one uint8 buffer with int64 start offsets
        (n + 1 of them, Arrow's large-binary layout). Control batches are skipped.

        Reads at most max_records records and max_bytes of stored batches (always the
        first batch, so a read makes progress); `.next_offset` is where to go on. CRCs
        are checked as read() checks them. Raises OffsetOutOfRangeError as read() does.
        """
        builder = _core.ColumnsBuilder(offset, -1 if max_records is None else max_records, max_bytes,
                                       check_crc=False)  # read_batches checks every CRC
        while builder.wants_more:
            data = self.read_batches(builder.next_offset, builder.read_size)
            if not data:
                break
            builder.add(data)
        return builder.finish()

    def latest(self, offset: int = 0) -> dict[bytes, bytes]:
        """Every key's latest value from `offset` on, as a dict; tombstoned keys are absent.

        Built in the core in two passes over the log: the first maps each key to its latest
        offset (a C hash map, no Python objects), the second makes bytes objects only for the
        records that survive. Keyless records are skipped. A consistent view: the cleaner
        does not run on this partition meanwhile.
        """
        return _core.latest_values(self, offset)

    def append_batches(self, batches: Iterable, in_flight: int = 1000) -> None:
        """Appends raw v2 batches in order through the shard thread, as submit_batch(batch,
        wait=False) does, with at most `in_flight` of them submitted and not yet appended:
        a bulk load that neither waits for each batch nor holds every buffer at once.
        Returns once all are appended (readable), whatever the flush policy; flush() makes
        them durable. A refused batch raises its error; the ones submitted with it may be
        appended already."""
        pending: list[_core.PendingAppend] = []
        for batch in batches:
            pending.append(self.submit_batch(batch, wait=False))
            if len(pending) >= in_flight:
                for p in pending:
                    p.wait()
                pending.clear()
        for p in pending:
            p.wait()

    async def wait_for(self, offset: int) -> int:
        """Returns (the log end offset) once `offset` exists, i.e. log_end_offset > offset."""
        if self.log_end_offset > offset:
            return self.log_end_offset
        return await self._log._waiters.wait(self, offset, durable=False)

    async def wait_visible(self, offset: int) -> int:
        """Returns (the high watermark) once consumers may read `offset` (high_watermark >
        offset): once it is durable under the flush policy "always", once appended otherwise."""
        if self.flush_policy == "always":
            await self.wait_durable(offset)
        else:
            await self.wait_for(offset)
        return self.high_watermark

    def visible_future(self, offset: int) -> asyncio.Future:
        """wait_visible as a future (no coroutine): resolves once consumers may read `offset`;
        cancelling it stops the watch. In a cluster, once the in-sync replicas hold it too
        (the replication layer calls high_watermark_moved)."""
        if self.replicated_high_watermark < 0:
            return self.held_future(offset)
        fut = asyncio.get_running_loop().create_future()
        if self.high_watermark > offset:
            fut.set_result(self.high_watermark)
        else:
            if self._replication_waiters is None:
                self._replication_waiters = []
            self._replication_waiters.append((offset, fut))
        return fut

    def held_future(self, offset: int) -> asyncio.Future:
        """A future resolved once this copy holds `offset` under its flush policy (durable with
        "always", appended otherwise), whatever other replicas hold."""
        return self._log._waiters.future(self, offset, durable=self.flush_policy == "always")

    def high_watermark_moved(self) -> None:
        """Cluster mode: the replicated high watermark moved; wakes the visible_future waiters it passed."""
        if self._replication_waiters:
            self._replication_waiters = resolve_passed(self._replication_waiters, self.high_watermark)

    async def append_batch_async(self, batch) -> int:
        """Appends a raw v2 batch through the shard thread; returns its base offset once the
        flush policy is met. The event loop never blocks: validation, the copy, the write
        and the fdatasync all happen on the shard."""
        return await self._log._waiters.wait_pending(self.submit_batch(batch))

    async def wait_appended(self, pending: _core.PendingAppend) -> int:
        """Awaits a submit_batch(...) result: its base offset once the flush policy is met.
        Submitting several batches before awaiting any lets their writes and syncs overlap."""
        return await self._log._waiters.wait_pending(pending)

    def when_appended(self, pending: _core.PendingAppend, callback) -> None:
        """Calls callback(pending, None) on the running loop once a submit_batch(...) result is
        done (at once if it is), or callback(pending, LogClosedError) if the Log closes first:
        wait_appended without a coroutine, for the broker's request path."""
        self._log._waiters.when_done(pending, callback)

    async def read_batches_async(self, offset: int, max_bytes: int = 1 << 20) -> bytes:
        """read_batches for asyncio: a consumer far behind the end (its batches come from disk)
        is read on a reader thread, so the event loop never waits on the disk; a consumer near
        the end, whose reads are small and mostly from memory, is served inline (a hand-off to
        another thread costs more here than such a read)."""
        if self.reads_inline(offset):
            return self.read_batches(offset, max_bytes)
        return await asyncio.get_running_loop().run_in_executor(_cold_readers(), self.read_batches, offset,
                                                                max_bytes)

    def reads_inline(self, offset: int) -> bool:
        """Whether read_batches_async reads from `offset` inline (near the end), not on a reader thread."""
        return self.log_end_offset - offset <= INLINE_READ_LAG

    async def wait_durable(self, offset: int) -> int:
        """Returns (the durable offset) once `offset` is fdatasync'ed.

        Pairs with append_batch(..., wait=False): the event loop never blocks on a sync.
        """
        if self.durable_offset <= offset:
            await self._log._waiters.wait(self, offset, durable=True)
        self._raise_if_failed()
        return self.durable_offset

    # --- transactions ------------------------------------------------------------------

    @property
    def has_transactions(self) -> bool:
        """Whether a transactional batch was ever appended here (the file `has-transactions`,
        made before the first one). Without one, the last stable offset is the high watermark
        and nothing needs the producer state replayed: read-committed reads of the other
        partitions never pay for a replay."""
        if self._has_transactions is None:
            self._has_transactions = os.path.exists(os.path.join(self.path, HAS_TRANSACTIONS))
        return self._has_transactions

    def txn_verified(self, producer_id: int) -> bool:
        return self._txn_verified is not None and producer_id in self._txn_verified

    def note_txn_verified(self, producer_id: int) -> None:
        if self._txn_verified is None:
            self._txn_verified = set()
        self._txn_verified.add(producer_id)

    def note_transactions(self) -> None:
        """Records, durably, that transactional batches come (before the first is appended)."""
        if not self.has_transactions:
            layout.write_json_atomic(os.path.join(self.path, HAS_TRANSACTIONS), {"since_offset": self.log_end_offset})
            self._has_transactions = True

    @property
    def last_stable_offset(self) -> int:
        """The offset below which every transaction is decided (Kafka's LSO): the high
        watermark, or the first offset of the earliest open transaction if lower. Read-committed
        consumers read up to it. Recovers the producer state if it is not (disk work: code on an
        event loop awaits last_stable_offset_async)."""
        if not self.has_transactions:
            return self.high_watermark
        return self.stable_offset_of(self.producer_state)

    async def last_stable_offset_async(self) -> int:
        if not self.has_transactions:
            return self.high_watermark
        return self.stable_offset_of(self.producer_state_ready or await self.load_producer_state())

    def stable_offset_of(self, state: ProducerStateManager) -> int:
        """The last stable offset given the partition's producer state (loaded: no disk work)."""
        hw = self.high_watermark
        first = state.first_unstable_offset()
        return hw if first is None or first > hw else first

    def transaction_bounds(self) -> tuple[int, list[tuple[int, int, int]]]:
        """(the first unstable offset or 2**63-1, every aborted transaction as (producer id,
        first offset, last offset)): what the cleaner must respect. Read from the live producer
        state when it is recovered, else from a private replay that changes no file (the
        cleaner's thread must not race the event loop's replay)."""
        if not self.has_transactions:
            return INT64_MAX, []
        state = self.producer_state_ready
        if state is None:
            state = ProducerStateManager(self.path)
            state.recover(self, write_indexes=False)
        first = state.first_unstable_offset()
        return (INT64_MAX if first is None else first,
                [(t.producer_id, t.first_offset, t.last_offset) for t in list(state.aborted)])

    def aborted_transactions(self, fetch_offset: int, upper_bound: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions a read-committed read of
        [fetch_offset, upper_bound) must drop (after last_stable_offset_async: no disk work)."""
        if not self.has_transactions:
            return []
        return self.producer_state.aborted_between(fetch_offset, upper_bound)

    async def write_txn_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                               coordinator_epoch: int = 0) -> int:
        """Appends the COMMIT or ABORT marker ending producer_id's transaction here; returns
        its offset once the flush policy is met and the transaction counts as ended (an abort
        is in the aborted-transaction index)."""
        state = self.producer_state_ready or await self.load_producer_state()
        if self._txn_verified:   # its next transaction here is verified anew
            self._txn_verified.discard(producer_id)
        token, batch, now = self._begin_marker(state, producer_id, producer_epoch, commit, coordinator_epoch)
        try:
            offset = await self.append_batch_async(batch)
        except BaseException:
            state.abort_marker(token)
            raise
        return self._end_marker(state, token, offset, commit, coordinator_epoch, now)

    def write_txn_marker_sync(self, producer_id: int, producer_epoch: int, commit: bool,
                              coordinator_epoch: int = 0) -> int:
        """write_txn_marker for a caller's thread (the embedded log's transactions)."""
        state = self.producer_state
        token, batch, now = self._begin_marker(state, producer_id, producer_epoch, commit, coordinator_epoch)
        try:
            offset = self.append_batch(batch)
        except BaseException:
            state.abort_marker(token)
            raise
        return self._end_marker(state, token, offset, commit, coordinator_epoch, now)

    @staticmethod
    def _begin_marker(state, producer_id, producer_epoch, commit, coordinator_epoch):
        now = int(time.time() * 1000)
        return (state.begin_marker(producer_id, producer_epoch, coordinator_epoch),
                encode_marker(producer_id, producer_epoch, commit, coordinator_epoch, now), now)

    def _end_marker(self, state, token, offset: int, commit: bool, coordinator_epoch: int, now: int) -> int:
        aborted = state.complete_txn(token, offset, commit, coordinator_epoch, now)
        if aborted is not None:
            # A write into the page cache, synced before the snapshot that covers the marker.
            base = max(b for b, *_ in self.segments() if b <= offset)
            txn_index.append(self.path, base, aborted, sync=False)
            state.note_index_written(base)
        waiters, self._stable_waiters = self._stable_waiters, None
        for waiter in waiters or ():   # their loop may run on another thread than this marker's
            waiter.get_loop().call_soon_threadsafe(_settle_waiter, waiter)
        return offset

    async def wait_txn_end(self) -> None:
        """Returns once a transaction of this partition ends (its last stable offset may move)."""
        if self._stable_waiters is None:
            self._stable_waiters = []
        elif len(self._stable_waiters) > 64:   # fetches that timed out meanwhile
            self._stable_waiters = [w for w in self._stable_waiters if not w.done()]
        waiter = asyncio.get_running_loop().create_future()
        self._stable_waiters.append(waiter)
        await waiter


def resolve_passed(waiters: list, reached: int) -> list:
    """Resolves (with `reached`) the futures of (offset, future) waiting for an offset below it;
    returns the ones still waiting (done ones dropped)."""
    keep = []
    for offset, fut in waiters:
        if fut.done():
            continue
        if offset < reached:
            fut.set_result(reached)
        else:
            keep.append((offset, fut))
    return keep


def _value_size(value) -> int:
    return 0 if value is None else len(value)


def _settle_waiter(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _settle(future: asyncio.Future, fn, *args) -> None:
    try:
        future.set_result(fn(*args))
    except Exception as exc:
        future.set_exception(exc)


class RecordMetadata(NamedTuple):
    """Where an appended record went (Kafka's producer answers the same)."""
    partition: int
    offset: int


class Topic:
    """A named set of partitions sharing one configuration."""

    def __init__(self, log: "Log", name: str, meta: dict):
        self._log = log
        self.name = name
        self.topic_id = uuid.UUID(meta["topic_id"])
        self.config = TopicConfig.from_kwargs(**meta["config"])
        # The settings given for this topic (the rest came from the Log's defaults): Kafka's
        # DYNAMIC_TOPIC_CONFIG source. `follow_defaults` re-derives the rest from today's defaults.
        self.overrides: dict = dict(meta.get("overrides", {}))
        self._partitions: list[Partition] = []
        self._partitioner = StickyPartitioner()
        try:
            for number in range(meta["partitions"]):
                self._open_partition(number)
        except BaseException:   # out of descriptors, say: release the partitions already open, now
            for part in self:
                try:
                    part.close()
                except Exception:
                    pass
            raise

    def _open_partition(self, number: int) -> None:
        log = self._log
        if owner_core(self.name, number, log.cores) != log.core:
            self._partitions.append(None)   # another core's broker writes and serves it
            return
        self._partitions.append(self._new_partition(number))

    def _new_partition(self, number: int) -> Partition:
        log = self._log
        part = Partition(log._pool, shard_for(self.name, number, log.shards, log.cores), self.name, number,
                         layout.partition_dir(log.path, self.name, number),
                         direct_io=log.direct_io, **self.config.partition_kwargs())
        part._log = log
        return part

    def truncate_partition(self, number: int, offset: int) -> Partition:
        """Drops every record at or after `offset` (a batch boundary) from partition `number` and
        returns the partition reopened: what a follower does when its log went further than its
        new leader's (cluster mode). The old Partition object is closed: look it up again. Blocks
        on the disk: call it on the disk pool (Log.run_blocking)."""
        old = self.partition(number)
        if offset >= old.log_end_offset:
            return old
        if offset < old.log_start_offset:
            raise ConfigError(f"cannot truncate {self.name}-{number} to {offset}: the log starts at "
                              f"{old.log_start_offset}", topic=self.name, partition=number)
        directory = old.path
        old.close()
        try:
            cut_segments(directory, layout.segment_bases(directory), offset)
            for name in os.listdir(directory):   # producer states of the cut tail: replayed from the log instead
                at = layout.parse_segment_file_name(name, SNAPSHOT_SUFFIX)
                if at is not None and at > offset:
                    os.unlink(os.path.join(directory, name))
            txn_index.truncate(directory, offset)
        finally:
            self._partitions[number] = part = self._new_partition(number)
        return part

    def reset_partition(self, number: int, start_offset: int) -> Partition:
        """Empties partition `number` and starts it at `start_offset` (Kafka's
        truncateFullyAndStartAt): what a follower does when its leader's log starts past its end,
        or a broker that stops replicating a partition. Its offsets go with its records, as
        when Kafka deletes a replica's log. The old Partition object is closed: look it up again.
        Blocks on the disk: call it on the disk pool (Log.run_blocking)."""
        old = self.partition(number)
        directory = old.path
        old.close()
        try:
            # The new start first: a crash half way through opens as an empty log at it, every
            # segment left below it deleted (recovery, retention).
            layout.write_text_atomic(os.path.join(directory, LOG_START_FILE), f"{start_offset}\n")
            for name in os.listdir(directory):
                if name[:1].isdigit() or name in RESET_FILES or name.endswith(".tmp"):
                    os.unlink(os.path.join(directory, name))
            layout.fsync_dir(directory)
        finally:
            self._partitions[number] = part = self._new_partition(number)
        return part

    @property
    def partitions(self) -> int:
        return len(self._partitions)

    def partition(self, number: int) -> Partition:
        if not 0 <= number < len(self._partitions):
            raise UnknownPartitionError(f"partition {number} does not exist (the topic has {len(self._partitions)})",
                                        topic=self.name, partition=number)
        part = self._partitions[number]
        if part is None:
            raise NotLocalPartitionError(
                f"partition {self.name}-{number} is core {owner_core(self.name, number, self._log.cores)}'s, "
                f"not this core's ({self._log.core})", topic=self.name, partition=number)
        return part

    def owns(self, number: int) -> bool:
        """Whether this Log's core writes and serves partition `number` (always, with one core)."""
        return 0 <= number < len(self._partitions) and self._partitions[number] is not None

    def __iter__(self) -> Iterator[Partition]:
        """The partitions this Log's core owns: all of them, unless the Log is one of several cores."""
        return (part for part in self._partitions if part is not None)

    # --- producing -----------------------------------------------------------------

    def append(self, value, key=None, headers=None, partition: int | None = None,
               timestamp_ms: int | None = None) -> RecordMetadata:
        """Appends one record where a Kafka producer would put it: `partition` if given, else
        murmur2 of the key, else the sticky partition of unkeyed records (pstream/partitioner.py).
        Returns (partition, offset) once the partition's flush policy is met."""
        if partition is None:
            number = self._partitioner.partition(key, _value_size(value), len(self._partitions))
        else:
            number = self.partition(partition).number
        return RecordMetadata(number, self._partitions[number].append(value, key=key, headers=headers,
                                                                      timestamp_ms=timestamp_ms))

    def append_many(self, records: Iterable, partition: int | None = None,
                    compression: str | int = 0) -> list[RecordMetadata]:
        """Appends records, each (key, value[, headers[, timestamp_ms]]), partitioned as append()
        does; each partition's share goes in as one batch, or as several when one would exceed
        max_message_bytes (a single record too large for a batch of its own raises
        BatchTooLargeError: nothing of its partition's share is appended, and the shares of
        partitions before it in the call are). Returns (partition, offset) of every record, in order."""
        count = len(self._partitions)
        if partition is not None:
            self.partition(partition)
        shares: dict[int, list] = {}
        where: list[tuple[int, int]] = []
        choose = self._partitioner.partition
        for rec in records:
            number = partition if partition is not None else choose(rec[0], _value_size(rec[1]), count)
            share = shares.get(number)
            if share is None:
                share = shares[number] = []
            where.append((number, len(share)))
            share.append(rec)
        offsets: dict[int, list[int]] = {}
        for number, share in shares.items():
            placed = offsets[number] = []
            for base, n in self._partitions[number].append_runs(share, compression):
                placed.extend(range(base, base + n))
        return [RecordMetadata(number, offsets[number][index]) for number, index in where]

    def follow(self, offsets: dict[int, int] | None = None, *, start: str = "latest", timeout: float | None = None,
               max_bytes: int = 1 << 20, isolation_level: str = "read_uncommitted") -> Follower:
        """Partition.follow over every partition of the topic (as they are now): from offsets[n]
        where given, else from the start ("earliest": the log start, "latest": only new records)."""
        return follow_topic(self._partitions, offsets, start, timeout=timeout, max_bytes=max_bytes,
                            isolation_level=isolation_level)

    def read_columns(self, offsets: dict[int, int] | None = None, max_records: int | None = None,
                     max_bytes: int = 1 << 20) -> dict[int, _core.RecordColumns]:
        """Partition.read_columns over every partition: {partition: RecordColumns}, each
        from offsets[partition] (default: its log start offset), each with the limits."""
        offsets = offsets or {}
        return {part.number: part.read_columns(offsets.get(part.number, part.log_start_offset), max_records,
                                               max_bytes) for part in self}

    def _meta(self) -> dict:
        return {"partitions": len(self._partitions), "config": self.config.to_dict(), "topic_id": str(self.topic_id),
                "overrides": self.overrides}

    def add_partitions(self, total: int) -> None:
        """Grows the topic to `total` partitions (partitions are never removed, as in Kafka)."""
        if total <= len(self._partitions):
            raise ConfigError(f"topic {self.name} has {len(self._partitions)} partitions; "
                              f"the new count must be larger, got {total}")
        with self._log._lock:
            self._log._check_live(self)
            for number in range(len(self._partitions), total):
                self._open_partition(number)
            self._log._save_topic(self)

    async def add_partitions_async(self, total: int) -> None:
        """add_partitions on the Log's disk pool (it creates files and fsyncs them)."""
        await self._log._disk.run(self.add_partitions, total)

    def set_config(self, **settings) -> None:
        """Changes settings and applies them to the open partitions (sizes, retention,
        timestamps at once; buffer and flush settings when the log is next opened)."""
        with self._log._lock:
            config = TopicConfig.from_kwargs(self.config, **settings)
            given = TopicConfig.normalize(settings)
            if "kafka_configs" in given:
                given["kafka_configs"] = {**self.overrides.get("kafka_configs", {}), **given["kafka_configs"]}
            self.overrides.update(given)
            self._apply(config)

    def reset_config(self, *names: str) -> None:
        """Returns settings to the Log's defaults (Kafka's DELETE of a topic config)."""
        with self._log._lock:
            for name in TopicConfig.normalize(dict.fromkeys(names)):
                self.overrides.pop(name, None)
            self._apply(TopicConfig.from_kwargs(self._log.defaults, **self.overrides))

    def replace_config(self, **settings) -> None:
        """Makes `settings` the topic's only overrides (Kafka's AlterConfigs)."""
        with self._log._lock:
            config = TopicConfig.from_kwargs(self._log.defaults, **settings)
            self.overrides = TopicConfig.normalize(settings)
            self._apply(config)

    def follow_defaults(self) -> None:
        """Takes every setting not overridden for this topic from the Log's current defaults
        (as a Kafka broker restarted with new defaults applies them to existing topics)."""
        with self._log._lock:
            config = TopicConfig.from_kwargs(self._log.defaults, **self.overrides)
            if config != self.config:
                self._apply(config)

    def _apply(self, config: TopicConfig) -> None:
        self._log._check_live(self)
        self.config = config
        self._log._save_topic(self)
        kwargs = config.partition_kwargs()
        for part in self:
            part.reconfigure(**kwargs)

    def apply_retention(self) -> int:
        return sum(part.apply_retention() for part in self)

    def clean(self, now_ms: int | None = None) -> list[dict]:
        """Compacts every partition now (one pass each, whatever its dirty ratio) with the
        topic's settings; returns each pass's result. ConfigError unless the topic's cleanup
        policy includes compact."""
        if not self.config.compacted:
            raise ConfigError(f"topic {self.name} has cleanup_policy {self.config.cleanup_policy!r}; only a "
                              f"compacted topic is cleaned", topic=self.name)
        return [self._log._cleaner.clean_partition(self, part, now_ms) for part in self]

    def latest(self) -> dict[bytes, bytes]:
        """Every key's latest value over all partitions (see Partition.latest)."""
        out: dict[bytes, bytes] = {}
        for part in self:
            out.update(part.latest())
        return out

    def _close(self, snapshot: bool = True) -> None:
        """Closes the partitions, first writing the producer states recovered (unless the
        topic is being deleted), so a restart replays nothing."""
        errors = []
        for part in self:
            if snapshot and part._producer_state is not None and not part.follows_leader:
                try:
                    part._producer_state.snapshot(part.high_watermark)
                except Exception:   # the next start replays the log instead: log it, close anyway
                    _log.exception("cannot snapshot the producer state of %s-%d", part.topic, part.number)
            try:
                part.close()
            except Exception as exc:  # close the rest, then report
                errors.append(exc)
        if errors:
            raise errors[0]


class _Waiters:
    """Futures waiting for offsets to exist or to be durable, and for submitted appends, on
    every event loop that awaits this Log: an application's and a broker's served from a thread
    (pstream.serve_in_thread) may share it. Each loop has its own doorbell (an eventfd the shard
    threads ring, include/ps_bells.h) and its own waiters."""

    def __init__(self, pool: _core.ShardPool):
        self._pool = pool
        self._loops: dict[asyncio.AbstractEventLoop, _LoopWaiters] = {}
        self._lock = threading.Lock()

    def _here(self) -> _LoopWaiters:
        loop = asyncio.get_running_loop()
        waiters = self._loops.get(loop)
        if waiters is None:
            with self._lock:
                for gone in [other for other in self._loops if other.is_closed()]:
                    self._loops.pop(gone).close()
                waiters = self._loops[loop] = _LoopWaiters(self._pool, loop)
        return waiters

    async def wait(self, part: Partition, offset: int, durable: bool) -> int:
        return await self._here().wait(part, offset, durable)

    async def wait_pending(self, pending: _core.PendingAppend) -> int:
        return await self._here().wait_pending(pending)

    def when_done(self, pending: _core.PendingAppend, callback) -> None:
        self._here().when_done(pending, callback)

    def future(self, part: Partition, offset: int, durable: bool) -> asyncio.Future:
        return self._here().future(part, offset, durable)

    def close(self) -> None:
        with self._lock:
            loops, self._loops = self._loops, {}
        for waiters in loops.values():
            waiters.close()


class _LoopWaiters:
    """One event loop's waiters, woken through its doorbell."""

    def __init__(self, pool: _core.ShardPool, loop: asyncio.AbstractEventLoop):
        self._pool = pool
        self._loop = loop
        # (partition, durable) -> [(offset, future)]
        self._waiting: dict[tuple[Partition, bool], list[tuple[int, asyncio.Future]]] = {}
        # submitted appends not done yet, each with what to call when it is: callback(pending)
        self._pending: list[tuple[_core.PendingAppend, object]] = []
        self._fd = pool.open_doorbell()
        loop.add_reader(self._fd, self._wake)

    async def wait_pending(self, pending: _core.PendingAppend) -> int:
        if not pending.done:
            fut = self._loop.create_future()
            self.when_done(pending, lambda _, error: fut.done() or (fut.set_exception(error) if error is not None
                                                                     else fut.set_result(None)))
            await fut
        return pending.result()

    def when_done(self, pending: _core.PendingAppend, callback) -> None:
        if pending.done:
            callback(pending, None)
            return
        self._pending.append((pending, callback))
        if pending.done:  # completed before it was listed
            self._finish_pending()

    def _finish_pending(self) -> None:
        still, done = [], []
        for entry in self._pending:
            (done if entry[0].done else still).append(entry)
        self._pending = still
        for pending, callback in done:
            try:
                callback(pending, None)
            except Exception as exc:   # the callback's owner failed: reported, the others still run
                self._loop.call_exception_handler({"message": "append completion callback failed",
                                                   "exception": exc})

    async def wait(self, part: Partition, offset: int, durable: bool) -> int:
        return await self.future(part, offset, durable)

    def future(self, part: Partition, offset: int, durable: bool) -> asyncio.Future:
        """A future of the offset reached once `offset` exists (or is durable), listed until it
        is done (resolved, failed or cancelled)."""
        key = (part, durable)
        fut = self._loop.create_future()
        self._waiting.setdefault(key, []).append((offset, fut))
        fut.add_done_callback(lambda f: self._forget(key, f))
        self._arm(key)
        return fut

    def _forget(self, key: tuple[Partition, bool], fut: asyncio.Future) -> None:
        entries = self._waiting.get(key)
        if entries is not None:
            entries[:] = [(o, f) for o, f in entries if f is not fut]
            if not entries:
                del self._waiting[key]

    def _arm(self, key: tuple[Partition, bool]) -> None:
        """Asks the shard to ring at the lowest offset still awaited. Futures already resolved
        (but not yet removed by their wait()) must not count: a watch on their offset would be
        satisfied at once and set none for the rest."""
        part, durable = key
        while True:
            waiting = [o for o, f in self._waiting.get(key, ()) if not f.done()]
            if not waiting or not part._watch(min(waiting), durable):
                return
            self._resolve(key)

    def _resolve(self, key: tuple[Partition, bool]) -> None:
        part, durable = key
        reached = part.durable_offset if durable else part.log_end_offset
        failed = durable and self._failed(part)  # wait_durable re-raises the failure
        for offset, fut in self._waiting.get(key, ()):
            if not fut.done() and (offset < reached or failed):
                fut.set_result(reached)

    @staticmethod
    def _failed(part: Partition) -> bool:
        try:
            part._raise_if_failed()
        except Exception:
            return True
        return False

    def _wake(self) -> None:
        self._pool.drain_doorbell(self._fd)
        if self._pending:
            self._finish_pending()
        for key in list(self._waiting):   # another loop's watch may have rung: re-arm ours
            self._resolve(key)
            self._arm(key)

    def close(self) -> None:
        """Fails what still waits (LogClosedError) and gives the doorbell back, on the loop's
        own thread when it runs elsewhere."""
        if self._loop.is_closed():
            self._pool.close_doorbell(self._fd)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._detach()
        else:
            self._loop.call_soon_threadsafe(self._detach)

    def _detach(self) -> None:
        self._loop.remove_reader(self._fd)
        self._pool.close_doorbell(self._fd)
        error = LogClosedError("the log was closed")
        for entries in self._waiting.values():
            for _, fut in entries:
                if not fut.done():
                    fut.set_exception(error)
        self._waiting.clear()
        pending, self._pending = self._pending, []
        for entry, callback in pending:
            callback(entry, error)


def _retention_loop(log_ref: "weakref.ref[Log]", stop: threading.Event, interval_s: float) -> None:
    """Applies retention every interval; holds the Log only weakly so an unclosed Log can be collected."""
    while not stop.wait(interval_s):
        log = log_ref()
        if log is None:
            return
        # The Log's lock is taken per topic, not for the whole pass: topic creation and
        # deletion (on the disk pool) wait for one topic's retention at most.
        for name in list(log._topics):
            try:
                with log._lock:
                    if log._closed:
                        return
                    topic = log._topics.get(name)
                    if topic is not None:
                        topic.apply_retention()
            except Exception:  # keep checking; the next round may succeed
                _log.exception("retention check of topic %s failed", name)
        del log


class Log:
    """A data directory of topics, served by `shards` shard threads (default: one per core).

    Settings given here (flush, flush_ms, segment_bytes, ...) are the defaults of new
    topics; `topic(name, **settings)` overrides them per topic. Retention runs every
    `retention_check_ms` (5 minutes, as in Kafka; None: only when apply_retention is called).

    Compacted topics (cleanup_policy "compact" or "compact,delete") are cleaned by
    `cleaner_threads` background threads (with `cleaner=False`, only when `clean()` is called),
    with `dedupe_buffer_bytes` of key map in all (32 MiB: about a million keys per pass; Kafka's
    log.cleaner.dedupe.buffer.size), looking for due partitions every `cleaner_backoff_ms`
    (Kafka's log.cleaner.backoff.ms) when none was due. See pstream/storage/cleaner.py.
    `disk_threads` (2) is the size of the DiskPool the `*_async` methods run on.
    `write_pool_bytes` (64 MiB) is each shard's budget of write buffers; `max_open_files` (600)
    bounds the segment descriptors partitions keep open between appends; `index_cache_bytes`
    (64 MiB) bounds the indexes of finalized segments held in memory (the least recently looked
    up are read back from their files when needed).
    """

    def __new__(cls, path: str | os.PathLike, *, readonly: bool = False, **settings):
        if readonly:   # another process writes: read what it made durable (pstream/storage/reader.py)
            if settings:
                raise ConfigError(f"a read-only Log takes no settings, got {', '.join(sorted(settings))}")
            from pstream.storage.reader import ReadonlyLog
            return ReadonlyLog(path)
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False, shards: int | None = None, direct_io: bool = True,
                 retention_check_ms: int | None = 300_000, disk_threads: int = 2, write_pool_bytes: int = 64 << 20,
                 max_open_files: int = 600, index_cache_bytes: int = 64 << 20, cleaner: bool = True, cleaner_threads: int = 1,
                 dedupe_buffer_bytes: int = DEFAULT_DEDUPE_BUFFER_BYTES,
                 cleaner_backoff_ms: int = DEFAULT_BACKOFF_MS, core: int = 0, cores: int = 1, **topic_defaults):
        self.path = os.fspath(path)
        # One of `cores` Logs over this directory, each in its own process (pstream serve --cores):
        # it opens only the partitions owner_core gives it. Core 0 alone changes topics; the others
        # take its changes with refresh_topics().
        if not isinstance(cores, int) or cores < 1 or not isinstance(core, int) or not 0 <= core < cores:
            raise ConfigError(f"core must be in 0..cores-1 and cores a positive integer, got core {core!r} of {cores!r}")
        self.core, self.cores = core, cores
        self.topic_changes = 0   # topics created, deleted or changed: the other cores refresh when it moves
        self.shards = shards if shards is not None else (os.cpu_count() or 1)
        if not isinstance(self.shards, int) or self.shards < 1:
            raise ConfigError(f"setting shards must be a positive integer, got {shards!r}")
        self.direct_io = direct_io
        self.defaults = TopicConfig.from_kwargs(**topic_defaults)
        self._cleaner = LogCleaner(self, threads=cleaner_threads if cleaner else 0,
                                   dedupe_buffer_bytes=dedupe_buffer_bytes, backoff_ms=cleaner_backoff_ms)
        os.makedirs(self.path, exist_ok=True)
        # One Log per directory, across processes too (Kafka's .lock): two writers would interleave.
        lock_name = layout.LOCK_FILE if core == 0 else f"{layout.LOCK_FILE}-core-{core}"
        self._dir_lock = open(os.path.join(self.path, lock_name), "a+")
        try:
            fcntl.flock(self._dir_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._dir_lock.seek(0)
            holder = self._dir_lock.read().strip()
            self._dir_lock.close()
            raise DirectoryInUseError(
                f"the data directory {self.path} is in use by another open Log"
                + (f" (process {holder})" if holder.isdigit() else "")
                + ": stop it, or give this one another data directory",
                file=os.path.join(self.path, lock_name)) from None
        self._dir_lock.truncate(0)   # the holder's pid, for the refusal of the next one
        self._dir_lock.write(f"{os.getpid()}\n")
        self._dir_lock.flush()
        self._lock = threading.RLock()   # topic creation, deletion and changes; taken off the event loop
        self._disk = DiskPool(disk_threads)
        # Memory and descriptors are planned: each shard's write buffers come from a budget of
        # write_pool_bytes (partitions idle for a second hold none); segment descriptors of the
        # whole Log stay within max_open_files (three per partition appended to lately).
        try:
            self._pool = _core.ShardPool(self.shards, write_pool_bytes=write_pool_bytes,
                                         max_open_files=max_open_files, index_cache_bytes=index_cache_bytes)
        except BaseException:
            self._disk.close()
            self._dir_lock.close()
            raise
        self.write_pool_bytes, self.max_open_files = write_pool_bytes, max_open_files
        # Read-only readers in other processes wait on this page's counter (pstream/storage/reader.py).
        # (Every core's shards bump the same counter: an atomic add and a futex wake on a shared page.)
        self._pool.publish_readable(os.path.join(self.path, _core.READABLE_SEQ_FILE))
        self._waiters = _Waiters(self._pool)
        self._topics: dict[str, Topic] = {}
        self._transactions: EmbeddedTransactions | None = None
        self._consumer_groups = ConsumerGroups(self)
        self._offsets = None   # where consumers' commits go: LocalGroupOffsets, or a serving broker's
        self.served = False    # a broker in this process serves this Log (pstream.serve)
        self._on_close: list = []
        self._closed = False
        for doomed in layout.deleting_dirs(self.path) if core == 0 else ():   # what a crash interrupted
            shutil.rmtree(doomed, ignore_errors=True)
        try:
            for name in layout.list_topics(self.path):
                self._topics[name] = Topic(self, name, read_topic_meta(
                    os.path.join(layout.topic_dir(self.path, name), layout.TOPIC_META)))
        except BaseException:
            for topic in self._topics.values():
                try:
                    topic._close()
                except Exception:   # the first error is the one to report
                    pass
            self._pool.stop()
            self._disk.close()
            self._dir_lock.close()
            raise
        # Like Kafka's log.retention.check.interval.ms: old segments go without anyone asking.
        self._stop_retention = threading.Event()
        self._retention_thread = None
        if retention_check_ms is not None:
            if not isinstance(retention_check_ms, int) or retention_check_ms < 1:
                self.close()
                raise ConfigError(f"setting retention_check_ms must be a positive integer or None, "
                                  f"got {retention_check_ms!r}")
            self._retention_thread = threading.Thread(
                target=_retention_loop, args=(weakref.ref(self), self._stop_retention, retention_check_ms / 1000),
                name="pstream-retention", daemon=True)
            self._retention_thread.start()
        self._cleaner.start()

    # --- transactions ---------------------------------------------------------------

    def transaction(self, transactional_id: str = DEFAULT_TRANSACTIONAL_ID, timeout_ms: int = 60_000) -> Transaction:
        """A transaction over any partitions of this Log (pstream/transaction.py): use it as a
        context manager (commits on leaving, aborts on an exception) or call commit()/abort().
        One at a time per transactional_id (a second waits for the first to end)."""
        return Transaction(self.recover_transactions(), transactional_id, timeout_ms)

    def recover_transactions(self) -> EmbeddedTransactions:
        """The in-process transaction state, created at the first call: transactions an earlier
        run left committing or aborting are finished, open ones aborted."""
        with self._lock:
            self._check_open()
            if self.served:
                raise TransactionError("a broker serves this Log: its transaction coordinator owns "
                                       "__transaction_state meanwhile (use a Kafka client's transactions)")
            if self._transactions is None:
                self._transactions = EmbeddedTransactions(self)
            return self._transactions

    # --- consumers ------------------------------------------------------------------

    def consumer(self, group: str, topics, *, isolation_level: str = "read_uncommitted",
                 max_bytes: int = 1 << 20) -> Consumer:
        """A named consumer of `topics` (pstream/consumer.py): reads from the group's committed
        offsets, commits into __consumer_offsets, shares the topics' partitions with the other
        consumers of the group in this process."""
        self._check_open()
        return Consumer(self, group, topics, isolation_level=isolation_level, max_bytes=max_bytes)

    def _group_offsets(self):
        """Where consumers' commits go: a serving broker's coordinator, else this Log's own store."""
        offsets = self._offsets
        if offsets is None:
            with self._lock:
                self._check_open()
                if self._offsets is None:
                    if self.served:   # between begin_serving and serve_groups: the broker's store is opening
                        raise CommitFailedError("a broker is starting to serve this Log; try again in a moment")
                    self._offsets = LocalGroupOffsets(self)
                offsets = self._offsets
        return offsets

    # --- served by a broker in this process (pstream/broker/embedded.py) ---------------

    def begin_serving(self) -> None:
        """A broker starts serving this Log: it will own __consumer_offsets and
        __transaction_state, so the in-process state of both is dropped (re-read when it stops)."""
        with self._lock:
            self._check_open()
            if self.served:
                raise RuntimeError(f"a broker serves {self.path} already")
            self.served = True
            self._transactions = None
            self._offsets = None

    def serve_groups(self, groups, loop: asyncio.AbstractEventLoop) -> None:
        """Consumers commit through the serving broker's group coordinator from now on."""
        self._offsets = ServedGroupOffsets(groups, loop)

    def end_serving(self) -> None:
        with self._lock:
            self.served = False
            self._offsets = None

    def on_close(self, callback) -> None:
        """Calls callback() first thing in close() (a broker serving this Log stops then)."""
        self._on_close.append(callback)

    # --- topics ---------------------------------------------------------------------

    def topic(self, name: str, partitions: int | None = None, **settings) -> Topic:
        """The topic `name`, created with `partitions` (default 1) and settings if missing.

        An existing topic keeps its configuration: settings given here are ignored for it
        (use Topic.set_config to change them).
        """
        self._check_open()
        with self._lock:
            existing = self._topics.get(name)
            if existing is not None:
                return existing
            return self._create(name, partitions, settings)

    def create_topic(self, name: str, partitions: int | None = None, *, topic_id: uuid.UUID | None = None,
                     **settings) -> Topic | None:
        """Creates the topic `name` as topic() does; None if it exists already (nothing changes).
        topic_id: the id to keep (a cluster's replicas share the one its metadata gave), else a new one."""
        self._check_open()
        with self._lock:
            if name in self._topics:
                return None
            return self._create(name, partitions, settings, topic_id)

    async def create_topic_async(self, name: str, partitions: int | None = None, *,
                                 topic_id: uuid.UUID | None = None, **settings) -> Topic | None:
        """create_topic on the disk pool: the event loop keeps serving while the topic's
        directories and files are written and fsynced."""
        return await self._disk.run(lambda: self.create_topic(name, partitions, topic_id=topic_id, **settings))

    def _create(self, name: str, partitions: int | None, settings: dict, topic_id: uuid.UUID | None = None) -> Topic:
        """Creates the topic (the caller holds self._lock and checked the name is free)."""
        self._check_topics_changeable(name)
        layout.check_topic_name(name)
        count = 1 if partitions is None else partitions
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"partitions must be a positive integer, got {partitions!r}", topic=name)
        config = TopicConfig.from_kwargs(self.defaults, **settings)
        meta = {"partitions": count, "config": config.to_dict(), "topic_id": str(topic_id or uuid.uuid4()),
                "overrides": TopicConfig.normalize(settings)}
        self._create_topic_dir(name, meta)
        try:
            topic = Topic(self, name, meta)
        except BaseException:
            # Out of descriptors or memory while opening its partitions: the topic was not
            # created. Close what opened and take the directory away, so no half of it stays.
            self._discard_topic_dir(name)
            raise
        self._topics[name] = topic
        self.topic_changes += 1
        return topic

    def _create_topic_dir(self, name: str, meta: dict) -> None:
        """Writes the topic's directory (topic.json, a directory per partition) under a temporary
        name, then renames it: a crash or a full disk leaves the whole topic or none of it."""
        directory = layout.topic_dir(self.path, name)
        if os.path.lexists(directory):   # a stale directory without topic.json (list_topics skipped it)
            self._discard_topic_dir(name)
        tmp = os.path.join(self.path, f"{layout.CREATING_PREFIX}{uuid.uuid4().hex}")
        try:
            os.mkdir(tmp)
            for number in range(meta["partitions"]):
                os.mkdir(os.path.join(tmp, str(number)))
            layout.write_json_atomic(os.path.join(tmp, layout.TOPIC_META), meta)  # fsyncs tmp too
            os.rename(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        layout.fsync_dir(self.path)

    def _discard_topic_dir(self, name: str) -> None:
        directory = layout.topic_dir(self.path, name)
        doomed = os.path.join(self.path, f"{layout.DELETING_PREFIX}{uuid.uuid4().hex}")
        os.rename(directory, doomed)
        layout.fsync_dir(self.path)
        shutil.rmtree(doomed, ignore_errors=True)

    def get_topic(self, name: str) -> Topic:
        """The existing topic `name`; UnknownTopicError if there is none."""
        self._check_open()
        try:
            return self._topics[name]
        except KeyError:
            raise UnknownTopicError(f"topic {name!r} does not exist", topic=name) from None

    def topics(self) -> list[str]:
        return sorted(self._topics)

    def __contains__(self, name: str) -> bool:
        return name in self._topics

    def delete_topic(self, name: str) -> None:
        """Closes the topic's partitions and removes its data."""
        shutil.rmtree(self._detach_topic(name), ignore_errors=True)

    async def delete_topic_async(self, name: str) -> None:
        """delete_topic on the disk pool. Returns once the topic is gone for good (its
        directory renamed to @deleting-..., the rename fsynced); its files are removed
        afterwards on the pool, as Kafka deletes a log asynchronously (or at the next open,
        if the Log closes first)."""
        doomed = await self._disk.run(self._detach_topic, name)
        try:
            self._disk.submit(shutil.rmtree, doomed, ignore_errors=True)
        except LogClosedError:
            pass

    def _detach_topic(self, name: str) -> str:
        """Closes the topic's partitions and renames its directory away; returns the new path."""
        with self._lock:
            topic = self.get_topic(name)
            self._check_topics_changeable(name)
            del self._topics[name]
            self.topic_changes += 1
            topic._close(snapshot=False)
            directory = layout.topic_dir(self.path, name)
            doomed = os.path.join(self.path, f"{layout.DELETING_PREFIX}{uuid.uuid4().hex}")
            os.rename(directory, doomed)  # the topic is gone even if removal is interrupted
            layout.fsync_dir(self.path)
            return doomed

    def set_defaults(self, **topic_defaults) -> None:
        """New defaults for topics (Kafka's dynamic broker configs): every topic takes them for
        the settings it does not set itself, at once."""
        with self._lock:
            self._check_open()
            self.defaults = TopicConfig.from_kwargs(**topic_defaults)
            for topic in list(self._topics.values()):
                topic.follow_defaults()

    def reconfigure_cleaner(self, *, cleaner: bool, cleaner_threads: int, dedupe_buffer_bytes: int,
                            cleaner_backoff_ms: int) -> None:
        """The cleaner's threads and memory changed at run time: a pass in progress finishes,
        then the threads start again with the new settings."""
        self._cleaner.reconfigure(threads=cleaner_threads if cleaner else 0, dedupe_buffer_bytes=dedupe_buffer_bytes,
                                  backoff_ms=cleaner_backoff_ms)

    async def run_blocking(self, fn, /, *args, **kwargs):
        """Awaits fn(*args, **kwargs) run on the Log's disk pool: for blocking disk work of
        callers on an event loop (config changes, DeleteRecords) that has no *_async method."""
        return await self._disk.run(fn, *args, **kwargs)

    async def snapshot_producer_states(self) -> None:
        """Snapshots every recovered producer state: each is read here, on the thread that
        changes it (the event loop), and written and fsynced on the disk pool. A failure is
        logged; the next snapshot or a replay at restart covers what it missed."""
        for part, state in self.producer_states():
            state.forget_aborted_below(part.log_start_offset)
            try:
                await self._disk.run(self._write_snapshot, part, state.capture(part.high_watermark))
            except Exception:
                _log.exception("cannot snapshot the producer state of %s-%d", part.topic, part.number)

    def _write_snapshot(self, part: Partition, snapshot) -> None:
        with self._lock:   # never into the directory of a topic deleted meanwhile
            topic = self._topics.get(part.topic)
            if topic is not None and part.number < topic.partitions and topic.partition(part.number) is part:
                snapshot.write()
                if snapshot.trim_indexes:   # indexes of segments retention deleted: every entry is below the start
                    txn_index.delete_below(part.path, part.segments()[0][0])

    def producer_states(self) -> list[tuple[Partition, ProducerStateManager]]:
        """(partition, producer state) of every partition whose state is recovered (no disk work)."""
        return [(part, part.producer_state_ready) for topic in list(self._topics.values()) for part in topic
                if part.producer_state_ready is not None and not part.follows_leader]

    def _check_live(self, topic: Topic) -> None:
        """Under the lock: the topic was not deleted meanwhile (a change queued before the deletion)."""
        if self._topics.get(topic.name) is not topic:
            raise UnknownTopicError(f"topic {topic.name!r} does not exist", topic=topic.name)

    def refresh_topics(self) -> None:
        """On a core other than 0: takes the topic changes core 0 made on disk (topics created,
        deleted or recreated, partitions added, settings changed), opening and closing the
        partitions this core owns."""
        with self._lock:
            self._check_open()
            on_disk = {name: read_topic_meta(os.path.join(layout.topic_dir(self.path, name), layout.TOPIC_META))
                       for name in layout.list_topics(self.path)}
            for name, topic in list(self._topics.items()):
                meta = on_disk.get(name)
                if meta is None or meta["topic_id"] != str(topic.topic_id):
                    self.forget_topic(name)
            for name, meta in on_disk.items():
                topic = self._topics.get(name)
                if topic is None:
                    self._topics[name] = Topic(self, name, meta)
                    continue
                for number in range(topic.partitions, meta["partitions"]):
                    topic._open_partition(number)
                topic.overrides = dict(meta.get("overrides", {}))
                config = TopicConfig.from_kwargs(**meta["config"])
                if config != topic.config:
                    topic.config = config
                    for part in topic:
                        part.reconfigure(**config.partition_kwargs())

    def forget_topic(self, name: str) -> None:
        """On a core other than 0: closes a topic core 0 is deleting, leaving its files to core 0."""
        with self._lock:
            topic = self._topics.pop(name, None)
            if topic is not None:
                try:
                    topic._close(snapshot=False)
                except PStreamError as exc:   # its files went first (core 0 did not wait for this one)
                    _log.info("closing deleted topic %s: %s", name, exc)

    def _check_topics_changeable(self, name: str) -> None:
        if self.core != 0:
            raise ConfigError(f"core {self.core} cannot create, change or delete topic {name}: core 0 does")

    def _save_topic(self, topic: Topic) -> None:
        self._check_topics_changeable(topic.name)
        self.topic_changes += 1
        layout.write_json_atomic(os.path.join(layout.topic_dir(self.path, topic.name), layout.TOPIC_META),
                                 topic._meta())

    def apply_retention(self) -> int:
        """Applies retention to every partition; returns the number of segments deleted."""
        return sum(topic.apply_retention() for topic in list(self._topics.values()))

    def clean(self, now_ms: int | None = None) -> dict[str, list[dict]]:
        """Compacts every compacted topic now (one pass per partition); returns topic -> results."""
        return {topic.name: topic.clean(now_ms) for topic in self._compacted_topics()}

    def cleaner_stats(self) -> dict:
        """The cleaner's counters for metrics: runs, bytes_read, bytes_written, records_removed,
        errors, last_clean_ms, max_dirty_ratio, and per partition its dirty ratio
        ("partitions": {"topic-N": {...}}). See LogCleaner.stats."""
        return self._cleaner.stats()

    def _compacted_topics(self) -> list[Topic]:
        # No lock: close() joins the cleaner threads that call this while holding it.
        return [topic for topic in list(self._topics.values()) if topic.config.compacted]

    def shard_stats(self) -> list[dict]:
        return self._pool.stats()

    def memory_stats(self) -> dict:
        """Memory by owner, from counters cheap enough for every scrape: `write_pool`, each shard's
        budget (capacity, in use, peak, waits, releases, holders: see ShardPool.memory), and
        `index_bytes`, the index arrays of every open segment in the process."""
        return {"write_pool": self._pool.memory(), "index_bytes": _core.ShardPool.index_bytes()}

    # --- lifecycle ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError("the log is closed")

    def close(self) -> None:
        """Writes and syncs everything, writes the indexes and the producer state snapshots,
        stops the cleaner, disk and shard threads."""
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()
        if not self._closed:
            self._cleaner.stop()        # a pass in progress finishes first
        self._disk.close()   # before the lock: its queued jobs take the lock to finish
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_retention.set()
            self._waiters.close()
            failures = []
            try:
                for topic in self._topics.values():
                    try:
                        topic._close()
                    except Exception as exc:  # close every other topic, then report
                        failures.append(exc)
            finally:
                self._pool.stop()
                self._dir_lock.close()
            if failures:
                raise failures[0]

    def __enter__(self) -> "Log":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Log({self.path!r}, shards={self.shards}, topics={len(self._topics)})"
