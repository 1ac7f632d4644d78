"""Reference codec of Kafka record batches v2 (magic 2): slow, pure Python, obviously correct.

This module is the tests' oracle for the fast codec in the compiled core, which must
produce the same bytes from `encode_batch` and the same result, or the same error class
at the same position, from `validate_batch` and `decode_batch`. It favours plainness
over speed everywhere; nothing on a hot path may import it. It owns no I/O and does not
touch `pstream._core`.

Batch layout (big-endian), as Kafka's `DefaultRecordBatch` writes it::

    pos  size  field
      0    8   baseOffset            int64
      8    4   batchLength           int32, bytes after this field (total - 12)
     12    4   partitionLeaderEpoch  int32
     16    1   magic                 int8, 2
     17    4   crc                   uint32, CRC-32C of bytes 21..end
     21    2   attributes            int16: bits 0-2 codec, 3 LogAppendTime,
                                     4 transactional, 5 control
     23    4   lastOffsetDelta       int32, record count - 1 (-1 when empty)
     27    8   baseTimestamp         int64, first record's timestamp (-1 when empty)
     35    8   maxTimestamp          int64, largest record timestamp (-1 when empty)
     43    8   producerId            int64
     51    2   producerEpoch         int16
     53    4   baseSequence          int32
     57    4   recordCount           int32
     61        records, compressed as one block when the codec is not 0

Each record (all varints zigzag, as Kafka's ByteUtils.writeVarint/writeVarlong)::

    length varint (bytes after it) | attributes int8 = 0 | timestampDelta varlong
    | offsetDelta varint | keyLength varint (-1 = null) | key
    | valueLength varint (-1 = null) | value | headersCount varint
    | headersCount x (keyLength varint | UTF-8 key | valueLength varint (-1 = null) | value)

Decoding checks, in this order, raising the `pstream.errors` class named with
`position` = the byte position given (positions inside a compressed section are
61 + the position within the decompressed bytes):

    a. fewer than 61 bytes                     ShortBufferError      len(buf)
    b. batchLength < 49                        LengthMismatchError   8
    c. fewer than 12 + batchLength bytes       ShortBufferError      len(buf)
    d. magic != 2                              BadMagicError         16
    e. CRC-32C mismatch                        CrcMismatchError      17
    f. recordCount < 0                         RecordCountMismatchError 57
       (validate_batch stops here)
    g. codec > 4                               CompressionError      21
       section does not decompress (64 MiB max) CompressionError     61
    h. per record, see `_decode_records`
    i. bytes left after recordCount records    RecordCountMismatchError  where they start

Arithmetic on int64 fields (record offset = baseOffset + offsetDelta, timestamp =
baseTimestamp + timestampDelta, the delta written by the encoder) wraps to int64, as
Java's long arithmetic and C's int64_t do; it only matters for hostile input.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence

from pstream.errors import (
    BadMagicError,
    BadRecordError,
    BadVarintError,
    CompressionError,
    CrcMismatchError,
    LengthMismatchError,
    RecordCountMismatchError,
    ShortBufferError,
)
from pstream.record import compression as codecs
from pstream.record.types import BatchHeader, Record, wrap_int64

__all__ = [
    "HEADER_SIZE",
    "MAX_DECOMPRESSED_SIZE",
    "BatchHeader",
    "Record",
    "RecordTuple",
    "crc32c",
    "decode_batch",
    "encode_batch",
    "frame_section",
    "reseal",
    "validate_batch",
]

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes batchLength does not count
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD  # 49
MAGIC = 2
CRC_START = 21  # the CRC covers attributes .. end
MAX_DECOMPRESSED_SIZE = 64 * 1024 * 1024

# Byte positions of header fields, reported by errors.
POS_BATCH_LENGTH = 8
POS_MAGIC = 16
POS_CRC = 17
POS_ATTRIBUTES = 21
POS_RECORD_COUNT = 57

_COMPRESSION_MASK = 0x07
_TIMESTAMP_TYPE_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20

_VARINT = 32  # an int32 varint: at most 5 bytes
_VARLONG = 64  # an int64 varlong: at most 10 bytes

BytesLike = bytes | bytearray | memoryview
# One record on the way in: (key, value, headers, timestamp_ms).
RecordTuple = tuple[BytesLike | None, BytesLike | None, Sequence[tuple[str, BytesLike | None]], int | None]


# --- CRC-32C -----------------------------------------------------------------------


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # reflected Castagnoli
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C (Castagnoli) of `data`, continuing from the checksum `value`.

    Same semantics as the `crc32c` package: crc32c(b, crc32c(a)) == crc32c(a + b).
    """
    crc = (value & 0xFFFFFFFF) ^ 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in memoryview(data).cast("B"):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- encoding ----------------------------------------------------------------------


