"""A partition's segments seen from outside the engine, for the storage tests.

Owns nothing of the engine: it cuts `<base>.log` files at batch boundaries with the
core's `cut_batches` (the one reader of the batch layout) and reads `<base>.index` files (relative offset u32, position u32, big-endian), and flips or cuts
bytes the way a disk or a crash would. Tests call these only while the engine is not
writing the file they touch (closed logs, or sealed segments of an open one). It also
states Kafka's size-retention rule over a segment table, the oracle for retention.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from pstream import _core

BATCH_HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base offset + batch length: the bytes batch_length does not count
O_DIRECT = 0o40000  # x86-64 / aarch64 Linux value, as /proc/<pid>/fdinfo shows it

# Byte ranges of the v2 batch header fields (what a flipped byte there damages).
HEADER_FIELDS = {
    "base_offset": range(0, 8),
    "batch_length": range(8, 12),
    "partition_leader_epoch": range(12, 16),
    "magic": range(16, 17),
    "crc": range(17, 21),
    "attributes": range(21, 23),
    "last_offset_delta": range(23, 27),
    "base_timestamp": range(27, 35),
    "max_timestamp": range(35, 43),
    "producer_id": range(43, 51),
    "producer_epoch": range(51, 53),
    "base_sequence": range(53, 57),
    "record_count": range(57, 61),
}


@dataclass(frozen=True)
class BatchSpan:
    """Where one batch sits in a .log file and which offsets it holds."""

    position: int
    size: int
    base_offset: int
    last_offset: int

    @property
    def end(self) -> int:
        return self.position + self.size


def batch_spans(log_path: str | os.PathLike, *, limit: int | None = None) -> list[BatchSpan]:
    """The whole batches at the start of a .log file (stops at the first short one)."""
    data = Path(log_path).read_bytes()
    cut = _core.cut_batches(memoryview(data)[:limit])
    return [BatchSpan(start, end - start, base, last)
            for (start, end), (base, last) in zip(cut.bounds.tolist(), cut.offsets.tolist())]


def log_files(partition_dir: str | os.PathLike) -> list[Path]:
    """The .log files of a partition directory, oldest first."""
    return sorted(Path(partition_dir).glob("*.log"))


def flip_byte(path: str | os.PathLike, position: int, mask: int = 0xFF) -> None:
    """XORs one byte of a file in place (bit rot)."""
    with open(path, "r+b") as f:
        f.seek(position)
        old = f.read(1)
        assert len(old) == 1, f"{path} has no byte at {position}"
        f.seek(position)
        f.write(bytes([old[0] ^ mask]))


def read_index(path: str | os.PathLike) -> list[tuple[int, int]]:
    """(relative offset, position) entries of a .index file."""
    data = Path(path).read_bytes()
    return [struct.unpack_from(">II", data, i) for i in range(0, len(data) - len(data) % 8, 8)]


def read_time_index(path: str | os.PathLike) -> list[tuple[int, int]]:
    """(timestamp, relative offset) entries of a .timeindex file."""
    data = Path(path).read_bytes()
    return [struct.unpack_from(">qI", data, i) for i in range(0, len(data) - len(data) % 12, 12)]


def open_fd_flags(path: str | os.PathLike) -> list[int]:
    """The open-file flags of every descriptor this process holds on `path` (Linux /proc)."""
    target = os.path.realpath(path)
    flags = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != target:
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith("flags:"):
                        flags.append(int(line.split()[1], 8))
        except (FileNotFoundError, ProcessLookupError):
            continue  # closed meanwhile (e.g. the listing's own descriptor)
    return flags


def expected_after_bytes_retention(segments: list[tuple[int, int, int]], log_start: int,
                                   retention_bytes: int | None) -> list[tuple[int, int, int]]:
    """The (base, next offset, size) segments Kafka keeps: the oldest inactive ones go while they
    lie wholly below the log start or the rest still holds at least retention_bytes."""
    total = sum(size for _, _, size in segments)
    n = 0
    while n + 1 < len(segments):
        _, nxt, size = segments[n]
        if nxt <= log_start or (retention_bytes is not None and total - size >= retention_bytes):
            total -= size
            n += 1
        else:
            break
    return segments[n:]
