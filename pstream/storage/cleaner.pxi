# The log cleaner: one compaction pass over a partition (Kafka's Cleaner), and the
# crash-safe swap of cleaned segments.
#
# A pass (Partition.clean -> clean_partition):
#  1. Cleanable range, under the shard mutex: from the log start to the first uncleanable
#     offset, which is the lowest of: the active segment's base, the first segment not yet
#     finalized or not wholly durable, and the first dirty segment holding a record newer
#     than min_compaction_lag_ms (its max timestamp). The dirty section starts at the cleaner
#     checkpoint (the first dirty offset, file `cleaner-offset-checkpoint`).
#  2. Offset map: the dirty section's keys -> their latest offset, in a fixed buffer
#     (dedupe_buffer_bytes). If it fills, the pass stops at the last segment fully mapped
#     (within the first dirty segment: at the last whole batch, as Kafka does, so every pass
#     makes progress).
#  3. Producers: the last batch of each producer id in the range, so a producer's last
#     batch survives as an empty batch when all its records go (Kafka keeps it for producer
#     state; this keeps one per producer in the range, a superset of Kafka's rule).
#  4. Rewrite: the segments from the log start to the end of the mapped range, grouped so a
#     group's total size stays within segment_bytes (Kafka's groupSegmentsBySize), each group
#     into one `.cleaned` file. A record stays when it has a key, no later record in the map
#     has that key, and it is not a tombstone past its delete horizon. Offsets never change:
#     a batch keeps its base offset and last offset delta (Kafka's MemoryRecords.filterTo),
#     with its CRC recomputed; a compressed batch is recompressed with its codec; a batch that
#     loses nothing is copied as it is. Records of aborted transactions go (they are not mapped
#     either, so a key keeps its latest committed value), as Kafka's cleaner drops them; control
#     batches are kept (Kafka removes markers later still; they cost 78 bytes each). No segment
#     reaching past the last stable offset is cleaned: an open transaction may still abort.
#     Tombstones follow KIP-534 (Kafka 3.1+): the first pass that keeps a batch with a tombstone
#     stamps it with a delete horizon, now + delete_retention_ms, in its base timestamp (flag
#     0x40 in its attributes; record timestamps are rewritten as deltas from it, so they read
#     the same); a pass after the horizon drops the tombstones.
#  5. Swap, group by group (the old segments stay readable until the new one is installed):
#       write B.log.cleaned, fdatasync
#       rename to B-E.log.swap, fsync the directory      (B..E: the offsets the old ones held)
#       install the new segment in the segment list (mutex held); its descriptors are opened
#         from the .swap path first, and the pass holds a reference to it until the rename
#         below, so no reader ever opens a path that is about to change
#       unlink the old segments' files, fsync the directory
#       rename B-E.log.swap to B.log, fsync the directory; write its index files
#     At open (recover_cleaner_files): a `.cleaned` file is deleted (the old segments are
#     whole); a `.swap` file finishes its swap (every .log in [B, E) deleted, the .swap
#     renamed), so a kill -9 anywhere leaves the old segments or the new one, never both.
#  6. The checkpoint moves to the end of the mapped range.
#
# Readers see, offset by offset, either the old or the cleaned data: both hold every key's
# latest value at or after any offset.

import time as _time

cdef int64_t READ_WINDOW = 1 << 20
cdef int64_t WRITE_BUFFER = 1 << 20
cdef int64_t MAX_GROUP_OFFSETS = 0x7fffffff     # index entries hold 32-bit relative offsets
CLEANER_CHECKPOINT = "cleaner-offset-checkpoint"

# Tests set this to a callable(step) to stop a pass between the steps of the swap
# ("cleaned", "swap", "installed", "unlinked", "renamed", "indexed", "checkpoint").
_cleaner_hook = None


cdef inline void _hook(str step):
    if _cleaner_hook is not None:
        _cleaner_hook(step)


# --- reading and writing segments ---------------------------------------------------

cdef int reader_open(BatchReader *r, const char *path, int64_t end) noexcept nogil:
    memset(r, 0, sizeof(BatchReader))
    r.path = path
    r.end = end
    r.fd = c_open(path, O_RDONLY | O_CLOEXEC)
    if r.fd < 0:
        return PS_ERR_IO
    r.cap = READ_WINDOW
    r.buf = <uint8_t *>malloc(r.cap)
    if r.buf == NULL:
        close(r.fd)
        r.fd = -1
        return PS_ERR_NO_MEMORY
    return PS_OK


cdef void reader_close(BatchReader *r) noexcept nogil:
    if r.fd >= 0:
        close(r.fd)
        r.fd = -1
    free(r.buf)
    r.buf = NULL


cdef int reader_fill(BatchReader *r, int64_t need) noexcept nogil:
    """Makes the window hold [pos, pos + need)."""
    cdef uint8_t *grown
    cdef int64_t want
    cdef ssize_t got
    if r.pos >= r.wstart and r.pos + need <= r.wend:
        return PS_OK
    if need > r.cap:
        grown = <uint8_t *>realloc(r.buf, need)
        if grown == NULL:
            return PS_ERR_NO_MEMORY
        r.buf = grown
        r.cap = need
    want = r.end - r.pos
    if want > r.cap:
        want = r.cap
    got = ps_pread_all(r.fd, <char *>r.buf, want, r.pos)
    if got < 0:
        return PS_ERR_IO
    r.bytes_read += got
    r.wstart = r.pos
    r.wend = r.pos + got
    if r.pos + need > r.wend:
        return PS_ERR_SHORT_BUFFER
    return PS_OK


