"""Idempotent and transactional producer state, as Kafka's ProducerStateManager keeps it.

Owns the allocation of producer ids (`ProducerIds`) and, per partition, what each producer
id last wrote (`ProducerStateManager`): its epoch and its last 5 batches, so the broker can
reject a batch out of sequence or from a fenced epoch, and answer a retried batch with the
offset it already has instead of appending it twice. It never reads or writes segment
files: recovery goes through `Partition.read_batches`, and only batch headers are parsed
(and the one record of a transaction marker).

Transactions: a producer's first transactional batch opens its transaction on this partition
(`open_txns`: producer id -> first offset); its COMMIT or ABORT marker (a control batch written
by the transaction coordinator) closes it. The first unstable offset is the smallest first
offset of an open transaction; consumers reading committed stop there (the last stable offset,
`Partition.last_stable_offset`). An aborted transaction is remembered (`aborted`) and written
to the aborted-transaction index of the segment holding its marker (txn_index), which read-
committed fetches list so that clients drop its records. Ordering for crashes: a marker counts
as pending until its durable append is applied, so no snapshot covers a marker the state has
not seen; index entries are written before the snapshot that covers them is (fsynced first),
and replay from a snapshot adds again the entries of the markers it meets.

Files, both replaced atomically (write a .tmp, fsync, rename, fsync the directory):

    <data>/producer_ids.json          {"reserved_up_to": N}: ids below N may have been handed
                                      out; a restarted broker starts at N, so ids are never reused.
    <partition dir>/<20-digit offset>.snapshot
        {"version": 1, "next_offset": O, "crc32": C,
         "producers": [{"producer_id": P, "epoch": E,
                        "batches": [[base_seq, last_seq, base_offset, last_offset, max_timestamp], ...],
                        "txn_first_offset": F, "coordinator_epoch": CE, "last_timestamp": T}]}
      (the last three only when set: an open transaction's first offset, the epoch of the
      coordinator that wrote the producer's last marker, and that marker's time)
      The state after every batch below offset O (also in the name), perhaps with some batches
      past O that replay then skips; a producer's batches are oldest first, at most 5. C is
      zlib.crc32 of json.dumps(producers, sort_keys=True, separators=(",", ":")). Only the
      newest snapshot is kept. The storage layer lists only *.log files (segment_bases), so
      it never mistakes a snapshot for a segment; deleting a topic removes them with it.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import json
import logging
import os
import threading
import zlib
from typing import TYPE_CHECKING, NamedTuple

from pstream import _core
from pstream.errors import CoordinatorFencedError, OffsetOutOfRangeError, PStreamError
from pstream.storage import layout, txn_index
from pstream.storage.markers import decode_marker
from pstream.storage.txn_index import AbortedTxn

if TYPE_CHECKING:
    from pstream.log import Partition

_log = logging.getLogger("pstream.producer_state")

INT32_MAX = 2**31 - 1
NUM_BATCHES_TO_RETAIN = 5  # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
ID_BLOCK = 1000
SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_VERSION = 1
READ_BYTES = 1 << 20


def last_sequence_of(base_sequence: int, record_count: int) -> int:
    """The sequence of a batch's last record: sequences wrap from 2**31-1 to 0 (Kafka's
    DefaultRecordBatch.incrementSequence)."""
    return (base_sequence + record_count - 1) & INT32_MAX


class ProducerIds:
    """Allocates producer ids for InitProducerId; never reuses one across restarts.

    Ids are reserved on disk a block at a time, so only one allocation in ID_BLOCK pays an
    fsync; a crash loses the rest of the block, never hands an id out twice.
    """

    def __init__(self, data_dir: str) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, "producer_ids.json")
        self._lock = threading.Lock()
        try:
            reserved = layout.read_json(self.path)["reserved_up_to"]
        except FileNotFoundError:
            reserved = 1
        except (OSError, ValueError, KeyError, TypeError) as e:
            # Starting again from 1 could hand out an id a live producer holds: refuse.
            raise PStreamError(f"cannot read the producer id reservation: {e}", file=self.path) from e
        if not isinstance(reserved, int) or reserved < 1:
            raise PStreamError(f"bad producer id reservation {reserved!r}", file=self.path)
        self._next = self._limit = reserved

    def allocate(self) -> int:
        """A fresh producer id (int64 > 0); reserves the next block on disk (an fsync) when needed."""
        with self._lock:
            if self._next >= self._limit:
                layout.write_json_atomic(self.path, {"reserved_up_to": self._next + ID_BLOCK})
                self._limit = self._next + ID_BLOCK
            self._next += 1
            return self._next - 1

    def allocate_reserved(self) -> int | None:
        """A fresh producer id from the block already reserved, or None when taking one would
        mean writing the next reservation or waiting for another thread that does: then call
        allocate() where blocking on the disk is fine. For callers on an event loop."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._next >= self._limit:
                return None
            self._next += 1
            return self._next - 1
        finally:
            self._lock.release()


