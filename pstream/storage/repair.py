"""Operator repairs of a stopped partition: truncating it at an offset.

Recovery cuts only a torn tail (nothing valid after the damage). Damage followed by valid
batches may sit in front of acknowledged records, so recovery keeps every byte and the
partition refuses writes (`Partition.damage`); dropping the damage and what follows is an
operator's decision, made offline with `truncate_partition` (`pstream log truncate`).
Kafka users know the same decision as an unclean recovery; it loses the records it drops.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass

from pstream import _core
from pstream.errors import DirectoryInUseError, PStreamError
from pstream.storage import layout


@dataclass(frozen=True)
class TruncateResult:
    offset: int                 # the log now ends here (the next append gets this offset)
    segment: str                # the segment cut
    position: int               # its new length
    bytes_dropped: int          # from that segment and the later ones
    segments_removed: list[str]


def _cut_position(path: str, base: int, offset: int) -> int:
    """Where the batch starting at `offset` begins in the segment: after the valid batches below it.
    Refuses an offset inside a batch (naming the batch's bounds) or past the valid batches."""
    pos, expected = 0, base
    if offset == base:
        return 0
    with _core.scan_segment(path) as scan:
        for pos, header, crc_ok in scan:
            if not crc_ok or header.magic != 2 or header.record_count < 0 or header.base_offset != expected:
                break   # the damage: the valid batches stop here
            if header.base_offset >= offset:
                break
            if header.last_offset >= offset:
                raise PStreamError(f"offset {offset} is inside the batch of offsets {header.base_offset}.."
                                   f"{header.last_offset}: truncate to {header.base_offset} or "
                                   f"{header.last_offset + 1}", file=path, position=pos)
            expected = header.last_offset + 1
        else:
            pos = scan.end
    if expected != offset:
        raise PStreamError(f"the valid batches of this segment end at offset {expected} (position {pos}); "
                           f"truncate to {expected} or below", file=path, position=pos)
    return pos


def truncate_partition(partition_dir: str, offset: int) -> TruncateResult:
    """Drops every record at or after `offset` from a partition whose Log is not open: the
    segment holding it is cut at that batch's start (its index files go: rebuilt at open) and
    later segments are deleted. The offset must start a batch, or be where the valid batches
    stop (the damage that `Partition.damage` names)."""
    partition_dir = os.path.abspath(partition_dir)
    data_dir = os.path.dirname(os.path.dirname(partition_dir))
    bases = layout.segment_bases(partition_dir)
    if not bases:
        raise PStreamError(f"{partition_dir} holds no segment (<20-digit base offset>.log)", file=partition_dir)
    if offset < bases[0]:
        raise PStreamError(f"offset {offset} is below the first segment's base offset {bases[0]}",
                           file=partition_dir)
    lock_path = os.path.join(data_dir, layout.LOCK_FILE)
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)   # the Log's own lock: no broker may run
        except BlockingIOError:
            raise DirectoryInUseError(f"the data directory {data_dir} is in use: stop the broker (or close the "
                                      f"Log) first", file=lock_path) from None
        return cut_segments(partition_dir, bases, offset)


def cut_segments(partition_dir: str, bases: list[int], offset: int) -> TruncateResult:
    """The cut itself, on a partition nobody has open (the caller made sure): also what a
    follower whose log diverged from its leader's does (Topic.truncate_partition)."""
    holder = max(b for b in bases if b <= offset)
    path = os.path.join(partition_dir, layout.segment_file_name(holder))
    position = _cut_position(path, holder, offset)
    dropped = os.path.getsize(path) - position
    removed = []
    for base in bases:
        if base <= holder:
            continue
        later = os.path.join(partition_dir, layout.segment_file_name(base))
        dropped += os.path.getsize(later)
        removed.append(later)
    for later in reversed(removed):   # newest first: a crash meanwhile leaves a log with no gap
        for suffix in (*layout.INDEX_SUFFIXES, layout.SEGMENT_SUFFIX):
            try:
                os.unlink(layout.sibling_file(later, suffix))
            except FileNotFoundError:
                pass
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, position)
        os.fsync(fd)
    finally:
        os.close(fd)
    for suffix in layout.INDEX_SUFFIXES:
        try:
            os.unlink(layout.sibling_file(path, suffix))
        except FileNotFoundError:
            pass
    layout.fsync_dir(partition_dir)
    return TruncateResult(offset, path, position, dropped, removed)