cdef int reader_next(BatchReader *r, ps_batch_header *h, const uint8_t **batch) noexcept nogil:
    """The next whole, CRC-valid batch: PS_OK (batch points into the window until the next call),
    CLEAN_END, or the status of the check that failed (bad_position says where)."""
    cdef int64_t size
    cdef size_t errpos
    cdef int st
    if r.pos >= r.end:
        return CLEAN_END
    r.bad_position = r.pos
    st = reader_fill(r, PS_BATCH_HEADER_SIZE if r.end - r.pos >= PS_BATCH_HEADER_SIZE else r.end - r.pos)
    if st != PS_OK:
        return st
    if r.end - r.pos < PS_BATCH_HEADER_SIZE:
        return PS_ERR_SHORT_BUFFER
    size = <int64_t><int32_t>ps_load_be32(r.buf + (r.pos - r.wstart) + PS_OFF_LENGTH) + PS_BATCH_LOG_OVERHEAD
    if size < PS_BATCH_HEADER_SIZE or r.pos + size > r.end:
        return PS_ERR_LENGTH_MISMATCH
    st = reader_fill(r, size)
    if st != PS_OK:
        return st
    batch[0] = r.buf + (r.pos - r.wstart)
    st = ps_batch_validate(batch[0], <size_t>size, not r.headers_only, h, &errpos)
    if st != PS_OK:
        return st
    r.pos += size
    return PS_OK


cdef int writer_flush(SegmentWriter *w) noexcept nogil:
    if w.len:
        if ps_f_pwrite_all(w.path, w.fd, <const char *>w.buf, w.len, w.flushed) != 0:
            w.io_errno = errno if errno else EIO
            return PS_ERR_IO
        w.flushed += w.len
        w.len = 0
    return PS_OK


cdef int writer_put(SegmentWriter *w, const uint8_t *data, int64_t n, int64_t last_offset,
                    int64_t max_timestamp) noexcept nogil:
    """Appends one batch to the output and notes it in the new segment's index."""
    cdef int64_t position = w.flushed + w.len
    if w.len + n > w.cap and writer_flush(w) != PS_OK:
        return PS_ERR_IO
    if n > w.cap:
        if ps_f_pwrite_all(w.path, w.fd, <const char *>data, n, w.flushed) != 0:
            w.io_errno = errno if errno else EIO
            return PS_ERR_IO
        w.flushed += n
    else:
        memcpy(w.buf + w.len, data, n)
        w.len += n
    w.bytes_written += n
    segment_note_batch(w.seg, position, n, last_offset, max_timestamp)
    w.seg.size = position + n
    return PS_OK


# --- aborted transactions --------------------------------------------------------------

cdef bint batch_aborted(const int64_t *aborted, size_t n, const ps_batch_header *h) noexcept nogil:
    """Whether the batch is data of an aborted transaction (Kafka's cleaner drops those
    records, so a key's latest committed value is the one kept). aborted: sorted triples."""
    cdef size_t lo = 0, hi = n, mid
    if n == 0 or not (h.attributes & PS_ATTR_TRANSACTIONAL) or h.attributes & PS_ATTR_CONTROL:
        return False
    while lo < hi:   # the first triple after (producer id, base offset)
        mid = (lo + hi) // 2
        if aborted[3 * mid] < h.producer_id or \
                aborted[3 * mid] == h.producer_id and aborted[3 * mid + 1] <= h.base_offset:
            lo = mid + 1
        else:
            hi = mid
    return lo > 0 and aborted[3 * (lo - 1)] == h.producer_id and h.base_offset <= aborted[3 * (lo - 1) + 2]


# --- the offset map --------------------------------------------------------------------

cdef int map_records(ps_keymap *m, const ps_batch_header *h, const uint8_t *s, size_t n,
                     int64_t from_offset) noexcept nogil:
    cdef size_t pos = 0, errpos = 0
    cdef ps_record r
    cdef int32_t i
    cdef int st
    for i in range(h.record_count):
        st = ps_record_parse(s, n, &pos, &r, &errpos)
        if st != PS_OK:
            return st
        if r.key_len >= 0 and h.base_offset + r.offset_delta >= from_offset:
            st = ps_keymap_put(m, s + r.key_pos, <size_t>r.key_len, h.base_offset + r.offset_delta)
            if st != 0:
                return PS_ERR_NO_MEMORY   # cannot happen: the caller checked the batch fits
    return PS_OK


cdef int map_until_stop(ps_keymap *m, BatchReader *r, int64_t from_offset, const CleanFilter *f,
                        ps_batch_header *h, const uint8_t **batch) noexcept nogil:
    """Maps the keys of the segment's uncompressed batches (not those of aborted transactions);
    stops at the end (CLEAN_END), at a compressed batch (CLEAN_CODEC), at a batch the map cannot
    take (CLEAN_FULL), or on an error."""
    cdef int st
    while True:
        st = reader_next(r, h, batch)
        if st != PS_OK:
            return st
        if h.attributes & PS_ATTR_CONTROL or h.base_offset + h.last_offset_delta < from_offset \
                or batch_aborted(f.aborted, f.n_aborted, h):
            continue
        if m.used + <size_t>h.record_count > m.max_used:
            return CLEAN_FULL
        if h.attributes & PS_ATTR_COMPRESSION_MASK:
            return CLEAN_CODEC
        st = map_records(m, h, batch[0] + PS_BATCH_HEADER_SIZE, <size_t>h.batch_length + PS_BATCH_LOG_OVERHEAD -
                         PS_BATCH_HEADER_SIZE, from_offset)
        if st != PS_OK:
            return st


cdef int note_producers(ps_pidmap *pids, BatchReader *r) noexcept nogil:
    """Every producer's last batch in the segment (the reader's whole file)."""
    cdef ps_batch_header h
    cdef const uint8_t *batch
    cdef int st
    while True:
        st = reader_next(r, &h, &batch)
        if st == CLEAN_END:
            return PS_OK
        if st != PS_OK:
            return st
        if h.producer_id >= 0 and ps_pidmap_put(pids, h.producer_id, h.base_offset) != 0:
            return PS_ERR_NO_MEMORY


# --- filtering records ---------------------------------------------------------------

