"""check_batch: what the broker checks in a batch before storing it (Kafka's LogValidator).

Each case is a batch a real client never writes but a hostile or buggy one can, with a
valid CRC so that only the record-level walk can catch it; the reference decoder is the
oracle for the property tests (a batch check_batch accepts always decodes, with offsets
0..n-1 and the declared count).
"""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pstream import _core
from pstream.errors import CorruptBatchError
from pstream.record import compression, reference

CODECS = [compression.NONE, compression.GZIP, compression.SNAPPY, compression.LZ4, compression.ZSTD]

varint = reference.varint   # zigzag varlong


def record(offset_delta: int = 0, timestamp_delta: int = 0, key: bytes | None = b"k", value: bytes = b"v") -> bytes:
    body = b"\x00" + varint(timestamp_delta) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(len(value)) + value + varint(0)
    return varint(len(body)) + body


def batch(section: bytes, count: int, *, codec: int = 0, attributes: int = 0, last_offset_delta: int | None = None,
          base_timestamp: int = 1000, max_timestamp: int = 1000, producer_id: int = -1,
          base_sequence: int = -1) -> bytes:
    """A batch around a records section (compressed here with `codec`), with a valid CRC."""
    if codec:
        section = compression.compress(codec, section)
    return reference.frame_section(section, count, attributes=attributes | codec, last_offset_delta=last_offset_delta,
                                   base_timestamp=base_timestamp, max_timestamp=max_timestamp,
                                   producer_id=producer_id, base_sequence=base_sequence)


def good(count: int = 3, codec: int = 0) -> bytes:
    return batch(b"".join(record(i) for i in range(count)), count, codec=codec)


# --- valid batches pass ----------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_batches_the_encoders_write_pass(codec):
    records = [(b"key", b"value" * 30, [("h", b"x"), ("n", None)], 1000), (None, None, [], 999), (b"", b"", [], 5)]
    for encoded in (_core.encode_batch(records, compression=codec), reference.encode_batch(records, compression=codec)):
        assert _core.check_batch(encoded) is None
        assert _core.check_batch(encoded, check_crc=False, check_timestamps=True) is None


@pytest.mark.parametrize("codec", CODECS)
def test_a_large_batch_spanning_many_decompressed_chunks_passes(codec):
    # 3 MiB of records: pieces of at most 1 MiB, with records cut at every piece boundary.
    records = [(b"k%d" % i, bytes([i % 251]) * (1000 + i % 700), [], 1000) for i in range(2500)]
    assert _core.check_batch(_core.encode_batch(records, compression=codec)) is None


# --- the batches, and every other rule --------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_a_header_claiming_1000_records_over_1_is_invalid_record(codec):
    fault = _core.check_batch(batch(record(0), 1000, codec=codec))
    assert fault.kind == _core.FAULT_INVALID_RECORD
    assert "declares 1000 records but holds 1" in fault.message


def test_50_bytes_of_0xff_with_a_valid_crc_are_invalid_record():
    fault = _core.check_batch(batch(b"\xff" * 50, 1))
    assert (fault.kind, fault.record_index, fault.position) == (_core.FAULT_INVALID_RECORD, 0, 61)


@pytest.mark.parametrize("codec", CODECS)
def test_bytes_after_the_declared_records_are_invalid_record(codec):
    fault = _core.check_batch(batch(record(0) + record(1), 1, codec=codec))
    assert fault.kind == _core.FAULT_INVALID_RECORD and "left after the 1 records" in fault.message


@pytest.mark.parametrize("codec", CODECS)
def test_offset_deltas_must_run_0_to_n_minus_1(codec):
    fault = _core.check_batch(batch(record(0) + record(1) + record(1), 3, codec=codec))
    assert (fault.kind, fault.record_index) == (_core.FAULT_INVALID_RECORD, 2)
    assert "offset delta 1, expected 2" in fault.message


def test_a_record_length_past_the_batch_names_the_record():
    section = record(0) + varint(1000) + b"\x00" * 10
    fault = _core.check_batch(batch(section, 2))
    assert (fault.kind, fault.record_index, fault.position) == (_core.FAULT_INVALID_RECORD, 1, 61 + len(record(0)))


@pytest.mark.parametrize("count, last_delta", [(0, -1), (-1, -2), (2, 5)])
def test_record_count_and_last_offset_delta_must_agree_and_be_positive(count, last_delta):
    fault = _core.check_batch(batch(record(0), count, last_offset_delta=last_delta))
    assert fault.kind == _core.FAULT_INVALID_RECORD and fault.record_index == -1


def test_a_producer_id_without_a_sequence_is_invalid_record():
    fault = _core.check_batch(batch(record(0), 1, producer_id=7, base_sequence=-1))
    assert fault.kind == _core.FAULT_INVALID_RECORD and "sequence" in fault.message


@pytest.mark.parametrize("codec_id", [5, 6, 7])
def test_unknown_codec_ids_are_invalid_record(codec_id):
    fault = _core.check_batch(batch(record(0), 1, attributes=codec_id))
    assert fault.kind == _core.FAULT_INVALID_RECORD and f"codec {codec_id}" in fault.message


