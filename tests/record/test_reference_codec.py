"""Record batch v2 codec: known vectors, round trips, and every validation error on purpose.

Tests take the `codec` fixture (tests/record/conftest.py), so they run against every
codec implementation; batches are hand-built here with the reference module's helpers
where a test needs bytes no encoder would write.
"""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pstream.errors import (
    BadMagicError,
    BadRecordError,
    BadVarintError,
    CompressionError,
    CorruptBatchError,
    CrcMismatchError,
    LengthMismatchError,
    RecordCountMismatchError,
    ShortBufferError,
)
from pstream.record import compression, reference

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
INT32_MAX = (1 << 31) - 1
HEADER = struct.Struct(">qiibIhiqqqhii")


# --- helpers -------------------------------------------------------------------------


def zigzag_varint(value: int, bits: int = 32) -> bytes:
    unsigned = ((value << 1) ^ (value >> (bits - 1))) & ((1 << bits) - 1)
    out = bytearray()
    while unsigned >= 0x80:
        out.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    out.append(unsigned)
    return bytes(out)


def record_bytes(
    body: bytes | None = None,
    *,
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    headers: list[tuple[bytes, bytes | None]] = (),  # type: ignore[assignment]
    timestamp_delta: int = 0,
    offset_delta: int = 0,
    length: int | None = None,
) -> bytes:
    """One record as raw bytes; `body` replaces everything after the length varint."""
    if body is None:
        body = b"\x00" + zigzag_varint(timestamp_delta, 64) + zigzag_varint(offset_delta)
        for field in (key, value):
            body += zigzag_varint(-1) if field is None else zigzag_varint(len(field)) + field
        body += zigzag_varint(len(headers))
        for header_key, header_value in headers:
            body += zigzag_varint(len(header_key)) + header_key
            if header_value is None:
                body += zigzag_varint(-1)
            else:
                body += zigzag_varint(len(header_value)) + header_value
    return zigzag_varint(len(body) if length is None else length) + body


def make_batch(
    section: bytes,
    record_count: int,
    *,
    attributes: int = 0,
    base_offset: int = 0,
    base_timestamp: int = 1000,
    max_timestamp: int = 1000,
    magic: int = 2,
    batch_length: int | None = None,
    fix_crc: bool = True,
) -> bytes:
    """A batch around an already-encoded records section, with a correct CRC."""
    header = bytearray(
        HEADER.pack(
            base_offset,
            49 + len(section) if batch_length is None else batch_length,
            -1,
            magic,
            0,
            attributes,
            max(record_count - 1, -1),
            base_timestamp,
            max_timestamp,
            -1,
            -1,
            -1,
            record_count,
        )
    )
    batch = bytearray(header + section)
    if fix_crc:
        struct.pack_into(">I", batch, 17, reference.crc32c(batch[21 : 12 + 49 + len(section)]))
    return bytes(batch)


def refresh_crc(batch: bytes | bytearray) -> bytes:
    batch = bytearray(batch)
    (batch_length,) = struct.unpack_from(">i", batch, 8)
    struct.pack_into(">I", batch, 17, reference.crc32c(batch[21 : 12 + batch_length]))
    return bytes(batch)


def expect_error(call, error: type[CorruptBatchError], position: int) -> CorruptBatchError:
    with pytest.raises(CorruptBatchError) as info:
        call()
    assert type(info.value) is error, info.value
    assert info.value.position == position, info.value
    return info.value


def as_tuple(record) -> tuple:
    return (record.offset, record.timestamp_ms, record.key, record.value, list(record.headers))


HEADER_FIELDS = [
    "base_offset",
    "batch_length",
    "partition_leader_epoch",
    "magic",
    "crc",
    "attributes",
    "last_offset_delta",
    "base_timestamp",
    "max_timestamp",
    "producer_id",
    "producer_epoch",
    "base_sequence",
    "record_count",
    "compression",
    "timestamp_type",
    "is_transactional",
    "is_control",
    "last_offset",
    "size",
]


def header_dict(header) -> dict:
    return {name: getattr(header, name) for name in HEADER_FIELDS}


