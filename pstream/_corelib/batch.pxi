# Record batch v2 as Python sees it: Record, BatchHeader, encode, decode, validate.
#
# The byte layout and the order of checks are a contract shared with the pure-Python
# oracle in pstream/record/reference.py; include/ps_batch.h holds the nogil parts.

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.unicode cimport PyUnicode_DecodeUTF8

from libc.stdint cimport INT64_MIN

from pstream.record import compression as _compression

cdef int64_t MAX_DECOMPRESSED = 64 << 20     # the most a compressed batch may expand to
MAX_DECOMPRESSED_BYTES = MAX_DECOMPRESSED
cdef Py_ssize_t GIL_FREE_BYTES = 64 << 10   # above this, copies and CRCs run with the GIL released


@cython.freelist(256)
cdef class Record:
    """One record as read back: offset, timestamp_ms, key, value, headers; and, from the
    APIs that read several partitions (topic follow, consumers), its topic and partition
    (None otherwise)."""
    cdef readonly int64_t offset
    cdef readonly int64_t timestamp_ms
    cdef readonly object key
    cdef readonly object value
    cdef readonly list headers
    cdef public object topic
    cdef public object partition

    def __init__(self, int64_t offset, int64_t timestamp_ms, key, value, headers=(), topic=None, partition=None):
        self.offset = offset
        self.timestamp_ms = timestamp_ms
        self.key = key
        self.value = value
        self.headers = list(headers)
        self.topic = topic
        self.partition = partition

    def __eq__(self, other):
        if not isinstance(other, Record):
            return NotImplemented
        cdef Record o = other
        return (self.offset == o.offset and self.timestamp_ms == o.timestamp_ms and self.key == o.key
                and self.value == o.value and self.headers == o.headers and self.topic == o.topic
                and self.partition == o.partition)

    def __repr__(self):
        where = "" if self.topic is None else f"topic={self.topic!r}, partition={self.partition!r}, "
        return (f"Record({where}offset={self.offset}, timestamp_ms={self.timestamp_ms}, key={self.key!r}, "
                f"value={self.value!r}, headers={self.headers!r})")

    def __reduce__(self):
        return (Record, (self.offset, self.timestamp_ms, self.key, self.value, self.headers, self.topic,
                         self.partition))


cdef class BatchHeader:
    """Every field of the 61-byte record batch v2 header."""
    cdef ps_batch_header h

    @staticmethod
    cdef BatchHeader wrap(const ps_batch_header *h):
        cdef BatchHeader self = BatchHeader.__new__(BatchHeader)
        self.h = h[0]
        return self

    @property
    def base_offset(self): return self.h.base_offset
    @property
    def batch_length(self): return self.h.batch_length
    @property
    def partition_leader_epoch(self): return self.h.partition_leader_epoch
    @property
    def magic(self): return self.h.magic
    @property
    def crc(self): return self.h.crc
    @property
    def attributes(self): return self.h.attributes
    @property
    def last_offset_delta(self): return self.h.last_offset_delta
    @property
    def base_timestamp(self): return self.h.base_timestamp
    @property
    def max_timestamp(self): return self.h.max_timestamp
    @property
    def producer_id(self): return self.h.producer_id
    @property
    def producer_epoch(self): return self.h.producer_epoch
    @property
    def base_sequence(self): return self.h.base_sequence
    @property
    def record_count(self): return self.h.record_count
    @property
    def compression(self): return self.h.attributes & PS_ATTR_COMPRESSION_MASK
    @property
    def timestamp_type(self): return 1 if self.h.attributes & PS_ATTR_TIMESTAMP_TYPE else 0
    @property
    def is_transactional(self): return bool(self.h.attributes & PS_ATTR_TRANSACTIONAL)
    @property
    def is_control(self): return bool(self.h.attributes & PS_ATTR_CONTROL)
    @property
    def last_offset(self): return self.h.base_offset + self.h.last_offset_delta
    @property
    def size(self): return <int64_t>self.h.batch_length + PS_BATCH_LOG_OVERHEAD

    def __repr__(self):
        return (f"BatchHeader(base_offset={self.h.base_offset}, batch_length={self.h.batch_length}, "
                f"record_count={self.h.record_count}, attributes={self.h.attributes}, "
                f"base_timestamp={self.h.base_timestamp}, max_timestamp={self.h.max_timestamp}, "
                f"producer_id={self.h.producer_id}, crc={self.h.crc})")


# --- CRC -----------------------------------------------------------------------