cdef inline bint keep_record(CleanFilter *f, const ps_batch_header *h, const uint8_t *s, const ps_record *r,
                             int64_t horizon) noexcept nogil:
    """Kafka's shouldRetainRecord: a key, no later record with that key, and not a tombstone
    whose delete horizon has passed."""
    cdef int64_t latest
    if r.key_len < 0:
        return False            # Kafka drops keyless records from compacted logs
    latest = ps_keymap_get(f.map, s + r.key_pos, <size_t>r.key_len)
    if latest > h.base_offset + r.offset_delta:
        return False
    if r.value_len < 0 and horizon >= 0 and f.now_ms >= horizon:
        return False
    return True


cdef inline size_t record_tail_start(const uint8_t *s, size_t start, size_t end) noexcept nogil:
    """Position just past a record's timestamp delta (the record at start was parsed already)."""
    cdef size_t p = start
    cdef int32_t length
    cdef int64_t delta
    ps_read_varint(s, end, &p, &length)
    p += 1                      # attributes
    ps_read_varlong(s, end, &p, &delta)
    return p


cdef int filter_records(CleanFilter *f, const ps_batch_header *h, const uint8_t *s, size_t n,
                        int32_t *kept, int64_t *base_ts, int64_t *max_ts, size_t *out_len,
                        bint *horizon_set) noexcept nogil:
    """Writes the records to keep into f.scratch; kept = -1 when every record stays and the batch
    can be copied as it is. base_ts is the batch's base timestamp: a delete horizon this pass set
    when horizon_set."""
    cdef size_t pos = 0, errpos = 0, start, tail, need, out = 0
    cdef ps_record r
    cdef int32_t i, count = 0, tombstones = 0
    cdef int st
    cdef bint has_horizon = (h.attributes & PS_ATTR_DELETE_HORIZON) != 0
    cdef int64_t horizon = h.base_timestamp if has_horizon else -1
    cdef int64_t new_base, ts, high = -1
    cdef uint8_t *grown
    cdef bint set_horizon
    cdef bint aborted = batch_aborted(f.aborted, f.n_aborted, h)
    # Pass 1: what stays.
    for i in range(h.record_count):
        st = ps_record_parse(s, n, &pos, &r, &errpos)
        if st != PS_OK:
            return st
        f.records_read += 1
        if not aborted and keep_record(f, h, s, &r, horizon):
            count += 1
            if r.value_len < 0:
                tombstones += 1
        else:
            f.records_removed += 1
            if r.value_len < 0:
                f.tombstones_removed += 1
    new_base = h.base_timestamp
    set_horizon = tombstones and not has_horizon
    if set_horizon:
        new_base = f.now_ms + f.delete_retention_ms
        horizon = new_base
    if tombstones and (f.next_horizon_ms < 0 or horizon < f.next_horizon_ms):
        f.next_horizon_ms = horizon
    if count == h.record_count and not set_horizon:
        kept[0] = -1
        return PS_OK
    # Pass 2: write them, with timestamp deltas from the new base when it moved.
    need = n + <size_t>count * 10 + 16
    if need > f.scratch_cap:
        grown = <uint8_t *>realloc(f.scratch, need)
        if grown == NULL:
            return PS_ERR_NO_MEMORY
        f.scratch = grown
        f.scratch_cap = need
    pos = 0
    for i in range(h.record_count):
        start = pos
        ps_record_parse(s, n, &pos, &r, &errpos)
        if aborted or not keep_record(f, h, s, &r, -1 if set_horizon else horizon):
            continue
        ts = h.base_timestamp + r.timestamp_delta
        if ts > high:
            high = ts
        if new_base == h.base_timestamp:
            memcpy(f.scratch + out, s + start, pos - start)
            out += pos - start
        else:
            tail = record_tail_start(s, start, pos)
            need = 1 + ps_sizeof_varlong(ts - new_base) + (pos - tail)
            out += ps_write_varint(f.scratch + out, <int32_t>need)
            f.scratch[out] = <uint8_t>r.attributes
            out += 1
            out += ps_write_varlong(f.scratch + out, ts - new_base)
            memcpy(f.scratch + out, s + tail, pos - tail)
            out += pos - tail
    kept[0] = count
    base_ts[0] = new_base
    horizon_set[0] = set_horizon
    max_ts[0] = h.max_timestamp if h.attributes & PS_ATTR_TIMESTAMP_TYPE or count == 0 else high
    out_len[0] = out
    return PS_OK


cdef int write_filtered(CleanFilter *f, SegmentWriter *w, const ps_batch_header *h, const uint8_t *section,
                        size_t section_len, int32_t kept, int64_t base_ts, int64_t max_ts,
                        bint horizon_set) noexcept nogil:
    """Writes a rewritten batch: the same base offset and last offset delta, `kept` records
    (section: as stored, compressed or not), a new CRC. An emptied batch is written as a bare
    header only when it is its producer's last (Kafka's RETAIN_EMPTY), else dropped."""
    cdef int16_t attributes = h.attributes
    cdef int64_t total
    cdef uint8_t *out
    cdef int st
    if horizon_set:
        attributes = attributes | PS_ATTR_DELETE_HORIZON
    if kept == 0:
        if h.producer_id < 0 or ps_pidmap_get(f.last_batch, h.producer_id) != h.base_offset:
            return PS_OK
        f.batches_emptied += 1
        attributes = h.attributes & (PS_ATTR_TIMESTAMP_TYPE | PS_ATTR_TRANSACTIONAL | PS_ATTR_CONTROL)
        base_ts = max_ts = h.max_timestamp
        section_len = 0
    total = PS_BATCH_HEADER_SIZE + <int64_t>section_len
    out = <uint8_t *>malloc(total)
    if out == NULL:
        return PS_ERR_NO_MEMORY
    write_batch_header(out, total, h.base_offset, h.partition_leader_epoch, attributes, h.last_offset_delta,
                       base_ts, max_ts, h.producer_id, h.producer_epoch, h.base_sequence, kept)
    if section_len:
        memcpy(out + PS_BATCH_HEADER_SIZE, section, section_len)
    seal_batch_crc(out, total)
    st = writer_put(w, out, total, h.base_offset + h.last_offset_delta, max_ts)
    free(out)
    return st