# --- CRC-32C -------------------------------------------------------------------------


def test_crc32c_known_vectors(codec) -> None:
    assert codec.crc32c(b"123456789") == 0xE3069283
    assert codec.crc32c(b"") == 0
    assert codec.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert codec.crc32c(b"\xff" * 32) == 0x62A8AB43  # RFC 3720 B.4: 32 bytes of ones
    assert codec.crc32c(bytes(range(32))) == 0x46DD794E  # RFC 3720 B.4: incrementing


def test_crc32c_continues_from_a_previous_value(codec) -> None:
    assert codec.crc32c(b"6789", codec.crc32c(b"12345")) == 0xE3069283
    assert codec.crc32c(b"", 0x12345678) == 0x12345678
    assert codec.crc32c(memoryview(b"123456789")) == codec.crc32c(bytearray(b"123456789"))


@settings(deadline=None, max_examples=200)
@given(data=st.binary(max_size=300), value=st.integers(0, 0xFFFFFFFF))
def test_crc32c_matches_the_crc32c_package(codec, data: bytes, value: int) -> None:
    crc32c = pytest.importorskip("crc32c")
    assert codec.crc32c(data, value) == crc32c.crc32c(data, value)


# --- known bytes ---------------------------------------------------------------------


def test_known_batch_bytes(codec) -> None:
    batch = codec.encode_batch(
        [(b"k", b"v", [("h", b"x")], 1000), (None, b"", [], 1002)],
        base_offset=5,
        producer_id=7,
        producer_epoch=1,
        base_sequence=3,
        partition_leader_epoch=9,
    )
    expected = bytes.fromhex(
        "0000000000000005"  # baseOffset 5
        "00000045"  # batchLength 69 = 61 - 12 + 20 record bytes
        "00000009"  # partitionLeaderEpoch 9
        "02"  # magic
        "00000000"  # crc, checked below
        "0000"  # attributes
        "00000001"  # lastOffsetDelta 1
        "00000000000003e8"  # baseTimestamp 1000
        "00000000000003ea"  # maxTimestamp 1002
        "0000000000000007"  # producerId 7
        "0001"  # producerEpoch 1
        "00000003"  # baseSequence 3
        "00000002"  # recordCount 2
        # record 0: length 12, attrs 0, tsDelta 0, offDelta 0, key "k", value "v",
        # 1 header "h" = "x"
        "18" "00" "00" "00" "02" "6b" "02" "76" "02" "02" "68" "02" "78"
        # record 1: length 6, attrs 0, tsDelta 2, offDelta 1, key null, value "",
        # 0 headers
        "0c" "00" "04" "02" "01" "00" "00"
    )
    assert batch[:17] == expected[:17]
    assert batch[21:] == expected[21:]
    assert struct.unpack_from(">I", batch, 17)[0] == codec.crc32c(batch[21:])
    assert len(batch) == 81


@pytest.mark.parametrize(
    ("value", "bits", "encoded"),
    [
        (0, 32, "00"),
        (-1, 32, "01"),
        (1, 32, "02"),
        (63, 32, "7e"),
        (-64, 32, "7f"),
        (64, 32, "8001"),
        (INT32_MAX, 32, "feffffff0f"),
        (-(1 << 31), 32, "ffffffff0f"),
        (INT64_MAX, 64, "feffffffffffffffff01"),
        (INT64_MIN, 64, "ffffffffffffffffff01"),
    ],
)
def test_varint_encoding_matches_kafka_byte_utils(value: int, bits: int, encoded: str) -> None:
    assert zigzag_varint(value, bits).hex() == encoded


def test_offset_and_timestamp_deltas_are_written_as_zigzag_varints(codec) -> None:
    batch = codec.encode_batch([(None, None, [], 0), (None, None, [], -64), (None, None, [], INT32_MAX)])
    section = batch[61:]
    assert section == (
        record_bytes(key=None, value=None, timestamp_delta=0, offset_delta=0)
        + record_bytes(key=None, value=None, timestamp_delta=-64, offset_delta=1)
        + record_bytes(key=None, value=None, timestamp_delta=INT32_MAX, offset_delta=2)
    )