def crc32c(data, uint32_t value=0):
    """CRC-32C (Castagnoli) of data, continuing from value (0 to start)."""
    cdef Py_buffer view
    cdef uint32_t result
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len >= 65536:
            with nogil:
                result = ps_crc32c(value, view.buf, <size_t>view.len)
        else:
            result = ps_crc32c(value, view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return result


def crc32c_implementation():
    """Which CRC-32C kernel is active: 'sse4.2+pclmul' or 'software'."""
    return ps_crc32c_impl().decode()


# --- encoding --------------------------------------------------------------------

cdef struct RecordSpec:
    const uint8_t *key
    Py_ssize_t key_len          # -1: null
    const uint8_t *value
    Py_ssize_t value_len        # -1: null
    const uint8_t *headers      # pre-encoded header entries (without the count)
    Py_ssize_t headers_len
    int32_t header_count
    int64_t timestamp
    Py_ssize_t body_len         # record length, without its own length varint


cdef inline object as_bytes(object obj, str what):
    """bytes stay as they are; other bytes-like objects are copied once; None stays None."""
    if obj is None or PyBytes_CheckExact(obj):
        return obj
    if isinstance(obj, str):
        raise TypeError(f"{what} must be bytes-like or None, not str (encode it first)")
    try:
        return bytes(memoryview(obj))
    except TypeError:
        raise TypeError(f"{what} must be bytes-like or None, not {type(obj).__name__}") from None


cdef bytes encode_headers(object headers, int32_t *count):
    """Header entries (key varint + UTF-8 key, value varint + value), concatenated."""
    cdef bytearray out = bytearray()
    cdef uint8_t tmp[10]
    cdef Py_ssize_t n
    cdef int32_t c = 0
    for item in headers:
        hkey, hvalue = item
        if isinstance(hkey, str):
            kb = (<str>hkey).encode("utf-8")
        else:
            raise TypeError(f"header key must be str, not {type(hkey).__name__}")
        hv = as_bytes(hvalue, "header value")
        n = ps_write_varint(tmp, <int32_t>len(kb))
        out += tmp[:n]
        out += kb
        if hv is None:
            n = ps_write_varint(tmp, -1)
            out += tmp[:n]
        else:
            n = ps_write_varint(tmp, <int32_t>len(hv))
            out += tmp[:n]
            out += hv
        c += 1
    count[0] = c
    return bytes(out)


cdef inline Py_ssize_t record_body_len(RecordSpec *r, int64_t base_ts, int32_t delta) noexcept nogil:
    cdef Py_ssize_t n = 1  # attributes
    n += ps_sizeof_varlong(r.timestamp - base_ts)
    n += ps_sizeof_varint(delta)
    n += ps_sizeof_varint(<int32_t>r.key_len) + (r.key_len if r.key_len > 0 else 0)
    n += ps_sizeof_varint(<int32_t>r.value_len) + (r.value_len if r.value_len > 0 else 0)
    n += ps_sizeof_varint(r.header_count) + r.headers_len
    return n


cdef inline Py_ssize_t write_record(uint8_t *dst, RecordSpec *r, int64_t base_ts, int32_t delta) noexcept nogil:
    cdef Py_ssize_t p = ps_write_varint(dst, <int32_t>r.body_len)
    dst[p] = 0
    p += 1
    p += ps_write_varlong(dst + p, r.timestamp - base_ts)
    p += ps_write_varint(dst + p, delta)
    p += ps_write_varint(dst + p, <int32_t>r.key_len)
    if r.key_len > 0:
        memcpy(dst + p, r.key, r.key_len)
        p += r.key_len
    p += ps_write_varint(dst + p, <int32_t>r.value_len)
    if r.value_len > 0:
        memcpy(dst + p, r.value, r.value_len)
        p += r.value_len
    p += ps_write_varint(dst + p, r.header_count)
    if r.headers_len > 0:
        memcpy(dst + p, r.headers, r.headers_len)
        p += r.headers_len
    return p


cdef inline void write_batch_header(uint8_t *dst, Py_ssize_t total, int64_t base_offset, int32_t leader_epoch,
                                    int16_t attributes, int32_t last_offset_delta, int64_t base_ts, int64_t max_ts,
                                    int64_t producer_id, int16_t producer_epoch, int32_t base_sequence,
                                    int32_t count) noexcept nogil:
    ps_store_be64(dst + PS_OFF_BASE_OFFSET, <uint64_t>base_offset)
    ps_store_be32(dst + PS_OFF_LENGTH, <uint32_t>(total - PS_BATCH_LOG_OVERHEAD))
    ps_store_be32(dst + PS_OFF_LEADER_EPOCH, <uint32_t>leader_epoch)
    dst[PS_OFF_MAGIC] = PS_MAGIC_V2
    ps_store_be16(dst + PS_OFF_ATTRIBUTES, <uint16_t>attributes)
    ps_store_be32(dst + PS_OFF_LAST_OFFSET_DELTA, <uint32_t>last_offset_delta)
    ps_store_be64(dst + PS_OFF_BASE_TIMESTAMP, <uint64_t>base_ts)
    ps_store_be64(dst + PS_OFF_MAX_TIMESTAMP, <uint64_t>max_ts)
    ps_store_be64(dst + PS_OFF_PRODUCER_ID, <uint64_t>producer_id)
    ps_store_be16(dst + PS_OFF_PRODUCER_EPOCH, <uint16_t>producer_epoch)
    ps_store_be32(dst + PS_OFF_BASE_SEQUENCE, <uint32_t>base_sequence)
    ps_store_be32(dst + PS_OFF_RECORD_COUNT, <uint32_t>count)


cdef inline void seal_batch_crc(uint8_t *dst, Py_ssize_t total) noexcept nogil:
    ps_store_be32(dst + PS_OFF_CRC, ps_crc32c(0, dst + PS_OFF_ATTRIBUTES, <size_t>(total - PS_OFF_ATTRIBUTES)))


cdef class BatchBuilder:
    """Collects Python records into RecordSpecs, then writes one v2 batch.

    The specs point into the Python objects kept alive in `self.keep`, so the write
    itself needs no Python objects and can run anywhere (into a bytes object, or
    straight into a segment's write buffer).
    """
    cdef RecordSpec *specs
    cdef Py_ssize_t n, cap
    cdef list keep
    cdef int64_t base_ts, max_ts
    cdef Py_ssize_t records_len    # uncompressed records section, once measured
    cdef bint measured

    def __cinit__(self):
        self.specs = NULL
        self.n = 0
        self.cap = 0
        self.keep = []
        self.measured = False

    def __dealloc__(self):
        free(self.specs)

    cdef int reserve(self, Py_ssize_t count) except -1:
        cdef RecordSpec *grown
        if count > self.cap:
            grown = <RecordSpec *>realloc(self.specs, count * sizeof(RecordSpec))
            if grown == NULL:
                raise MemoryError()
            self.specs = grown
            self.cap = count
        return 0

    cdef int add(self, object key, object value, object headers, object timestamp_ms, int64_t now_ms) except -1:
        cdef RecordSpec *r
        cdef int32_t hcount = 0
        if self.n == self.cap:
            self.reserve(self.cap * 2 if self.cap else 8)
        r = &self.specs[self.n]
        key = as_bytes(key, "key")
        value = as_bytes(value, "value")
        if key is None:
            r.key = NULL
            r.key_len = -1
        else:
            self.keep.append(key)
            r.key = <const uint8_t *>PyBytes_AS_STRING(key)
            r.key_len = PyBytes_GET_SIZE(key)
        if value is None:
            r.value = NULL
            r.value_len = -1
        else:
            self.keep.append(value)
            r.value = <const uint8_t *>PyBytes_AS_STRING(value)
            r.value_len = PyBytes_GET_SIZE(value)
        if headers:
            hb = encode_headers(headers, &hcount)
            self.keep.append(hb)
            r.headers = <const uint8_t *>PyBytes_AS_STRING(hb)
            r.headers_len = PyBytes_GET_SIZE(hb)
        else:
            r.headers = NULL
            r.headers_len = 0
        r.header_count = hcount
        r.timestamp = now_ms if timestamp_ms is None else <int64_t>timestamp_ms
        if self.n == 0:
            self.base_ts = r.timestamp
            self.max_ts = r.timestamp
        elif r.timestamp > self.max_ts:
            self.max_ts = r.timestamp
        self.n += 1
        self.measured = False
        return 0

    cdef int add_records(self, object records, int64_t now_ms) except -1:
        """records: an iterable of (key, value) or (key, value, headers) or (key, value, headers, ts)."""
        cdef Py_ssize_t size
        for rec in records:
            size = len(rec)
            if size == 2:
                self.add(rec[0], rec[1], None, None, now_ms)
            elif size == 3:
                self.add(rec[0], rec[1], rec[2], None, now_ms)
            elif size == 4:
                self.add(rec[0], rec[1], rec[2], rec[3], now_ms)
            else:
                raise ValueError(f"a record is (key, value[, headers[, timestamp_ms]]), got {size} fields")
        return 0

    cdef Py_ssize_t measure(self) except -1:
        """Computes every record's length; returns the uncompressed records section size."""
        cdef Py_ssize_t i, total = 0
        cdef RecordSpec *r
        if self.n == 0:
            self.base_ts = -1
            self.max_ts = -1
        for i in range(self.n):
            r = &self.specs[i]
            if r.key_len > 0x7fffffff or r.value_len > 0x7fffffff:
                raise _errors.BatchTooLargeError("a key or value is larger than 2 GiB")
            r.body_len = record_body_len(r, self.base_ts, <int32_t>i)
            total += ps_sizeof_varint(<int32_t>r.body_len) + r.body_len
        self.records_len = total
        self.measured = True
        return total

    cdef BatchBuilder slice(self, Py_ssize_t start, Py_ssize_t end):
        """A builder of records [start, end) of this one (the same buffers, kept alive by both)."""
        cdef BatchBuilder out = BatchBuilder()
        cdef Py_ssize_t i
        out.reserve(end - start)
        memcpy(out.specs, self.specs + start, (end - start) * sizeof(RecordSpec))
        out.n = end - start
        out.keep = self.keep
        out.base_ts = out.max_ts = out.specs[0].timestamp
        for i in range(out.n):
            if out.specs[i].timestamp > out.max_ts:
                out.max_ts = out.specs[i].timestamp
        return out

    cdef list split(self, Py_ssize_t limit):
        """Cuts the records into runs whose batches (uncompressed) are at most `limit` bytes
        each, greedily and in order: [(start, end), ...]. A record too large for a batch of
        its own raises BatchTooLargeError with its size and the limit."""
        cdef list runs = []
        cdef Py_ssize_t i, start = 0, size = PS_BATCH_HEADER_SIZE, one, body
        cdef RecordSpec *r
        cdef int64_t base_ts = self.specs[0].timestamp if self.n else 0
        i = 0
        while i < self.n:
            r = &self.specs[i]
            body = record_body_len(r, base_ts, <int32_t>(i - start))
            one = ps_sizeof_varint(<int32_t>body) + body
            if size + one > limit and i > start:
                runs.append((start, i))
                start, size, base_ts = i, PS_BATCH_HEADER_SIZE, r.timestamp
                continue    # measured again as the first of its run
            if size + one > limit:
                raise _errors.BatchTooLargeError(
                    f"record {i} of {PS_BATCH_HEADER_SIZE + one} bytes (as a batch of its own) exceeds "
                    f"max_message_bytes {limit}")
            size += one
            i += 1
        if start < self.n:
            runs.append((start, self.n))
        return runs

    cdef void write_records(self, uint8_t *dst) noexcept nogil:
        cdef Py_ssize_t i, p = 0
        for i in range(self.n):
            p += write_record(dst + p, &self.specs[i], self.base_ts, <int32_t>i)

    cdef bytes build(self, int64_t base_offset, int codec, int timestamp_type, int64_t producer_id,
                     int16_t producer_epoch, int32_t base_sequence, int32_t leader_epoch,
                     bint transactional, bint control):
        cdef Py_ssize_t records_len = self.records_len if self.measured else self.measure()
        cdef Py_ssize_t total
        cdef int16_t attributes = <int16_t>(codec & PS_ATTR_COMPRESSION_MASK)
        cdef bytes out, raw
        cdef uint8_t *dst
        if timestamp_type:
            attributes |= PS_ATTR_TIMESTAMP_TYPE
        if transactional:
            attributes |= PS_ATTR_TRANSACTIONAL
        if control:
            attributes |= PS_ATTR_CONTROL
        if codec == 0:
            total = PS_BATCH_HEADER_SIZE + records_len
            out = PyBytes_FromStringAndSize(NULL, total)
            dst = <uint8_t *>PyBytes_AS_STRING(out)
            if records_len >= GIL_FREE_BYTES:
                with nogil:
                    self.write_records(dst + PS_BATCH_HEADER_SIZE)
            else:
                self.write_records(dst + PS_BATCH_HEADER_SIZE)
        else:
            raw = PyBytes_FromStringAndSize(NULL, records_len)
            self.write_records(<uint8_t *>PyBytes_AS_STRING(raw))
            packed = _compression.compress(codec, raw)
            total = PS_BATCH_HEADER_SIZE + len(packed)
            out = PyBytes_FromStringAndSize(NULL, total)
            dst = <uint8_t *>PyBytes_AS_STRING(out)
            memcpy(dst + PS_BATCH_HEADER_SIZE, PyBytes_AS_STRING(packed), len(packed))
        if total - PS_BATCH_LOG_OVERHEAD > 0x7fffffff:
            raise _errors.BatchTooLargeError(f"batch of {total} bytes exceeds the 2 GiB v2 limit")
        write_batch_header(dst, total, base_offset, leader_epoch, attributes, <int32_t>(self.n - 1),
                           self.base_ts, self.max_ts, producer_id, producer_epoch, base_sequence, <int32_t>self.n)
        if total >= GIL_FREE_BYTES:
            with nogil:
                seal_batch_crc(dst, total)
        else:
            seal_batch_crc(dst, total)
        return out


cdef object checked_int(object value, str name, int bits):
    """value as an int that fits a signed field of `bits` bits, else ValueError naming it."""
    cdef object limit = (<object>1) << (bits - 1)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not -limit <= value < limit:
        raise ValueError(f"{name} {value} does not fit a signed {bits}-bit field")
    return value


def encode_batch(records, *, base_offset=0, compression=0, timestamp_type=0, producer_id=-1,
                 producer_epoch=-1, base_sequence=-1, partition_leader_epoch=-1,
                 bint is_transactional=False, bint is_control=False, now_ms=None):
    """Encodes records, a sequence of (key, value, headers, timestamp_ms), as one v2 batch.

    A timestamp of None becomes now_ms (or the current time, taken once per batch).
    """
    cdef int codec = _compression.codec_id(compression)
    cdef BatchBuilder builder = BatchBuilder()
    cdef int64_t now = ps_now_ms() if now_ms is None else checked_int(now_ms, "now_ms", 64)
    if timestamp_type not in (0, 1):
        raise ValueError(f"timestamp_type must be 0 (CreateTime) or 1 (LogAppendTime), got {timestamp_type!r}")
    for rec in records:
        key, value, headers, ts = rec
        builder.add(key, value, headers, None if ts is None else checked_int(ts, "timestamp_ms", 64), now)
    return builder.build(checked_int(base_offset, "base_offset", 64), codec, timestamp_type,
                         checked_int(producer_id, "producer_id", 64),
                         checked_int(producer_epoch, "producer_epoch", 16),
                         checked_int(base_sequence, "base_sequence", 32),
                         checked_int(partition_leader_epoch, "partition_leader_epoch", 32),
                         is_transactional, is_control)


# --- validation and decoding -------------------------------------------------------

cdef class _BufferView:
    """Holds a Py_buffer for the duration of a call (released on dealloc)."""
    cdef Py_buffer view
    cdef bint held

    def __cinit__(self, obj):
        PyObject_GetBuffer(obj, &self.view, PyBUF_SIMPLE)
        self.held = True

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)


