"""The embedded log's record-level API: append, append_many, read_batches, read.

Appends use flush='interval' (flush_ms=10), the setting for throughput; every timed
append loop ends with flush(), so what is counted reached the disk. Logs live under
common.data_root() and are removed in teardown.
"""

import time

import pstream

from .common import MiB, cache_dir, keys, remove, temp_dir, values


class Append:
    """part.append(value) of 100-byte values, one record (one batch) per call."""

    timeout = 300
    count = 100_000

    def setup(self):
        self.value = values(1, 100)[0]
        self.folder = temp_dir("append")
        self.log = pstream.Log(self.folder, shards=1, flush="interval", flush_ms=10)
        self.part = self.log.topic("bench").partition(0)

    def teardown(self):
        self.log.close()
        remove(self.folder)

    def _append_all(self):
        append, value = self.part.append, self.value
        for _ in range(self.count):
            append(value)
        self.part.flush()

    def time_append_100k(self):
        self._append_all()

    def track_append_records_per_s(self):
        start = time.perf_counter()
        self._append_all()
        return self.count / (time.perf_counter() - start)

    track_append_records_per_s.unit = "records/s"


class AppendMany:
    """part.append_many of 1 KiB records, `per_call` records per call (one batch each),
    32 MiB of values per timed call."""

    params = [64, 512]
    param_names = ["per_call"]
    timeout = 300
    total = 32 * MiB

    def setup(self, per_call):
        pairs = list(zip(keys(per_call), values(per_call, 1024)))
        self.calls = [pairs] * (self.total // (per_call * 1024))
        self.folder = temp_dir("append-many")
        self.log = pstream.Log(self.folder, shards=1, flush="interval", flush_ms=10)
        self.part = self.log.topic("bench").partition(0)

    def teardown(self, per_call):
        self.log.close()
        remove(self.folder)

    def _append_all(self):
        append_many = self.part.append_many
        for pairs in self.calls:
            append_many(pairs)
        self.part.flush()

    def time_append_many_32mib(self, per_call):
        self._append_all()

    def track_append_many_mb_per_s(self, per_call):
        """MB/s (1e6 bytes) of record values appended and flushed."""
        start = time.perf_counter()
        self._append_all()
        return self.total / (time.perf_counter() - start) / 1e6

    track_append_many_mb_per_s.unit = "MB/s"


class Read:
    """Reading back a 64 MiB log of 1 KiB records (100-record batches) and a log of
    100-byte records, built once per run."""

    timeout = 600

    def setup_cache(self):
        folder = cache_dir("read")
        with pstream.Log(folder, shards=1, flush="interval") as log:
            big = log.topic("kib", partitions=1).partition(0)
            pairs = list(zip(keys(100), values(100, 1024)))
            for _ in range(64 * MiB // (100 * 1024)):
                big.append_many(pairs)
            small = log.topic("small", partitions=1).partition(0)
            pairs = list(zip(keys(100), values(100, 100)))
            for _ in range(1000):
                small.append_many(pairs)
        return folder

    setup_cache.timeout = 600

    def setup(self, folder):
        self.log = pstream.Log(folder, shards=1, flush="interval")
        self.big = self.log.topic("kib").partition(0)
        self.small = self.log.topic("small").partition(0)
        self.middle = self.big.log_end_offset // 2
        self.big.read_batches(0, 64 * MiB)  # warm the page cache: reads are timed, not the disk

    def teardown(self, folder):
        self.log.close()

    def time_read_batches_1mib(self, folder):
        self.big.read_batches(self.middle, MiB)

    def time_read_batches_all_64mib(self, folder):
        """The whole log, 1 MiB per call, as a consumer catching up would."""
        read, offset, end = self.big.read_batches, 0, self.big.log_end_offset
        while offset < end:
            data = read(offset, MiB)
            if not data:
                break
            offset = _next_offset(data)

    def track_read_batches_mb_per_s(self, folder):
        start = time.perf_counter()
        self.time_read_batches_all_64mib(folder)
        return self.big.size_bytes() / (time.perf_counter() - start) / 1e6

    track_read_batches_mb_per_s.unit = "MB/s"

    def time_read_10k_records(self, folder):
        """part.read: Record objects of 100-byte values, 10,000 from the middle."""
        for _ in self.small.read(self.small.log_end_offset // 2, max_records=10_000):
            pass

    def track_read_records_per_s(self, folder):
        start = time.perf_counter()
        count = sum(1 for _ in self.small.read(0))
        return count / (time.perf_counter() - start)

    track_read_records_per_s.unit = "records/s"


def _next_offset(data):
    """One past the last offset of back-to-back batches (reads the batch headers only:
    baseOffset at 0, batchLength at 8, lastOffsetDelta at 23)."""
    pos, end = 0, -1
    view = memoryview(data)
    while pos < len(view):
        end = int.from_bytes(view[pos:pos + 8], "big") + int.from_bytes(view[pos + 23:pos + 27], "big") + 1
        pos += 12 + int.from_bytes(view[pos + 8:pos + 12], "big")
    return end
