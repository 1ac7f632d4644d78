# Columnar reads: back-to-back record batches -> numpy arrays, without a Python object
# per record (Partition.read_columns in pstream/log.py drives this over read_batches).
#
# ColumnsBuilder takes the bytes read_batches returns, one read at a time. For each read
# it walks the batch headers (with the GIL: one step per batch), skips control batches
# and batches wholly below the start offset, decompresses compressed sections (one bytes
# object per batch) and lists the records sections to decode, up to max_records and
# max_bytes; then one pass with the GIL released parses every listed record once (the
# checks decode_batch makes) and appends it to the columns. Before that pass the columns
# (plain C buffers) are grown with realloc to hold everything the read can add (its
# record count, and its section bytes for keys and values; room never written costs
# address space, not memory), so the pass never allocates; finish() trims them to size
# and hands each to a numpy array that frees it. The read's bytes are let go once
# decoded: the peak is the columns plus one read.
#
# Layout of a RecordColumns of n records (Arrow's large-binary layout for keys/values):
#   offsets, timestamps          int64[n]
#   key_lengths, value_lengths   int32[n], -1 for a null key/value
#   header_counts                int32[n]
#   key_offsets, value_offsets   int64[n + 1]: record i's bytes are keys[key_offsets[i]:key_offsets[i + 1]]
#                                (empty for a null; key_offsets[0] == 0, key_offsets[n] == len(keys))
#   keys, values                 uint8, every record's bytes back to back

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
    int64_t position            # the batch's position in the read (for errors)