cdef int clean_until_stop(CleanFilter *f, BatchReader *r, SegmentWriter *w, ps_batch_header *h,
                          const uint8_t **batch) noexcept nogil:
    """Filters the segment's uncompressed batches into the writer; stops at the end (CLEAN_END),
    at a compressed batch (CLEAN_CODEC), or on an error."""
    cdef int st
    cdef int32_t kept
    cdef int64_t base_ts, max_ts, size
    cdef size_t out_len
    cdef bint horizon_set
    while True:
        st = reader_next(r, h, batch)
        if st != PS_OK:
            return st
        size = <int64_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
        if h.attributes & PS_ATTR_CONTROL:
            st = writer_put(w, batch[0], size, h.base_offset + h.last_offset_delta, h.max_timestamp)
        elif h.attributes & PS_ATTR_COMPRESSION_MASK:
            return CLEAN_CODEC
        else:
            st = filter_records(f, h, batch[0] + PS_BATCH_HEADER_SIZE, <size_t>(size - PS_BATCH_HEADER_SIZE),
                                &kept, &base_ts, &max_ts, &out_len, &horizon_set)
            if st == PS_OK:
                if kept < 0:
                    st = writer_put(w, batch[0], size, h.base_offset + h.last_offset_delta, h.max_timestamp)
                else:
                    st = write_filtered(f, w, h, f.scratch, out_len, kept, base_ts, max_ts, horizon_set)
        if st != PS_OK:
            return st


# --- one pass --------------------------------------------------------------------------

cdef object _section(const uint8_t *batch, const ps_batch_header *h):
    return PyBytes_FromStringAndSize(<const char *>batch + PS_BATCH_HEADER_SIZE,
                                     <Py_ssize_t>h.batch_length + PS_BATCH_LOG_OVERHEAD - PS_BATCH_HEADER_SIZE)


cdef object _decompressed(const uint8_t *batch, const ps_batch_header *h):
    return _compression.decompress(h.attributes & PS_ATTR_COMPRESSION_MASK, _section(batch, h),
                                   max_size=MAX_DECOMPRESSED)


cdef int _reader_failed(Partition part, BatchReader *r, int st) except -1:
    if st == PS_ERR_IO:
        raise_os_error(errno, "cannot read segment", r.path.decode())
    if st == PS_ERR_NO_MEMORY:
        raise MemoryError()
    raise _errors.CorruptSegmentError(f"the cleaner met a corrupt batch: {status_error(st, None)}",
                                      file=r.path.decode(), position=r.bad_position, topic=part.topic,
                                      partition=part.number)


cdef int64_t _map_segment(Partition part, ps_keymap *m, const CleanFilter *f, const char *path, int64_t size,
                          int64_t from_offset, int64_t *stats) except -2:
    """Maps a dirty segment; returns -1 when done, or the base offset of the first batch the map
    could not take."""
    cdef BatchReader r
    cdef ps_batch_header h
    cdef const uint8_t *batch = NULL
    cdef int st
    cdef bytes raw
    cdef const uint8_t *data
    cdef size_t length
    with nogil:
        st = reader_open(&r, path, size)
    if st != PS_OK:
        raise_os_error(errno, "cannot open segment", path.decode())
    try:
        while True:
            with nogil:
                st = map_until_stop(m, &r, from_offset, f, &h, &batch)
            if st == CLEAN_END:
                return -1
            if st == CLEAN_FULL:
                return h.base_offset
            if st != CLEAN_CODEC:
                _reader_failed(part, &r, st)
            if batch_aborted(f.aborted, f.n_aborted, &h):
                continue
            raw = _decompressed(batch, &h)
            data = <const uint8_t *>PyBytes_AS_STRING(raw)
            length = <size_t>PyBytes_GET_SIZE(raw)
            with nogil:
                st = map_records(m, &h, data, length, from_offset)
            if st != PS_OK:
                _reader_failed(part, &r, st)
    finally:
        stats[0] += r.bytes_read
        reader_close(&r)


cdef int _note_producers(Partition part, ps_pidmap *pids, const char *path, int64_t size,
                         int64_t *stats) except -1:
    cdef BatchReader r
    cdef int st
    with nogil:
        st = reader_open(&r, path, size)
        if st == PS_OK:
            r.headers_only = True
            st = note_producers(pids, &r)
    try:
        if st != PS_OK:
            if r.fd < 0:
                raise_os_error(errno, "cannot open segment", path.decode())
            _reader_failed(part, &r, st)
    finally:
        stats[0] += r.bytes_read
        reader_close(&r)
    return 0


cdef int _clean_segment(Partition part, CleanFilter *f, SegmentWriter *w, const char *path, int64_t size,
                        int64_t *stats) except -1:
    """Filters one old segment into the group's writer."""
    cdef BatchReader r
    cdef ps_batch_header h
    cdef const uint8_t *batch = NULL
    cdef int st, codec
    cdef int32_t kept
    cdef int64_t base_ts, max_ts
    cdef size_t out_len, length
    cdef bint horizon_set = False
    cdef bytes raw, packed
    cdef const uint8_t *data
    with nogil:
        st = reader_open(&r, path, size)
    if st != PS_OK:
        raise_os_error(errno, "cannot open segment", path.decode())
    try:
        while True:
            with nogil:
                st = clean_until_stop(f, &r, w, &h, &batch)
            if st == CLEAN_END:
                return 0
            if st != CLEAN_CODEC:
                if w.io_errno:
                    raise_os_error(w.io_errno, "cannot write cleaned segment", w.path.decode())
                _reader_failed(part, &r, st)
            codec = h.attributes & PS_ATTR_COMPRESSION_MASK
            raw = _decompressed(batch, &h)
            data = <const uint8_t *>PyBytes_AS_STRING(raw)
            length = <size_t>PyBytes_GET_SIZE(raw)
            with nogil:
                st = filter_records(f, &h, data, length, &kept, &base_ts, &max_ts, &out_len, &horizon_set)
                if st == PS_OK and kept < 0:
                    st = writer_put(w, batch, <int64_t>h.batch_length + PS_BATCH_LOG_OVERHEAD,
                                    h.base_offset + h.last_offset_delta, h.max_timestamp)
            if st != PS_OK:
                if w.io_errno:
                    raise_os_error(w.io_errno, "cannot write cleaned segment", w.path.decode())
                _reader_failed(part, &r, st)
            if kept < 0:
                continue
            packed = _compression.compress(codec, (<char *>f.scratch)[:out_len]) if kept else b""
            data = <const uint8_t *>PyBytes_AS_STRING(packed)
            length = <size_t>PyBytes_GET_SIZE(packed)
            with nogil:
                st = write_filtered(f, w, &h, data, length, kept, base_ts, max_ts, horizon_set)
            if st != PS_OK:
                raise_os_error(errno, "cannot write cleaned segment", w.path.decode())
    finally:
        stats[0] += r.bytes_read
        reader_close(&r)


