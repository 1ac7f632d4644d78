# Columnar reads: back-to-back record batches -> numpy arrays, without a Python object
# per record (Partition.read_columns in pstream/log.py drives this over read_batches).
#
# ColumnsBuilder takes the bytes read_batches returns, one read at a time, and lists the
# batches to decode: it walks their headers, skips control batches and batches wholly
# below the start offset, decompresses compressed sections (one bytes object per batch,
# kept alive here) and stops at max_records / max_bytes. finish() then works in two
# passes with the GIL released: the first parses every listed record once (the checks
# decode_batch makes) into the fixed-width columns, sized by the listed record counts,
# and sums the key and value lengths; the second copies the keys and values into buffers
# allocated to exactly those sums.
#
# Layout of a RecordColumns of n records (Arrow's large-binary layout for keys/values):
#   offsets, timestamps          int64[n]
#   key_lengths, value_lengths   int32[n], -1 for a null key/value
#   header_counts                int32[n]
#   key_offsets, value_offsets   int64[n + 1]: record i's bytes are keys[key_offsets[i]:key_offsets[i + 1]]
#                                (empty for a null; key_offsets[0] == 0, key_offsets[n] == len(keys))
#   keys, values                 uint8, every record's bytes back to back

from libc.stdint cimport intptr_t
cimport numpy as cnp

cnp.import_array()

cdef extern from "ps_utf8.h" nogil:
    size_t ps_utf8_check(const uint8_t *s, size_t n)

cdef size_t MIN_RECORD_BYTES = 7     # length, attributes, timestamp, offset, key, value, header count
cdef Py_ssize_t COLUMNS_READ_BYTES = 1 << 20   # read_batches size per call while filling a budget


cdef struct ColumnSection:
    const uint8_t *records      # the uncompressed records section
    size_t length
    ps_batch_header h
    int64_t position            # the batch's position in what was added (for errors)


cdef struct ColumnTotals:
    int64_t count               # records taken
    int64_t key_bytes
    int64_t value_bytes
    int64_t stop_offset         # the first record not taken for max_records (-1: none)
    int status                  # a record that does not parse: status, section and position
    size_t fault_section
    size_t fault_pos


cdef struct ColumnArrays:
    int64_t *offsets
    int64_t *timestamps
    int32_t *key_lengths
    int32_t *value_lengths
    int32_t *header_counts
    int64_t *key_offsets
    int64_t *value_offsets
    uint8_t *keys
    uint8_t *values


cdef class RecordColumns:
    """Records of a range of the log as numpy arrays (see read_columns).

    offsets/timestamps int64; key_lengths/value_lengths int32 (-1: null); header_counts
    int32; keys/values uint8, every record's bytes back to back, record i's at
    key_offsets[i]:key_offsets[i + 1] (int64, n + 1 entries, as Arrow's large binary).
    next_offset: where the next read goes on (past skipped control batches).
    """
    cdef readonly object offsets
    cdef readonly object timestamps
    cdef readonly object key_lengths
    cdef readonly object value_lengths
    cdef readonly object header_counts
    cdef readonly object key_offsets
    cdef readonly object value_offsets
    cdef readonly object keys
    cdef readonly object values
    cdef readonly int64_t next_offset

    def __len__(self):
        return len(self.offsets)

    def key(self, Py_ssize_t i):
        """Record i's key as bytes, or None."""
        return self._field(self.key_lengths, self.key_offsets, self.keys, i)

    def value(self, Py_ssize_t i):
        """Record i's value as bytes, or None."""
        return self._field(self.value_lengths, self.value_offsets, self.values, i)

    cdef object _field(self, lengths, starts, data, Py_ssize_t i):
        cdef Py_ssize_t n = len(self.offsets)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"record {i} of {n}")
        if lengths[i] < 0:
            return None
        return data[starts[i]:starts[i + 1]].tobytes()

    def __repr__(self):
        n = len(self.offsets)
        span = f"offsets {self.offsets[0]}..{self.offsets[n - 1]}" if n else "no records"
        return (f"RecordColumns({n} records, {span}, {len(self.keys)} key bytes, {len(self.values)} value bytes, "
                f"next_offset={self.next_offset})")


