# Reading a partition's log: whole batches from the segment holding an offset (file or
# memory, the mutex held only to find the segment and per 64 KiB of memory copied), every
# batch's CRC and offsets checked before it is served, and look-ups by timestamp.
# Partition.read_batches and offset_for_timestamp (log.pxi) call in here.


cdef object read_batches_at(Partition part, int64_t offset, int64_t max_bytes):
    cdef Segment *s
    cdef size_t i
    cdef int64_t pos, start, end, got, want, seg_next, lo, hi
    cdef ps_batch_header h
    cdef PyObject *raw = NULL
    cdef int opened
    lock_with_gil_released(&part.sh.mu)
    if offset < part.p.log_start_offset or offset > part.p.next_offset:
        lo = part.p.log_start_offset
        hi = part.p.next_offset
        ps_mutex_unlock(&part.sh.mu)
        raise _errors.OffsetOutOfRangeError(f"offset {offset} is outside [{lo}, {hi}]",
                                            topic=part.topic, partition=part.number, offset=offset)
    if offset == part.p.next_offset:
        ps_mutex_unlock(&part.sh.mu)
        return b""
    i = part_find_segment(part.p, offset)
    while True:
        s = part.p.segs[i]
        s.refs += 1
        seg_next = s.next_offset
        pos = 0
        if offset > s.base_offset:
            with nogil:     # may drop the mutex to read the index from its files
                segment_index_ready(part.p, s)
            pos = index_position_for(&s.index, <uint32_t>(offset - s.base_offset))
        opened = segment_open_files(s, part.p.want_direct)
        ps_mutex_unlock(&part.sh.mu)
        try:
            if opened != PS_OK:
                raise_os_error(errno, "cannot open segment", s.log_path.decode())
            start = read_find_batch(part, s, pos, offset, &h)
            if start >= 0:
                want = <int64_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
                if want < max_bytes:
                    want = max_bytes
                # Read into a fresh bytes and shrink it in place to the whole batches:
                # one copy from the file or buffer, none to trim.
                raw = new_bytes_ptr(NULL, want)
                if raw == NULL:
                    raise MemoryError()
                try:
                    with nogil:
                        got = segment_copy_out(s, &part.sh.mu, start, want, <uint8_t *>bytes_ptr_data(raw))
                    if got < 0:
                        raise _errors.StorageIOError("cannot read segment", file=s.log_path.decode(),
                                                     position=start)
                    end = read_whole_batches(part, s, <const uint8_t *>bytes_ptr_data(raw), got, start, offset, seg_next)
                    if end != want and _PyBytes_Resize(&raw, end) != 0:
                        raw = NULL
                        raise MemoryError()
                    return <object>raw
                finally:
                    Py_XDECREF(raw)
            if offset < seg_next:
                # The segment ends before the offset it claims to hold: a damaged length.
                read_corrupt(part, s, pos, offset, f"segment ends before offset {offset} (it holds offsets "
                                              f"up to {seg_next - 1})")
        finally:
            with nogil:   # segment_release takes the mutex
                segment_release(s, &part.sh.mu)
        # The offset lies past this segment's last batch: continue in the next one.
        lock_with_gil_released(&part.sh.mu)
        if seg_next >= part.p.next_offset:
            ps_mutex_unlock(&part.sh.mu)
            return b""
        i = part_find_segment(part.p, seg_next)
        if part.p.segs[i].base_offset < seg_next or part.p.segs[i].next_offset <= seg_next:
            if i + 1 >= part.p.n_segs:
                ps_mutex_unlock(&part.sh.mu)
                return b""
            # a gap (a cut tail before a roll, or what compaction removed; a cleaned segment may
            # be empty): go on at the next segment
            i += 1
        offset = part.p.segs[i].base_offset if part.p.segs[i].base_offset > offset else offset


cdef int read_corrupt(Partition part, Segment *s, int64_t position, int64_t offset, str why) except -1:
    """Counts the read, logs the damage once per file and position, and raises."""
    path = s.log_path.decode()
    part.corrupt_reads += 1
    if (path, position) not in part.corrupt_logged and len(part.corrupt_logged) < MAX_CORRUPT_LOGGED:
        part.corrupt_logged.add((path, position))
        _log.error("%s-%d: corrupt data in %s at position %d, met reading offset %d: %s; reads of it fail "
                   "(pstream log verify %s lists the damage)", part.topic, part.number, path, position, offset,
                   why, part.path)
    raise _errors.CorruptSegmentError(why, file=path, position=position, topic=part.topic,
                                      partition=part.number, offset=offset)