def recover_cleaner_files(str directory):
    """Finishes or rolls back a swap a crash interrupted (see the top of cleaner.pxi):
    `.cleaned` files go; a `B-E.log.swap` replaces every segment in [B, E)."""
    cdef bytes dir_b = _os.fsencode(directory)
    cdef const char *dir_c = dir_b
    names = _os.listdir(directory)
    changed = False
    for name in names:
        if name.endswith(".cleaned") or name.endswith(".deleted"):
            _os.unlink(_os.path.join(directory, name))
            changed = True
    for name in sorted(names):
        if not name.endswith(".log.swap"):
            continue
        first, sep, last = name.removesuffix(".log.swap").partition("-")
        if not (sep and first.isdigit() and last.isdigit()):
            continue
        lo, hi = int(first), int(last)
        for other in _os.listdir(directory):
            stem, dot, suffix = other.partition(".")
            if suffix in ("log", "index", "timeindex") and stem.isdigit() and lo <= int(stem) < hi:
                _os.unlink(_os.path.join(directory, other))
        with nogil:
            fsync_directory(dir_c)
        _os.rename(_os.path.join(directory, name), _os.path.join(directory, f"{lo:020d}.log"))
        changed = True
        _log.warning("%s: finished a cleaner swap a crash interrupted: %s replaces the segments in [%d, %d)",
                     directory, f"{lo:020d}.log", lo, hi)
    if changed:
        with nogil:
            fsync_directory(dir_c)


def read_cleaner_checkpoint(str directory):
    """(first dirty offset, compacted below, next tombstone expiry) as the last pass recorded
    them ((0, 0, -1) when none)."""
    try:
        with open(_os.path.join(directory, CLEANER_CHECKPOINT)) as f:
            lines = f.read().split()
        first_dirty = int(lines[0]) if lines else 0
        return (first_dirty, int(lines[1]) if len(lines) > 1 else first_dirty,
                int(lines[2]) if len(lines) > 2 else -1)
    except FileNotFoundError:
        return 0, 0, -1
    except (ValueError, UnicodeDecodeError):
        # The segments it marks may have gaps: reading them as contiguous would report damage.
        from pstream.storage.metadata import CorruptMetadataError
        raise CorruptMetadataError(_os.path.join(directory, CLEANER_CHECKPOINT), "not decimal numbers",
                                   "restore it, or write two lines: 0 and the log end offset") from None


def write_cleaner_checkpoint(str directory, int64_t first_dirty, int64_t compacted_below,
                             int64_t next_tombstone_expiry_ms=-1):
    """`cleaner-offset-checkpoint`, three decimal lines: the first dirty offset (the next pass maps
    keys from there); the offset below which segments may have been rewritten by the cleaner
    (their batches may skip offsets; written before a pass swaps anything in); the earliest
    delete horizon of a tombstone the last pass kept (-1: none), so a restart still knows when
    to clean again. tmp, fsync, rename."""
    tmp = _os.path.join(directory, CLEANER_CHECKPOINT + ".tmp")
    with open(tmp, "w") as f:
        f.write(f"{first_dirty}\n{compacted_below}\n{next_tombstone_expiry_ms}\n")
        f.flush()
        _os.fsync(f.fileno())
    _os.replace(tmp, _os.path.join(directory, CLEANER_CHECKPOINT))
    cdef bytes dir_b = _os.fsencode(directory)
    cdef const char *dir_c = dir_b
    with nogil:
        fsync_directory(dir_c)


cdef class _CleanRange:
    """The segments of one pass, referenced (refs) so they are never freed under it."""
    cdef Segment **segs
    cdef char **paths
    cdef int64_t *bases
    cdef int64_t *nexts
    cdef int64_t *sizes
    cdef bint *held
    cdef size_t n

    def __dealloc__(self):
        cdef size_t i
        for i in range(self.n):
            free(self.paths[i])
        free(self.segs)
        free(self.paths)
        free(self.bases)
        free(self.nexts)
        free(self.sizes)
        free(self.held)


cdef int _release_range(Partition part, _CleanRange rng) except -1:
    cdef size_t i
    for i in range(rng.n):
        if rng.held[i]:
            rng.held[i] = False
            with nogil:   # segment_release takes the mutex
                segment_release(rng.segs[i], &part.sh.mu)
    return 0


