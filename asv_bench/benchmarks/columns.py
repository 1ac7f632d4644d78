"""Columnar reads: part.read_columns (numpy arrays built in the core, no Python object per
record) against part.read (a Record object per record) over the same log.

The log, built once per run: 1,000,000 records with a 13-byte key and a 100-byte value,
in batches of 100, uncompressed and lz4-compressed. The log is opened with direct_io=False
and read once in setup, so reads come from the page cache and what is timed is decoding,
not the disk (with O_DIRECT every read would wait on the disk, for both ways alike).

Two shapes of read, each against read(): the whole log in one call, which holds every
record's bytes at the end (against read() keeping its Record objects: list(read())),
and 1 MiB per call, as a consumer that handles each piece and drops it (against read()
dropping each Record as it goes).
"""

import time

import pstream

from .common import GiB, MiB, cache_dir, keys, values

RECORDS = 1_000_000
PER_BATCH = 100


class ReadColumns:
    params = [["none", "lz4"]]
    param_names = ["compression"]
    timeout = 900

    def setup_cache(self):
        folder = cache_dir("columns")
        pairs = list(zip(keys(PER_BATCH), values(PER_BATCH, 100)))
        with pstream.Log(folder, shards=1, flush="interval", retention_check_ms=None) as log:
            for codec in self.params[0]:
                part = log.topic(f"records-{codec}").partition(0)
                for _ in range(RECORDS // PER_BATCH):
                    part.append_many(pairs, compression=codec)
        return folder

    setup_cache.timeout = 900

    def setup(self, folder, compression):
        self.log = pstream.Log(folder, shards=1, flush="interval", retention_check_ms=None, direct_io=False)
        self.part = self.log.topic(f"records-{compression}").partition(0)
        self._columns_paged()  # warm the page cache

    def teardown(self, folder, compression):
        self.log.close()

    def _columns_all(self):
        """The whole log in one call."""
        return len(self.part.read_columns(0, max_bytes=GiB))

    def _columns_paged(self):
        """1 MiB per call, as a consumer catching up would."""
        read, offset, end, count = self.part.read_columns, 0, self.part.high_watermark, 0
        while offset < end:
            cols = read(offset, max_bytes=MiB)
            count += len(cols)
            offset = cols.next_offset
        return count

    def _records(self):
        return sum(1 for _ in self.part.read(0))

    def _records_kept(self):
        return len(list(self.part.read(0)))

    def time_read_columns_all(self, folder, compression):
        self._columns_all()

    def time_read_columns_paged_1mib(self, folder, compression):
        self._columns_paged()

    def time_read_records(self, folder, compression):
        self._records()

    def time_read_records_kept(self, folder, compression):
        self._records_kept()

    def _rate(self, read):
        start = time.perf_counter()
        count = read()
        assert count == RECORDS, count
        return count / (time.perf_counter() - start)

    def track_read_columns_records_per_s(self, folder, compression):
        return self._rate(self._columns_all)

    track_read_columns_records_per_s.unit = "records/s"

    def track_read_columns_paged_records_per_s(self, folder, compression):
        return self._rate(self._columns_paged)

    track_read_columns_paged_records_per_s.unit = "records/s"

    def track_read_records_per_s(self, folder, compression):
        return self._rate(self._records)

    track_read_records_per_s.unit = "records/s"

    def track_read_records_kept_per_s(self, folder, compression):
        return self._rate(self._records_kept)

    track_read_records_kept_per_s.unit = "records/s"

    def peakmem_read_columns_all(self, folder, compression):
        self._columns_all()

    def peakmem_read_records_kept(self, folder, compression):
        self._records_kept()