def test_empty_batch_header(codec) -> None:
    header, records = codec.decode_batch(codec.encode_batch([]))
    assert records == []
    assert header.record_count == 0
    assert header.last_offset_delta == -1
    assert header.base_timestamp == -1
    assert header.max_timestamp == -1
    assert header.batch_length == 49
    assert header.size == 61


# --- round trips ---------------------------------------------------------------------

blobs = st.none() | st.binary(max_size=40)
header_lists = st.lists(st.tuples(st.text(max_size=8), blobs), max_size=3)
timestamps = st.none() | st.integers(INT64_MIN, INT64_MAX) | st.integers(0, 2_000_000_000_000)
record_lists = st.lists(st.tuples(blobs, blobs, header_lists, timestamps), max_size=8)


@settings(deadline=None, max_examples=200)
@given(
    records=record_lists,
    compression_id=st.sampled_from([0, 1, 2, 3, 4]),
    timestamp_type=st.sampled_from([0, 1]),
    base_offset=st.integers(0, INT64_MAX - 100) | st.just(0),
    producer=st.tuples(st.integers(-1, INT64_MAX), st.integers(-1, 32767), st.integers(-1, INT32_MAX)),
    partition_leader_epoch=st.integers(-1, INT32_MAX),
    flags=st.tuples(st.booleans(), st.booleans()),
    now_ms=st.integers(0, 2_000_000_000_000),
    trailing=st.binary(max_size=5),
)
def test_round_trip(
    codec,
    records,
    compression_id,
    timestamp_type,
    base_offset,
    producer,
    partition_leader_epoch,
    flags,
    now_ms,
    trailing,
) -> None:
    producer_id, producer_epoch, base_sequence = producer
    is_transactional, is_control = flags
    batch = codec.encode_batch(
        records,
        base_offset=base_offset,
        compression=compression_id,
        timestamp_type=timestamp_type,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        partition_leader_epoch=partition_leader_epoch,
        is_transactional=is_transactional,
        is_control=is_control,
        now_ms=now_ms,
    )
    assert isinstance(batch, bytes)
    assert batch == reference.encode_batch(
        records,
        base_offset=base_offset,
        compression=compression_id,
        timestamp_type=timestamp_type,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        partition_leader_epoch=partition_leader_epoch,
        is_transactional=is_transactional,
        is_control=is_control,
        now_ms=now_ms,
    )
    header, decoded = codec.decode_batch(batch + trailing)
    stamps = [now_ms if ts is None else ts for (_, _, _, ts) in records]
    n = len(records)
    assert header_dict(header) == {
        "base_offset": base_offset,
        "batch_length": len(batch) - 12,
        "partition_leader_epoch": partition_leader_epoch,
        "magic": 2,
        "crc": codec.crc32c(batch[21:]),
        "attributes": compression_id | timestamp_type << 3 | is_transactional << 4 | is_control << 5,
        "last_offset_delta": n - 1,
        "base_timestamp": stamps[0] if n else -1,
        "max_timestamp": max(stamps) if n else -1,
        "producer_id": producer_id,
        "producer_epoch": producer_epoch,
        "base_sequence": base_sequence,
        "record_count": n,
        "compression": compression_id,
        "timestamp_type": timestamp_type,
        "is_transactional": is_transactional,
        "is_control": is_control,
        "last_offset": base_offset + n - 1,
        "size": len(batch),
    }
    assert header_dict(codec.validate_batch(memoryview(batch + trailing))) == header_dict(header)
    max_timestamp = max(stamps) if n else -1
    assert [as_tuple(r) for r in decoded] == [
        (
            base_offset + i,
            max_timestamp if timestamp_type == 1 else stamps[i],
            key,
            value,
            [(hk, hv) for hk, hv in headers],
        )
        for i, (key, value, headers, _) in enumerate(records)
    ]


@pytest.mark.parametrize("compression_name", list(compression.NAMES))
def test_compression_is_accepted_by_name(codec, compression_name: str) -> None:
    batch = codec.encode_batch([(b"k", b"v" * 100, [], 5)], compression=compression_name)
    header, records = codec.decode_batch(batch)
    assert header.compression == compression.NAMES[compression_name]
    assert as_tuple(records[0]) == (0, 5, b"k", b"v" * 100, [])