def recompress_batch(buf, compression, *, level=None, int64_t max_decompressed=MAX_DECOMPRESSED):
    """One v2 batch with its records section in `compression` (a codec name or id; "none" or 0:
    uncompressed), every other field kept and the CRC computed afresh: Kafka's broker-side
    compression.type (LogValidator recompresses the same way). The records themselves are the
    same bytes in any codec, so nothing is decoded. A control batch, or one already in that
    codec, comes back as it is. Check the CRC first: this one covers whatever it is given."""
    cdef _BufferView b = _BufferView(buf)
    cdef const uint8_t *p = <const uint8_t *>b.view.buf
    cdef Py_ssize_t n = b.view.len, total
    cdef int target = _compression.codec_id(compression), source
    cdef uint16_t attributes
    cdef uint8_t *dst
    cdef _BufferView records
    if n < PS_BATCH_HEADER_SIZE:
        raise _errors.CorruptBatchError(f"a batch has at least {PS_BATCH_HEADER_SIZE} bytes, got {n}", position=0)
    attributes = ps_load_be16(p + PS_OFF_ATTRIBUTES)
    source = attributes & PS_ATTR_COMPRESSION_MASK
    if source == target or attributes & PS_ATTR_CONTROL:
        return buf
    section = memoryview(buf)[PS_BATCH_HEADER_SIZE:n]
    raw = _compression.decompress(source, section, max_size=max_decompressed) if source else section
    packed = _compression.compress(target, raw, level=level) if target else raw
    total = PS_BATCH_HEADER_SIZE + len(packed)
    out = PyBytes_FromStringAndSize(NULL, total)
    dst = <uint8_t *>PyBytes_AS_STRING(out)
    memcpy(dst, p, PS_BATCH_HEADER_SIZE)
    records = _BufferView(packed)
    memcpy(dst + PS_BATCH_HEADER_SIZE, records.view.buf, records.view.len)
    ps_store_be32(dst + PS_OFF_LENGTH, <uint32_t>(total - PS_BATCH_LOG_OVERHEAD))
    ps_store_be16(dst + PS_OFF_ATTRIBUTES, <uint16_t>((attributes & ~PS_ATTR_COMPRESSION_MASK) | target))
    seal_batch_crc(dst, total)
    return out


