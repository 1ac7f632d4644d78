"""Index look-ups: read_batches at seeded random offsets and offset_for_timestamp, in a
log of 256 MiB of small batches (10 records of 100 B, ~1.3 KiB each, ~200,000 batches)
spread over 4 segments of 64 MiB, so the sparse offset index (one entry per 4 KiB) and
the time index both have tens of thousands of entries per segment.

The log is built once per run (setup_cache); record timestamps are BASE_TIMESTAMP_MS +
offset, so every target timestamp has a known answer.
"""

import random

import pstream

from .common import BASE_TIMESTAMP_MS, MiB, SEED, cache_dir, keys, values

_TOTAL = 256 * MiB
_PER_BATCH = 10
_LOOKUPS = 1000


class Lookup:
    timeout = 900

    def setup_cache(self):
        folder = cache_dir("index")
        with pstream.Log(folder, shards=1, flush="interval", segment_bytes=64 * MiB) as log:
            part = log.topic("bench").partition(0)
            pairs = list(zip(keys(1000), values(1000, 100)))
            offset = 0
            while part.size_bytes() < _TOTAL:
                for _ in range(1000):
                    chunk = pairs[offset % 1000:offset % 1000 + _PER_BATCH]
                    part.append_many([(k, v, None, BASE_TIMESTAMP_MS + offset + i)
                                      for i, (k, v) in enumerate(chunk)])
                    offset += _PER_BATCH
            count = part.log_end_offset
        return folder, count

    setup_cache.timeout = 900

    def setup(self, cache):
        folder, count = cache
        self.log = pstream.Log(folder, shards=1, flush="interval")
        self.part = self.log.topic("bench").partition(0)
        if self.part.log_end_offset != count or len(self.part.segments()) < 4:
            raise RuntimeError(f"the index benchmark log has {self.part.log_end_offset} records in "
                               f"{len(self.part.segments())} segments; expected {count} in >= 4")
        rng = random.Random(SEED)
        self.offsets = [rng.randrange(count) for _ in range(_LOOKUPS)]
        self.timestamps = [BASE_TIMESTAMP_MS + offset for offset in self.offsets[:100]]
        for offset in self.offsets:  # the page cache holds the batches: look-ups are timed, not the disk
            self.part.read_batches(offset, 1)

    def teardown(self, cache):
        self.log.close()

    def time_read_batches_1000_random(self, cache):
        """1000 look-ups of one batch each (max_bytes=1 returns just the batch holding the offset)."""
        read = self.part.read_batches
        for offset in self.offsets:
            read(offset, 1)

    def time_offset_for_timestamp_100_random(self, cache):
        find = self.part.offset_for_timestamp
        for ts in self.timestamps:
            find(ts)
