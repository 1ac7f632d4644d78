# Loading segments at open: trust what checks out, scan the rest, cut a torn tail.
#
# For every segment the scan starts at the last offset-index entry that points at a
# valid batch (0 when the index is missing, short or inconsistent), walks batches
# with their CRC checked, and rebuilds index entries past that point. The first batch
# that fails a length or CRC check (or goes backwards in offsets) ends the segment.
# In segments the cleaner may have rewritten (`gaps`: below the offset its checkpoint
# records) offsets must only grow, not follow on; a swap a crash interrupted is finished
# or rolled back before any of this (recover_cleaner_files).
# Past that point, `segment_find_batch_after` tells a torn tail (nothing valid follows:
# cut it) from damage inside the log (a valid batch follows: keep everything, refuse writes).

from libc.string cimport memchr

cdef struct ScanResult:
    int64_t valid_end           # end of the last good batch
    int64_t file_size
    int status                  # why the scan stopped early (PS_OK: clean end)
    int64_t bad_position
    bint tail_is_zeros          # the bytes past valid_end are only zero padding


cdef int segment_scan(Segment *s, int64_t start, ScanResult *out) noexcept nogil:
    """Walks batches from `start` to the end of the file, updating s's index and offsets."""
    cdef int64_t window_cap = 1 << 20
    cdef uint8_t *window = <uint8_t *>malloc(window_cap)
    cdef uint8_t *grown
    cdef int64_t wstart = 0, wend = 0, pos = start, size, want
    cdef ssize_t got
    cdef ps_batch_header h
    cdef size_t errpos
    cdef int st = PS_OK
    cdef int64_t i
    if window == NULL:
        return PS_ERR_NO_MEMORY
    out.file_size = lseek(s.rfd, 0, 2)
    out.status = PS_OK
    out.tail_is_zeros = True
    while pos + PS_BATCH_LOG_OVERHEAD <= out.file_size:
        # Make sure the window holds the header and, once its length is known, the batch.
        want = PS_BATCH_HEADER_SIZE
        if pos >= wstart and pos + PS_BATCH_HEADER_SIZE <= wend:
            size = <int64_t><int32_t>ps_load_be32(window + (pos - wstart) + PS_OFF_LENGTH) + PS_BATCH_LOG_OVERHEAD
            if size > want:
                want = size if size < out.file_size - pos else out.file_size - pos
        if pos < wstart or pos + want > wend:
            if want > window_cap:
                if want > (<int64_t>1 << 31):
                    want = <int64_t>1 << 31
                grown = <uint8_t *>realloc(window, want)
                if grown == NULL:
                    st = PS_ERR_NO_MEMORY
                    break
                window = grown
                window_cap = want
            got = ps_pread_all(s.rfd, <char *>window, window_cap, pos)
            if got < 0:
                st = PS_ERR_IO
                break
            wstart = pos
            wend = pos + got
        st = ps_batch_validate(window + (pos - wstart), <size_t>(wend - pos), 1, &h, &errpos)
        # offsets follow on (in a compacted segment they only grow: the cleaner leaves gaps)
        if st == PS_OK and (h.base_offset < s.next_offset or (h.base_offset != s.next_offset and not s.gaps)
                            or h.last_offset_delta < 0):
            st = PS_ERR_BAD_RECORD
        if st != PS_OK:
            out.status = st
            out.bad_position = pos
            st = PS_OK
            break
        size = <int64_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
        segment_note_batch(s, pos, size, h.base_offset + h.last_offset_delta, h.max_timestamp)
        pos += size
    out.valid_end = pos
    if out.status == PS_OK and pos < out.file_size:
        out.status = PS_ERR_SHORT_BUFFER   # fewer bytes left than a batch's offset and length
        out.bad_position = pos
    # Past the last good batch: zero padding (O_DIRECT, preallocation) or real garbage?
    if st == PS_OK and pos < out.file_size:
        while pos < out.file_size and out.tail_is_zeros:
            got = ps_pread_all(s.rfd, <char *>window, window_cap, pos)
            if got <= 0:
                break
            for i in range(got):
                if window[i] != 0:
                    out.tail_is_zeros = False
                    break
            pos += got
    free(window)
    return st


