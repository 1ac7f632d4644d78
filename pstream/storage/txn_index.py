"""The aborted-transaction index of a partition: Kafka's `.txnindex` (TransactionIndex.java).

A read_committed fetch must tell its consumer which producers' records in the returned range
belong to aborted transactions; this index answers that without scanning the log. It owns the
`.txnindex` files of one partition directory and nothing else: it never reads a segment, and
the caller says which segment holds each ABORT marker.

    <partition dir>/<20-digit base offset>.txnindex   beside the <base>.log holding the ABORT markers

The file is a sequence of 34-byte big-endian entries, one per aborted transaction, the same
bytes Kafka writes (Kafka's DumpLogSegments reads them):

    version int16 = 0 | producerId int64 | firstOffset int64 | lastOffset int64 | lastStableOffset int64

lastOffset is the ABORT marker's offset, strictly increasing within a file; lastStableOffset is
the partition's LSO once the transaction completed. Committed transactions are not indexed. A
file is created at its first entry, so most segments have none.

Durability: an entry is appended after its ABORT marker is durable, and fsynced before the
partition's producer-state snapshot covering that marker is written. A crash therefore loses at
most the entries past the last snapshot, and producer-state replay from that snapshot re-adds
them; so `append` accepts an entry it already holds (and ignores a torn last entry).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from pstream.errors import PStreamError
from pstream.storage import layout

TXN_INDEX_SUFFIX = ".txnindex"
ENTRY_VERSION = 0   # Kafka's AbortedTxn.CURRENT_VERSION
_ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = _ENTRY.size   # 34, Kafka's AbortedTxn.TOTAL_SIZE


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int          # the ABORT marker's offset
    last_stable_offset: int   # the partition's LSO after the abort


def index_path(partition_dir: str, segment_base: int) -> str:
    return os.path.join(partition_dir, layout.segment_file_name(segment_base, TXN_INDEX_SUFFIX))


def append(partition_dir: str, segment_base: int, txn: AbortedTxn, *, sync: bool = True) -> None:
    """Adds one aborted transaction to the index of the segment holding its ABORT marker.

    An entry whose last_offset does not follow the file's last one is skipped when the file
    already holds it (replay after a crash), and raises ValueError otherwise."""
    path = index_path(partition_dir, segment_base)
    entry = _ENTRY.pack(ENTRY_VERSION, *txn)
    created = False
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        created = True
    try:
        size = os.fstat(fd).st_size
        whole = size - size % ENTRY_SIZE
        if whole:
            last = _decode(os.pread(fd, ENTRY_SIZE, whole - ENTRY_SIZE), 0)
            if txn.last_offset <= last.last_offset:
                if txn in _entries(os.pread(fd, whole, 0), path):
                    return
                raise ValueError(f"aborted transaction {txn} does not follow last offset "
                                 f"{last.last_offset} of {path}")
        if whole != size:
            os.ftruncate(fd, whole)   # a torn entry from a crash mid-write: never acknowledged
        view = memoryview(entry)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    if created and sync:
        layout.fsync_dir(partition_dir)   # the file's own fsync does not make its name durable


def sync(partition_dir: str, segment_bases: Iterable[int]) -> None:
    """Makes entries appended with sync=False durable: each file, then the directory (a file
    created meanwhile needs its name synced too)."""
    bases = list(segment_bases)
    for base in bases:
        try:
            fd = os.open(index_path(partition_dir, base), os.O_RDONLY)
        except FileNotFoundError:
            continue   # its segment was deleted meanwhile
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
    if bases:
        layout.fsync_dir(partition_dir)


def read_all(partition_dir: str) -> list[AbortedTxn]:
    """Every entry of the partition's indexes, by last offset."""
    try:
        names = os.listdir(partition_dir)
    except FileNotFoundError:
        return []
    bases = sorted(b for b in (layout.parse_segment_file_name(n, TXN_INDEX_SUFFIX) for n in names) if b is not None)
    return [txn for base in bases for txn in read(partition_dir, base)]


def read(partition_dir: str, segment_base: int) -> list[AbortedTxn]:
    """The entries of one segment's index, oldest first ([] when it has none)."""
    path = index_path(partition_dir, segment_base)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return list(_entries(data, path))