cdef class ColumnsBuilder:
    """Lists the batches of one columnar read, then decodes them into a RecordColumns.

    start: the first offset wanted (records below it are skipped); max_records: -1 for
    no limit; max_bytes: the stored batch bytes to take (the first batch is always taken,
    whatever its size, so a read makes progress, as Kafka's fetch); check_crc: whether
    add() checks each batch's CRC (read_batches already has).
    """
    cdef int64_t start
    cdef int64_t max_records
    cdef int64_t max_bytes
    cdef bint check_crc
    cdef int64_t taken_bytes
    cdef int64_t listed_records    # at least this many records at or past start are listed
    cdef int64_t capacity          # at most this many records are listed
    cdef readonly int64_t next_offset
    cdef readonly bint wants_more
    cdef ColumnSection *sections
    cdef size_t n_sections, cap_sections
    cdef list keep                 # what the sections point into: added data, decompressed sections
    cdef bint finished

    def __cinit__(self, int64_t start, int64_t max_records=-1, int64_t max_bytes=INT64_MAX, bint check_crc=True):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if max_records < -1:
            raise ValueError(f"max_records must be >= 0 (-1: no limit), got {max_records}")
        self.start = start
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.check_crc = check_crc
        self.next_offset = start
        self.wants_more = max_records != 0
        self.keep = []

    def __dealloc__(self):
        free(self.sections)

    @property
    def read_size(self):
        """How many bytes the next read_batches call should ask for."""
        cdef int64_t left = self.max_bytes - self.taken_bytes
        return max(1, min(left, COLUMNS_READ_BYTES))

    cdef int _list(self, const uint8_t *records, size_t length, const ps_batch_header *h,
                   int64_t position) except -1:
        cdef ColumnSection *grown
        cdef size_t cap
        if self.n_sections == self.cap_sections:
            cap = self.cap_sections * 2 if self.cap_sections else 64
            grown = <ColumnSection *>realloc(self.sections, cap * sizeof(ColumnSection))
            if grown == NULL:
                raise MemoryError()
            self.sections = grown
            self.cap_sections = cap
        self.sections[self.n_sections].records = records
        self.sections[self.n_sections].length = length
        self.sections[self.n_sections].h = h[0]
        self.sections[self.n_sections].position = position
        self.n_sections += 1
        # A record takes at least 7 bytes: a hostile count cannot size the columns.
        self.capacity += min(<int64_t>h.record_count, <int64_t>(length // MIN_RECORD_BYTES))
        return 0

    def add(self, data):
        """Lists the batches of data (back-to-back batches) until max_records or max_bytes
        is met; returns wants_more (False once a limit is met or data was not all taken)."""
        cdef _BufferView b = _BufferView(data)
        cdef const uint8_t *p = <const uint8_t *>b.view.buf
        cdef size_t n = <size_t>b.view.len, pos = 0, total, errpos = 0
        cdef ps_batch_header h
        cdef int st, codec
        cdef int64_t below, size
        if self.finished:
            raise RuntimeError("the columns are already built")
        if not self.wants_more:
            return False
        self.keep.append(data)
        while pos < n:
            # Past the first batch, only whole batches that fit what is left of max_bytes.
            if self.taken_bytes and n - pos >= PS_BATCH_LOG_OVERHEAD:
                size = <int64_t><int32_t>ps_load_be32(p + pos + PS_OFF_LENGTH) + PS_BATCH_LOG_OVERHEAD
                if self.taken_bytes + size > self.max_bytes:
                    self.wants_more = False
                    break
            with nogil:
                st = ps_batch_validate(p + pos, n - pos, self.check_crc, &h, &errpos)
            if st == PS_OK and h.last_offset_delta < 0:
                st = PS_ERR_RECORD_COUNT
                errpos = PS_OFF_LAST_OFFSET_DELTA
            if st != PS_OK:
                raise_status(st, pos + errpos, f"in the batch at byte {pos} (base offset {h.base_offset})")
            total = <size_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
            codec = h.attributes & PS_ATTR_COMPRESSION_MASK
            if not (h.attributes & PS_ATTR_CONTROL) and h.record_count > 0 \
                    and h.base_offset + h.last_offset_delta >= self.start:
                if codec == 0:
                    self._list(p + pos + PS_BATCH_HEADER_SIZE, total - PS_BATCH_HEADER_SIZE, &h, pos)
                else:
                    self._list_compressed(data, pos, total, codec, &h)
                # A lower bound of the records at or past start: offset deltas rise.
                below = self.start - h.base_offset if self.start > h.base_offset else 0
                if h.record_count > below:
                    self.listed_records += h.record_count - below
            self.taken_bytes += total
            self.next_offset = h.base_offset + h.last_offset_delta + 1
            pos += total
            if 0 <= self.max_records <= self.listed_records:
                self.wants_more = False
                break
        if self.taken_bytes >= self.max_bytes:
            self.wants_more = False
        return self.wants_more

    cdef int _list_compressed(self, object data, size_t pos, size_t total, int codec,
                              const ps_batch_header *h) except -1:
        if codec > 4:
            raise_status(PS_ERR_COMPRESSION, pos + PS_OFF_ATTRIBUTES, f"unknown compression codec {codec} in the "
                                                                      f"batch at base offset {h.base_offset}")
        section = memoryview(data)[pos + PS_BATCH_HEADER_SIZE:pos + total]
        try:
            raw = _compression.decompress(codec, section, max_size=MAX_DECOMPRESSED)
        except _errors.CompressionError as exc:
            raise _errors.CompressionError(f"{exc.message} (the batch at base offset {h.base_offset})",
                                           position=pos + PS_BATCH_HEADER_SIZE) from None
        finally:
            section.release()
        if not PyBytes_CheckExact(raw):
            raw = bytes(raw)
        self.keep.append(raw)
        self._list(<const uint8_t *>PyBytes_AS_STRING(raw), <size_t>PyBytes_GET_SIZE(raw), h, pos)
        return 0

    def finish(self):
        """Decodes the listed batches: returns a RecordColumns (the builder is spent)."""
        cdef ColumnTotals t
        cdef RecordColumns out = RecordColumns.__new__(RecordColumns)
        cdef ColumnSection *sec
        cdef ColumnArrays a
        cdef cnp.npy_intp n = self.capacity, n1 = self.capacity + 1, nbytes
        if self.finished:
            raise RuntimeError("the columns are already built")
        self.finished = True
        out.offsets = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT64, 0)
        out.timestamps = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT64, 0)
        out.key_lengths = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT32, 0)
        out.value_lengths = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT32, 0)
        out.header_counts = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT32, 0)
        out.key_offsets = cnp.PyArray_EMPTY(1, &n1, cnp.NPY_INT64, 0)
        out.value_offsets = cnp.PyArray_EMPTY(1, &n1, cnp.NPY_INT64, 0)
        a.offsets = <int64_t *>cnp.PyArray_DATA(out.offsets)
        a.timestamps = <int64_t *>cnp.PyArray_DATA(out.timestamps)
        a.key_lengths = <int32_t *>cnp.PyArray_DATA(out.key_lengths)
        a.value_lengths = <int32_t *>cnp.PyArray_DATA(out.value_lengths)
        a.header_counts = <int32_t *>cnp.PyArray_DATA(out.header_counts)
        a.key_offsets = <int64_t *>cnp.PyArray_DATA(out.key_offsets)
        a.value_offsets = <int64_t *>cnp.PyArray_DATA(out.value_offsets)
        with nogil:
            columns_parse(self.sections, self.n_sections, self.start, self.max_records, n, &a, &t)
        if t.status != PS_OK:
            sec = &self.sections[t.fault_section]
            # inside a compressed section: 61 + the position in its decompressed records
            raise_status(t.status, sec.position + PS_BATCH_HEADER_SIZE + <int64_t>t.fault_pos,
                         f"in the batch at base offset {sec.h.base_offset}")
        nbytes = t.key_bytes
        out.keys = cnp.PyArray_EMPTY(1, &nbytes, cnp.NPY_UINT8, 0)
        nbytes = t.value_bytes
        out.values = cnp.PyArray_EMPTY(1, &nbytes, cnp.NPY_UINT8, 0)
        a.keys = <uint8_t *>cnp.PyArray_DATA(out.keys)
        a.values = <uint8_t *>cnp.PyArray_DATA(out.values)
        with nogil:
            columns_copy(&a, t.count)
        if t.count < n:   # records below start or past max_records: give back what they were sized for
            for column in (out.offsets, out.timestamps, out.key_lengths, out.value_lengths, out.header_counts):
                column.resize(t.count, refcheck=False)
            out.key_offsets.resize(t.count + 1, refcheck=False)
            out.value_offsets.resize(t.count + 1, refcheck=False)
        out.next_offset = t.stop_offset if t.stop_offset >= 0 else self.next_offset
        # The sections' bytes are no longer needed.
        self.keep = None
        free(self.sections)
        self.sections = NULL
        self.n_sections = 0
        return out


