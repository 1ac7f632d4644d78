"""Transactions in the embedded log: records appended to several partitions become visible
to read-committed readers all at once, or never.

    with log.transaction() as tx:                 # commits on leaving, aborts on an exception
        tx.append("orders", b"...", key=b"o-1", partition=0)
        tx.append("payments", b"...", partition=3)

    for rec in part.read(0, isolation_level="read_committed"): ...

The same records and the same coordinator state as the broker's (Kafka's formats): each
transactional id's state is written durably to `__transaction_state` before it is acted on
(Ongoing with the partitions, before the first record reaches each; PrepareCommit or
PrepareAbort before the markers; Complete* after), and its records carry the producer id and
epoch of the id (producer ids from the same reservation file the broker uses). A broker
started on the directory later finishes or times out whatever the application left, and
Kafka clients reading committed see exactly what in-process readers see.

Open transactions of an earlier run of the application cannot go on (their process is gone):
the first use of `log.transaction()` or a read-committed read finishes the ones that were
committing or aborting and aborts the rest (with the next epoch, as Kafka fences them). One
transaction at a time per transactional id (a second one waits); give distinct ids for
transactions in parallel threads.
"""

from __future__ import annotations

import os
import threading
import time

from pstream import _core
from pstream.coordinator.txn_log import TXN_TOPIC, TransactionLog, TxnMetadata, TxnState, record_batch
from pstream.errors import TransactionError
from pstream.storage import layout
from pstream.storage.producer_state import ProducerIds

DEFAULT_TRANSACTIONAL_ID = "pstream-embedded"
MAX_EPOCH = 32767 - 1


class _SyncTransactionLog(TransactionLog):
    """__transaction_state written from the application's thread (durable on return)."""

    def write_sync(self, meta: TxnMetadata) -> None:
        if self.part is None:
            self.log.create_topic(TXN_TOPIC, 1, **self.internal_settings())
            self._attach(self.log.get_topic(TXN_TOPIC))
        self.part.append_batch(record_batch(meta))


class EmbeddedTransactions:
    """The Log's transaction state for in-process transactions (Log.transaction())."""

    def __init__(self, log) -> None:
        self.log = log
        self.store = _SyncTransactionLog(log)
        self.txns = self.store.open()
        self.producer_ids = ProducerIds(os.path.join(log.path, layout.NODE_DIR))
        self.lock = threading.Lock()                     # state changes and producer-state updates
        self._id_locks: dict[str, threading.Lock] = {}   # one transaction at a time per id
        self._sessions: set[str] = set()                  # ids whose epoch this Log bumped already
        for meta in list(self.txns.values()):   # left by an earlier run: finish or abort them
            if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
                self._complete(meta)
            elif meta.state == TxnState.ONGOING:
                self._complete(self._write(meta.but(state=TxnState.PREPARE_ABORT,
                                                    producer_epoch=min(meta.producer_epoch + 1, MAX_EPOCH + 1))))

    def _write(self, meta: TxnMetadata) -> TxnMetadata:
        self.store.write_sync(meta)
        self.txns[meta.transactional_id] = meta
        return meta

    def begin(self, transactional_id: str, timeout_ms: int) -> tuple[threading.Lock, TxnMetadata]:
        id_lock = self._id_locks.setdefault(transactional_id, threading.Lock())
        id_lock.acquire()
        try:
            with self.lock:
                meta = self.txns.get(transactional_id)
                if meta is None:
                    meta = self._write(TxnMetadata(transactional_id, self.producer_ids.allocate(), 0, timeout_ms,
                                                   TxnState.EMPTY, last_update_ms=_now_ms()))
                elif transactional_id not in self._sessions:   # a new producer session: the next epoch
                    if meta.producer_epoch >= MAX_EPOCH:
                        meta = meta.but(producer_id=self.producer_ids.allocate(), producer_epoch=0)
                    else:
                        meta = meta.but(producer_epoch=meta.producer_epoch + 1)
                    meta = self._write(meta.but(timeout_ms=timeout_ms, state=TxnState.EMPTY,
                                                partitions=frozenset()))
                self._sessions.add(transactional_id)
                return id_lock, meta
        except BaseException:
            id_lock.release()
            raise

    def add_partition(self, meta: TxnMetadata, tp: tuple[str, int]) -> TxnMetadata:
        with self.lock:
            if meta.state == TxnState.ONGOING:
                return self._write(meta.but(partitions=meta.partitions | {tp}))
            return self._write(meta.but(state=TxnState.ONGOING, partitions=frozenset({tp}), start_ms=_now_ms()))

    def append(self, meta: TxnMetadata, part, records: list, sequence: int) -> int:
        """Appends records as one transactional batch; returns its base offset."""
        batch = _core.encode_batch(records, producer_id=meta.producer_id, producer_epoch=meta.producer_epoch,
                                   base_sequence=sequence, is_transactional=True)
        with self.lock:
            state = part.producer_state
            token = state.begin(meta.producer_id, meta.producer_epoch, sequence, sequence + len(records) - 1,
                                transactional=True, log_end_offset=part.log_end_offset)
            try:
                base = part.append_batch(batch)
            except BaseException:
                state.abort(token)
                raise
            state.complete(token, base, base + len(records) - 1, _now_ms())
            return base

    def end(self, meta: TxnMetadata, commit: bool) -> TxnMetadata:
        if meta.state != TxnState.ONGOING:   # nothing was appended: nothing to mark
            return meta
        with self.lock:
            meta = self._write(meta.but(state=TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT))
        return self._complete(meta)

    def _complete(self, meta: TxnMetadata) -> TxnMetadata:
        commit = meta.state == TxnState.PREPARE_COMMIT
        for topic, number in sorted(meta.partitions):
            if topic in self.log and number < self.log.get_topic(topic).partitions:
                with self.lock:
                    self.log.get_topic(topic).partition(number).write_txn_marker_sync(
                        meta.producer_id, meta.producer_epoch, commit)
        with self.lock:
            return self._write(meta.but(state=TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT,
                                        partitions=frozenset()))