def test_a_compressed_section_that_does_not_decompress_is_invalid_record():
    fault = _core.check_batch(batch(b"\x04\x22\x4d\x18garbage", 1, attributes=compression.LZ4))
    assert (fault.kind, fault.position) == (_core.FAULT_INVALID_RECORD, 61)


def test_a_bad_crc_is_corrupt_even_when_the_records_are_also_bad():
    damaged = bytearray(batch(b"\xff" * 50, 1))
    damaged[17] ^= 1
    for check_crc in (True, False):   # without check_crc the CRC still classifies a fault
        assert _core.check_batch(bytes(damaged), check_crc=check_crc).kind == _core.FAULT_CORRUPT


def test_check_crc_false_leaves_the_crc_of_valid_records_to_the_caller():
    damaged = bytearray(good())
    damaged[-2] ^= 1   # the last value byte: the records still parse
    assert _core.check_batch(bytes(damaged), check_crc=False) is None
    assert _core.check_batch(bytes(damaged)).kind == _core.FAULT_CORRUPT


def test_magic_other_than_2_is_invalid_record():
    damaged = bytearray(good())
    damaged[16] = 1
    assert _core.check_batch(bytes(damaged)).kind == _core.FAULT_INVALID_RECORD


# --- timestamps (LogValidator.validateTimestamp) -------------------------------------------------


def test_create_time_records_outside_the_limits_are_invalid_timestamp():
    section = record(0, timestamp_delta=0) + record(1, timestamp_delta=500)   # 1000, 1500
    b = batch(section, 2, max_timestamp=1500)
    assert _core.check_batch(b, check_timestamps=True, min_timestamp=1000, max_timestamp=1500) is None
    fault = _core.check_batch(b, check_timestamps=True, min_timestamp=1000, max_timestamp=1499)
    assert (fault.kind, fault.record_index) == (_core.FAULT_INVALID_TIMESTAMP, 1)
    assert "timestamp 1500 of record 1" in fault.message
    fault = _core.check_batch(b, check_timestamps=True, min_timestamp=1001)
    assert (fault.kind, fault.record_index) == (_core.FAULT_INVALID_TIMESTAMP, 0)
    # LogAppendTime topics ignore the producer's timestamps; so does check_timestamps=False.
    assert _core.check_batch(b, check_timestamps=True, create_time=False, min_timestamp=10**12) is None
    assert _core.check_batch(b, min_timestamp=1001) is None


def test_a_producer_setting_log_append_time_is_invalid_timestamp():
    b = batch(record(0), 1, attributes=0x08, base_timestamp=-1, max_timestamp=-1)
    assert _core.check_batch(b, check_timestamps=True).kind == _core.FAULT_INVALID_TIMESTAMP
    assert _core.check_batch(b, check_timestamps=True, create_time=False).kind == _core.FAULT_INVALID_TIMESTAMP
    assert _core.check_batch(b) is None   # what a LogAppendTime topic stores: fine on disk


# --- bounded decompression -----------------------------------------------------------------------


def bomb_section(codec: int, expands_to: int) -> bytes:
    """One record whose value is `expands_to` zero bytes, compressed without ever holding it whole."""
    head = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(expands_to)
    prefix, tail = varint(len(head) + expands_to + 1) + head, varint(0)
    zeros = bytes(1 << 20)
    if codec == compression.SNAPPY:
        block = compression.compress(codec, bytes(compression.XERIAL_BLOCK_SIZE))[len(compression.XERIAL_HEADER):]
        first = compression.compress(codec, prefix)
        return first + block * (expands_to // compression.XERIAL_BLOCK_SIZE) + compression.compress(codec, tail)[16:]
    if codec == compression.GZIP:
        import zlib
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        parts = [packer.compress(prefix)] + [packer.compress(zeros) for _ in range(expands_to >> 20)]
        return b"".join(parts + [packer.compress(tail), packer.flush()])
    if codec == compression.LZ4:
        import lz4.frame
        packer = lz4.frame.LZ4FrameCompressor(block_linked=False)
        parts = [packer.begin(), packer.compress(prefix)] + [packer.compress(zeros) for _ in range(expands_to >> 20)]
        return b"".join(parts + [packer.compress(tail), packer.flush()])
    import zstandard
    packer = zstandard.ZstdCompressor().compressobj()
    parts = [packer.compress(prefix)] + [packer.compress(zeros) for _ in range(expands_to >> 20)]
    return b"".join(parts + [packer.compress(tail), packer.flush()])


def raw_batch(section: bytes, codec: int) -> bytes:
    return reference.frame_section(section, 1, attributes=codec)


@pytest.mark.parametrize("codec", CODECS[1:])
def test_a_decompression_bomb_is_too_large(codec):
    bomb = raw_batch(bomb_section(codec, 96 << 20), codec)
    assert len(bomb) < 5 << 20   # snappy expands at most ~21x; the others thousands of times
    fault = _core.check_batch(bomb)
    assert (fault.kind, fault.position) == (_core.FAULT_TOO_LARGE, 61), fault
    assert "limit of 67108864 bytes" in fault.message
    # Under the limit the same construction is one valid record.
    assert _core.check_batch(raw_batch(bomb_section(codec, 8 << 20), codec)) is None
    assert _core.check_batch(raw_batch(bomb_section(codec, 8 << 20), codec), max_decompressed=4 << 20).kind \
        == _core.FAULT_TOO_LARGE


@pytest.mark.parametrize("codec", CODECS[1:])
def test_decompress_chunks_joins_to_decompress(codec):
    data = b"".join(bytes([i % 256]) * (i % 5000) for i in range(2000))
    packed = compression.compress(codec, data)
    pieces = list(compression.decompress_chunks(codec, packed, 64 << 20, chunk_bytes=65536))
    assert b"".join(pieces) == data == compression.decompress(codec, packed)
    if codec in (compression.GZIP, compression.LZ4):
        assert max(len(p) for p in pieces) <= 65536


# --- properties ----------------------------------------------------------------------------------

RECORDS = st.lists(st.tuples(st.none() | st.binary(max_size=40), st.none() | st.binary(max_size=300),
                             st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=8)), max_size=2),
                             st.integers(0, 1 << 50)), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(RECORDS, st.sampled_from(CODECS))