cdef int64_t segment_trusted_start(Segment *s, int64_t file_size) noexcept nogil:
    """Where to start scanning: the last index entry whose batch header checks out."""
    cdef uint8_t header[PS_BATCH_HEADER_SIZE]
    cdef ps_batch_header h
    cdef size_t errpos
    if not index_is_monotonic(&s.index, file_size):
        s.index.n = 0
        s.index.tn = 0
    while s.index.n:
        if ps_pread_all(s.rfd, <char *>header, PS_BATCH_HEADER_SIZE, s.index.pos[s.index.n - 1]) == PS_BATCH_HEADER_SIZE:
            ps_batch_read_header(header, &h)
            if h.magic == PS_MAGIC_V2 and h.base_offset >= s.base_offset and \
                    h.base_offset + h.last_offset_delta == s.base_offset + s.index.rel[s.index.n - 1]:
                break
        s.index.n -= 1
    if s.index.n == 0:
        s.index.tn = 0
        return 0
    index_truncate_to_position(&s.index, <int64_t>s.index.pos[s.index.n - 1] + 1)
    if s.index.tn and not time_entry_checks_out(s, s.index.tn - 1, file_size):
        s.index.n = 0       # a time index that lies cannot be patched: rebuild both from the log
        s.index.tn = 0
        return 0
    if s.index.tn:
        s.max_timestamp = s.index.ts[s.index.tn - 1]
        s.max_timestamp_offset = s.base_offset + s.index.trel[s.index.tn - 1]
    # The batch at the entry is scanned again (its CRC checked): the log so far ends just before it.
    s.next_offset = h.base_offset
    return s.index.pos[s.index.n - 1]


cdef bint time_entry_checks_out(Segment *s, size_t i, int64_t file_size) noexcept nogil:
    """A time entry (ts, rel) names the batch ending at base+rel, whose max timestamp is ts."""
    cdef uint8_t header[PS_BATCH_HEADER_SIZE]
    cdef ps_batch_header h
    cdef int64_t target = s.base_offset + s.index.trel[i]
    cdef int64_t pos = index_position_for(&s.index, s.index.trel[i])
    cdef int steps = 0
    while pos + PS_BATCH_HEADER_SIZE <= file_size and steps < 100000:
        if ps_pread_all(s.rfd, <char *>header, PS_BATCH_HEADER_SIZE, pos) != PS_BATCH_HEADER_SIZE:
            return False
        ps_batch_read_header(header, &h)
        if h.magic != PS_MAGIC_V2 or h.batch_length < PS_BATCH_HEADER_SIZE - PS_BATCH_LOG_OVERHEAD:
            return False
        if h.base_offset + h.last_offset_delta >= target:
            return h.base_offset + h.last_offset_delta == target and h.max_timestamp == s.index.ts[i]
        pos += <int64_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
        steps += 1
    return False


cdef int64_t segment_find_batch_after(Segment *s, int64_t from_pos, int64_t min_offset, int64_t file_size,
                                      int64_t *found_offset) noexcept nogil:
    """Position of the first CRC-valid batch past from_pos whose base offset is min_offset or later
    (within 2**31 of it), or -1 if there is none (or on a read error). Candidates are found by
    their magic byte, so zero padding and most garbage cost one memchr per window."""
    cdef int64_t window_cap = 1 << 20
    cdef uint8_t *window = <uint8_t *>malloc(window_cap)
    cdef uint8_t *batch = NULL
    cdef uint8_t *hit
    cdef int64_t wstart = from_pos + 1, got, q, length, base, found = -1
    cdef ps_batch_header h
    cdef size_t errpos
    if window == NULL:
        return -1
    while found < 0 and wstart + PS_BATCH_HEADER_SIZE <= file_size:
        got = ps_pread_all(s.rfd, <char *>window, window_cap, wstart)
        if got < PS_BATCH_HEADER_SIZE:
            break
        q = 0
        while q + PS_BATCH_HEADER_SIZE <= got:
            # the magic byte sits at +16: jump to the next candidate
            hit = <uint8_t *>memchr(window + q + PS_OFF_MAGIC, PS_MAGIC_V2, got - PS_BATCH_HEADER_SIZE - q + 1)
            if hit == NULL:
                break
            q = (hit - window) - PS_OFF_MAGIC
            base = <int64_t>ps_load_be64(window + q + PS_OFF_BASE_OFFSET)
            length = <int64_t><int32_t>ps_load_be32(window + q + PS_OFF_LENGTH) + PS_BATCH_LOG_OVERHEAD
            if base >= min_offset and base - min_offset < (<int64_t>1 << 31) and length >= PS_BATCH_HEADER_SIZE \
                    and wstart + q + length <= file_size:
                batch = <uint8_t *>malloc(length)
                if batch == NULL:
                    break
                if ps_pread_all(s.rfd, <char *>batch, length, wstart + q) == length and \
                        ps_batch_validate(batch, <size_t>length, 1, &h, &errpos) == PS_OK:
                    found = wstart + q
                    found_offset[0] = base
                free(batch)
                batch = NULL
                if found >= 0:
                    break
            q += 1
        # the next window overlaps by a header, so no candidate straddling the edge is missed
        wstart += got - PS_BATCH_HEADER_SIZE + 1 if got > PS_BATCH_HEADER_SIZE else 1
    free(window)
    return found