class Transaction:
    """One transaction of the embedded log (`Log.transaction()`): append, then commit or abort."""

    def __init__(self, manager: EmbeddedTransactions, transactional_id: str, timeout_ms: int) -> None:
        self._manager = manager
        self._id_lock, self._meta = manager.begin(transactional_id, timeout_ms)
        self._sequences: dict[tuple[str, int], int] = {}
        self.state = "open"   # then "committed" or "aborted"

    @property
    def transactional_id(self) -> str:
        return self._meta.transactional_id

    @property
    def producer_id(self) -> int:
        return self._meta.producer_id

    def append(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int = 0,
               headers=None, timestamp_ms: int | None = None) -> int:
        """Appends one record to topic's partition inside the transaction; returns its offset
        (invisible to read-committed readers until the commit)."""
        return self.append_many(topic, [(key, value, headers, timestamp_ms)], partition)

    def append_many(self, topic: str, records, partition: int = 0) -> int:
        """Appends (key, value[, headers[, timestamp_ms]]) records as one batch; returns the
        offset of the first."""
        if self.state != "open":
            raise TransactionError(f"the transaction is {self.state}")
        rows = [tuple(r) + (None,) * (4 - len(r)) for r in records]
        if not rows:
            raise ValueError("no records to append")
        part = self._manager.log.get_topic(topic).partition(partition)   # raises for an unknown one
        tp = (topic, partition)
        try:
            part.note_transactions()
            if tp not in self._meta.partitions:
                self._meta = self._manager.add_partition(self._meta, tp)
            sequence = self._sequences.get(tp, 0)
            base = self._manager.append(self._meta, part, rows, sequence)
        except BaseException:
            self.abort()
            raise
        self._sequences[tp] = sequence + len(rows)
        return base

    def commit(self) -> None:
        """Makes every record of the transaction visible to read-committed readers at once."""
        self._end(True)

    def abort(self) -> None:
        """Drops every record of the transaction for read-committed readers."""
        self._end(False)

    def _end(self, commit: bool) -> None:
        if self.state != "open":
            if self.state == ("committed" if commit else "aborted"):
                return
            raise TransactionError(f"the transaction is {self.state}")
        try:
            self._meta = self._manager.end(self._meta, commit)
            self.state = "committed" if commit else "aborted"
        finally:
            if self.state != "open":
                self._id_lock.release()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.state != "open":
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _now_ms() -> int:
    return int(time.time() * 1000)