def test_timestamps_at_the_int64_limits_round_trip(codec) -> None:
    records = [(None, None, [], INT64_MAX), (None, None, [], INT64_MIN), (None, None, [], 0)]
    header, decoded = codec.decode_batch(codec.encode_batch(records))
    assert [r.timestamp_ms for r in decoded] == [INT64_MAX, INT64_MIN, 0]
    assert header.max_timestamp == INT64_MAX


def test_missing_timestamps_take_now(codec) -> None:
    batch = codec.encode_batch([(None, None, [], None), (None, None, [], 7)], now_ms=1234)
    _, decoded = codec.decode_batch(batch)
    assert [r.timestamp_ms for r in decoded] == [1234, 7]
    before = int(time.time() * 1000)
    _, decoded = codec.decode_batch(codec.encode_batch([(None, None, [], None)] * 3))
    after = int(time.time() * 1000)
    stamps = {r.timestamp_ms for r in decoded}
    assert len(stamps) == 1 and before <= stamps.pop() <= after


def test_log_append_time_gives_every_record_the_max_timestamp(codec) -> None:
    records = [(None, b"a", [], 10), (None, b"b", [], 30), (None, b"c", [], 20)]
    batch = codec.encode_batch(records, timestamp_type=1)
    header, decoded = codec.decode_batch(batch)
    assert header.timestamp_type == 1
    assert [r.timestamp_ms for r in decoded] == [30, 30, 30]


def test_bytes_like_keys_and_values_are_accepted(codec) -> None:
    batch = codec.encode_batch([(bytearray(b"k"), memoryview(b"v"), [("h", bytearray(b"x"))], 1)])
    _, (record,) = codec.decode_batch(bytearray(batch))
    assert (record.key, record.value, list(record.headers)) == (b"k", b"v", [("h", b"x")])
    assert type(record.key) is bytes and type(record.value) is bytes


@pytest.mark.parametrize(
    ("records", "options", "error"),
    [
        ([("k", b"v", [], 1)], {}, TypeError),
        ([(b"k", 5, [], 1)], {}, TypeError),
        ([(b"k", b"v", [(b"h", b"x")], 1)], {}, TypeError),
        ([(b"k", b"v", [], INT64_MAX + 1)], {}, ValueError),
        ([], {"producer_epoch": 1 << 15}, ValueError),
        ([], {"base_offset": INT64_MIN - 1}, ValueError),
        ([], {"compression": "brotli"}, ValueError),
        ([], {"compression": 5}, ValueError),
        ([], {"timestamp_type": 2}, ValueError),
    ],
)
def test_encode_rejects_bad_input(codec, records, options, error) -> None:
    with pytest.raises(error):
        codec.encode_batch(records, **options)


# --- validation, step by step ----------------------------------------------------------

GOOD_RECORDS = [(b"key", b"value", [("h", b"x")], 1000), (None, b"second", [], 1001)]


@pytest.fixture(scope="module")
def good_batch() -> bytes:
    return reference.encode_batch(GOOD_RECORDS, base_offset=100)


@pytest.mark.parametrize("size", [0, 1, 12, 60])
def test_a_short_fixed_header_is_a_short_buffer(codec, good_batch: bytes, size: int) -> None:
    expect_error(lambda: codec.validate_batch(good_batch[:size]), ShortBufferError, size)
    expect_error(lambda: codec.decode_batch(good_batch[:size]), ShortBufferError, size)


@pytest.mark.parametrize("batch_length", [48, 0, -1, -(1 << 31)])
def test_batch_length_below_49_is_a_length_mismatch(codec, good_batch: bytes, batch_length: int) -> None:
    bad = good_batch[:8] + struct.pack(">i", batch_length) + good_batch[12:]
    expect_error(lambda: codec.validate_batch(bad), LengthMismatchError, 8)