def collect_aborted(partition_dir: str, fetch_offset: int, upper_bound: int) -> list[tuple[int, int]]:
    """(producer_id, first_offset) of the aborted transactions overlapping
    [fetch_offset, upper_bound), as a FetchResponse lists them (Kafka's collectAbortedTxns).

    Reads the indexes of the segment holding fetch_offset and of every later segment, and stops
    at the first entry whose LSO reaches upper_bound: any transaction still open then began at
    or after that LSO, so no later entry can start below upper_bound."""
    names = os.listdir(partition_dir)   # once: both the segments and their indexes
    log_bases = sorted(b for b in (layout.parse_segment_file_name(n) for n in names) if b is not None)
    indexed = {layout.parse_segment_file_name(n, TXN_INDEX_SUFFIX) for n in names}
    # The segment holding fetch_offset; every one when fetch_offset is below the first.
    start = max((b for b in log_bases if b <= fetch_offset), default=-1)
    aborted = []
    for base in log_bases:
        if base < start or base not in indexed:
            continue
        path = index_path(partition_dir, base)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:   # deleted by retention since the listing
            continue
        for txn in _entries(data, path):
            if txn.last_offset >= fetch_offset and txn.first_offset < upper_bound:
                aborted.append((txn.producer_id, txn.first_offset))
            if txn.last_stable_offset >= upper_bound:
                return aborted
    return aborted


def truncate(partition_dir: str, from_offset: int) -> None:
    """Drops every entry with last_offset >= from_offset, as recovery cuts the log's tail there.

    Indexes of segments at or past from_offset are deleted whole. Of the others only the last
    can hold such entries: an index's entries lie inside its segment, which ends at or before
    the next index's base."""
    bases = layout.segment_bases(partition_dir, TXN_INDEX_SUFFIX)
    below = [b for b in bases if b < from_offset]
    doomed = [b for b in bases if b >= from_offset]
    if below:
        path = index_path(partition_dir, below[-1])
        with open(path, "rb") as f:
            data = f.read()
        keep = sum(1 for txn in _entries(data, path) if txn.last_offset < from_offset)
        if keep == 0:
            doomed.append(below[-1])
        elif keep * ENTRY_SIZE < len(data):
            # Cutting at an entry boundary is atomic: a crash leaves the old length or the new.
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, keep * ENTRY_SIZE)
                os.fsync(fd)
            finally:
                os.close(fd)
    for base in doomed:
        os.unlink(index_path(partition_dir, base))
    if doomed:
        # A resurrected index would list aborts the log no longer has.
        layout.fsync_dir(partition_dir)


def delete_below(partition_dir: str, first_segment_base: int) -> None:
    """Removes the indexes of segments below the first one (deleted by retention or DeleteRecords:
    each of their entries ends below the log start)."""
    for name in os.listdir(partition_dir):
        base = layout.parse_segment_file_name(name, TXN_INDEX_SUFFIX)
        if base is not None and base < first_segment_base:
            os.unlink(os.path.join(partition_dir, name))


def delete(partition_dir: str, segment_base: int) -> None:
    """Removes a segment's index, if it has one (the segment is being deleted)."""
    try:
        os.unlink(index_path(partition_dir, segment_base))
    except FileNotFoundError:
        pass


def _decode(data: bytes, position: int) -> AbortedTxn:
    return AbortedTxn(*_ENTRY.unpack_from(data, position)[1:])


def _entries(data: bytes, path: str) -> Iterator[AbortedTxn]:
    """The whole entries of a file's bytes, checked; a torn last entry is ignored."""
    previous = None
    for position in range(0, len(data) - ENTRY_SIZE + 1, ENTRY_SIZE):
        version = struct.unpack_from(">h", data, position)[0]
        if version != ENTRY_VERSION:
            raise PStreamError(f"aborted transaction index entry has version {version}, expected "
                               f"{ENTRY_VERSION}", file=path, position=position)
        txn = _decode(data, position)
        if previous is not None and txn.last_offset <= previous:
            raise PStreamError(f"aborted transaction index: last offset {txn.last_offset} does not "
                               f"follow {previous}", file=path, position=position, offset=txn.last_offset)
        previous = txn.last_offset
        yield txn
