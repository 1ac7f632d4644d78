"""Appending 1 MiB batches to a segment: O_DIRECT against the page cache, per flush policy,
and against `dd oflag=direct` on the same disk.

Batches are built once with encode_batch (exactly 1 MiB each, 1 KiB records) and
appended with append_batch, as the broker appends what a producer sent: validated (CRC
included), copied into the aligned write buffer, written by the shard thread. Each
timed call ends with flush(), so it measures data on disk, not data in a buffer. Logs
live under common.data_root() (a real disk, never tmpfs).
"""

import os
import re
import shutil
import statistics
import subprocess
import time

import pstream

from .common import MiB, cache_dir, exact_batch, remove, temp_dir

_BATCH = None


def one_mib_batch():
    global _BATCH
    if _BATCH is None:
        _BATCH = exact_batch(MiB, 1024)
    return _BATCH


class AppendBatch:
    """64 x append_batch(1 MiB) then flush(), on a fresh log each sample."""

    params = (["direct", "buffered"], ["always", "interval"])
    param_names = ["io", "flush"]
    timeout = 300
    batches = 64

    def setup(self, io, flush):
        self.batch = one_mib_batch()
        self.folder = temp_dir("segment")
        self.log = pstream.Log(self.folder, shards=1, direct_io=io == "direct", flush=flush)
        self.part = self.log.topic("bench").partition(0)
        if self.part.direct_io != (io == "direct"):
            raise RuntimeError(f"asked for {io} I/O, the segment writes with direct_io={self.part.direct_io}")

    def teardown(self, io, flush):
        self.log.close()
        remove(self.folder)

    def time_append_64mib(self, io, flush):
        append, batch = self.part.append_batch, self.batch
        for _ in range(self.batches):
            append(batch)
        self.part.flush()


class AppendLatency:
    """The time one append_batch takes while a single appender keeps the disk busy (O_DIRECT,
    flush="interval"): 64 MiB of batches of one size, then flush(). A batch that does not fit in
    its buffer goes on into a chained one (segment_chain) instead of waiting for the write-out,
    so the median is the copy; the tail is the wait for the disk that any design pays at
    saturation."""

    params = ([16 << 10, 100 << 10, MiB],)
    param_names = ["batch_bytes"]
    timeout = 300
    total = 64 * MiB

    def setup(self, batch_bytes):
        self.batch = exact_batch(batch_bytes, 1024)
        self.folder = temp_dir("segment-latency")
        log = pstream.Log(self.folder, shards=1, direct_io=True, flush="interval", retention_check_ms=None)
        try:
            part = log.topic("bench").partition(0)
            append, batch, clock = part.append_batch, self.batch, time.perf_counter_ns
            took = []
            for _ in range(self.total // batch_bytes):
                start = clock()
                append(batch)
                took.append(clock() - start)
            part.flush()
        finally:
            log.close()
            remove(self.folder)
        took.sort()
        self.quantiles = {q: took[min(len(took) - 1, int(q * len(took)))] / 1000 for q in (0.5, 0.99)}

    def track_p50_us(self, batch_bytes):
        return self.quantiles[0.5]

    def track_p99_us(self, batch_bytes):
        return self.quantiles[0.99]

    track_p50_us.unit = track_p99_us.unit = "us"


def _dd_mb_per_s(folder, count, durable=False):
    """MB/s (1e6 bytes) of `dd if=/dev/zero of=F bs=1M count=N oflag=direct`, as dd reports it.

    durable adds conv=fdatasync (one sync at the end), which is what pstream's final
    flush() pays too: on a disk with a volatile write cache the two differ a lot.
    """
    target = os.path.join(folder, "dd.out")
    start = time.perf_counter()
    extra = ["conv=fdatasync"] if durable else []
    done = subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={count}", "oflag=direct"] + extra,
                          capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}, check=True)
    wall = time.perf_counter() - start
    os.unlink(target)
    found = re.search(r"^(\d+) bytes.*copied, ([0-9.]+) s", done.stderr, re.MULTILINE)
    if found is None:
        return count * MiB / wall / 1e6
    return int(found.group(1)) / float(found.group(2)) / 1e6