# --- opening a partition's log: every segment scanned, a torn tail cut, damage kept -----

cdef int recovery_open(Partition part) except -1:
    recover_cleaner_files(part.path)   # a cleaner swap a crash interrupted (cleaner.pxi)
    cdef list bases = segment_bases(part.path)
    cdef Segment *s
    cdef ScanResult res
    cdef int64_t start, base
    cdef int st
    cdef size_t i, loaded_n, loaded_tn, kept_n, kept_tn
    cdef int64_t found, found_offset = -1
    cdef int64_t checkpoint = checkpoint_read_log_start(part)
    cdef int64_t compacted_below = read_cleaner_checkpoint(part.path)[1]
    if not bases:
        bases = [max(checkpoint, 0)]
    for i in range(len(bases)):
        base = bases[i]
        s = segment_new(part.p.directory, base, part.p.index_interval)
        if s == NULL:
            raise MemoryError()
        if part_add_segment(part.p, s) != PS_OK:
            segment_free(s)
            raise MemoryError()
        s.gaps = base < compacted_below      # the cleaner may have left gaps between its batches
        s.rfd = c_open(s.log_path, O_RDONLY | O_CLOEXEC | O_CREAT, 0o644)
        if s.rfd < 0:
            raise_os_error(errno, "cannot open segment", s.log_path.decode())
        if part.p.want_direct:
            s.dfd = ps_open_direct_read(s.log_path)
        with nogil:
            st = index_load_files(&s.index, s.index_path, s.time_path)
            loaded_n = s.index.n
            loaded_tn = s.index.tn
            if st == PS_OK:
                start = segment_trusted_start(s, lseek(s.rfd, 0, 2))
                kept_n = s.index.n
                kept_tn = s.index.tn
                st = segment_scan(s, start, &res)
        if st != PS_OK:
            raise_os_error(errno, "cannot read segment", s.log_path.decode())
        s.size = res.valid_end
        s.written = s.synced = s.size
        s.written_offset = s.synced_offset = s.next_offset
        s.sealed = s.finalized = True
        if res.valid_end < res.file_size:
            if res.tail_is_zeros:
                recovery_cut_tail(part, s, &res)   # preallocated zeros left by a crash
            elif i + 1 < len(bases):
                recovery_keep_corrupt_segment(part, s, &res, bases[i + 1])
            else:
                with nogil:
                    found = segment_find_batch_after(s, res.bad_position, s.next_offset, res.file_size,
                                                     &found_offset)
                if found < 0:
                    recovery_cut_tail(part, s, &res)   # a torn tail: nothing valid can follow it
                else:
                    recovery_keep_damaged_tail(part, s, &res, found, found_offset)
        st = PS_OK
        if kept_n != loaded_n or kept_tn != loaded_tn or s.index.n != kept_n or s.index.tn != kept_tn:
            with nogil:  # the index was rebuilt or trimmed: replace the files
                st = index_write_files(&s.index, s.index_path, s.time_path, 0, 0, True)
        if i + 1 < len(bases):
            segment_close_files(s)     # reopened when read: no descriptors held for sealed segments
            if st == PS_OK:            # its files hold its index: read back by the first look-up
                index_free(&s.index)
                s.index_on_disk = True
    if checkpoint > part_active(part.p).next_offset and part.damage is None:
        # A torn tail took the log below its start offset (records deleted by
        # delete_records): everything left is deleted data, so start afresh at the
        # log start offset, as Kafka does, and never hand out an offset twice.
        _log.warning("%s-%d: the log ends at %d, below its start offset %d; restarting it empty at %d",
                     part.topic, part.number, part_active(part.p).next_offset, checkpoint, checkpoint)
        for i in range(part.p.n_segs):
            s = part.p.segs[i]
            for path in (s.log_path, s.index_path, s.time_path):
                try:
                    _os.unlink(path)
                except FileNotFoundError:
                    pass
            segment_free(s)
        part.p.n_segs = 0
        s = segment_new(part.p.directory, checkpoint, part.p.index_interval)
        if s == NULL or part_add_segment(part.p, s) != PS_OK:
            segment_free(s)
            raise MemoryError()
    # The last segment becomes the active one again (unless damaged: then it stays sealed as it is).
    s = part_active(part.p)
    if part.damage is not None:
        part.p.io_errno = EUCLEAN     # every append is refused, with the damage named (_raise_locked)
    else:
        s.sealed = s.finalized = False
        s.created_ms = ps_now_ms()
        s.index_persisted = s.index.n
        s.time_persisted = s.index.tn
        with nogil:   # opens and preallocates files: the event loop may need the GIL meanwhile
            st = segment_open_writer(s, part.p.want_direct, &part.sh.pool, part.sh.chunk_bytes,
                                     part.p.buffer_bytes, part.p.prealloc_bytes, part.p.segment_bytes)
        if st != PS_OK:
            raise_os_error(errno, "cannot open segment for writing", s.log_path.decode())
        segment_go_idle(s)   # no buffer, no descriptor until the first append (part_wake)
    if part.p.want_direct and not s.direct:
        _log.warning("%s-%d: the filesystem refused O_DIRECT for %s; writing through the page cache",
                     part.topic, part.number, s.log_path.decode())
        part.fallback_logged = True
    part.p.next_offset = s.next_offset
    part.p.durable_offset = s.next_offset
    part.p.log_start_offset = max(checkpoint, part.p.segs[0].base_offset)
    if part.p.log_start_offset > part.p.next_offset:
        part.p.log_start_offset = part.p.next_offset
    return 0