cdef void columns_parse(const ColumnSection *sections, size_t n_sections, int64_t start, int64_t max_records,
                        int64_t capacity, ColumnArrays *a, ColumnTotals *t) noexcept nogil:
    """Pass one: parses every listed record with the checks decode_batch makes (up to the
    record where max_records stops; -1: no limit) and writes the records at or past start
    into the fixed-width columns. Until pass two, key_offsets[j] and value_offsets[j] hold
    the address of record j's key and value in its section (no scratch memory)."""
    cdef size_t k, pos, errpos = 0
    cdef int32_t i
    cdef int st
    cdef int64_t off, j = 0
    cdef ps_record r
    cdef const ColumnSection *sec
    cdef bint log_append_time
    t.stop_offset = -1
    t.status = PS_OK
    t.key_bytes = 0
    t.value_bytes = 0
    for k in range(n_sections):
        sec = &sections[k]
        log_append_time = (sec.h.attributes & PS_ATTR_TIMESTAMP_TYPE) != 0
        pos = 0
        for i in range(sec.h.record_count):
            if pos >= sec.length:
                columns_fault(t, PS_ERR_RECORD_COUNT, k, pos, j)
                return
            st = ps_record_parse(sec.records, sec.length, &pos, &r, &errpos)
            if st == PS_OK and r.header_count:
                st = header_keys_utf8(sec.records, &r, &errpos)
            if st != PS_OK:
                columns_fault(t, st, k, errpos, j)
                return
            off = sec.h.base_offset + r.offset_delta
            if off < start:
                continue
            if j == max_records:
                t.stop_offset = off
                t.count = j
                return
            if j == capacity:   # cannot happen: every record takes MIN_RECORD_BYTES
                columns_fault(t, PS_ERR_RECORD_COUNT, k, pos, j)
                return
            a.offsets[j] = off
            a.timestamps[j] = sec.h.max_timestamp if log_append_time else sec.h.base_timestamp + r.timestamp_delta
            a.key_lengths[j] = r.key_len
            a.value_lengths[j] = r.value_len
            a.header_counts[j] = r.header_count
            a.key_offsets[j] = <int64_t><intptr_t>(sec.records + r.key_pos)
            a.value_offsets[j] = <int64_t><intptr_t>(sec.records + r.value_pos)
            if r.key_len > 0:
                t.key_bytes += r.key_len
            if r.value_len > 0:
                t.value_bytes += r.value_len
            j += 1
        if pos != sec.length:
            columns_fault(t, PS_ERR_RECORD_COUNT, k, pos, j)
            return
    t.count = j