class SequenceCheck(enum.IntEnum):
    """The outcome of ProducerStateManager.check()."""

    OK = 0
    DUPLICATE = 1
    OUT_OF_ORDER = 2
    INVALID_EPOCH = 3
    UNKNOWN_PRODUCER = 4


class BatchMetadata(NamedTuple):
    """One appended batch of a producer."""

    base_sequence: int
    last_sequence: int
    base_offset: int
    last_offset: int
    max_timestamp: int


@dataclasses.dataclass(eq=False, slots=True)
class PendingBatch:
    """A batch that passed check() and is being appended: the token of begin().

    base_offset, last_offset and max_timestamp are None until complete(). Tokens compare
    and hash by identity, so the broker may key its own futures by them.
    """

    producer_id: int
    epoch: int
    base_sequence: int
    last_sequence: int
    serial: int = 0   # the order begun, across the partition: the order of the offsets it will get
    transactional: bool = False
    base_offset: int | None = None
    last_offset: int | None = None
    max_timestamp: int | None = None
    state: str = "pending"  # then "complete" or "aborted"


@dataclasses.dataclass(slots=True)
class ProducerEntry:
    """What one producer id wrote last to this partition (its batches oldest first; none after
    a transaction marker raised its epoch)."""

    epoch: int
    batches: list[BatchMetadata]
    serials: list[int] = dataclasses.field(default_factory=list)   # of batches (0: replayed, older than any pending)
    coordinator_epoch: int = -1   # of the coordinator that wrote its last marker here
    marker_timestamp: int = -1    # when that marker was written

    @property
    def last_timestamp(self) -> int:
        return max(self.batches[-1].max_timestamp if self.batches else -1, self.marker_timestamp)

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else -1

    def append(self, batch: BatchMetadata, serial: int) -> None:
        """Adds a completed batch in offset order (the order begun), keeping the last 5."""
        at = len(self.batches)
        while at and self.batches[at - 1].base_offset > batch.base_offset:
            at -= 1
        self.batches.insert(at, batch)
        self.serials.insert(at, serial)
        del self.batches[:-NUM_BATCHES_TO_RETAIN], self.serials[:-NUM_BATCHES_TO_RETAIN]