def clean_partition(Partition part, int64_t dedupe_buffer_bytes, int64_t delete_retention_ms,
                    int64_t min_compaction_lag_ms, int64_t now, int64_t stable_offset, bytes aborted):
    """One cleaning pass (see the top of this file). Called with part.clean_lock held.
    stable_offset: no segment reaching past it is cleaned (an open transaction's records may
    still be aborted); aborted: native int64 (producer id, first, last offset) triples, sorted."""
    cdef PartState *p = part.p
    cdef _CleanRange rng = _CleanRange()
    cdef size_t i, n, first_dirty_i, j, k
    cdef int64_t first_dirty, uncleanable, total, end, stopped, bytes_read = 0, bytes_written = 0
    cdef ps_keymap keymap
    cdef ps_pidmap pids
    cdef CleanFilter f
    cdef Segment *s
    started = _time.monotonic()
    state = part.cleaner
    first_dirty = state["first_dirty_offset"]
    result = {"segments_cleaned": 0, "segments_written": 0, "bytes_read": 0, "bytes_written": 0,
              "records_read": 0, "records_removed": 0, "tombstones_removed": 0, "empty_batches_kept": 0,
              "first_dirty_offset": first_dirty, "end_offset": first_dirty}
    if dedupe_buffer_bytes < 1024:
        raise _errors.ConfigError(f"dedupe_buffer_bytes must be at least 1024, got {dedupe_buffer_bytes}")
    # 1. The cleanable range, snapshotted and referenced under the mutex.
    lock_with_gil_released(&part.sh.mu)
    if p.closed:
        ps_mutex_unlock(&part.sh.mu)
        raise _errors.LogClosedError("the log is closed", topic=part.topic, partition=part.number)
    if first_dirty < p.log_start_offset:
        first_dirty = p.log_start_offset
    uncleanable = p.segs[p.n_segs - 1].base_offset
    n = 0
    for i in range(p.n_segs - 1):
        s = p.segs[i]
        if not s.finalized or s.next_offset > p.durable_offset or s.deleted or s.next_offset > stable_offset:
            uncleanable = s.base_offset
            break
        if s.next_offset > first_dirty and min_compaction_lag_ms > 0 and \
                s.max_timestamp > now - min_compaction_lag_ms:
            uncleanable = s.base_offset
            break
        n += 1
    # Nothing dirty still means a pass when a kept tombstone's delete horizon has come (Kafka
    # cleans the clean section then too): else it would stay forever, and the partition stay due.
    horizon = state["next_tombstone_expiry_ms"]
    if n == 0 or (first_dirty >= uncleanable and not (0 <= horizon <= now)):
        ps_mutex_unlock(&part.sh.mu)
        return result
    rng.segs = <Segment **>calloc(n, sizeof(Segment *))
    rng.paths = <char **>calloc(n, sizeof(char *))
    rng.bases = <int64_t *>calloc(n, sizeof(int64_t))
    rng.nexts = <int64_t *>calloc(n, sizeof(int64_t))
    rng.sizes = <int64_t *>calloc(n, sizeof(int64_t))
    rng.held = <bint *>calloc(n, sizeof(bint))
    if rng.segs == NULL or rng.paths == NULL or rng.bases == NULL or rng.nexts == NULL or rng.sizes == NULL \
            or rng.held == NULL:
        ps_mutex_unlock(&part.sh.mu)
        raise MemoryError()
    for i in range(n):
        s = p.segs[i]
        s.refs += 1
        rng.segs[i] = s
        rng.held[i] = True
        rng.paths[i] = strdup(s.log_path)
        rng.bases[i] = s.base_offset
        rng.nexts[i] = s.next_offset
        rng.sizes[i] = s.size
        rng.n += 1
    ps_mutex_unlock(&part.sh.mu)
    memset(&f, 0, sizeof(CleanFilter))
    f.aborted = <const int64_t *>PyBytes_AS_STRING(aborted)
    f.n_aborted = <size_t>PyBytes_GET_SIZE(aborted) // (3 * sizeof(int64_t))
    if ps_keymap_init(&keymap, <size_t>dedupe_buffer_bytes, 0) != 0:
        _release_range(part, rng)
        raise MemoryError()
    if ps_pidmap_init(&pids) != 0:
        ps_keymap_free(&keymap)
        _release_range(part, rng)
        raise MemoryError()
    try:
        # 2. The offset map of the dirty section.
        end = uncleanable
        first_dirty_i = n
        for i in range(n):
            if rng.nexts[i] > first_dirty:
                first_dirty_i = i
                break
        for i in range(first_dirty_i, n):
            stopped = _map_segment(part, &keymap, &f, rng.paths[i], rng.sizes[i], first_dirty, &bytes_read)
            if stopped >= 0:
                end = stopped if i == first_dirty_i else rng.bases[i]
                if end <= first_dirty:
                    raise _errors.ConfigError(
                        f"dedupe_buffer_bytes {dedupe_buffer_bytes} holds {keymap.max_used} keys, too few for the "
                        f"batch at offset {stopped}", topic=part.topic, partition=part.number)
                break
        # 3. Producers' last batches, over the segments to rewrite.
        j = 0
        while j < n and rng.bases[j] < end:
            j += 1
        for i in range(j):
            _note_producers(part, &pids, rng.paths[i], rng.sizes[i], &bytes_read)
        if end > state["compacted_below"]:
            write_cleaner_checkpoint(part.path, state["first_dirty_offset"], end,    # before any swap
                                     state["next_tombstone_expiry_ms"])
            state["compacted_below"] = end
        # 4 and 5. Rewrite and swap, group by group.
        f.map = &keymap
        f.last_batch = &pids
        f.now_ms = now
        f.delete_retention_ms = delete_retention_ms
        f.next_horizon_ms = -1
        i = 0
        while i < j:
            k = i + 1
            total = rng.sizes[i]
            while k < j and total + rng.sizes[k] <= p.segment_bytes and \
                    rng.nexts[k] - rng.bases[i] < MAX_GROUP_OFFSETS:
                total += rng.sizes[k]
                k += 1
            bytes_written += _clean_group(part, rng, i, k, &f, &bytes_read)
            result["segments_cleaned"] += k - i
            result["segments_written"] += 1
            i = k
    finally:
        free(f.scratch)
        ps_keymap_free(&keymap)
        ps_pidmap_free(&pids)
        _release_range(part, rng)
        state["bytes_read"] += bytes_read
        state["bytes_written"] += bytes_written
    # 6. The checkpoint (a pass for tombstones alone leaves the first dirty offset where it was).
    if end < first_dirty:
        end = first_dirty
    write_cleaner_checkpoint(part.path, end, state["compacted_below"], f.next_horizon_ms)
    _hook("checkpoint")
    state["first_dirty_offset"] = end
    state["runs"] += 1
    state["last_clean_ms"] = ps_now_ms()
    state["last_clean_duration_s"] = _time.monotonic() - started
    state["records_removed"] += f.records_removed
    state["next_tombstone_expiry_ms"] = f.next_horizon_ms
    result.update(bytes_read=bytes_read, bytes_written=bytes_written, records_read=f.records_read,
                  records_removed=f.records_removed, tombstones_removed=f.tombstones_removed,
                  empty_batches_kept=f.batches_emptied, end_offset=end, first_dirty_offset=first_dirty)
    return result