cdef void columns_copy(ColumnArrays *a, int64_t count) noexcept nogil:
    """Pass two: every record's key and value from the address pass one left in
    key_offsets/value_offsets to the buffers it sized; the offsets become positions."""
    cdef int64_t j, kpos = 0, vpos = 0
    cdef const uint8_t *src
    for j in range(count):
        src = <const uint8_t *><intptr_t>a.key_offsets[j]
        a.key_offsets[j] = kpos
        if a.key_lengths[j] > 0:
            memcpy(a.keys + kpos, src, <size_t>a.key_lengths[j])
            kpos += a.key_lengths[j]
        src = <const uint8_t *><intptr_t>a.value_offsets[j]
        a.value_offsets[j] = vpos
        if a.value_lengths[j] > 0:
            memcpy(a.values + vpos, src, <size_t>a.value_lengths[j])
            vpos += a.value_lengths[j]
    a.key_offsets[count] = kpos
    a.value_offsets[count] = vpos


cdef int header_keys_utf8(const uint8_t *s, const ps_record *r, size_t *errpos) noexcept nogil:
    """Header keys are UTF-8 strings: decode_batch refuses a record whose key is not."""
    cdef size_t hp = r.headers_pos, key_pos = 0, value_pos = 0
    cdef int32_t j, key_len = 0, value_len = 0
    for j in range(r.header_count):
        ps_read_bytes_field(s, r.end, &hp, 0, &key_len, &key_pos, errpos)   # parsed already: cannot fail
        ps_read_bytes_field(s, r.end, &hp, 1, &value_len, &value_pos, errpos)
        if ps_utf8_check(s + key_pos, <size_t>key_len) != <size_t>key_len:
            errpos[0] = key_pos
            return PS_ERR_BAD_RECORD
    return PS_OK


cdef inline void columns_fault(ColumnTotals *t, int status, size_t section, size_t pos, int64_t count) noexcept nogil:
    t.count = count
    t.status = status
    t.fault_section = section
    t.fault_pos = pos


def columns_from_batches(data, int64_t offset=INT64_MIN, max_records=None, bint check_crc=True):
    """Back-to-back batches (as read_batches returns them, or a fetch response's records)
    as a RecordColumns: records from `offset` on, control batches skipped, at most
    max_records. Corrupt input raises the pstream.errors class decode_batch raises."""
    cdef ColumnsBuilder builder = ColumnsBuilder(offset, -1 if max_records is None else max_records,
                                                 INT64_MAX, check_crc)
    builder.add(data)
    return builder.finish()