class ProducerStateManager:
    """Per partition: for each producer id, its epoch and the last 5 batches appended
    (first seq, last seq, first offset, last offset, max timestamp), plus the batches begun
    but not yet complete, which count as appended for the checks of the batches after them.
    Pipelined appends of one producer complete in any order (their requests' handlers resume
    as their other partitions finish), while their offsets follow the order they were begun:
    every check reads the producer's batches in that order (`serial`), never in completion order.

    accept_unknown_sequence=False restores Kafka's pre-2.5 rule: a producer this partition
    does not know must start at sequence 0, else UNKNOWN_PRODUCER. Not thread-safe: one
    thread (the event loop's) calls it, once per batch; only recover() (before the state is
    handed to that thread) and Snapshot.write() (of a state captured on it) run elsewhere.
    Owned by its partition (`pstream.log.Partition.producer_state`).
    """

    def __init__(self, partition_dir_for_snapshot: str, *, accept_unknown_sequence: bool = True) -> None:
        self.directory = partition_dir_for_snapshot
        self.accept_unknown_sequence = accept_unknown_sequence
        self._entries: dict[int, ProducerEntry] = {}
        self._pending: dict[int, list[PendingBatch]] = {}
        # Open transactions: producer id -> the first offset, or a bound below it while its
        # first batch is still being appended (the log end when it was submitted).
        self.open_txns: dict[int, int] = {}
        self._txn_first_seen: dict[int, int] = {}   # producer id -> smallest completed base offset
        self.aborted: list[AbortedTxn] = []          # by marker offset (last_offset)
        self._unsynced_indexes: set[int] = set()     # segment bases whose txn index awaits an fsync
        self._indexes_to_trim = False
        self._completed_end = 0  # every completed batch lies below this offset
        self._serial = 0
        self._write_lock = threading.Lock()   # snapshot files: one writer at a time, on any thread
        self._written_offset = -1             # the offset of the newest snapshot written (under _write_lock)

    # --- the produce path --------------------------------------------------------------

    def check(self, producer_id: int, epoch: int, base_sequence: int,
              last_sequence: int) -> tuple[SequenceCheck, int | None]:
        """Before appending a batch with producer_id >= 0 (Kafka's rules). DUPLICATE comes with
        the original base offset, or None while that append is still pending."""
        entry = self._entries.get(producer_id)
        pending = self._pending.get(producer_id)
        if entry is None and not pending:
            if base_sequence == 0 or self.accept_unknown_sequence:
                return SequenceCheck.OK, None
            return SequenceCheck.UNKNOWN_PRODUCER, None
        history = self._history(entry, pending)
        if not history:   # a marker raised its epoch and it wrote nothing since
            if epoch < entry.epoch:
                return SequenceCheck.INVALID_EPOCH, None
            return (SequenceCheck.OK if base_sequence == 0 else SequenceCheck.OUT_OF_ORDER), None
        known_epoch, newest = history[-1]
        if epoch < known_epoch:
            return SequenceCheck.INVALID_EPOCH, None
        if epoch > known_epoch:  # a new epoch starts its sequences again
            return (SequenceCheck.OK if base_sequence == 0 else SequenceCheck.OUT_OF_ORDER), None
        for _, batch in [b for b in history if b[0] == epoch][-NUM_BATCHES_TO_RETAIN:]:
            if batch.base_sequence == base_sequence and batch.last_sequence == last_sequence:
                return SequenceCheck.DUPLICATE, batch.base_offset
        if base_sequence == (newest.last_sequence + 1) & INT32_MAX:
            return SequenceCheck.OK, None
        return SequenceCheck.OUT_OF_ORDER, None

    def begin(self, producer_id: int, epoch: int, base_sequence: int, last_sequence: int, *,
              transactional: bool = False, log_end_offset: int = 0) -> PendingBatch:
        """Records a batch that passed check() as pending, before its offset is known. The first
        transactional batch of a producer opens its transaction at log_end_offset (the log end
        when it is submitted: its offset will be at least that), made exact once known."""
        self._serial += 1
        token = PendingBatch(producer_id, epoch, base_sequence, last_sequence, self._serial, transactional)
        self._pending.setdefault(producer_id, []).append(token)
        if transactional:
            self.open_txns.setdefault(producer_id, log_end_offset)
        return token

    def complete(self, token: PendingBatch, base_offset: int, last_offset: int, max_timestamp: int) -> None:
        """The pending batch is in the log at [base_offset, last_offset]."""
        self._forget(token, "complete")
        token.base_offset, token.last_offset, token.max_timestamp = base_offset, last_offset, max_timestamp
        self._record(token.producer_id, token.epoch, BatchMetadata(
            token.base_sequence, token.last_sequence, base_offset, last_offset, max_timestamp), token.serial)
        if token.transactional and token.producer_id in self.open_txns:
            pid = token.producer_id
            seen = self._txn_first_seen[pid] = min(self._txn_first_seen.get(pid, base_offset), base_offset)
            if pid not in self._pending:   # no earlier batch of it can still land below `seen`
                self.open_txns[pid] = max(self.open_txns[pid], seen)

    # --- transactions ----------------------------------------------------------------------

    def begin_marker(self, producer_id: int, epoch: int, coordinator_epoch: int = 0) -> PendingBatch:
        """A transaction marker about to be appended: pending like a batch, so that no snapshot
        covers it before complete_txn() has applied it. CoordinatorFencedError if a newer
        coordinator (a higher epoch) wrote this producer's last marker here."""
        entry = self._entries.get(producer_id)
        if entry is not None and entry.coordinator_epoch > coordinator_epoch:
            raise CoordinatorFencedError(f"Invalid coordinator epoch for producerId {producer_id}: "
                                         f"{coordinator_epoch} (zombie), {entry.coordinator_epoch} (current)")
        self._serial += 1
        token = PendingBatch(producer_id, epoch, -1, -1, self._serial)
        self._pending.setdefault(producer_id, []).append(token)
        return token

    def abort_marker(self, token: PendingBatch) -> None:
        """The marker's append failed: the transaction stays open."""
        self._forget(token, "aborted")

    def complete_txn(self, token: PendingBatch, marker_offset: int, commit: bool, coordinator_epoch: int,
                     timestamp: int) -> AbortedTxn | None:
        """The marker of token.producer_id is in the log (durably) at marker_offset: its open
        transaction ends. Returns the aborted-transaction index entry of an abort, else None."""
        self._forget(token, "complete")
        return self._end_txn(token.producer_id, token.epoch, marker_offset, commit, coordinator_epoch, timestamp)

    def _end_txn(self, pid: int, epoch: int, marker_offset: int, commit: bool, coordinator_epoch: int,
                 timestamp: int) -> AbortedTxn | None:
        first = self.open_txns.pop(pid, None)
        self._txn_first_seen.pop(pid, None)
        entry = self._entries.get(pid)
        if entry is not None:
            if epoch > entry.epoch:   # a fence or a timeout: the producer's old epoch is over here
                self._entries[pid] = entry = ProducerEntry(epoch, [], [])
            entry.coordinator_epoch, entry.marker_timestamp = coordinator_epoch, timestamp
        self._completed_end = max(self._completed_end, marker_offset + 1)
        if commit:
            return None
        if self.aborted and self.aborted[-1].last_offset >= marker_offset:
            return None   # replay meeting a marker it knows from the index
        # The LSO as of this marker: the first offset of the earliest other open transaction.
        lso = min(self.open_txns.values(), default=marker_offset + 1)
        txn = AbortedTxn(pid, marker_offset if first is None else first, marker_offset, lso)
        self.aborted.append(txn)
        return txn

    def first_unstable_offset(self) -> int | None:
        """The first offset of the earliest open transaction (None: none is open)."""
        return min(self.open_txns.values()) if self.open_txns else None

    def aborted_between(self, fetch_offset: int, upper_bound: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions a read of [fetch_offset,
        upper_bound) must tell the client of (Kafka's collectAbortedTxns rule)."""
        out = []
        for txn in self.aborted[bisect.bisect_left(self.aborted, fetch_offset, key=lambda t: t.last_offset):]:
            if txn.first_offset < upper_bound:
                out.append((txn.producer_id, txn.first_offset))
            if txn.last_stable_offset >= upper_bound:
                break
        return out

    def aborted_by_producer(self, from_offset: int) -> dict[int, list[tuple[int, int]]]:
        """producer id -> (first, last offset) of its aborted transactions ending at or after from_offset."""
        out: dict[int, list[tuple[int, int]]] = {}
        for txn in self.aborted[bisect.bisect_left(self.aborted, from_offset, key=lambda t: t.last_offset):]:
            out.setdefault(txn.producer_id, []).append((txn.first_offset, txn.last_offset))
        return out

    def forget_aborted_below(self, log_start_offset: int) -> None:
        """Drops the aborted transactions that ended below the log start (retention took them)."""
        keep = bisect.bisect_left(self.aborted, log_start_offset, key=lambda t: t.last_offset)
        if keep:
            del self.aborted[:keep]
            self._indexes_to_trim = True   # their files go with the next snapshot

    def note_index_written(self, segment_base: int) -> None:
        """An entry was written (not yet synced) to this segment's txn index: the next snapshot
        syncs it first."""
        self._unsynced_indexes.add(segment_base)

    def abort(self, token: PendingBatch) -> None:
        """The append failed: forget the pending batch; the producer's expected sequence is
        again that of the batch before it."""
        self._forget(token, "aborted")

    def pending_duplicate(self, producer_id: int, base_sequence: int,
                          last_sequence: int) -> PendingBatch | None:
        """The token of a pending batch with these sequences (check() said DUPLICATE, None)."""
        for token in reversed(self._pending.get(producer_id, ())):
            if token.base_sequence == base_sequence and token.last_sequence == last_sequence:
                return token
        return None

    def apply_batch(self, producer_id: int, epoch: int, base_sequence: int, last_sequence: int,
                    base_offset: int, last_offset: int, max_timestamp: int, transactional: bool = False) -> None:
        """Replays one batch read from the log: the state effect of begin + complete, no
        checks. A batch at or below the producer's last known offset is already counted."""
        entry = self._entries.get(producer_id)
        if entry is not None and entry.batches and base_offset <= entry.batches[-1].last_offset:
            return
        if transactional:
            self.open_txns.setdefault(producer_id, base_offset)
        self._record(producer_id, epoch,
                     BatchMetadata(base_sequence, last_sequence, base_offset, last_offset, max_timestamp))

    @staticmethod
    def _history(entry, pending) -> list[tuple[int, BatchMetadata | PendingBatch]]:
        """(epoch, batch) for the producer's completed and pending batches, in the order begun."""
        done = [(s, entry.epoch, b) for s, b in zip(entry.serials, entry.batches)] if entry is not None else []
        if pending:
            done.extend((t.serial, t.epoch, t) for t in pending)
            done.sort(key=lambda x: x[0])
        return [(e, b) for _, e, b in done]

    def _forget(self, token: PendingBatch, state: str) -> None:
        queue = self._pending.get(token.producer_id)
        if token.state != "pending" or not queue or token not in queue:
            raise ValueError(f"producer {token.producer_id} batch {token.base_sequence}.."
                             f"{token.last_sequence} is not pending here (it is {token.state})")
        queue.remove(token)
        if not queue:
            del self._pending[token.producer_id]
        token.state = state

    def _record(self, producer_id: int, epoch: int, batch: BatchMetadata, serial: int = 0) -> None:
        entry = self._entries.get(producer_id)
        if entry is None:
            entry = self._entries[producer_id] = ProducerEntry(epoch, [])
        elif epoch > entry.epoch:   # a new epoch's sequences; the last marker's coordinator stays known
            entry = self._entries[producer_id] = ProducerEntry(epoch, [], [], entry.coordinator_epoch,
                                                               entry.marker_timestamp)
        elif epoch < entry.epoch:
            return  # a fenced epoch's batch: it changes nothing
        entry.append(batch, serial)
        self._completed_end = max(self._completed_end, batch.last_offset + 1)

    # --- snapshots and recovery ----------------------------------------------------------

    def snapshot(self, next_offset: int) -> None:
        """Writes the state as of next_offset (the high watermark) atomically, then deletes the
        older snapshots: capture(next_offset).write()."""
        self.capture(next_offset).write()

    def capture(self, next_offset: int) -> Snapshot:
        """The state as of next_offset, copied (on the thread that owns the state) for a write
        on another thread. With appends still pending it covers only up to the last completed
        batch (a pending batch lands after it), so recovery replays the rest."""
        if self._pending:
            next_offset = min(next_offset, self._completed_end)
        producers = []
        for pid, e in sorted(self._entries.items()):
            p = {"producer_id": pid, "epoch": e.epoch, "batches": [list(b) for b in e.batches]}
            if pid in self.open_txns and self.open_txns[pid] < next_offset:
                p["txn_first_offset"] = self.open_txns[pid]
            if e.coordinator_epoch >= 0:
                p["coordinator_epoch"] = e.coordinator_epoch
            if e.marker_timestamp >= 0:
                p["last_timestamp"] = e.marker_timestamp
            producers.append(p)
        unsynced, self._unsynced_indexes = self._unsynced_indexes, set()
        trim, self._indexes_to_trim = self._indexes_to_trim, False
        return Snapshot(self, next_offset, producers, sorted(unsynced), trim)

    def _write_snapshot(self, snap: Snapshot) -> None:
        with self._write_lock:
            if snap.next_offset < self._written_offset:
                return   # a newer snapshot is written already; this one would only go back
            os.makedirs(self.directory, exist_ok=True)
            txn_index.sync(self.directory, snap.unsynced_indexes)   # before the snapshot that covers them
            name = layout.segment_file_name(snap.next_offset, SNAPSHOT_SUFFIX)
            layout.write_json_atomic(os.path.join(self.directory, name),
                                     {"version": SNAPSHOT_VERSION, "next_offset": snap.next_offset,
                                      "crc32": _crc(snap.producers), "producers": snap.producers})
            self._written_offset = snap.next_offset
            for old in self._snapshot_names():
                if old != name:
                    os.unlink(os.path.join(self.directory, old))

    def load(self) -> int:
        """Replaces all state (pending batches too: call it before serving) with the newest
        snapshot; returns the offset it covers (0 if none). A corrupt or unreadable snapshot
        is logged and ignored."""
        self._entries, self._pending, self._completed_end = {}, {}, 0
        self.open_txns, self._txn_first_seen, self.aborted = {}, {}, []
        names = self._snapshot_names()
        if not names:
            return 0
        path = os.path.join(self.directory, names[-1])
        try:
            data = layout.read_json(path)
            if data["version"] != SNAPSHOT_VERSION or data["next_offset"] != int(names[-1][:20]):
                raise ValueError(f"version {data['version']}, next_offset {data['next_offset']}")
            if data["crc32"] != _crc(data["producers"]):
                raise ValueError("checksum mismatch")
            entries = {p["producer_id"]: ProducerEntry(p["epoch"], [BatchMetadata(*b) for b in p["batches"]],
                                                       [0] * len(p["batches"]), p.get("coordinator_epoch", -1),
                                                       p.get("last_timestamp", -1))
                       for p in data["producers"]}
            if not all(e.batches or p.get("last_timestamp", -1) >= 0
                       for e, p in zip(entries.values(), data["producers"])):
                raise ValueError("a producer without batches")
            open_txns = {p["producer_id"]: int(p["txn_first_offset"]) for p in data["producers"]
                         if "txn_first_offset" in p}
        except (OSError, ValueError, KeyError, TypeError) as e:
            _log.warning("ignoring producer state snapshot %s: %s", path, e)
            return 0
        self._entries = entries
        self.open_txns = open_txns
        self._completed_end = data["next_offset"]
        return data["next_offset"]

    def recover(self, partition: Partition, write_indexes: bool = True) -> None:
        """load(), then replays the idempotent batches and transaction markers of the log from
        the snapshot's offset (or the log start, if later) to the log end offset, reading batch
        headers only (and a marker's record); the aborted transactions come from the txn
        indexes, those past the log end (a truncated tail) dropped, those replay meets added
        (to the files too unless write_indexes is False: a read-only look)."""
        end = partition.log_end_offset
        offset = self.load()
        if offset > end:
            _log.warning("%s-%d: producer state snapshot at %d is past the log end %d; rebuilding it from "
                         "the log", partition.topic, partition.number, offset, end)
            self._entries, self._completed_end, self.open_txns, offset = {}, 0, {}, 0
        if write_indexes:
            txn_index.truncate(self.directory, end)
        start = partition.log_start_offset
        self.aborted = [t for t in txn_index.read_all(self.directory) if start <= t.last_offset < end]
        offset = max(offset, start)
        segment_bases = None
        while offset < end:
            try:
                data = memoryview(partition.read_batches(offset, READ_BYTES))
            except OffsetOutOfRangeError:
                if offset >= partition.log_start_offset:
                    raise
                offset = partition.log_start_offset  # retention moved the start meanwhile
                continue
            batches = _core.cut_batches(data)   # whole batches, every CRC checked by read_batches
            if not batches.count:
                break
            for begin, stop in batches:
                h = _core.peek_batch(data, begin)
                last_offset = h.base_offset + h.last_offset_delta
                if h.producer_id < 0 or last_offset < offset:
                    continue
                if h.is_control:
                    marker = decode_marker(data[begin:stop])
                    if marker is None:
                        continue
                    txn = self._end_txn(marker.producer_id, marker.producer_epoch, h.base_offset, marker.commit,
                                        marker.coordinator_epoch, marker.timestamp)
                    if txn is not None and write_indexes:
                        if segment_bases is None:
                            segment_bases = [s[0] for s in partition.segments()]
                        base = segment_bases[bisect.bisect_right(segment_bases, h.base_offset) - 1]
                        txn_index.append(self.directory, base, txn, sync=False)
                        self.note_index_written(base)
                elif h.base_sequence >= 0:
                    self.apply_batch(h.producer_id, h.producer_epoch, h.base_sequence,
                                     # from the last offset delta, as Kafka's lastSequence(): the
                                     # cleaner may have removed records (even all) from the batch
                                     last_sequence_of(h.base_sequence, h.last_offset_delta + 1),
                                     h.base_offset, last_offset, h.max_timestamp, h.is_transactional)
            offset = max(offset, last_offset + 1)
        self._completed_end = max(self._completed_end, end)

    def _snapshot_names(self) -> list[str]:
        """Snapshot file names, oldest (lowest offset) first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if layout.parse_segment_file_name(n, SNAPSHOT_SUFFIX) is not None)

    # --- DescribeProducers and expiry ------------------------------------------------------

    def producers(self) -> list[dict]:
        """One dict per producer, the fields of DescribeProducers."""
        return [{"producer_id": pid, "producer_epoch": e.epoch, "last_sequence": e.last_sequence,
                 "last_timestamp": e.last_timestamp, "coordinator_epoch": e.coordinator_epoch,
                 "current_txn_start_offset": self.open_txns.get(pid, -1)}
                for pid, e in sorted(self._entries.items())]

    def expire(self, now_ms: int, max_idle_ms: int) -> int:
        """Drops the producers whose last batch's max timestamp is max_idle_ms or more before
        now_ms (Kafka's producer.id.expiration.ms rule) and that have no append pending and no
        open transaction; returns how many."""
        doomed = [pid for pid, e in self._entries.items()
                  if now_ms - e.last_timestamp >= max_idle_ms and pid not in self._pending
                  and pid not in self.open_txns]
        for pid in doomed:
            del self._entries[pid]
        return len(doomed)


class Snapshot(NamedTuple):
    """A producer state captured by ProducerStateManager.capture(), to write on any thread."""

    manager: ProducerStateManager
    next_offset: int
    producers: list
    unsynced_indexes: list = []   # segment bases whose txn index entries are synced before it
    trim_indexes: bool = False    # aborted transactions below the log start were forgotten

    def write(self) -> None:
        """Writes it (write, fsync, rename, fsync the directory), unless a snapshot at a later
        offset was written meanwhile; then deletes the older snapshot files."""
        self.manager._write_snapshot(self)


def _crc(producers: list) -> int:
    return zlib.crc32(json.dumps(producers, sort_keys=True, separators=(",", ":")).encode())
