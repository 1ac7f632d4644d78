"""Helpers shared by the benchmark modules: where temporary logs live, seeded payloads,
batches of an exact size, partitions on distinct shards.

Owns no benchmark itself (asv finds none here) and only uses pstream's public API plus
pstream._core's codec functions. Every random choice is seeded, so two runs (and two
commits under `asv continuous`) write the same bytes.
"""

from __future__ import annotations

import errno
import glob
import mmap
import os
import random
import shutil
import sys
import tempfile

from pstream import _core
from pstream.log import shard_for

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

SEED = 20240229
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
BASE_TIMESTAMP_MS = 1_700_000_000_000

_NOT_REAL_DISK = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs", "squashfs"}


# --- where the files go ----------------------------------------------------------------

def fs_type(path: str) -> str:
    """The filesystem type of the mount holding path (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                mount_point = fields[4].replace("\\040", " ")
                fstype = fields[fields.index("-") + 1]
                inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best, kind = mount_point, fstype
    except OSError:
        pass
    return kind


def o_direct_works(directory: str) -> bool:
    """Whether an aligned 4 KiB O_DIRECT write succeeds in directory."""
    fd, probe = tempfile.mkstemp(prefix=".odirect-probe-", dir=directory)
    os.close(fd)
    try:
        fd = os.open(probe, os.O_WRONLY | getattr(os, "O_DIRECT", 0))
        try:
            with mmap.mmap(-1, 4096) as page:  # anonymous maps are page aligned
                os.write(fd, page)
            return True
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return False
            raise
        finally:
            os.close(fd)
    except OSError:
        return False
    finally:
        os.unlink(probe)


def is_real_disk(directory: str) -> bool:
    return fs_type(directory) not in _NOT_REAL_DISK and o_direct_works(directory)


_DATA_ROOT: str | None = None


def data_root() -> str:
    """A directory on a real disk (not tmpfs, O_DIRECT works) for the benchmarks' logs.

    PSTREAM_BENCH_DIR if set; else the temp directory if it is a real disk; else
    asv_bench/.bench-tmp/ (ignored by git).
    """
    global _DATA_ROOT
    if _DATA_ROOT is None:
        chosen = os.environ.get("PSTREAM_BENCH_DIR")
        if chosen:
            os.makedirs(chosen, exist_ok=True)
        else:
            fallback = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".bench-tmp")
            chosen = tempfile.gettempdir()
            if not is_real_disk(chosen):
                os.makedirs(fallback, exist_ok=True)
                chosen = fallback
        if not is_real_disk(chosen):
            print(f"benchmarks: {chosen} ({fs_type(chosen)}) refuses O_DIRECT or is not a disk; "
                  "disk benchmarks measure the page cache there", file=sys.stderr)
        _DATA_ROOT = chosen
    return _DATA_ROOT


def temp_dir(name: str) -> str:
    """A new empty directory under data_root(); remove it with remove()."""
    return tempfile.mkdtemp(prefix=f"pstream-bench-{name}-", dir=data_root())


def cache_dir(name: str) -> str:
    """A directory for a setup_cache's files, on a real disk.

    asv runs setup_cache with a fresh temporary working directory that it removes after
    the benchmarks that share it; that is used when it is a real disk. Otherwise the
    directory goes under data_root() with the pid in its name, and leftovers of dead
    processes are removed here.
    """
    cwd = os.getcwd()
    if is_real_disk(cwd) and cwd != data_root() and os.path.basename(cwd).startswith("tmp"):
        path = os.path.join(cwd, name)
    else:
        for stale in glob.glob(os.path.join(data_root(), f"pstream-cache-{name}-*")):
            pid = stale.rsplit("-", 1)[-1]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                shutil.rmtree(stale, ignore_errors=True)
        path = os.path.join(data_root(), f"pstream-cache-{name}-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def remove(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def copy_tree_synced(src: str, dst: str) -> None:
    """Copies a directory tree and fdatasyncs every file, so no writeback of the copy
    overlaps what is timed next."""
    shutil.copytree(src, dst)
    for folder, _dirs, files in os.walk(dst):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- payloads ----------------------------------------------------------------------------

_WORDS = (b"order user page click view cart checkout payment refund item price quantity "
          b"session device mobile desktop region eu us asia status ok error retry timeout "
          b"latency ms id sku category books music games sports home garden tools toys "
          b"shipped pending delivered cancelled true false null { } [ ] : , \"").split()


def corpus(size: int, seed: int = SEED) -> bytes:
    """Seeded JSON-ish text that compresses about like application events (~2-4x)."""
    rng = random.Random(seed)
    parts, n = [], 0
    while n < size:
        word = rng.choice(_WORDS) if rng.random() < 0.8 else str(rng.randrange(10 ** 6)).encode()
        parts.append(word)
        n += len(word) + 1
    return b" ".join(parts)[:size]


def values(count: int, size: int, seed: int = SEED) -> list[bytes]:
    """count payloads of size bytes, slices of one seeded corpus at seeded positions."""
    text = corpus(max(256 * KiB, 4 * size), seed)
    rng = random.Random(seed + 1)
    return [text[start:start + size] for start in (rng.randrange(len(text) - size) for _ in range(count))]


def keys(count: int, seed: int = SEED) -> list[bytes]:
    rng = random.Random(seed + 2)
    return [b"user-%08d" % rng.randrange(10 ** 8) for _ in range(count)]


def records(count: int, size: int, seed: int = SEED, start_ts: int = BASE_TIMESTAMP_MS) -> list[tuple]:
    """(key, value, headers, timestamp_ms) tuples as encode_batch takes them."""
    pairs = zip(keys(count, seed), values(count, size, seed))
    return [(k, v, [], start_ts + i) for i, (k, v) in enumerate(pairs)]


def exact_batch(total: int, record_size: int, seed: int = SEED, base_offset: int = 0) -> bytes:
    """An uncompressed v2 batch of exactly `total` bytes (header included) of about
    record_size-byte values; the last value's length absorbs the difference."""
    recs = records(max(1, total // (record_size + 30)), record_size, seed)
    for _ in range(50):
        batch = _core.encode_batch(recs, base_offset=base_offset, now_ms=BASE_TIMESTAMP_MS)
        missing = total - len(batch)
        if missing == 0:
            return batch
        key, value, headers, ts = recs[-1]
        length = len(value) + missing
        if length < 0:
            recs.pop()
            continue
        if length > len(value):
            value = (value * (length // max(1, len(value)) + 1))[:length] if value else b"x" * length
        recs[-1] = (key, value[:length], headers, ts)
    raise RuntimeError(f"cannot build a batch of exactly {total} bytes")


# --- shards ------------------------------------------------------------------------------

def partitions_on_shards(topic: str, shards: int, count: int) -> list[int]:
    """The lowest partition numbers of `topic` that land on `count` distinct shards of a
    `shards`-shard log (one per shard; with fewer shards than count, shards repeat)."""
    chosen: list[int] = []
    seen: set[int] = set()
    number = 0
    while len(chosen) < count:
        shard = shard_for(topic, number, shards)
        if shard not in seen or len(seen) == shards:
            chosen.append(number)
            seen.add(shard)
        number += 1
    return chosen