def test_random_valid_batches_always_pass(records, codec):
    assert _core.check_batch(_core.encode_batch(records, compression=codec), check_timestamps=True) is None


def _decodes_as_declared(data: bytes) -> bool:
    try:
        header, records = reference.decode_batch(data)
    except CorruptBatchError:
        return False
    return len(records) == header.record_count and [r.offset - header.base_offset for r in records] == \
        list(range(header.record_count))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CODECS), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 40))
def test_corrupted_records_with_a_resealed_crc_are_refused_or_decode_as_declared(codec, edits, cut):
    data = bytearray(_core.encode_batch([(b"key", b"value" * 7, [("h", b"x")], 1000), (None, None, [], 999),
                                         (b"", b"v", [], 1003)], compression=codec))
    for where, value in edits:
        data[61 + where % (len(data) - 61)] = value   # inside the records (or the compressed section)
    if cut:
        del data[len(data) - cut % (len(data) - 61):]
    data = reference.reseal(data)
    fault = _core.check_batch(data)
    if fault is None:
        assert _decodes_as_declared(bytes(data))
        _core.decode_batch(bytes(data))   # and the fast decoder (consumers, log dump) reads it too
    else:
        assert fault.kind in (_core.FAULT_INVALID_RECORD, _core.FAULT_TOO_LARGE)


@pytest.mark.parametrize("key", [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82"])
def test_a_header_key_that_is_not_utf8_is_invalid_record(key):
    body = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(1) + b"v" + varint(1) + varint(len(key)) + key \
        + varint(-1)
    fault = _core.check_batch(batch(varint(len(body)) + body, 1))
    assert (fault.kind, fault.record_index) == (_core.FAULT_INVALID_RECORD, 0) and "UTF-8" in fault.message


@pytest.mark.parametrize("key", ["", "plain", "é", "€uro", "\U0001f600", "\uffff"])
def test_utf8_header_keys_pass(key):
    assert _core.check_batch(_core.encode_batch([(None, b"v", [(key, b"x")], 5)])) is None


# --- keys on a compacted topic (LogValidator.validateKey) -------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_require_key_lists_every_keyless_record(codec):
    keys = [b"a", None, b"", None, b"b", None]   # an empty key is a key; a null one is not
    section = b"".join(record(i, key=k) for i, k in enumerate(keys))
    b = batch(section, len(keys), codec=codec)
    assert _core.check_batch(b) is None
    fault = _core.check_batch(b, require_key=True)
    assert (fault.kind, fault.record_index, fault.keyless) == (_core.FAULT_INVALID_RECORD, 1, (1, 3, 5))
    assert fault.message.startswith("3 of 6 records have no key")
    assert _core.check_batch(batch(b"".join(record(i) for i in range(3)), 3, codec=codec), require_key=True) is None


def test_a_structural_fault_wins_over_missing_keys():
    section = record(0, key=None) + record(5, key=None)   # record 1's offset delta is wrong
    fault = _core.check_batch(batch(section, 2), require_key=True)
    assert (fault.record_index, fault.keyless) == (1, ())
    assert "offset delta 5" in fault.message


def test_a_keyless_record_is_reported_for_its_key_not_its_timestamp():
    section = record(0, timestamp_delta=10**6, key=None)
    fault = _core.check_batch(batch(section, 1), check_timestamps=True, max_timestamp=2000, require_key=True)
    assert (fault.kind, fault.keyless) == (_core.FAULT_INVALID_RECORD, (0,))


@given(st.lists(st.booleans(), min_size=1, max_size=300))
def test_require_key_finds_exactly_the_keyless_records(has_key):
    records = [(b"k" if keyed else None, b"v", [], 1000) for keyed in has_key]
    fault = _core.check_batch(_core.encode_batch(records), require_key=True)
    missing = tuple(i for i, keyed in enumerate(has_key) if not keyed)
    assert (fault.keyless if fault is not None else ()) == missing