def test_batch_length_of_49_is_an_empty_batch(codec) -> None:
    header, records = codec.decode_batch(make_batch(b"", 0))
    assert (header.batch_length, records) == (49, [])


@pytest.mark.parametrize("missing", [1, 10])
def test_fewer_bytes_than_batch_length_is_a_short_buffer(codec, good_batch: bytes, missing: int) -> None:
    cut = good_batch[:-missing]
    expect_error(lambda: codec.validate_batch(cut), ShortBufferError, len(cut))
    huge = good_batch[:8] + struct.pack(">i", INT32_MAX) + good_batch[12:]
    expect_error(lambda: codec.decode_batch(huge), ShortBufferError, len(huge))


@pytest.mark.parametrize("magic", [0, 1, 3, -1])
def test_wrong_magic_is_bad_magic_even_with_a_bad_crc(codec, good_batch: bytes, magic: int) -> None:
    bad = good_batch[:16] + struct.pack(">b", magic) + good_batch[17:]
    expect_error(lambda: codec.validate_batch(bad), BadMagicError, 16)
    expect_error(lambda: codec.decode_batch(bad[:-1] + b"\x00"), BadMagicError, 16)


@pytest.mark.parametrize("where", [17, 20, 21, 40, 57, 61, -1])
def test_any_changed_byte_after_magic_is_a_crc_mismatch(codec, good_batch: bytes, where: int) -> None:
    bad = bytearray(good_batch)
    bad[where] ^= 0x01
    expect_error(lambda: codec.validate_batch(bad), CrcMismatchError, 17)
    expect_error(lambda: codec.decode_batch(bad), CrcMismatchError, 17)


def test_changes_outside_the_crc_are_not_checked(codec, good_batch: bytes) -> None:
    moved = struct.pack(">q", 7) + good_batch[8:12] + struct.pack(">i", 42) + good_batch[16:]
    header, records = codec.decode_batch(moved)
    assert (header.base_offset, header.partition_leader_epoch) == (7, 42)
    assert [r.offset for r in records] == [7, 8]


def test_negative_record_count_is_a_record_count_mismatch(codec) -> None:
    bad = make_batch(b"", -1)
    expect_error(lambda: codec.validate_batch(bad), RecordCountMismatchError, 57)
    expect_error(lambda: codec.decode_batch(bad), RecordCountMismatchError, 57)


def test_validate_does_not_look_inside_the_records(codec) -> None:
    batch = make_batch(b"\xff\xff", 1, attributes=7)
    assert codec.validate_batch(batch).record_count == 1
    expect_error(lambda: codec.decode_batch(batch), CompressionError, 21)


@pytest.mark.parametrize("attributes", [5, 6, 7, 0x0F, 0x3D])
def test_unknown_codec_id_is_a_compression_error_at_the_attributes(codec, attributes: int) -> None:
    batch = make_batch(record_bytes(), 1, attributes=attributes)
    expect_error(lambda: codec.decode_batch(batch), CompressionError, 21)


@pytest.mark.parametrize("codec_id", [1, 2, 3, 4])
@pytest.mark.parametrize("payload", [b"", b"not compressed at all, not at all"])
def test_undecodable_compressed_section_is_a_compression_error_at_61(
    codec, codec_id: int, payload: bytes
) -> None:
    error = expect_error(
        lambda: codec.decode_batch(make_batch(payload, 1, attributes=codec_id)), CompressionError, 61
    )
    assert compression.codec_name(codec_id) in str(error)


def test_compressed_section_larger_than_64_mib_is_a_compression_error(codec) -> None:
    bomb = compression.compress(compression.ZSTD, bytes(64 * 1024 * 1024 + 1))
    expect_error(lambda: codec.decode_batch(make_batch(bomb, 1, attributes=4)), CompressionError, 61)


# --- validation inside the records -------------------------------------------------------

R0 = record_bytes(key=b"a", value=b"b")  # a well-formed record: length 8, then 8 bytes
R0_LONGER = record_bytes(key=b"a", value=b"b", length=9) + b"z"  # declares 1 byte too many