def _pstream_mb_per_s(folder, count, batch, durable=True):
    """MB/s (1e6 bytes) of `count` append_batch(1 MiB) with O_DIRECT.

    durable: flush="interval" (an fdatasync every 10 ms) and a final flush() inside the timing;
    otherwise flush="bytes" with a threshold never reached and no final flush, which is what
    plain dd measures (writes accepted by the device, nothing forced to stable storage).
    """
    path = os.path.join(folder, "log")
    policy = dict(flush="interval") if durable else dict(flush="bytes", flush_bytes=1 << 40)
    log = pstream.Log(path, shards=1, direct_io=True, retention_check_ms=None, **policy)
    try:
        part = log.topic("bench").partition(0)
        if not part.direct_io:
            raise RuntimeError(f"O_DIRECT refused under {folder}: the comparison with dd is meaningless")
        start = time.perf_counter()
        for _ in range(count):
            part.append_batch(batch)
        if durable:
            part.flush()
        elapsed = time.perf_counter() - start
    finally:
        log.close()
        shutil.rmtree(path)
    return count * len(batch) / elapsed / 1e6


class DirectVsDd:
    """512 MiB of 1 MiB batches through pstream with O_DIRECT next to dd writing 512 MiB with
    oflag=direct into the same directory: durable (flush='interval' + final flush, against
    dd and dd conv=fdatasync) and like for like with plain dd (no sync in the window).

    Measured once per run in setup_cache, alternating dd and pstream three times and
    keeping the median of each, so both see the same disk state; the ratio is the number
    to watch (on a shared VM disk the absolute MB/s drift a lot between runs).
    """

    timeout = 900
    processes = 1
    mib = 512

    def setup_cache(self):
        if shutil.which("dd") is None:
            return None
        folder = cache_dir("direct-vs-dd")
        try:
            batch = one_mib_batch()
            dd, dd_sync, ours, ours_nosync = [], [], [], []
            for _ in range(3):
                dd.append(_dd_mb_per_s(folder, self.mib))
                ours_nosync.append(_pstream_mb_per_s(folder, self.mib, batch, durable=False))
                dd_sync.append(_dd_mb_per_s(folder, self.mib, durable=True))
                ours.append(_pstream_mb_per_s(folder, self.mib, batch))
        finally:
            remove(folder)
        return {"dd": statistics.median(dd), "dd_fdatasync": statistics.median(dd_sync),
                "pstream": statistics.median(ours), "pstream_nosync": statistics.median(ours_nosync)}

    setup_cache.timeout = 900

    def setup(self, measured):
        if measured is None:
            raise NotImplementedError("dd is not installed")

    def track_pstream_direct_mb_per_s(self, measured):
        return measured["pstream"]

    track_pstream_direct_mb_per_s.unit = "MB/s"

    def track_dd_direct_mb_per_s(self, measured):
        return measured["dd"]

    track_dd_direct_mb_per_s.unit = "MB/s"

    def track_direct_vs_dd_ratio(self, measured):
        return measured["pstream"] / measured["dd"]

    track_direct_vs_dd_ratio.unit = "pstream / dd"

    def track_direct_nosync_vs_dd_ratio(self, measured):
        """Like for like with plain dd: no fdatasync inside the timed window."""
        return measured["pstream_nosync"] / measured["dd"]

    track_direct_nosync_vs_dd_ratio.unit = "pstream / dd"

    def track_direct_vs_dd_fdatasync_ratio(self, measured):
        return measured["pstream"] / measured["dd_fdatasync"]

    track_direct_vs_dd_fdatasync_ratio.unit = "pstream / dd conv=fdatasync"