cdef struct ColumnFill:
    # the columns' memory (malloc'ed, moved by realloc as it grows)
    int64_t *offsets
    int64_t *timestamps
    int32_t *key_lengths
    int32_t *value_lengths
    int32_t *header_counts
    int64_t *key_offsets
    int64_t *value_offsets
    uint8_t *keys
    uint8_t *values
    # what is filled, and the room there is
    int64_t count
    int64_t key_bytes
    int64_t value_bytes
    int64_t cap_records
    int64_t cap_key_bytes
    int64_t cap_value_bytes
    int64_t stop_offset         # the first record left out for max_records (-1: none yet)
    int status                  # a record that does not parse: status, section and position
    size_t fault_section
    size_t fault_pos


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
    """Decodes the batches of one columnar read into growing columns (see the top of columns.pxi).

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
    cdef readonly int64_t next_offset
    cdef readonly bint wants_more
    cdef bint finished
    # the sections of the read being added, and what they point into
    cdef ColumnSection *sections
    cdef size_t n_sections, cap_sections
    cdef list keep
    # the columns, malloc'ed here until finish() hands them to numpy arrays
    cdef ColumnFill f

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
        self.f.stop_offset = -1
        self._reserve(0, 0)
        self.f.key_offsets[0] = 0
        self.f.value_offsets[0] = 0

    def __dealloc__(self):
        free(self.sections)
        free(self.f.offsets)
        free(self.f.timestamps)
        free(self.f.key_lengths)
        free(self.f.value_lengths)
        free(self.f.header_counts)
        free(self.f.key_offsets)
        free(self.f.value_offsets)
        free(self.f.keys)
        free(self.f.values)

    @property
    def read_size(self):
        """How many bytes the next read_batches call should ask for."""
        cdef int64_t left = self.max_bytes - self.taken_bytes
        return max(1, min(left, COLUMNS_READ_BYTES))

    cdef int _reserve(self, int64_t records, int64_t section_bytes) except -1:
        """Grows the columns (at least doubling; realloc moves no bytes of a large block)
        to take `records` more records whose keys, and values, fit in section_bytes."""
        cdef int64_t need = self.f.count + records
        if need > self.f.cap_records or self.f.offsets == NULL:
            need = max(need, 2 * self.f.cap_records)
            grow_column(<void **>&self.f.offsets, need, sizeof(int64_t))
            grow_column(<void **>&self.f.timestamps, need, sizeof(int64_t))
            grow_column(<void **>&self.f.key_lengths, need, sizeof(int32_t))
            grow_column(<void **>&self.f.value_lengths, need, sizeof(int32_t))
            grow_column(<void **>&self.f.header_counts, need, sizeof(int32_t))
            grow_column(<void **>&self.f.key_offsets, need + 1, sizeof(int64_t))
            grow_column(<void **>&self.f.value_offsets, need + 1, sizeof(int64_t))
            self.f.cap_records = need
        need = self.f.key_bytes + section_bytes
        if need > self.f.cap_key_bytes or self.f.keys == NULL:
            need = max(need, 2 * self.f.cap_key_bytes)
            grow_column(<void **>&self.f.keys, need, 1)
            self.f.cap_key_bytes = need
        need = self.f.value_bytes + section_bytes
        if need > self.f.cap_value_bytes or self.f.values == NULL:
            need = max(need, 2 * self.f.cap_value_bytes)
            grow_column(<void **>&self.f.values, need, 1)
            self.f.cap_value_bytes = need
        return 0

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
        return 0

    def add(self, data):
        """Decodes the batches of data (back-to-back batches) until max_records or
        max_bytes is met; returns wants_more (False once a limit is met or data was not
        all taken)."""
        cdef _BufferView b = _BufferView(data)
        cdef const uint8_t *p = <const uint8_t *>b.view.buf
        cdef size_t n = <size_t>b.view.len, pos = 0, total, errpos = 0
        cdef ps_batch_header h
        cdef int st, codec
        cdef int64_t below, size, records = 0, section_bytes = 0
        cdef int64_t listed = self.f.count   # at least this many records at or past start are listed
        cdef ColumnSection *sec
        if self.finished:
            raise RuntimeError("the columns are already built")
        if not self.wants_more:
            return False
        self.n_sections = 0
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
                sec = &self.sections[self.n_sections - 1]
                # A record takes at least MIN_RECORD_BYTES: a hostile count cannot size the columns.
                records += min(<int64_t>h.record_count, <int64_t>(sec.length // MIN_RECORD_BYTES))
                section_bytes += <int64_t>sec.length
                # Offset deltas rise: at most start - base_offset records lie below start.
                below = self.start - h.base_offset if self.start > h.base_offset else 0
                if h.record_count > below:
                    listed += h.record_count - below
            self.taken_bytes += total
            self.next_offset = h.base_offset + h.last_offset_delta + 1
            pos += total
            if 0 <= self.max_records <= listed:
                self.wants_more = False
                break
        if self.taken_bytes >= self.max_bytes:
            self.wants_more = False
        try:
            self._decode(records, section_bytes)
        finally:
            self.keep = []
            self.n_sections = 0
        return self.wants_more

    cdef int _decode(self, int64_t records, int64_t section_bytes) except -1:
        cdef ColumnSection *sec
        if self.n_sections == 0:
            return 0
        self._reserve(records, section_bytes)
        with nogil:
            columns_append(self.sections, self.n_sections, self.start, self.max_records, &self.f)
        if self.f.status != PS_OK:
            self.finished = True
            sec = &self.sections[self.f.fault_section]
            # inside a compressed section: 61 + the position in its decompressed records
            raise_status(self.f.status, sec.position + PS_BATCH_HEADER_SIZE + <int64_t>self.f.fault_pos,
                         f"in the batch at base offset {sec.h.base_offset}")
        if self.f.stop_offset >= 0:
            self.next_offset = self.f.stop_offset
        if self.f.count == self.max_records:
            self.wants_more = False
        return 0

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
        """The columns, trimmed to size, as a RecordColumns (the builder is spent)."""
        cdef RecordColumns out = RecordColumns.__new__(RecordColumns)
        cdef int64_t n = self.f.count
        if self.finished:
            raise RuntimeError("the columns are already built")
        self.finished = True
        out.offsets = column_array(<void **>&self.f.offsets, n, cnp.NPY_INT64, sizeof(int64_t))
        out.timestamps = column_array(<void **>&self.f.timestamps, n, cnp.NPY_INT64, sizeof(int64_t))
        out.key_lengths = column_array(<void **>&self.f.key_lengths, n, cnp.NPY_INT32, sizeof(int32_t))
        out.value_lengths = column_array(<void **>&self.f.value_lengths, n, cnp.NPY_INT32, sizeof(int32_t))
        out.header_counts = column_array(<void **>&self.f.header_counts, n, cnp.NPY_INT32, sizeof(int32_t))
        out.key_offsets = column_array(<void **>&self.f.key_offsets, n + 1, cnp.NPY_INT64, sizeof(int64_t))
        out.value_offsets = column_array(<void **>&self.f.value_offsets, n + 1, cnp.NPY_INT64, sizeof(int64_t))
        out.keys = column_array(<void **>&self.f.keys, self.f.key_bytes, cnp.NPY_UINT8, 1)
        out.values = column_array(<void **>&self.f.values, self.f.value_bytes, cnp.NPY_UINT8, 1)
        out.next_offset = self.next_offset
        return out


cdef class _ColumnMemory:
    """Owns a column's malloc'ed memory for the numpy array built over it (its base)."""
    cdef void *data

    def __dealloc__(self):
        free(self.data)


cdef int grow_column(void **column, int64_t count, size_t item) except -1:
    cdef void *grown = realloc(column[0], <size_t>max(count, 1) * item)
    if grown == NULL:
        raise MemoryError(f"cannot grow a column to {count} entries")
    column[0] = grown
    return 0


cdef object column_array(void **column, int64_t count, int typenum, size_t item):
    """A 1-D array of `count` items over the column's memory, trimmed to size; the
    array's base owns the memory from now on (*column becomes NULL)."""
    cdef cnp.npy_intp n = count
    cdef _ColumnMemory owner = _ColumnMemory.__new__(_ColumnMemory)
    grow_column(column, count, item)   # realloc to a smaller size: trims in place
    owner.data = column[0]
    column[0] = NULL
    array = cnp.PyArray_SimpleNewFromData(1, &n, typenum, owner.data)
    cnp.set_array_base(array, owner)
    return array