cdef int recovery_cut_tail(Partition part, Segment *s, ScanResult *res) except -1:
    """Truncates a segment at its last valid batch; says so unless only zero padding went."""
    cdef int fd = c_open(s.log_path, O_WRONLY | O_CLOEXEC)
    if fd < 0 or ftruncate(fd, res.valid_end) != 0 or ps_fdatasync(fd) != 0:
        if fd >= 0:
            close(fd)
        raise_os_error(errno, "cannot truncate segment", s.log_path.decode())
    close(fd)
    index_truncate_to_position(&s.index, res.valid_end)
    if not res.tail_is_zeros:
        reason = status_error(res.status, res.bad_position)
        _log.warning("%s-%d: torn or corrupt tail in %s: log ends at offset %d, dropped %d bytes "
                     "from position %d (%s)", part.topic, part.number, s.log_path.decode(), s.next_offset,
                     res.file_size - res.valid_end, res.valid_end, reason)
    return 0


cdef int recovery_keep_corrupt_segment(Partition part, Segment *s, ScanResult *res,
                                       int64_t next_base) except -1:
    """Damage inside an older segment is not a torn write: the later segments hold acknowledged
    data, so nothing is cut. The bytes stay; reading them raises CorruptSegmentError."""
    reason = status_error(res.status, res.bad_position)
    _log.warning("%s-%d: corrupt batch in %s at position %d (%s); keeping the segment: reads of "
                 "offsets %d..%d will fail", part.topic, part.number, s.log_path.decode(), res.bad_position,
                 reason, s.next_offset, next_base - 1)
    s.size = s.written = s.synced = res.file_size
    s.next_offset = s.written_offset = s.synced_offset = next_base
    return 0


cdef int recovery_keep_damaged_tail(Partition part, Segment *s, ScanResult *res, int64_t found,
                                    int64_t found_offset) except -1:
    """Damage in the active segment with a valid batch after it is not a torn write: what follows
    may be acknowledged and fsynced. Nothing is cut; the partition stays readable up to the damage
    and refuses writes until an operator truncates it (`pstream log truncate`)."""
    reason = status_error(res.status, res.bad_position)
    part.damage = {"file": s.log_path.decode(), "position": res.bad_position, "offset": s.next_offset,
                   "next_valid_position": found, "next_valid_offset": found_offset}
    _log.error("%s-%d: corrupt batch in %s at position %d (%s), followed by valid batches from position %d "
               "(offset %d): not a torn tail, so nothing is cut. The partition is readable up to offset %d and "
               "refuses writes. To drop everything from the damage on, stop the broker and run: "
               "pstream log truncate %s --to %d", part.topic, part.number, s.log_path.decode(), res.bad_position,
               reason, found, found_offset, s.next_offset, part.path, s.next_offset)
    return 0