cdef int64_t _clean_group(Partition part, _CleanRange rng, size_t lo, size_t hi, CleanFilter *f,
                          int64_t *bytes_read) except -1:
    """Rewrites old segments [lo, hi) of the range into one and swaps it in; returns its size."""
    cdef PartState *p = part.p
    cdef int64_t base = rng.bases[lo], group_end = rng.nexts[hi - 1]
    cdef SegmentWriter w
    cdef Segment *ns = segment_new(p.directory, base, p.index_interval)
    cdef Segment *s
    cdef bint installed = False, done = False
    cdef size_t i, at, gone
    cdef int direct = 0, st
    cdef char *final_path = NULL
    cdef char *swap_path = NULL
    cdef bytes cleaned_b, swap_b, final_b
    if hi < rng.n:
        group_end = rng.bases[hi]
    cleaned_b = _os.fsencode(_os.path.join(part.path, f"{base:020d}.log.cleaned"))
    swap_b = _os.fsencode(_os.path.join(part.path, f"{base:020d}-{group_end:020d}.log.swap"))
    final_b = _os.fsencode(_os.path.join(part.path, f"{base:020d}.log"))
    memset(&w, 0, sizeof(SegmentWriter))
    w.fd = -1
    if ns == NULL:
        raise MemoryError()
    try:
        # Write B.log.cleaned.
        try:
            _os.unlink(cleaned_b)
        except FileNotFoundError:
            pass
        w.path = cleaned_b
        w.seg = ns
        w.cap = WRITE_BUFFER
        w.buf = <uint8_t *>malloc(w.cap)
        if w.buf == NULL:
            raise MemoryError()
        w.fd = ps_f_open_for_write(w.path, 0, &direct)
        if w.fd < 0:
            raise_os_error(errno, "cannot create cleaned segment", cleaned_b.decode())
        for i in range(lo, hi):
            _clean_segment(part, f, &w, rng.paths[i], rng.sizes[i], bytes_read)
        with nogil:
            st = writer_flush(&w)
            if st == PS_OK and (ftruncate(w.fd, w.flushed) != 0 or ps_f_fdatasync(w.path, w.fd) != 0):
                st = PS_ERR_IO
        if st != PS_OK:
            raise_os_error(errno, "cannot write cleaned segment", cleaned_b.decode())
        close(w.fd)
        w.fd = -1
        _hook("cleaned")
        # B.log.cleaned -> B-E.log.swap: from here on the new segment is the one that counts.
        if ps_f_rename(cleaned_b, swap_b) != 0:
            raise_os_error(errno, "cannot rename cleaned segment", cleaned_b.decode())
        with nogil:
            fsync_directory(p.directory)
        _hook("swap")
        ns.size = w.flushed
        ns.written = ns.synced = ns.size
        ns.written_offset = ns.synced_offset = ns.next_offset
        ns.sealed = ns.finalized = ns.gaps = True
        ns.index_persisted = ns.index.n
        ns.time_persisted = ns.index.tn
        ns.rfd = c_open(swap_b, O_RDONLY | O_CLOEXEC)
        if ns.rfd < 0:
            raise_os_error(errno, "cannot open cleaned segment", swap_b.decode())
        if p.want_direct:
            ns.dfd = ps_open_direct_read(swap_b)
        swap_path = strdup(swap_b)
        if swap_path == NULL:
            raise MemoryError()
        final_path = ns.log_path
        ns.log_path = swap_path     # readers reopen from here until the rename below
        ns.refs = 1                 # held by this pass until then
        # Install it in place of the old segments.
        lock_with_gil_released(&part.sh.mu)
        at = 0
        while at < p.n_segs and p.segs[at] != rng.segs[lo]:
            at += 1
        p.segs[at] = ns
        gone = hi - lo - 1      # the group's other segments: the ones after it move down
        memmove(p.segs + at + 1, p.segs + at + 1 + gone, (p.n_segs - at - 1 - gone) * sizeof(Segment *))
        p.n_segs -= gone
        for i in range(lo, hi):
            rng.segs[i].deleted = True
            index_cache_forget(part.sh, rng.segs[i])
        ps_mutex_unlock(&part.sh.mu)
        installed = True
        for i in range(lo, hi):
            rng.held[i] = False
            with nogil:   # segment_release takes the mutex
                segment_release(rng.segs[i], &part.sh.mu)   # freed here, or by its last reader
        _hook("installed")
        # Remove the old segments' files (and B's stale index), then B-E.log.swap -> B.log.
        for i in range(lo, hi):
            for suffix in (".log", ".index", ".timeindex"):
                try:
                    _os.unlink(_os.path.join(part.path, f"{rng.bases[i]:020d}{suffix}"))
                except FileNotFoundError:
                    pass
        with nogil:
            fsync_directory(p.directory)
        _hook("unlinked")
        if ps_f_rename(swap_b, final_b) != 0:
            raise_os_error(errno, "cannot rename cleaned segment", swap_b.decode())
        lock_with_gil_released(&part.sh.mu)
        ns.log_path = final_path
        ps_mutex_unlock(&part.sh.mu)
        final_path = NULL
        with nogil:
            fsync_directory(p.directory)
        _hook("renamed")
        with nogil:
            st = index_write_files(&ns.index, ns.index_path, ns.time_path, 0, 0, True)
            if st == PS_OK:     # its files hold its index now: the shard's LRU may drop the arrays
                ps_mutex_lock(&part.sh.mu)
                if not ns.deleted and not p.closed:
                    index_cache_add(part.sh, ns)
                ps_mutex_unlock(&part.sh.mu)
        if st != PS_OK:
            _log.warning("%s-%d: cannot write the index of cleaned segment %s (rebuilt at the next open)",
                         part.topic, part.number, final_b.decode())
        _hook("indexed")
        done = True
        return w.bytes_written
    finally:
        if w.fd >= 0:
            close(w.fd)
        free(w.buf)
        if not installed:
            segment_free(ns)
            free(final_path)
            try:
                _os.unlink(cleaned_b)
            except FileNotFoundError:
                pass
        else:
            if not done and final_path != NULL:
                # The rename failed: the segment stays readable from its .swap path; the next open
                # finishes the swap.
                free(final_path)
            with nogil:   # segment_release takes the mutex
                segment_release(ns, &part.sh.mu)