cdef void columns_append(const ColumnSection *sections, size_t n_sections, int64_t start, int64_t max_records,
                         ColumnFill *f) noexcept nogil:
    """Parses every listed record with the checks decode_batch makes (up to the record
    where max_records stops; -1: no limit) and appends those at or past start."""
    cdef size_t k, pos, errpos = 0
    cdef int32_t i
    cdef int st
    cdef int64_t off, j = f.count
    cdef ps_record r
    cdef const ColumnSection *sec
    cdef bint log_append_time
    for k in range(n_sections):
        sec = &sections[k]
        log_append_time = (sec.h.attributes & PS_ATTR_TIMESTAMP_TYPE) != 0
        pos = 0
        for i in range(sec.h.record_count):
            if pos >= sec.length:
                columns_fault(f, PS_ERR_RECORD_COUNT, k, pos, j)
                return
            st = ps_record_parse(sec.records, sec.length, &pos, &r, &errpos)
            if st == PS_OK and r.header_count:
                st = header_keys_utf8(sec.records, &r, &errpos)
            if st != PS_OK:
                columns_fault(f, st, k, errpos, j)
                return
            off = sec.h.base_offset + r.offset_delta
            if off < start:
                continue
            if j == max_records:
                f.stop_offset = off
                f.count = j
                return
            # Room was made for the whole read; this holds unless that sizing is wrong.
            if j == f.cap_records or f.key_bytes + r.key_len > f.cap_key_bytes \
                    or f.value_bytes + r.value_len > f.cap_value_bytes:
                columns_fault(f, PS_ERR_TOO_LARGE, k, pos, j)
                return
            f.offsets[j] = off
            f.timestamps[j] = sec.h.max_timestamp if log_append_time else sec.h.base_timestamp + r.timestamp_delta
            f.key_lengths[j] = r.key_len
            f.value_lengths[j] = r.value_len
            f.header_counts[j] = r.header_count
            if r.key_len > 0:
                memcpy(f.keys + f.key_bytes, sec.records + r.key_pos, <size_t>r.key_len)
                f.key_bytes += r.key_len
            if r.value_len > 0:
                memcpy(f.values + f.value_bytes, sec.records + r.value_pos, <size_t>r.value_len)
                f.value_bytes += r.value_len
            j += 1
            f.key_offsets[j] = f.key_bytes
            f.value_offsets[j] = f.value_bytes
        if pos != sec.length:
            columns_fault(f, PS_ERR_RECORD_COUNT, k, pos, j)
            return
    f.count = j


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


cdef inline void columns_fault(ColumnFill *f, int status, size_t section, size_t pos, int64_t count) noexcept nogil:
    f.count = count
    f.status = status
    f.fault_section = section
    f.fault_pos = pos


def columns_from_batches(data, int64_t offset=INT64_MIN, max_records=None, bint check_crc=True):
    """Back-to-back batches (as read_batches returns them, or a fetch response's records)
    as a RecordColumns: records from `offset` on, control batches skipped, at most
    max_records. Corrupt input raises the pstream.errors class decode_batch raises."""
    cdef ColumnsBuilder builder = ColumnsBuilder(offset, -1 if max_records is None else max_records,
                                                 INT64_MAX, check_crc)
    builder.add(data)
    return builder.finish()