@pytest.mark.parametrize(
    ("section", "count", "error", "position"),
    [
        # h. the section ends before recordCount records
        (b"", 1, RecordCountMismatchError, 61),
        (R0, 2, RecordCountMismatchError, 61 + len(R0)),
        # length varint: truncated, too long
        (b"\x80", 1, BadVarintError, 61),
        (R0 + b"\x80\x80", 2, BadVarintError, 61 + len(R0)),
        (b"\x80\x80\x80\x80\x80\x00" + bytes(10), 1, BadVarintError, 61),
        # length negative, or past the section's end
        (zigzag_varint(-1) + bytes(10), 1, BadRecordError, 61),
        (R0 + zigzag_varint(-5), 2, BadRecordError, 61 + len(R0)),
        (zigzag_varint(30) + bytes(29), 1, BadRecordError, 61),
        # attributes past the record's end (length 0)
        (R0 + zigzag_varint(0) + R0, 3, BadRecordError, 61 + len(R0) + 1),
        # timestampDelta: truncated by the record's end, longer than 10 bytes
        (record_bytes(b"\x00\x80"), 1, BadVarintError, 63),
        (record_bytes(b"\x00" + b"\xff" * 10 + b"\x01" + bytes(5)), 1, BadVarintError, 63),
        # offsetDelta: truncated, longer than 5 bytes
        (record_bytes(b"\x00\x00"), 1, BadVarintError, 64),
        (record_bytes(b"\x00\x00\x80\x80\x80\x80\x80\x01" + bytes(3)), 1, BadVarintError, 64),
        # keyLength below -1, key past the record's end
        (record_bytes(b"\x00\x00\x00" + zigzag_varint(-2) + b"\x00\x00"), 1, BadRecordError, 65),
        (record_bytes(b"\x00\x00\x00" + zigzag_varint(5) + b"abc"), 1, BadRecordError, 66),
        # valueLength missing, below -1, value past the record's end
        (record_bytes(b"\x00\x00\x00\x01"), 1, BadVarintError, 66),
        (record_bytes(b"\x00\x00\x00\x01" + zigzag_varint(-3) + b"\x00"), 1, BadRecordError, 66),
        (record_bytes(b"\x00\x00\x00\x01" + zigzag_varint(2) + b"x"), 1, BadRecordError, 67),
        # headersCount missing, negative
        (record_bytes(b"\x00\x00\x00\x01\x01"), 1, BadVarintError, 67),
        (record_bytes(b"\x00\x00\x00\x01\x01" + zigzag_varint(-1)), 1, BadRecordError, 67),
        # header key length negative, key past the end, key not UTF-8
        (record_bytes(b"\x00\x00\x00\x01\x01\x02" + zigzag_varint(-1) + b"\x01"), 1, BadRecordError, 68),
        (record_bytes(b"\x00\x00\x00\x01\x01\x02" + zigzag_varint(4) + b"ab"), 1, BadRecordError, 69),
        (record_bytes(b"\x00\x00\x00\x01\x01\x02\x04\xc3\x28\x01"), 1, BadRecordError, 69),
        (record_bytes(key=b"k", value=b"v", headers=[(b"\xff", None)]), 1, BadRecordError, 71),
        # header value length below -1, missing, value past the end
        (record_bytes(b"\x00\x00\x00\x01\x01\x02\x02h" + zigzag_varint(-2)), 1, BadRecordError, 70),
        (record_bytes(b"\x00\x00\x00\x01\x01\x02\x02h"), 1, BadVarintError, 70),
        (record_bytes(b"\x00\x00\x00\x01\x01\x02\x02h" + zigzag_varint(3) + b"xy"), 1, BadRecordError, 71),
        # the second header is missing
        (record_bytes(b"\x00\x00\x00\x01\x01\x04\x02h\x01"), 1, BadVarintError, 71),
        # fields end before the declared length: error at the record's length varint
        (R0_LONGER, 1, BadRecordError, 61),
        (R0 + R0_LONGER + b"z", 2, BadRecordError, 61 + len(R0)),
        # i. bytes after the last counted record
        (R0 + b"\x00", 1, RecordCountMismatchError, 61 + len(R0)),
        (R0 + R0, 1, RecordCountMismatchError, 61 + len(R0)),
        (b"\x00", 0, RecordCountMismatchError, 61),
    ],
)
def test_bad_records_raise_at_the_exact_position(
    codec, section: bytes, count: int, error, position: int
) -> None:
    batch = make_batch(section, count)
    codec.validate_batch(batch)
    expect_error(lambda: codec.decode_batch(batch), error, position)


