"""The record batch codec: encode_batch, decode_batch and validate_batch.

One batch holds about 1 MiB of values (10,000 records of 100 B or 1,000 of 1 KiB), so
seconds per call convert to MB/s of payload as 1.048576 / seconds. Values are seeded
JSON-ish text that compresses about as application events do (see common.corpus).
"""

from pstream import _core

from .common import CODECS, MiB, records

_RECORD_SIZES = [100, 1024]


def _batch_records(record_size):
    return records(MiB // record_size, record_size)


class Encode:
    params = (CODECS, _RECORD_SIZES)
    param_names = ["compression", "record_size"]

    def setup(self, compression, record_size):
        self.records = _batch_records(record_size)

    def time_encode_batch(self, compression, record_size):
        _core.encode_batch(self.records, compression=compression)

    def peakmem_encode_batch(self, compression, record_size):
        _core.encode_batch(self.records, compression=compression)


class Decode:
    params = (CODECS, _RECORD_SIZES)
    param_names = ["compression", "record_size"]

    def setup(self, compression, record_size):
        self.batch = _core.encode_batch(_batch_records(record_size), compression=compression)

    def time_decode_batch(self, compression, record_size):
        _core.decode_batch(self.batch)

    def peakmem_decode_batch(self, compression, record_size):
        _core.decode_batch(self.batch)

    def track_compressed_ratio(self, compression, record_size):
        """Batch size uncompressed / compressed: how compressible the payload is."""
        plain = _core.encode_batch(_batch_records(record_size))
        return len(plain) / len(self.batch)

    track_compressed_ratio.unit = "ratio"


class Validate:
    """validate_batch: sizes, magic and the CRC-32C over the whole batch."""

    params = (CODECS, _RECORD_SIZES)
    param_names = ["compression", "record_size"]

    def setup(self, compression, record_size):
        self.batch = _core.encode_batch(_batch_records(record_size), compression=compression)

    def time_validate_batch(self, compression, record_size):
        _core.validate_batch(self.batch)


class CutBatches:
    """Cutting a fetch response's worth of back-to-back batches at their boundaries (what the
    Fetch handler does per partition, with an offset and a byte limit): one header read per
    batch in the core, against the per-batch struct loop the handler used before."""

    params = [1, 16, 256]
    param_names = ["batches"]

    def setup(self, batches):
        import struct
        self.data = b"".join(_core.encode_batch([(None, b"x" * 100, [], 1)] * 10, base_offset=i * 10)
                             for i in range(batches))
        self.unpack = struct.Struct(">qi11xi").unpack_from   # base offset, batch length, last offset delta

    def time_cut_batches(self, batches):
        _core.cut_batches(self.data, below_offset=1 << 60, max_bytes=1 << 30)

    def time_struct_loop(self, batches):
        unpack, data = self.unpack, self.data
        pos, n = 0, len(data)
        while pos + 27 <= n:
            _base, length, _delta = unpack(data, pos)
            pos += length + 12

    def time_scan_headers(self, batches):
        for start, _end in _core.cut_batches(self.data):
            _core.peek_batch(self.data, start)


class Check:
    """check_batch as the produce handler calls it, on a delete topic and on a compacted one
    (require_key: every record's key checked in the same walk, no Python object per record)."""

    params = (["none", "lz4"], _RECORD_SIZES, [False, True])
    param_names = ["compression", "record_size", "require_key"]

    def setup(self, compression, record_size, require_key):
        self.batch = _core.encode_batch(_batch_records(record_size), compression=compression)

    def time_check_batch(self, compression, record_size, require_key):
        _core.check_batch(self.batch, check_crc=False, check_timestamps=True, require_key=require_key)