def validate_batch(buf):
    """Checks one batch's sizes, magic, CRC and record count sign; returns its BatchHeader."""
    cdef _BufferView b = _BufferView(buf)
    cdef ps_batch_header h
    cdef size_t errpos = 0
    cdef int st
    with nogil:
        st = ps_batch_validate(<const uint8_t *>b.view.buf, <size_t>b.view.len, 1, &h, &errpos)
    if st != PS_OK:
        raise_status(st, errpos)
    return BatchHeader.wrap(&h)


# --- checks before a batch is stored (Kafka's LogValidator) --------------------------

cdef extern from "ps_batch.h" nogil:
    ctypedef enum ps_record_fault:
        PS_FAULT_NONE
        PS_FAULT_STRUCTURE
        PS_FAULT_OFFSET_DELTA
        PS_FAULT_TIMESTAMP
        PS_FAULT_TIMESTAMP_TYPE
        PS_FAULT_HEADER_KEY
        PS_FAULT_NO_KEY
    ctypedef struct ps_record_walk:
        int32_t index
        size_t walked
        size_t cut_end
        ps_record_fault fault
        int32_t fault_index
        size_t fault_pos
        int64_t fault_value
        int require_key
        int32_t keyless
        int32_t *keyless_at
    void ps_record_walk_init(ps_record_walk *w, const ps_batch_header *h, int check_timestamps,
                             int topic_create_time, int64_t min_ts, int64_t max_ts)
    int ps_record_walk_piece(ps_record_walk *w, const uint8_t *s, size_t n, int last, size_t *used)

# BatchFault.kind: which Kafka error a broker answers a refused batch with.
FAULT_CORRUPT = "corrupt"                        # CORRUPT_MESSAGE: the bytes changed (CRC, framing)
FAULT_INVALID_RECORD = "invalid_record"          # INVALID_RECORD: intact, but not a valid batch
FAULT_INVALID_TIMESTAMP = "invalid_timestamp"    # INVALID_TIMESTAMP
FAULT_TOO_LARGE = "too_large"                    # MESSAGE_TOO_LARGE: expands past the limit

# The exception class of each kind: it carries the Kafka error code (pstream/errors.py).
_FAULT_CLASSES = {
    FAULT_CORRUPT: _errors.CorruptBatchError,
    FAULT_INVALID_RECORD: _errors.InvalidRecordError,
    FAULT_INVALID_TIMESTAMP: _errors.InvalidTimestampError,
    FAULT_TOO_LARGE: _errors.BatchTooLargeError,
}