cdef int64_t read_find_batch(Partition part, Segment *s, int64_t pos, int64_t offset,
                             ps_batch_header *h) except -2:
    """Walks batch headers from pos to the batch holding offset; -1 if the segment ends first.

    Offsets must follow on from batch to batch: base offsets and lengths sit outside
    the CRC, so this is what catches a damaged one before it is served.
    """
    cdef uint8_t window[16384]
    cdef int64_t got, at, expect = -1
    while True:
        with nogil:
            got = segment_copy_out(s, &part.sh.mu, pos, sizeof(window), window)
        if got < 0:
            raise _errors.StorageIOError("cannot read segment", file=s.log_path.decode(), position=pos)
        if got == 0:
            return -1
        at = 0
        while at + PS_BATCH_HEADER_SIZE <= got:
            ps_batch_read_header(window + at, h)
            if h.magic != PS_MAGIC_V2 or h.batch_length < PS_BATCH_HEADER_SIZE - PS_BATCH_LOG_OVERHEAD \
                    or h.last_offset_delta < 0:
                read_corrupt(part, s, pos + at, offset, "invalid batch header in segment")
            # Offsets follow on from batch to batch; in a compacted segment they only grow
            # (the cleaner leaves gaps, never overlaps).
            if (expect >= 0 and (h.base_offset < expect or (h.base_offset != expect and not s.gaps))) \
                    or h.base_offset < s.base_offset:
                read_corrupt(part, s, pos + at, offset, f"batch offsets do not follow on (base offset "
                                                   f"{h.base_offset}, expected {expect})")
            if h.base_offset + h.last_offset_delta >= offset:
                if h.base_offset > offset and not s.gaps:
                    read_corrupt(part, s, pos + at, offset, f"no batch holds offset {offset} (next batch starts "
                                                       f"at {h.base_offset})")
                return pos + at     # it holds offset, or offset fell in a gap compaction left
            expect = h.base_offset + h.last_offset_delta + 1
            at += <int64_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
        if at == 0:
            read_corrupt(part, s, pos, offset, "segment ends inside a batch header")
        pos += at


cdef int64_t read_whole_batches(Partition part, Segment *s, const uint8_t *p, int64_t length,
                                int64_t file_pos, int64_t offset, int64_t seg_next) except -1:
    """Length of the whole, CRC-valid, offset-contiguous batches at the start of p (the first required)."""
    cdef int64_t pos = 0, size, expect = -1
    cdef ps_batch_header h
    cdef size_t errpos
    cdef int st
    while pos + PS_BATCH_LOG_OVERHEAD <= length:
        size = <int64_t><int32_t>ps_load_be32(p + pos + PS_OFF_LENGTH) + PS_BATCH_LOG_OVERHEAD
        if pos + size > length:
            if pos == 0:
                read_corrupt(part, s, file_pos, offset, "segment ends inside a batch")
            break
        with nogil:
            st = ps_batch_validate(p + pos, <size_t>(length - pos), 1, &h, &errpos)
        if st == PS_OK and ((expect >= 0 and (h.base_offset < expect or (h.base_offset != expect and not s.gaps)))
                            or h.last_offset_delta < 0
                            or h.base_offset + h.last_offset_delta >= seg_next):
            st = PS_ERR_BAD_RECORD
        if st != PS_OK:
            if pos:
                break   # serve the good batches before it; the next read raises
            if st == PS_ERR_BAD_RECORD:
                read_corrupt(part, s, file_pos, offset, f"batch offsets do not follow on (base offset "
                                                   f"{h.base_offset}, last offset delta {h.last_offset_delta})")
            read_corrupt(part, s, file_pos, offset, f"corrupt batch in segment: {status_error(st, None)}")
        expect = h.base_offset + h.last_offset_delta + 1
        pos += size
    return pos


cdef object read_offset_for_timestamp(Partition part, int64_t timestamp_ms):
    cdef size_t i
    cdef Segment *s
    cdef int64_t rel = 0, found = -1
    lock_with_gil_released(&part.sh.mu)
    for i in range(part.p.n_segs):
        s = part.p.segs[i]
        if s.max_timestamp >= timestamp_ms and s.next_offset > part.p.log_start_offset:
            s.refs += 1
            with nogil:     # may drop the mutex to read the index from its files
                segment_index_ready(part.p, s)
            rel = time_index_rel_for(&s.index, timestamp_ms)
            found = s.base_offset + rel
            break
    if found < part.p.log_start_offset and found >= 0:
        found = part.p.log_start_offset
    ps_mutex_unlock(&part.sh.mu)
    if found >= 0:
        with nogil:   # segment_release takes the mutex
            segment_release(s, &part.sh.mu)
    if found < 0:
        return None
    # Scan records from there for the first timestamp at or past the target.
    offset = found
    while offset < ps_load_i64(&part.p.next_offset):
        data = part.read_batches(offset)
        if not data:
            return None
        for header, records in iter_batches(data):
            if header.max_timestamp < timestamp_ms:
                continue
            for rec in records:
                if rec.offset >= offset and rec.timestamp_ms >= timestamp_ms:
                    return rec.offset
        offset = header.last_offset + 1
    return None