# --- reading the latest value per key -----------------------------------------------------

cdef int map_chunk(ps_keymap *m, const uint8_t *data, size_t n, int64_t from_offset, size_t *pos,
                   ps_batch_header *h) noexcept nogil:
    """Maps the keys of the uncompressed batches of a read_batches chunk from *pos on; stops at
    the end (CLEAN_END) or at a compressed batch (CLEAN_CODEC, *pos past it, h set)."""
    cdef size_t size, errpos
    cdef int st
    while pos[0] < n:
        st = ps_batch_validate(data + pos[0], n - pos[0], 0, h, &errpos)
        if st != PS_OK:
            return st
        size = <size_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
        pos[0] += size
        if h.attributes & PS_ATTR_CONTROL or h.base_offset + h.last_offset_delta < from_offset:
            continue
        if h.attributes & PS_ATTR_COMPRESSION_MASK:
            return CLEAN_CODEC
        st = map_records(m, h, data + pos[0] - size + PS_BATCH_HEADER_SIZE, size - PS_BATCH_HEADER_SIZE,
                         from_offset)
        if st != PS_OK:
            return st
    return CLEAN_END


cdef int _collect_latest(ps_keymap *m, const ps_batch_header *h, const uint8_t *s, size_t n,
                         int64_t from_offset, dict out) except -1:
    """Adds to out the records of one records section that are their key's latest (tombstones
    delete the key): only these become Python objects."""
    cdef size_t pos = 0, errpos = 0
    cdef ps_record r
    cdef int32_t i
    cdef int64_t offset
    for i in range(h.record_count):
        if ps_record_parse(s, n, &pos, &r, &errpos) != PS_OK:
            raise_status(PS_ERR_BAD_RECORD, errpos)
        offset = h.base_offset + r.offset_delta
        if r.key_len < 0 or offset < from_offset:
            continue
        if ps_keymap_get(m, s + r.key_pos, <size_t>r.key_len) != offset:
            continue
        key = PyBytes_FromStringAndSize(<const char *>s + r.key_pos, r.key_len)
        if r.value_len < 0:
            out.pop(key, None)
        else:
            out[key] = PyBytes_FromStringAndSize(<const char *>s + r.value_pos, r.value_len)
    return 0


def latest_values(Partition part, int64_t offset=0):
    """key -> latest value of the records from `offset` to the high watermark as it is now,
    tombstoned keys absent (Partition.latest in pstream/log.py)."""
    cdef ps_keymap m
    cdef int64_t at, end, from_offset
    cdef size_t pos, n, size
    cdef ps_batch_header h
    cdef const uint8_t *data
    cdef const uint8_t *batch
    cdef int st, pass_no
    cdef dict out = {}
    cdef bytes chunk, raw
    if ps_keymap_init(&m, 1 << 16, 1) != 0:
        raise MemoryError()
    try:
        with part.clean_lock:   # both passes see the same records
            end = part.high_watermark
            from_offset = offset if offset > part.log_start_offset else part.log_start_offset
            for pass_no in range(2):
                at = from_offset
                while at < end:
                    chunk = part.read_batches(at, 1 << 20)
                    if not chunk:
                        break
                    data = <const uint8_t *>PyBytes_AS_STRING(chunk)
                    n = <size_t>PyBytes_GET_SIZE(chunk)
                    pos = 0
                    while pass_no == 0:     # pass 1: key -> latest offset, nothing made in Python
                        with nogil:
                            st = map_chunk(&m, data, n, from_offset, &pos, &h)
                        if st == CLEAN_END:
                            break
                        if st != CLEAN_CODEC:
                            raise_status(st, pos)
                        batch = data + pos - (<size_t>h.batch_length + PS_BATCH_LOG_OVERHEAD)
                        raw = _decompressed(batch, &h)
                        st = map_records(&m, &h, <const uint8_t *>PyBytes_AS_STRING(raw),
                                         <size_t>PyBytes_GET_SIZE(raw), from_offset)
                        if st != PS_OK:
                            raise_status(st, pos)
                    while pass_no == 1 and pos < n:     # pass 2: the survivors become bytes
                        batch = data + pos
                        ps_batch_read_header(batch, &h)
                        size = <size_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
                        pos += size
                        if h.attributes & PS_ATTR_CONTROL or h.base_offset + h.last_offset_delta < from_offset:
                            continue
                        if h.attributes & PS_ATTR_COMPRESSION_MASK:
                            raw = _decompressed(batch, &h)
                            _collect_latest(&m, &h, <const uint8_t *>PyBytes_AS_STRING(raw),
                                            <size_t>PyBytes_GET_SIZE(raw), from_offset, out)
                        else:
                            _collect_latest(&m, &h, batch + PS_BATCH_HEADER_SIZE, size - PS_BATCH_HEADER_SIZE,
                                            from_offset, out)
                    ps_batch_read_header(data + _last_batch_start(data, n), &h)
                    at = h.base_offset + h.last_offset_delta + 1
    finally:
        ps_keymap_free(&m)
    return out


cdef size_t _last_batch_start(const uint8_t *data, size_t n) noexcept nogil:
    cdef size_t pos = 0, size
    while True:
        size = <size_t>(<int32_t>ps_load_be32(data + pos + PS_OFF_LENGTH)) + PS_BATCH_LOG_OVERHEAD
        if pos + size >= n:
            return pos
        pos += size