cdef class BatchFault:
    """Why check_batch refused a batch.

    kind: one of the FAULT_* names; record_index: the record at fault (-1: the batch as a
    whole); position: the byte in the batch (inside a compressed section, 61 + the
    position in the decompressed records); message: what a person needs to see;
    keyless: the indexes of every record without a key (check_batch with require_key;
    Kafka reports each of them), else an empty tuple.
    """
    cdef readonly str kind
    cdef readonly int32_t record_index
    cdef readonly int64_t position
    cdef readonly str message
    cdef readonly tuple keyless

    def __init__(self, str kind, str message, int64_t position, int32_t record_index=-1, tuple keyless=()):
        self.kind = kind
        self.message = message
        self.position = position
        self.record_index = record_index
        self.keyless = keyless

    @property
    def error(self):
        """The pstream exception class of this fault; its `kafka_error` is the broker's answer."""
        return _FAULT_CLASSES[self.kind]

    @property
    def kafka_error(self):
        return _FAULT_CLASSES[self.kind].kafka_error

    def exception(self):
        """The fault as an exception of its class, `position` set."""
        return _FAULT_CLASSES[self.kind](self.message, position=self.position)

    def __repr__(self):
        return (f"BatchFault({self.kind}, record_index={self.record_index}, position={self.position}, "
                f"message={self.message!r})")


cdef BatchFault walk_fault(const ps_record_walk *w, int st, const ps_batch_header *h, int64_t min_ts,
                           int64_t max_ts):
    cdef int64_t pos = PS_BATCH_HEADER_SIZE + <int64_t>w.fault_pos
    cdef int32_t i = w.fault_index
    if st == PS_ERR_NO_MEMORY:
        raise MemoryError()
    if w.fault == PS_FAULT_NO_KEY:
        return BatchFault(FAULT_INVALID_RECORD, f"{w.keyless} of {h.record_count} records have no key (a compacted "
                                                f"topic needs one on every record); the first is record {i}", pos, i,
                          tuple([w.keyless_at[j] for j in range(w.keyless)]))
    if w.fault == PS_FAULT_OFFSET_DELTA:
        return BatchFault(FAULT_INVALID_RECORD, f"record {i} has offset delta {w.fault_value}, expected {i}", pos, i)
    if w.fault == PS_FAULT_TIMESTAMP:
        return BatchFault(FAULT_INVALID_TIMESTAMP, f"timestamp {w.fault_value} of record {i} is out of range: "
                                                   f"it must lie within [{min_ts}, {max_ts}]", pos, i)
    if w.fault == PS_FAULT_HEADER_KEY:
        return BatchFault(FAULT_INVALID_RECORD, f"record {i} header {w.fault_value} key is not valid UTF-8 "
                                                f"(byte {pos})", pos, i)
    if w.fault == PS_FAULT_TIMESTAMP_TYPE:
        return BatchFault(FAULT_INVALID_TIMESTAMP, f"record {i}: a producer must not set the LogAppendTime "
                                                   f"timestamp type on its batch", pos, i)
    if st == PS_ERR_RECORD_COUNT:
        if w.index < h.record_count:
            detail = f"the batch declares {h.record_count} records but holds {w.index}"
        else:
            detail = f"bytes are left after the {h.record_count} records the batch declares"
        return BatchFault(FAULT_INVALID_RECORD, f"{detail} (byte {pos})", pos, -1)
    what = _STATUS_CLASSES.get(st, (None, f"status {st}"))[1]
    return BatchFault(FAULT_INVALID_RECORD, f"record {i}: {what} at byte {pos}", pos, i)


cdef class _RecordWalker:
    """Walks a records section handed over in pieces; keeps a record cut by a piece's end."""
    cdef ps_record_walk w
    cdef uint8_t *carry
    cdef size_t carry_len, carry_cap

    def __dealloc__(self):
        free(self.carry)
        free(self.w.keyless_at)

    cdef int keep(self, const uint8_t *src, size_t n) except -1:
        """Appends src[0:n] to the carried bytes."""
        cdef size_t cap
        cdef uint8_t *grown
        if self.carry_len + n > self.carry_cap:
            cap = max(self.carry_len + n, 2 * self.carry_cap)
            grown = <uint8_t *>realloc(self.carry, cap)
            if grown == NULL:
                raise MemoryError()
            self.carry = grown
            self.carry_cap = cap
        memcpy(self.carry + self.carry_len, src, n)
        self.carry_len += n
        return 0

    cdef int piece(self, const uint8_t *s, size_t n, bint last) except -2:
        """Walks one piece; returns the walk's status. A record cut by the previous piece is
        completed in the carry with just the bytes it lacks; the rest is walked in place."""
        cdef size_t used = 0, take
        cdef int st
        while self.carry_len:
            if n == 0 and not last:
                return PS_OK
            # the cut record's missing bytes, or one byte at a time while its length is cut
            take = self.w.cut_end - self.w.walked - self.carry_len if self.w.cut_end else 1
            take = min(take, n)
            self.keep(s, take)
            s += take
            n -= take
            with nogil:
                st = ps_record_walk_piece(&self.w, self.carry, self.carry_len, last and n == 0, &used)
            if st != PS_OK:
                return st
            memmove(self.carry, self.carry + used, self.carry_len - used)
            self.carry_len -= used
            if n == 0 and last:
                break
        with nogil:
            st = ps_record_walk_piece(&self.w, s, n, last, &used)
        if st == PS_OK and used < n:
            self.keep(s + used, n - used)
        return st


