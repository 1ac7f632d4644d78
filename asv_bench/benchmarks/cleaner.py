"""The log cleaner: one compaction pass (Partition.clean) over closed segments, and
latest() over a compacted partition.

Each setup writes 200,000 records of 100-byte values over 10,000 keys (20 versions each),
in batches of 100 (uncompressed, or zstd), rolled and synced, so a pass rewrites about
23 MiB down to about a twentieth. Every timed call works on a fresh copy of that log.
"""

import shutil
import time

import pstream

from .common import cache_dir, remove, temp_dir

RECORDS = 200_000
KEYS = 10_000
PER_BATCH = 100


def _write(folder, codec):
    with pstream.Log(folder, shards=1, flush="interval", flush_ms=10, cleaner=False, retention_check_ms=None,
                     segment_bytes=8 << 20) as log:
        part = log.topic("bench", cleanup_policy="compact").partition(0)
        for start in range(0, RECORDS, PER_BATCH):
            batch = [(b"key-%08d" % (i % KEYS), b"v" * 100) for i in range(start, start + PER_BATCH)]
            part.append_many(batch, compression=codec)
        part.roll()
        part.flush()


class Clean:
    """A whole pass: map the dirty keys, rewrite and swap every closed segment."""

    params = ["none", "zstd"]
    param_names = ["codec"]
    timeout = 600
    number = 1
    repeat = 3

    def setup_cache(self):
        root = cache_dir("cleaner")
        folders = {}
        for codec in self.params:
            folders[codec] = f"{root}/{codec}"
            _write(folders[codec], codec)
        return folders

    def setup(self, folders, codec):
        self.folder = temp_dir("cleaner-run")
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.copytree(folders[codec], self.folder)
        self.log = pstream.Log(self.folder, shards=1, cleaner=False, retention_check_ms=None)
        self.part = self.log.topic("bench").partition(0)

    def teardown(self, folders, codec):
        self.log.close()
        remove(self.folder)

    def time_clean(self, folders, codec):
        self.part.clean()

    def track_clean_mb_read_per_s(self, folders, codec):
        start = time.perf_counter()
        result = self.part.clean()
        return result["bytes_read"] / (time.perf_counter() - start) / 1e6

    track_clean_mb_read_per_s.unit = "MB/s"

    def time_latest(self, folders, codec):
        self.part.latest()