def _check_int(name: str, value: int, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is outside the int{bits} range {low}..{high}")
    return value


def _write_varint(out: bytearray, value: int, bits: int = 32) -> None:
    """Append `value` as a zigzag varint (bits=32) or varlong (bits=64)."""
    unsigned = ((value << 1) ^ (value >> (bits - 1))) & ((1 << bits) - 1)
    while unsigned >= 0x80:
        out.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    out.append(unsigned)


def varint(value: int, bits: int = 64) -> bytes:
    """`value` as a zigzag varlong (bits=64) or varint (bits=32): for records built by hand."""
    out = bytearray()
    _write_varint(out, value, bits)
    return bytes(out)


def _as_bytes(value: object, what: str) -> bytes:
    try:
        return memoryview(value).cast("B").tobytes()  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be bytes-like or None, not {type(value).__name__}") from None


def _write_nullable_bytes(out: bytearray, value: object, what: str) -> None:
    if value is None:
        _write_varint(out, -1)
        return
    data = _as_bytes(value, what)
    _write_varint(out, _check_int(f"{what} length", len(data), 32))
    out += data


def encode_batch(
    records: Iterable[RecordTuple],
    *,
    base_offset: int = 0,
    compression: int | str = 0,
    timestamp_type: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    now_ms: int | None = None,
) -> bytes:
    """Encode `records`, tuples (key, value, headers, timestamp_ms), as one batch v2.

    A None timestamp becomes `now_ms`, or the wall clock in ms read once per batch.
    Raises TypeError for a value of the wrong type and ValueError for one out of range.
    """
    codec = codecs.codec_id(compression)
    if timestamp_type not in (0, 1):
        raise ValueError(
            f"timestamp_type must be 0 (CreateTime) or 1 (LogAppendTime), not {timestamp_type!r}"
        )
    _check_int("base_offset", base_offset, 64)
    _check_int("partition_leader_epoch", partition_leader_epoch, 32)
    _check_int("producer_id", producer_id, 64)
    _check_int("producer_epoch", producer_epoch, 16)
    _check_int("base_sequence", base_sequence, 32)

    records = list(records)
    count = _check_int("record count", len(records), 32)
    if any(record[3] is None for record in records) and now_ms is None:
        now_ms = int(time.time() * 1000)
    timestamps = [
        _check_int(f"record {index} timestamp_ms", now_ms if record[3] is None else record[3], 64)
        for index, record in enumerate(records)
    ]
    if count:
        base_timestamp, max_timestamp = timestamps[0], max(timestamps)
    else:
        base_timestamp = max_timestamp = -1

    section = bytearray()
    for index, ((key, value, headers, _), timestamp) in enumerate(zip(records, timestamps)):
        body = bytearray(b"\x00")  # record attributes: unused, always 0
        _write_varint(body, wrap_int64(timestamp - base_timestamp), 64)
        _write_varint(body, index)
        _write_nullable_bytes(body, key, f"record {index} key")
        _write_nullable_bytes(body, value, f"record {index} value")
        headers = list(headers)
        _write_varint(body, _check_int(f"record {index} header count", len(headers), 32))
        for header_key, header_value in headers:
            if not isinstance(header_key, str):
                raise TypeError(f"record {index} header key must be str, not {type(header_key).__name__}")
            key_bytes = header_key.encode("utf-8")
            _write_varint(body, _check_int(f"record {index} header key length", len(key_bytes), 32))
            body += key_bytes
            _write_nullable_bytes(body, header_value, f"record {index} header {header_key!r} value")
        _write_varint(section, _check_int(f"record {index} length", len(body), 32))
        section += body

    payload = codecs.compress(codec, section) if codec != codecs.NONE else bytes(section)
    attributes = codec | (timestamp_type << 3)
    if is_transactional:
        attributes |= _TRANSACTIONAL_BIT
    if is_control:
        attributes |= _CONTROL_BIT
    batch_length = _check_int("batch_length", MIN_BATCH_LENGTH + len(payload), 32)

    batch = bytearray(HEADER_SIZE)
    HEADER.pack_into(
        batch,
        0,
        base_offset,
        batch_length,
        partition_leader_epoch,
        MAGIC,
        0,  # crc, written below once the bytes it covers exist
        attributes,
        count - 1,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )
    batch += payload
    struct.pack_into(">I", batch, POS_CRC, crc32c(memoryview(batch)[CRC_START:]))
    return bytes(batch)


def frame_section(
    section: bytes,
    record_count: int,
    *,
    attributes: int = 0,
    last_offset_delta: int | None = None,
    base_timestamp: int = 1000,
    max_timestamp: int | None = None,
    producer_id: int = -1,
    producer_epoch: int = 0,
    base_sequence: int = -1,
    base_offset: int = 0,
) -> bytes:
    """A batch header with a valid CRC around any records section, taken as given (already
    compressed, or hostile): how tests build the batches a checker must refuse."""
    batch = bytearray(
        HEADER.pack(
            base_offset,
            MIN_BATCH_LENGTH + len(section),
            -1,
            MAGIC,
            0,
            attributes,
            record_count - 1 if last_offset_delta is None else last_offset_delta,
            base_timestamp,
            base_timestamp if max_timestamp is None else max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        )
    )
    batch += section
    return reseal(batch)


def reseal(batch: bytes | bytearray, *, fix_length: bool = True) -> bytes:
    """The batch with its length field (unless not fix_length) and CRC made to match its bytes
    again after a test edited or cut them, so only what the edit broke remains."""
    out = bytearray(batch)
    if fix_length:
        struct.pack_into(">i", out, POS_BATCH_LENGTH, len(out) - LOG_OVERHEAD)
    struct.pack_into(">I", out, POS_CRC, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


# --- decoding ----------------------------------------------------------------------


def validate_batch(buf: bytes | bytearray | memoryview) -> BatchHeader:
    """Check the batch at the start of `buf` (steps a-f) and return its header.

    Bytes past 12 + batchLength are ignored. Does not look inside the records.
    """
    return _check_header(memoryview(buf).cast("B"))


def decode_batch(buf: bytes | bytearray | memoryview) -> tuple[BatchHeader, list[Record]]:
    """Check and decode the batch at the start of `buf` (steps a-i): (header, records)."""
    view = memoryview(buf).cast("B")
    header = _check_header(view)
    codec = header.attributes & _COMPRESSION_MASK
    if codec > codecs.ZSTD:
        raise CompressionError(
            f"attributes name unknown compression codec id {codec}", position=POS_ATTRIBUTES
        )
    section = view[HEADER_SIZE : header.size]
    if codec != codecs.NONE:
        try:
            section = memoryview(codecs.decompress(codec, section, max_size=MAX_DECOMPRESSED_SIZE))
        except CompressionError as exc:
            raise CompressionError(exc.message, position=HEADER_SIZE) from exc
    return header, _decode_records(header, section, HEADER_SIZE)


def _check_header(view: memoryview) -> BatchHeader:
    size = len(view)
    if size < HEADER_SIZE:
        raise ShortBufferError(
            f"a record batch header needs {HEADER_SIZE} bytes, the buffer holds {size}", position=size
        )
    header = BatchHeader(*HEADER.unpack_from(view, 0))
    if header.batch_length < MIN_BATCH_LENGTH:
        raise LengthMismatchError(
            f"batch_length {header.batch_length} is shorter than the {MIN_BATCH_LENGTH} "
            "header bytes it covers",
            position=POS_BATCH_LENGTH,
        )
    if size < header.size:
        raise ShortBufferError(
            f"batch_length {header.batch_length} needs {header.size} bytes, the buffer holds {size}",
            position=size,
        )
    if header.magic != MAGIC:
        raise BadMagicError(
            f"magic is {header.magic}, only record batch v2 (magic 2) is supported", position=POS_MAGIC
        )
    computed = crc32c(view[CRC_START : header.size])
    if computed != header.crc:
        raise CrcMismatchError(
            f"stored CRC-32C 0x{header.crc:08x} != computed 0x{computed:08x}", position=POS_CRC
        )
    if header.record_count < 0:
        raise RecordCountMismatchError(
            f"record count {header.record_count} is negative", position=POS_RECORD_COUNT
        )
    return header


def _read_varint(
    section: memoryview, pos: int, limit: int, base: int, what: str, bits: int
) -> tuple[int, int]:
    """Zigzag varint (bits=32, at most 5 bytes) or varlong (bits=64, 10 bytes) at `pos`.

    The low `bits` bits of the accumulated value are zigzag-decoded. BadVarintError at
    the varint's start if it reaches `limit`, or its byte limit, without ending.
    """
    max_bytes = (bits + 6) // 7
    start = pos
    accumulated = 0
    for shift in range(0, 7 * max_bytes, 7):
        if pos >= limit:
            raise BadVarintError(f"{what}: varint is truncated", position=base + start)
        byte = section[pos]
        pos += 1
        accumulated |= (byte & 0x7F) << shift
        if not byte & 0x80:
            unsigned = accumulated & ((1 << bits) - 1)
            return (unsigned >> 1) ^ -(unsigned & 1), pos
    raise BadVarintError(f"{what}: varint is longer than {max_bytes} bytes", position=base + start)


def _read_nullable_bytes(
    section: memoryview, pos: int, end: int, base: int, what: str
) -> tuple[bytes | None, int]:
    start = pos
    length, pos = _read_varint(section, pos, end, base, f"{what} length", _VARINT)
    if length < -1:
        raise BadRecordError(f"{what} length {length} is negative", position=base + start)
    if length == -1:
        return None, pos
    if length > end - pos:
        raise BadRecordError(
            f"{what} of {length} bytes runs past the record's end ({end - pos} bytes left)",
            position=base + pos,
        )
    return section[pos : pos + length].tobytes(), pos + length


def _decode_records(header: BatchHeader, section: memoryview, base: int) -> list[Record]:
    """Steps h and i: parse header.record_count records from `section`.

    `base` is the batch position of section[0], added to every error position. Each
    record is checked field by field in wire order, the first fault winning:

    - section exhausted before the record          RecordCountMismatchError  there
    - length varint truncated or > 5 bytes         BadVarintError  at the varint
    - length < 0 or past the section's end         BadRecordError  at the length varint
    - then, bounded by the record's own end: attributes, timestampDelta (varlong),
      offsetDelta, keyLength (< -1 bad), key, valueLength (< -1 bad), value,
      headersCount (< 0 bad), and per header keyLength (< 0 bad), key (must be UTF-8,
      checked before the header's value is read), valueLength (< -1 bad), value.
      A varint that does not end before the record's end, or runs past 5 (varlong:
      10) bytes, is BadVarintError at its start; a bad length is BadRecordError at its
      varint; bytes (or the attributes byte) past the record's end, or a key that is
      not UTF-8, are BadRecordError where they start.
    - fields end before the declared length        BadRecordError  at the length varint
    """
    limit = len(section)
    log_append_time = bool(header.attributes & _TIMESTAMP_TYPE_BIT)
    records = []
    pos = 0
    for index in range(header.record_count):
        what = f"record {index}"
        if pos >= limit:
            raise RecordCountMismatchError(
                f"the records end after {index} of the {header.record_count} the header counts",
                position=base + pos,
            )
        start = pos
        length, pos = _read_varint(section, pos, limit, base, f"{what} length", _VARINT)
        if length < 0 or length > limit - pos:
            raise BadRecordError(
                f"{what} length {length} does not fit the {limit - pos} bytes left", position=base + start
            )
        end = pos + length

        if pos >= end:
            raise BadRecordError(f"{what} attributes run past the record's end", position=base + pos)
        pos += 1  # record attributes: unused
        timestamp_delta, pos = _read_varint(section, pos, end, base, f"{what} timestampDelta", _VARLONG)
        offset_delta, pos = _read_varint(section, pos, end, base, f"{what} offsetDelta", _VARINT)
        key, pos = _read_nullable_bytes(section, pos, end, base, f"{what} key")
        value, pos = _read_nullable_bytes(section, pos, end, base, f"{what} value")

        count_start = pos
        header_count, pos = _read_varint(section, pos, end, base, f"{what} headersCount", _VARINT)
        if header_count < 0:
            raise BadRecordError(
                f"{what} headersCount {header_count} is negative", position=base + count_start
            )
        headers = []
        # A key that is not UTF-8 is reported only once the record's structure checks out, as
        # the fast decoder does (it parses the whole record before decoding its header keys).
        bad_key = None
        for number in range(header_count):
            key_start = pos
            key_length, pos = _read_varint(
                section, pos, end, base, f"{what} header {number} key length", _VARINT
            )
            if key_length < 0:
                raise BadRecordError(
                    f"{what} header {number} key length {key_length} is negative", position=base + key_start
                )
            if key_length > end - pos:
                raise BadRecordError(
                    f"{what} header {number} key of {key_length} bytes runs past the record's end "
                    f"({end - pos} bytes left)",
                    position=base + pos,
                )
            try:
                header_key = section[pos : pos + key_length].tobytes().decode("utf-8")
            except UnicodeDecodeError:
                header_key = None
                if bad_key is None:
                    bad_key = BadRecordError(f"{what} header {number} key is not valid UTF-8", position=base + pos)
            pos += key_length
            header_value, pos = _read_nullable_bytes(section, pos, end, base, f"{what} header {number} value")
            headers.append((header_key, header_value))

        if pos != end:
            raise BadRecordError(
                f"{what} fields take {pos - (end - length)} bytes but its length says {length}",
                position=base + start,
            )
        if bad_key is not None:
            raise bad_key
        timestamp = (
            header.max_timestamp if log_append_time else wrap_int64(header.base_timestamp + timestamp_delta)
        )
        records.append(Record(wrap_int64(header.base_offset + offset_delta), timestamp, key, value, headers))

    if pos < limit:
        raise RecordCountMismatchError(
            f"{limit - pos} bytes follow the {header.record_count} records the header counts",
            position=base + pos,
        )
    return records