def check_batch(buf, *, bint check_crc=True, bint check_timestamps=False, bint create_time=True,
                int64_t min_timestamp=INT64_MIN, int64_t max_timestamp=INT64_MAX,
                int64_t max_decompressed=MAX_DECOMPRESSED, bint require_key=False):
    """Checks one batch as Kafka's LogValidator does before storing it: None, or a BatchFault.

    Header: sizes, magic, CRC, a record count of at least 1 that matches lastOffsetDelta,
    a sequence for a producer id, a known codec. Records, after decompression for a
    compressed batch (refused as too large once its output passes `max_decompressed`
    bytes, without ever holding the whole output): exactly the declared count, each
    record's lengths and varints inside the batch, offset deltas 0..n-1, and with
    check_timestamps the timestamp rules (CreateTime within [min_timestamp,
    max_timestamp]; no LogAppendTime set by the producer); with require_key (a compacted
    topic) a key on every record: the fault then lists every keyless record (`keyless`).

    check_crc=False leaves the CRC of an uncompressed batch to the caller (the shard checks
    it as it appends) and computes it only to classify a fault: a batch whose records do
    not parse and whose CRC does not match is corrupt, not invalid. A compressed batch's
    CRC is always checked first, before any decompression.
    """
    cdef _BufferView b = _BufferView(buf)
    cdef const uint8_t *p = <const uint8_t *>b.view.buf
    cdef ps_batch_header h
    cdef size_t errpos = 0, total, used = 0
    cdef int st, codec
    cdef _RecordWalker walker = _RecordWalker()
    st = ps_batch_validate(p, <size_t>b.view.len, 0, &h, &errpos)
    if st == PS_ERR_BAD_MAGIC:
        return BatchFault(FAULT_INVALID_RECORD, f"record batches must have magic 2, got {h.magic}", PS_OFF_MAGIC)
    if st != PS_OK and st != PS_ERR_RECORD_COUNT:
        return BatchFault(FAULT_CORRUPT, _STATUS_CLASSES[st][1], errpos)
    total = <size_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
    codec = h.attributes & PS_ATTR_COMPRESSION_MASK
    if (check_crc or codec != 0) and not crc_matches(p, total):
        return BatchFault(FAULT_CORRUPT, "CRC-32C mismatch", PS_OFF_CRC)
    if h.record_count <= 0:
        return BatchFault(FAULT_INVALID_RECORD, f"invalid record count {h.record_count}", PS_OFF_RECORD_COUNT)
    if h.last_offset_delta != h.record_count - 1:
        return BatchFault(FAULT_INVALID_RECORD, f"lastOffsetDelta {h.last_offset_delta} does not match the "
                                                f"record count {h.record_count}", PS_OFF_LAST_OFFSET_DELTA)
    if h.producer_id >= 0 and h.base_sequence < 0:
        return BatchFault(FAULT_INVALID_RECORD, f"invalid sequence number {h.base_sequence} for producer id "
                                                f"{h.producer_id}", PS_OFF_BASE_SEQUENCE)
    if codec > 4:
        return BatchFault(FAULT_INVALID_RECORD, f"unknown compression codec {codec}", PS_OFF_ATTRIBUTES)
    ps_record_walk_init(&walker.w, &h, check_timestamps, create_time, min_timestamp, max_timestamp)
    walker.w.require_key = require_key
    if codec == 0:
        if total - PS_BATCH_HEADER_SIZE >= <size_t>GIL_FREE_BYTES:
            with nogil:
                st = ps_record_walk_piece(&walker.w, p + PS_BATCH_HEADER_SIZE, total - PS_BATCH_HEADER_SIZE, 1, &used)
        else:
            st = ps_record_walk_piece(&walker.w, p + PS_BATCH_HEADER_SIZE, total - PS_BATCH_HEADER_SIZE, 1, &used)
        if st == PS_OK:
            return None
        if not check_crc and not crc_matches(p, total):
            return BatchFault(FAULT_CORRUPT, "CRC-32C mismatch", PS_OFF_CRC)
        return walk_fault(&walker.w, st, &h, min_timestamp, max_timestamp)
    section = memoryview(buf)[PS_BATCH_HEADER_SIZE:total]
    try:
        for chunk in _compression.decompress_chunks(codec, section, max_decompressed):
            if not PyBytes_CheckExact(chunk):
                chunk = bytes(chunk)
            st = walker.piece(<const uint8_t *>PyBytes_AS_STRING(chunk), <size_t>PyBytes_GET_SIZE(chunk), False)
            if st != PS_OK:
                return walk_fault(&walker.w, st, &h, min_timestamp, max_timestamp)
            if walker.w.cut_end > <size_t>max_decompressed:
                # A record claiming to end past the limit: refused now, not once its bytes are held.
                return BatchFault(FAULT_TOO_LARGE, f"{_compression.codec_name(codec)} records section: record "
                                                   f"{walker.w.index} ends at byte {walker.w.cut_end}, past the "
                                                   f"limit of {max_decompressed} bytes", PS_BATCH_HEADER_SIZE,
                                  walker.w.index)
    except _compression.OutputTooLargeError as exc:
        return BatchFault(FAULT_TOO_LARGE, exc.message, PS_BATCH_HEADER_SIZE)
    except _errors.CompressionError as exc:
        return BatchFault(FAULT_INVALID_RECORD, exc.message, PS_BATCH_HEADER_SIZE)
    finally:
        section.release()
    st = walker.piece(<const uint8_t *>"", 0, True)
    if st != PS_OK:
        return walk_fault(&walker.w, st, &h, min_timestamp, max_timestamp)
    return None


cdef bint crc_matches(const uint8_t *p, size_t total):
    cdef uint32_t crc
    if total >= <size_t>GIL_FREE_BYTES:
        with nogil:
            crc = ps_crc32c(0, p + PS_OFF_ATTRIBUTES, total - PS_OFF_ATTRIBUTES)
    else:
        crc = ps_crc32c(0, p + PS_OFF_ATTRIBUTES, total - PS_OFF_ATTRIBUTES)
    return crc == ps_load_be32(p + PS_OFF_CRC)