@pytest.mark.parametrize("codec_id", [1, 2, 3, 4])
@pytest.mark.parametrize(
    ("section", "count", "error", "local_position"),
    [
        (R0 + b"\x00", 1, RecordCountMismatchError, len(R0)),
        (R0 + R0, 3, RecordCountMismatchError, 2 * len(R0)),
        (R0 + b"\x80", 2, BadVarintError, len(R0)),
        (R0 + R0_LONGER, 2, BadRecordError, len(R0)),
    ],
)
def test_positions_inside_a_compressed_section_are_61_plus_the_decompressed_position(
    codec, codec_id: int, section: bytes, count: int, error, local_position: int
) -> None:
    batch = make_batch(compression.compress(codec_id, section), count, attributes=codec_id)
    expect_error(lambda: codec.decode_batch(batch), error, 61 + local_position)


def test_varints_keep_only_their_low_bits(codec) -> None:
    # Record length 15 written in 5 bytes with junk above bit 32; timestampDelta 1
    # written in 10 bytes with junk above bit 64.
    body = b"\x00" + b"\x82" + b"\x80" * 8 + b"\x7e" + b"\x00\x01\x01\x00"
    length = bytes([(len(body) << 1) | 0x80, 0x80, 0x80, 0x80, 0x70])
    _, (record,) = codec.decode_batch(make_batch(length + body, 1, base_timestamp=50))
    assert (record.timestamp_ms, record.offset, record.key, record.value) == (51, 0, None, None)


def test_int64_sums_wrap_like_java_longs(codec) -> None:
    section = record_bytes(key=None, value=None, timestamp_delta=2, offset_delta=3)
    _, (record,) = codec.decode_batch(
        make_batch(section, 1, base_offset=INT64_MAX, base_timestamp=INT64_MAX - 1)
    )
    assert record.offset == INT64_MIN + 2
    assert record.timestamp_ms == INT64_MIN


def test_bytes_past_the_batch_are_ignored(codec, good_batch: bytes) -> None:
    header, records = codec.decode_batch(good_batch + b"\x00\x00\x00garbage")
    assert header.size == len(good_batch)
    assert [r.value for r in records] == [b"value", b"second"]


# --- the oracle: same result or same error on damaged batches ---------------------------


def outcome(call):
    try:
        header, records = call()
    except CorruptBatchError as exc:
        return ("error", type(exc), exc.position)
    return ("ok", header_dict(header), [as_tuple(r) for r in records])


@settings(deadline=None, max_examples=300)
@given(
    compression_id=st.sampled_from([0, 0, 0, 1, 3, 4]),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
    cut=st.none() | st.integers(0, 10**6),
    fix_crc=st.booleans(),
)
def test_damaged_batches_decode_like_the_reference(codec, compression_id, edits, cut, fix_crc) -> None:
    batch = bytearray(
        reference.encode_batch(
            [
                (b"key", b"value" * 5, [("h", b"x"), ("n", None)], 1000),
                (None, None, [], 999),
                (b"", b"", [], 1003),
            ],
            compression=compression_id,
        )
    )
    for where, value in edits:
        # Mostly inside the records, where the parser lives.
        where = 61 + where % (len(batch) - 61) if where % 4 else where % len(batch)
        batch[where] = value
    if cut is not None:
        del batch[cut % (len(batch) + 1) :]
    if fix_crc and len(batch) >= 61:
        (batch_length,) = struct.unpack_from(">i", batch, 8)
        if 49 <= batch_length <= len(batch) - 12:
            batch = bytearray(refresh_crc(batch))
    got = outcome(lambda: codec.decode_batch(bytes(batch)))
    assert got == outcome(lambda: reference.decode_batch(bytes(batch)))
