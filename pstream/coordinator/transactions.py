"""The transaction coordinator, as Kafka 3.9's TransactionCoordinator runs it (KIP-98).

Owns every transactional id's state machine:

    Empty / CompleteCommit / CompleteAbort --AddPartitions, AddOffsets--> Ongoing
    Ongoing --EndTxn(commit)--> PrepareCommit --markers written--> CompleteCommit
    Ongoing --EndTxn(abort), timeout, a new InitProducerId--> PrepareAbort --markers--> CompleteAbort
    Empty / Complete* --InitProducerId--> Empty (epoch + 1)

Every change is written to `__transaction_state` (txn_log.py) and made durable before it is
installed and answered; Prepare* is durable before the second phase starts, so the second phase
(the COMMIT/ABORT markers on every partition of the transaction, then Complete*) finishes
even across a crash: at start, every id found in Prepare* has its markers written again
(a repeated marker is harmless: it ends no transaction). Markers go through
`Partition.write_txn_marker` (storage owns what a marker does to a partition).

Rules and error codes are Kafka's (TransactionCoordinator.scala): a new InitProducerId for an
id with an ongoing transaction fences it (epoch + 1, the transaction aborted with the new
epoch, CONCURRENT_TRANSACTIONS until the abort completes); requests with another producer id
get INVALID_PRODUCER_ID_MAPPING, with an older epoch PRODUCER_FENCED (the wire handler maps it
to INVALID_PRODUCER_EPOCH for versions before KIP-588); anything while a Prepare* is being
completed gets CONCURRENT_TRANSACTIONS. A transaction older than its timeout is aborted by a
timer as Kafka's abortTimedOutTransactions does (fence, then abort). One asyncio lock per id
orders the requests of that id; everything runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from pstream.coordinator.txn_log import TransactionLog, TxnMetadata, TxnState, now_ms
from pstream.protocol.error_codes import ErrorCode

_log = logging.getLogger("pstream.transactions")

TopicPartition = tuple[str, int]
MAX_EPOCH = 32767 - 1          # Kafka's isEpochExhausted: Short.MaxValue - 1
NO_PRODUCER = -1
MARKER_RETRY_S = 1.0
END_TXN_WAIT_S = 5.0
COMPLETE = {TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT}
PREPARING = {TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT}

# (producer id, epoch, commit, partitions) -> partitions written; raises on a storage failure.
MarkerWriter = Callable[[int, int, bool, Iterable[TopicPartition]], Awaitable[None]]
# -> a fresh producer id
IdAllocator = Callable[[], Awaitable[int]]


class TransactionCoordinator:
    def __init__(self, log, allocate_producer_id: IdAllocator, write_markers: MarkerWriter, *,
                 max_timeout_ms: int = 900_000, abort_check_interval_ms: int = 10_000,
                 id_expiration_ms: int = 604_800_000, expiration_check_interval_ms: int = 3_600_000,
                 store: TransactionLog | None = None) -> None:
        self.store = store or TransactionLog(log)
        self.allocate_producer_id = allocate_producer_id
        self.write_markers = write_markers
        self.max_timeout_ms = max_timeout_ms
        self.abort_check_interval_ms = abort_check_interval_ms
        self.id_expiration_ms = id_expiration_ms
        self.expiration_check_interval_ms = expiration_check_interval_ms
        self.txns: dict[str, TxnMetadata] = {}
        self._by_producer: dict[int, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._timers: list[asyncio.Task] = []
        self.counters = {"committed": 0, "aborted": 0, "timed_out": 0, "fenced": 0}
        self.active = False
        # What a request gets while this coordinator is not active: cluster mode tells the ids
        # of a shard still loading, or led elsewhere, to look again (cluster/txn_shards.py).
        self.inactive_error = ErrorCode.COORDINATOR_NOT_AVAILABLE
        # Awaited with each state installed (pstream serve --cores: the partitions' cores learn it).
        self.on_change: Callable[[TxnMetadata], Awaitable[None]] | None = None

    # --- start and stop -------------------------------------------------------------------

    def open(self) -> None:
        """Replays __transaction_state (any thread, before start())."""
        self.txns = self.store.open()
        self._by_producer = {m.producer_id: m.transactional_id for m in self.txns.values()}

    def start(self) -> None:
        self.active = True
        self._timers = [asyncio.ensure_future(self._periodically(self.abort_check_interval_ms, self.abort_timed_out)),
                        asyncio.ensure_future(self._periodically(self.expiration_check_interval_ms, self.expire_ids))]
        for meta in self.txns.values():
            if meta.state in PREPARING:   # the second phase a crash or stop interrupted
                self._spawn(self._complete(meta))

    def stop(self) -> None:
        self.active = False
        for task in [*self._timers, *self._tasks]:
            task.cancel()

    def for_txn(self, transactional_id: str) -> TransactionCoordinator:
        """The coordinator of that id: this one (cluster mode has one per partition of the log)."""
        return self

    def coordinators(self) -> list[TransactionCoordinator]:
        return [self] if self.active else []

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _lock(self, transactional_id: str) -> asyncio.Lock:
        lock = self._locks.get(transactional_id)
        if lock is None:
            lock = self._locks[transactional_id] = asyncio.Lock()
        return lock

    async def _install(self, meta: TxnMetadata, durable: bool = True) -> None:
        """Writes meta (durably unless told), then makes it the id's state."""
        await self.store.write(meta, durable)
        old = self.txns.get(meta.transactional_id)
        if old is not None and self._by_producer.get(old.producer_id) == meta.transactional_id:
            del self._by_producer[old.producer_id]
        self.txns[meta.transactional_id] = meta
        self._by_producer[meta.producer_id] = meta.transactional_id
        if self.on_change is not None:   # other cores check transactional batches against it
            await self.on_change(meta)

    # --- InitProducerId ---------------------------------------------------------------------

    async def init_producer_id(self, transactional_id: str, timeout_ms: int, producer_id: int = NO_PRODUCER,
                               producer_epoch: int = -1) -> tuple[ErrorCode, int, int]:
        """(error, producer id, epoch) for a transactional producer starting (KIP-360: with
        the id and epoch it had, when it recovers from an abortable error)."""
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST, -1, -1
        if not self.active:
            return self.inactive_error, -1, -1
        if not 0 < timeout_ms <= self.max_timeout_ms:
            return ErrorCode.INVALID_TRANSACTION_TIMEOUT, -1, -1
        async with self._lock(transactional_id):
            meta = self.txns.get(transactional_id)
            if meta is None:
                meta = TxnMetadata(transactional_id, await self.allocate_producer_id(), 0, timeout_ms,
                                   TxnState.EMPTY, last_update_ms=now_ms())
                await self._install(meta)
                return ErrorCode.NONE, meta.producer_id, meta.producer_epoch
            if meta.state in PREPARING:
                return ErrorCode.CONCURRENT_TRANSACTIONS, -1, -1
            recovering = producer_id != NO_PRODUCER or producer_epoch != -1   # KIP-360
            if recovering and not (producer_id == meta.producer_id
                                   or producer_id == meta.last_producer_id and producer_epoch >= MAX_EPOCH):
                return ErrorCode.PRODUCER_FENCED, -1, -1
            if meta.state == TxnState.ONGOING:
                # A new incarnation: fence the old one and abort its transaction first.
                self.counters["fenced"] += 1
                await self._begin_abort_fenced(meta)
                return ErrorCode.CONCURRENT_TRANSACTIONS, -1, -1
            if recovering:
                if producer_id != meta.producer_id or producer_epoch == meta.last_producer_epoch:
                    return ErrorCode.NONE, meta.producer_id, meta.producer_epoch   # a retry of a bump it got
                if producer_epoch != meta.producer_epoch:
                    return ErrorCode.PRODUCER_FENCED, -1, -1
            last_epoch = meta.producer_epoch if recovering else -1
            if meta.producer_epoch >= MAX_EPOCH:
                new = meta.but(producer_id=await self.allocate_producer_id(), producer_epoch=0,
                               last_producer_id=meta.producer_id, last_producer_epoch=last_epoch)
            else:
                new = meta.but(producer_epoch=meta.producer_epoch + 1, last_producer_id=meta.producer_id,
                               last_producer_epoch=last_epoch)
            new = new.but(timeout_ms=timeout_ms, state=TxnState.EMPTY, partitions=frozenset(), start_ms=-1)
            await self._install(new)
            return ErrorCode.NONE, new.producer_id, new.producer_epoch

    # --- the transaction's partitions -------------------------------------------------------

    def _check(self, transactional_id: str, producer_id: int, producer_epoch: int) -> ErrorCode:
        """Kafka's checks of a client's request for an id, in Kafka's order."""
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST
        if not self.active:
            return self.inactive_error
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if producer_epoch != meta.producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        return ErrorCode.NONE

    async def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                             partitions: Iterable[TopicPartition]) -> ErrorCode:
        """Adds partitions to the ongoing transaction (starting one if none is)."""
        partitions = frozenset(partitions)
        async with self._lock(transactional_id):
            error = self._check(transactional_id, producer_id, producer_epoch)
            if error:
                return error
            meta = self.txns[transactional_id]
            if meta.state in PREPARING:
                return ErrorCode.CONCURRENT_TRANSACTIONS
            if meta.state == TxnState.ONGOING and partitions <= meta.partitions:
                return ErrorCode.NONE
            if meta.state in COMPLETE:
                new = meta.but(state=TxnState.ONGOING, partitions=partitions, start_ms=now_ms())
            elif meta.state == TxnState.ONGOING:
                new = meta.but(partitions=meta.partitions | partitions)
            else:
                return ErrorCode.INVALID_TXN_STATE
            await self._install(new)
            return ErrorCode.NONE

    def verify_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          partitions: Iterable[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        """AddPartitionsToTxn v4+ with verify_only: whether each partition is in the ongoing
        transaction (INVALID_TXN_STATE if not), changing nothing."""
        error = self._check(transactional_id, producer_id, producer_epoch)
        meta = self.txns.get(transactional_id)
        return {tp: error or (ErrorCode.NONE if meta.state == TxnState.ONGOING and tp in meta.partitions
                              else ErrorCode.INVALID_TXN_STATE) for tp in partitions}

    def knows_producer(self, producer_id: int) -> bool:
        """Whether a transactional id of this coordinator has that producer id now."""
        return producer_id in self._by_producer

    def produce_error(self, producer_id: int, producer_epoch: int, topic: str, partition: int) -> ErrorCode:
        """Whether a transactional batch may be appended (KIP-890 part 1, on by default in 3.9):
        its producer's transaction must be ongoing and hold the partition."""
        transactional_id = self._by_producer.get(producer_id)
        meta = self.txns.get(transactional_id) if transactional_id is not None else None
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_TXN_STATE
        if producer_epoch < meta.producer_epoch:
            return ErrorCode.INVALID_PRODUCER_EPOCH
        if meta.state != TxnState.ONGOING or (topic, partition) not in meta.partitions:
            return ErrorCode.INVALID_TXN_STATE
        return ErrorCode.NONE

    # --- ending transactions ----------------------------------------------------------------

    async def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int,
                      commit: bool) -> ErrorCode:
        """Commits or aborts once Prepare* is durable. The answer waits (END_TXN_WAIT_S at most)
        for the markers and Complete* too: on one node they take a few fsyncs, less than the
        client's backoff after the CONCURRENT_TRANSACTIONS its next transaction would get."""
        async with self._lock(transactional_id):
            error = self._check(transactional_id, producer_id, producer_epoch)
            if error:
                return error
            meta = self.txns[transactional_id]
            wanted = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
            done = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
            if meta.state == done:
                return ErrorCode.NONE          # a retry of what completed
            if meta.state == wanted:
                return ErrorCode.CONCURRENT_TRANSACTIONS
            if meta.state != TxnState.ONGOING:
                return ErrorCode.INVALID_TXN_STATE
            new = meta.but(state=wanted)
            await self._install(new)
            second_phase = self._spawn(self._complete(new))
        await asyncio.wait([second_phase], timeout=END_TXN_WAIT_S)   # answered either way: Prepare* is durable
        return ErrorCode.NONE

    async def _begin_abort_fenced(self, meta: TxnMetadata) -> None:
        """Fences the producer of an ongoing transaction (epoch + 1) and aborts it with that epoch.
        Called with the id's lock held."""
        new = meta.but(state=TxnState.PREPARE_ABORT, producer_epoch=min(meta.producer_epoch + 1, MAX_EPOCH + 1),
                       last_producer_epoch=-1, last_producer_id=meta.producer_id)
        await self._install(new)
        self._spawn(self._complete(new))

    async def _complete(self, meta: TxnMetadata) -> None:
        """The second phase: markers on every partition, then Complete*. Retried while the
        storage refuses (a full disk): the id answers CONCURRENT_TRANSACTIONS meanwhile."""
        commit = meta.state == TxnState.PREPARE_COMMIT
        while True:
            try:
                await self.write_markers(meta.producer_id, meta.producer_epoch, commit, sorted(meta.partitions))
                async with self._lock(meta.transactional_id):
                    current = self.txns.get(meta.transactional_id)
                    if current is not None and current.state == meta.state \
                            and current.producer_epoch == meta.producer_epoch:
                        # Not waiting for its fsync: lost in a crash, Prepare* is replayed and
                        # the markers written again, which changes nothing.
                        await self._install(current.but(
                            state=TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT,
                            partitions=frozenset()), durable=False)
                self.counters["committed" if commit else "aborted"] += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("transaction %r: writing its %s markers failed (%s); retrying in %.0f s",
                             meta.transactional_id, "COMMIT" if commit else "ABORT", exc, MARKER_RETRY_S)
                await asyncio.sleep(MARKER_RETRY_S)

    @staticmethod
    async def _periodically(interval_ms: int, job) -> None:
        while True:
            await asyncio.sleep(interval_ms / 1000)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("%s failed", job.__name__)

    async def abort_timed_out(self, now: int | None = None) -> int:
        """Fences and aborts every ongoing transaction older than its timeout; returns how many."""
        now = now_ms() if now is None else now
        expired = [m.transactional_id for m in self.txns.values()
                   if m.state == TxnState.ONGOING and m.start_ms + m.timeout_ms < now]
        count = 0
        for transactional_id in expired:
            lock = self._lock(transactional_id)
            if lock.locked():
                continue   # a request is changing it: the next check decides
            async with lock:
                meta = self.txns.get(transactional_id)
                if meta is None or meta.state != TxnState.ONGOING or meta.start_ms + meta.timeout_ms >= now:
                    continue
                _log.info("transaction %r (producer %d epoch %d) timed out after %d ms: aborting it",
                          transactional_id, meta.producer_id, meta.producer_epoch, meta.timeout_ms)
                await self._begin_abort_fenced(meta)
                self.counters["timed_out"] += 1
                count += 1
        return count

    async def expire_ids(self, now: int | None = None) -> int:
        """Forgets the transactional ids idle (no transaction, no change) for longer than
        transactional.id.expiration.ms, as Kafka does: a tombstone, then gone; returns how many."""
        now = now_ms() if now is None else now
        idle = [m.transactional_id for m in self.txns.values()
                if m.state in COMPLETE and m.last_update_ms <= now - self.id_expiration_ms]
        count = 0
        for transactional_id in idle:
            lock = self._lock(transactional_id)
            if lock.locked():
                continue
            async with lock:
                meta = self.txns.get(transactional_id)
                if meta is None or meta.state not in COMPLETE or meta.last_update_ms > now - self.id_expiration_ms:
                    continue
                await self.store.write(meta.but(state=TxnState.DEAD))
                del self.txns[transactional_id]
                if self._by_producer.get(meta.producer_id) == transactional_id:
                    del self._by_producer[meta.producer_id]
                count += 1
            self._locks.pop(transactional_id, None)
        if count:
            _log.info("forgot %d transactional ids idle for more than %d ms", count, self.id_expiration_ms)
        return count

    # --- describing -------------------------------------------------------------------------

    def describe(self, transactional_id: str) -> TxnMetadata | None:
        meta = self.txns.get(transactional_id)
        return None if meta is None or meta.state == TxnState.DEAD else meta

    def list(self, states: Iterable[str] = (), producer_ids: Iterable[int] = (),
             min_duration_ms: int = -1) -> list[TxnMetadata]:
        """The ids matching every filter given (Kafka's ListTransactions): state names, producer
        ids, and (v1) running for at least min_duration_ms."""
        states, producer_ids, now = set(states), set(producer_ids), now_ms()
        return [m for m in self.txns.values()
                if m.state != TxnState.DEAD
                and (not states or m.state.kafka_name in states)
                and (not producer_ids or m.producer_id in producer_ids)
                and (min_duration_ms < 0 or m.state == TxnState.ONGOING and now - m.start_ms >= min_duration_ms)]