cdef list decode_records(const uint8_t *s, size_t n, const ps_batch_header *h, size_t pos_base):
    """Builds Record objects from an uncompressed records section."""
    cdef list out = []
    cdef size_t pos = 0, errpos = 0, hp, hend, hkey_pos = 0, hval_pos = 0
    cdef int32_t i, j, hkey_len = 0, hval_len = 0
    cdef int st
    cdef ps_record r
    cdef Record rec
    cdef list headers
    cdef bint log_append_time = (h.attributes & PS_ATTR_TIMESTAMP_TYPE) != 0
    for i in range(h.record_count):
        if pos >= n:
            raise_status(PS_ERR_RECORD_COUNT, pos_base + pos, f"{i} of {h.record_count} records present")
        st = ps_record_parse(s, n, &pos, &r, &errpos)
        if st != PS_OK:
            raise_status(st, pos_base + errpos)
        rec = Record.__new__(Record)
        rec.offset = h.base_offset + r.offset_delta
        rec.timestamp_ms = h.max_timestamp if log_append_time else h.base_timestamp + r.timestamp_delta
        rec.key = None if r.key_len < 0 else PyBytes_FromStringAndSize(<const char *>s + r.key_pos, r.key_len)
        rec.value = None if r.value_len < 0 else PyBytes_FromStringAndSize(<const char *>s + r.value_pos, r.value_len)
        headers = []
        if r.header_count:
            hp = r.headers_pos
            hend = r.end
            for j in range(r.header_count):
                ps_read_bytes_field(s, hend, &hp, 0, &hkey_len, &hkey_pos, &errpos)
                ps_read_bytes_field(s, hend, &hp, 1, &hval_len, &hval_pos, &errpos)
                try:
                    hkey = PyUnicode_DecodeUTF8(<const char *>s + hkey_pos, hkey_len, NULL)
                except UnicodeDecodeError:
                    raise_status(PS_ERR_BAD_RECORD, pos_base + hkey_pos, "header key is not valid UTF-8")
                hval = None if hval_len < 0 else PyBytes_FromStringAndSize(<const char *>s + hval_pos, hval_len)
                headers.append((hkey, hval))
        rec.headers = headers
        out.append(rec)
    if pos != n:
        raise_status(PS_ERR_RECORD_COUNT, pos_base + pos, f"{n - pos} bytes left after {h.record_count} records")
    return out


def decode_batch(buf):
    """Validates one batch and decodes it: returns (BatchHeader, [Record, ...])."""
    cdef _BufferView b = _BufferView(buf)
    cdef ps_batch_header h
    cdef size_t errpos = 0, total
    cdef int st, codec
    cdef const uint8_t *p = <const uint8_t *>b.view.buf
    with nogil:
        st = ps_batch_validate(p, <size_t>b.view.len, 1, &h, &errpos)
    if st != PS_OK:
        raise_status(st, errpos)
    header = BatchHeader.wrap(&h)
    total = <size_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
    codec = h.attributes & PS_ATTR_COMPRESSION_MASK
    if codec == 0:
        return header, decode_records(p + PS_BATCH_HEADER_SIZE, total - PS_BATCH_HEADER_SIZE, &h, PS_BATCH_HEADER_SIZE)
    if codec > 4:
        raise_status(PS_ERR_COMPRESSION, PS_OFF_ATTRIBUTES, f"unknown compression codec {codec}")
    section = memoryview(buf)[PS_BATCH_HEADER_SIZE:total]
    try:
        raw = _compression.decompress(codec, section, max_size=MAX_DECOMPRESSED)
    except _errors.CompressionError as exc:
        raise _errors.CompressionError(exc.message, position=PS_BATCH_HEADER_SIZE) from None
    return header, decode_records(<const uint8_t *>PyBytes_AS_STRING(raw), <size_t>PyBytes_GET_SIZE(raw), &h,
                                  PS_BATCH_HEADER_SIZE)


def iter_batches(data):
    """Decodes back-to-back batches (as read_batches returns them): yields (BatchHeader, records)."""
    cdef Py_ssize_t pos = 0, n
    view = memoryview(data)
    n = len(view)
    while pos < n:
        try:
            header, records = decode_batch(view[pos:])
        except _errors.CorruptBatchError as exc:
            raise type(exc)(exc.message, position=pos + (exc.position or 0)) from None
        yield header, records
        pos += header.size


# --- reading batches in place: the header, the boundaries, a segment file ------------------
#
# The one place above the C headers that knows where a batch's fields sit. The broker (produce,
# fetch), the CLI (log dump/verify), storage/repair.py and the tests read batches through these;
# none of them copies a byte of the batch.

cdef extern from "ps_batch.h" nogil:
    int ps_batch_frame(const uint8_t *p, size_t n, size_t *size)

BATCH_HEADER_SIZE = PS_BATCH_HEADER_SIZE      # 61: no batch is shorter
BATCH_LOG_OVERHEAD = PS_BATCH_LOG_OVERHEAD    # 12: base offset and length, outside batch_length


def peek_batch(buf, Py_ssize_t position=0):
    """The header of the batch at buf[position:], read in place: a BatchHeader (base_offset,
    last_offset, size, record_count, flags, producer fields, timestamps). Nothing past the
    61 header bytes is looked at, so the length, magic and CRC are the caller's to judge;
    ShortBufferError when fewer than 61 bytes are there."""
    cdef _BufferView b = _BufferView(buf)
    cdef ps_batch_header h
    if position < 0 or b.view.len - position < PS_BATCH_HEADER_SIZE:
        raise_status(PS_ERR_SHORT_BUFFER, max(b.view.len, position),
                     f"a batch header needs {PS_BATCH_HEADER_SIZE} bytes at position {position}, "
                     f"the buffer holds {b.view.len}")
    ps_batch_read_header(<const uint8_t *>b.view.buf + position, &h)
    return BatchHeader.wrap(&h)


# Why cut_batches stopped (BatchCut.stop).
CUT_END = "end"            # the buffer ends exactly after the last whole batch
CUT_PARTIAL = "partial"    # a batch cut by the end of the buffer starts at BatchCut.end
CUT_CORRUPT = "corrupt"    # a length smaller than a batch header at BatchCut.end: not a boundary
CUT_OFFSET = "offset"      # the batch at BatchCut.end starts at or past below_offset
CUT_SIZE = "size"          # the batch at BatchCut.end would pass max_bytes

cdef enum:
    CUT_FIELDS = 4         # per batch: start, end, base offset, last offset


cdef class BatchCut:
    """The whole batches at the start of a buffer: `count` of them in buf[0:end], holding
    `records` records (from their last offset deltas), and why the cut stopped there (`stop`:
    one of CUT_*). `bounds` and `offsets` are numpy int64 arrays of shape (count, 2):
    (start, end) positions and (base, last) offsets, built on first use."""
    cdef int64_t *rows
    cdef readonly Py_ssize_t count
    cdef readonly int64_t end
    cdef readonly int64_t records
    cdef readonly str stop

    def __dealloc__(self):
        free(self.rows)

    def __len__(self):
        return self.count

    cdef object _column_pair(self, int first):
        import numpy as np
        out = np.empty((self.count, 2), dtype=np.int64)
        cdef int64_t[:, ::1] view = out
        cdef Py_ssize_t i
        for i in range(self.count):
            view[i, 0] = self.rows[i * CUT_FIELDS + first]
            view[i, 1] = self.rows[i * CUT_FIELDS + first + 1]
        return out

    @property
    def bounds(self):
        return self._column_pair(0)

    @property
    def offsets(self):
        return self._column_pair(2)

    def __iter__(self):
        """(start, end) of each whole batch."""
        cdef Py_ssize_t i
        for i in range(self.count):
            yield self.rows[i * CUT_FIELDS], self.rows[i * CUT_FIELDS + 1]

    def __repr__(self):
        return f"BatchCut(count={self.count}, end={self.end}, records={self.records}, stop={self.stop!r})"


cdef int cut_walk(const uint8_t *p, size_t n, int64_t below_offset, int64_t max_bytes, bint first_whole,
                  BatchCut cut) except -1:
    cdef size_t pos = 0, size = 0, cap = 0
    cdef int st
    cdef int64_t base
    cdef int64_t *grown
    cut.stop = CUT_END
    while pos < n:
        st = ps_batch_frame(p + pos, n - pos, &size)
        if st != PS_OK:
            cut.stop = CUT_PARTIAL if st == PS_ERR_SHORT_BUFFER else CUT_CORRUPT
            break
        base = <int64_t>ps_load_be64(p + pos + PS_OFF_BASE_OFFSET)
        if base >= below_offset:
            cut.stop = CUT_OFFSET
            break
        if <int64_t>(pos + size) > max_bytes and not (first_whole and pos == 0):
            cut.stop = CUT_SIZE
            break
        if <size_t>cut.count == cap:
            cap = cap * 2 if cap else 16
            grown = <int64_t *>realloc(cut.rows, cap * CUT_FIELDS * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            cut.rows = grown
        grown = cut.rows + cut.count * CUT_FIELDS
        grown[0] = <int64_t>pos
        grown[1] = <int64_t>(pos + size)
        grown[2] = base
        grown[3] = base + <int32_t>ps_load_be32(p + pos + PS_OFF_LAST_OFFSET_DELTA)
        cut.records += <int64_t><int32_t>ps_load_be32(p + pos + PS_OFF_LAST_OFFSET_DELTA) + 1
        cut.count += 1
        pos += size
    cut.end = <int64_t>pos
    return 0


def cut_batches(buf, *, int64_t below_offset=INT64_MAX, int64_t max_bytes=INT64_MAX, bint first_whole=True):
    """Cuts back-to-back batches at their boundaries by their length fields (one header read
    per batch, no CRC, no copy): a BatchCut. It stops at a partial tail, at a length that is
    not a batch's, at the first batch whose base offset is `below_offset` or more, or before
    the first batch that would end past `max_bytes` (with first_whole, a first batch larger
    than max_bytes is still taken: KIP-74's rule that a consumer always progresses)."""
    cdef _BufferView b = _BufferView(buf)
    cdef BatchCut cut = BatchCut.__new__(BatchCut)
    cut_walk(<const uint8_t *>b.view.buf, <size_t>b.view.len, below_offset, max_bytes, first_whole, cut)
    return cut


# Why a segment scan stopped (SegmentScanner.stop), past the last whole batch at `.end`.
SCAN_END = "end"           # the file ends there
SCAN_ZEROS = "zeros"       # only zero bytes follow: preallocated space, never written
SCAN_PARTIAL = "partial"   # a batch cut short by the end of the file (a torn tail)
SCAN_CORRUPT = "corrupt"   # a length smaller than a batch header: not a batch boundary


cdef bint all_zero(const uint8_t *p, size_t n) noexcept nogil:
    cdef size_t i
    for i in range(n):
        if p[i]:
            return False
    return True


cdef class SegmentScanner:
    """Iterates the batches of one .log file, memory-mapped (never read whole): yields
    (position, BatchHeader, crc_ok) for every whole batch in file order, whatever its magic
    or CRC (judging them is the caller's), and stops where the framing stops. After the
    loop, `end` is where the whole batches end, `size` the file's size and `stop` why
    (SCAN_*). `batch(position, header)` is a memoryview of one batch while the scanner is
    open; use it as a context manager (or exhaust it) to unmap the file."""
    cdef readonly str path
    cdef readonly int64_t size
    cdef readonly int64_t end
    cdef readonly str stop
    cdef object mm
    cdef object view
    cdef Py_buffer buf
    cdef bint held

    def __init__(self, path, Py_ssize_t position=0):
        import mmap
        import os
        self.path = os.fspath(path)
        self.end = position
        self.stop = None
        with open(self.path, "rb") as f:
            self.size = os.fstat(f.fileno()).st_size
            if self.size > 0:
                self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if self.mm is not None:
            PyObject_GetBuffer(self.mm, &self.buf, PyBUF_SIMPLE)
            self.held = True

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.buf)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Unmaps the file; views handed out by batch() must be released first."""
        if self.view is not None:
            self.view.release()
            self.view = None
        if self.held:
            PyBuffer_Release(&self.buf)
            self.held = False
        if self.mm is not None:
            self.mm.close()
            self.mm = None

    def batch(self, int64_t position, BatchHeader header):
        """The bytes of the batch at position (as yielded), without a copy."""
        if not self.held:
            raise ValueError(f"the scan of {self.path} is closed")
        if self.view is None:
            self.view = memoryview(self.mm)
        return self.view[position:position + header.size]

    def __iter__(self):
        cdef const uint8_t *p
        cdef size_t n, pos = <size_t>self.end, size = 0
        cdef int st
        cdef bint crc_ok
        cdef ps_batch_header h
        if not self.held:
            self.stop = SCAN_END
            return
        p = <const uint8_t *>self.buf.buf
        n = <size_t>self.buf.len
        while pos < n:
            st = ps_batch_frame(p + pos, n - pos, &size)
            if st != PS_OK:
                if all_zero(p + pos, n - pos):
                    self.stop = SCAN_ZEROS
                else:
                    self.stop = SCAN_PARTIAL if st == PS_ERR_SHORT_BUFFER else SCAN_CORRUPT
                return
            ps_batch_read_header(p + pos, &h)
            crc_ok = crc_matches(p + pos, size)
            yield <int64_t>pos, BatchHeader.wrap(&h), crc_ok
            if not self.held:
                return     # closed by the caller
            pos += size
            self.end = <int64_t>pos
        self.stop = SCAN_END


def scan_segment(path, Py_ssize_t position=0):
    """A SegmentScanner over the .log file at path, from `position` (a batch boundary)."""
    return SegmentScanner(path, position)
