# The append path on a PartState, shared by callers' threads and the shard threads.
#
# Every function here runs with the shard mutex held and without the GIL. An append
# is reserve -> write the batch into the returned space -> commit; reserve may ask the
# caller to roll the segment, to wait (another thread is rolling) or to make room
# (the shard writes the buffer out; a caller thread asks the shard and waits), or to
# wait for the shard's write budget (the shard gives back idle partitions' buffers).

cdef enum:
    RESERVE_ROLL = -1           # the active segment is full or old: roll first
    RESERVE_ROOM = -2           # the active buffer is full: write it out first
    RESERVE_WAIT = -3           # another thread is rolling or copying a batch in: wait on `done`
    RESERVE_POOL = -4           # the shard's write budget or descriptor budget is spent: reclaim, wait
    RESERVE_OPEN = -5           # reopening an idle segment's files failed (errno says why)
    RESERVE_AGAIN = -6          # the mutex was dropped (an idle segment woke): reserve again
    RESERVE_WAKE = -7           # the active segment is idle: part_wake it (without the GIL), then reserve again


cdef int part_wake(PartState *p, Segment *a, int64_t total) noexcept nogil:
    """Gives an idle (or fresh) active segment a buffer and its descriptors; lists the
    partition among the shard's holders. Drops the mutex for the file work (appends wait
    meanwhile, as for a roll), so it returns RESERVE_AGAIN on success: reserve again.
    RESERVE_POOL when a budget is spent, RESERVE_OPEN when a file cannot be opened or read."""
    cdef Shard *sh = p.shard
    cdef Wake w
    cdef int over = 0, st, err = 0
    if not p.holding and sh.holders >= sh.max_holders:
        return RESERVE_POOL
    p.rolling = True
    ps_mutex_unlock(&sh.mu)
    st = segment_wake_prepare(a, p.want_direct, total, &w, &over)
    if st != PS_OK:
        err = errno
    ps_mutex_lock(&sh.mu)
    p.rolling = False
    pthread_cond_broadcast(&sh.done)
    if st != PS_OK:
        ps_set_errno(err)
        return RESERVE_POOL if over else RESERVE_OPEN if st == PS_ERR_IO else st
    if p.closed:
        segment_wake_abandon(a, &w)
        return PS_ERR_CLOSED
    segment_wake_install(a, &w)
    holders_touch(sh, p)
    return RESERVE_AGAIN


cdef inline bint part_needs_roll(PartState *p, Segment *a, int64_t total, int64_t count, int64_t now_ms) noexcept nogil:
    if a.size == 0:
        return False
    if a.size + total > p.segment_bytes:
        return True
    if p.segment_ms >= 0 and now_ms - a.created_ms >= p.segment_ms:
        return True
    return p.next_offset + count - a.base_offset > 0x7fffffff   # relative offsets are 32-bit


cdef struct Placement:
    uint8_t *dst                # where a reserved batch begins
    int64_t first               # how many of its bytes go there; the rest go on at `next`, the
    uint8_t *next               # start of the buffer chained after (segment_chain)


cdef int part_reserve(PartState *p, int64_t total, int64_t count, int64_t now_ms, Placement *at) noexcept nogil:
    """Room for `total` bytes at the end of the active buffer (or going on into a chained one):
    PS_OK and *at, or RESERVE_*/PS_ERR_*."""
    cdef Segment *a
    ps_mutex_assert_held(&p.shard.mu)
    if p.closed:
        return PS_ERR_CLOSED
    if p.io_errno:
        return PS_ERR_IO
    if p.rolling:
        return RESERVE_WAIT
    cdef int over = 0
    a = part_active(p)
    if a.copying:
        return RESERVE_WAIT         # one copy at a time: offsets are assigned in reservation order
    if part_needs_roll(p, a, total, count, now_ms):
        return RESERVE_ROLL
    if a.buf == NULL:
        if a.flight_n:
            return RESERVE_WAIT     # its one buffer is being written (the budget was spent)
        return RESERVE_WAKE         # part_wake drops and retakes the mutex: never with the GIL held
    at.dst = a.buf + (a.size - a.buf_start)
    at.first = segment_room(a)
    if at.first >= total:
        at.first = total
        at.next = NULL
        return PS_OK
    if segment_chain(a, total, &over):
        at.next = a.buf
        return PS_OK
    if a.size > a.written or a.flight_n or a.full_n:
        return RESERVE_ROOM         # writing out frees buffers (and empties the chain)
    return RESERVE_POOL if over else PS_ERR_NO_MEMORY


cdef inline void place(const Placement *at, int64_t pos, const uint8_t *src, int64_t n) noexcept nogil:
    """Copies n bytes to byte `pos` of a reserved batch, across the two buffers if it straddles."""
    cdef int64_t k
    if pos < at.first:
        k = at.first - pos if at.first - pos < n else n
        memcpy(at.dst + pos, src, k)
        src += k
        pos += k
        n -= k
    if n > 0:
        memcpy(at.next + (pos - at.first), src, n)


cdef inline void place_encoded(const Placement *at, uint8_t *encoded, int64_t total) noexcept nogil:
    """After encoding into Partition._encode_target: a batch encoded in a scratch buffer (the
    reservation straddles two buffers) goes into place, and the scratch is freed."""
    if at.next != NULL:
        place(at, 0, encoded, total)
        free(encoded)


cdef void place_raw_batch(const Placement *at, const uint8_t *src, ps_batch_header *h, int64_t total,
                          int32_t leader_epoch, bint log_append_time, int64_t now_ms) noexcept nogil:
    """Copies a validated batch into its reservation with the fields the log assigns: base offset
    and leader epoch, and with LogAppendTime the timestamp (so the CRC too, computed on the way)."""
    cdef uint8_t head[PS_BATCH_HEADER_SIZE]
    memcpy(head, src, PS_BATCH_HEADER_SIZE)
    ps_store_be64(head + PS_OFF_BASE_OFFSET, <uint64_t>h.base_offset)
    ps_store_be32(head + PS_OFF_LEADER_EPOCH, <uint32_t>leader_epoch)
    if log_append_time:
        ps_store_be16(head + PS_OFF_ATTRIBUTES, <uint16_t>(h.attributes | PS_ATTR_TIMESTAMP_TYPE))
        ps_store_be64(head + PS_OFF_MAX_TIMESTAMP, <uint64_t>now_ms)
        ps_store_be32(head + PS_OFF_CRC, ps_crc32c(
            ps_crc32c(0, head + PS_OFF_ATTRIBUTES, PS_BATCH_HEADER_SIZE - PS_OFF_ATTRIBUTES),
            src + PS_BATCH_HEADER_SIZE, <size_t>(total - PS_BATCH_HEADER_SIZE)))
        h.max_timestamp = now_ms
    place(at, 0, head, PS_BATCH_HEADER_SIZE)
    place(at, PS_BATCH_HEADER_SIZE, src + PS_BATCH_HEADER_SIZE, total - PS_BATCH_HEADER_SIZE)


cdef Segment *part_copy_begin(PartState *p) noexcept nogil:
    """After a successful reserve: drops the mutex so that the appender copies its batch in
    without it (a 1 MiB copy must not stall readers or the shard). The buffer stays put until
    part_copy_end: write-outs, rolls, chains, releases and close wait for it."""
    cdef Segment *a = part_active(p)
    ps_mutex_assert_held(&p.shard.mu)
    a.copying = True
    p.busy += 1
    ps_mutex_unlock(&p.shard.mu)
    return a


cdef void part_copy_end(PartState *p, Segment *a) noexcept nogil:
    """Takes the mutex back (returned held, part_commit comes next) and lets the buffer move."""
    ps_mutex_lock(&p.shard.mu)
    a.copying = False
    p.busy -= 1
    if p.write_requested or p.sync_requested or p.dirty_since_ns:
        # The shard passed over the partition while we copied (it never re-lists a pinned one):
        # list it again, or an interval flush due meanwhile would wait for the next append.
        shard_enqueue(p.shard, p)
    pthread_cond_broadcast(&p.shard.done)


cdef void part_commit(PartState *p, int64_t total, int64_t last_offset, int64_t max_timestamp) noexcept nogil:
    """Publishes the batch just written at the end of the buffer; tells the shard per policy."""
    cdef Segment *a = part_active(p)
    cdef Shard *sh = p.shard
    cdef int64_t position = a.size
    ps_mutex_assert_held(&p.shard.mu)
    p.last_append_ns = ps_monotonic_ns()
    holders_touch(sh, p)
    a.size += total
    segment_note_batch(a, position, total, last_offset, max_timestamp)
    ps_store_i64(&p.next_offset, last_offset + 1)
    if p.flush_mode != FLUSH_ALWAYS:
        ps_bells_moved(sh.bells)   # the high watermark is the log end: followers may read on
    if p.dirty_since_ns == 0:
        p.dirty_since_ns = ps_monotonic_ns()
        if p.flush_mode == FLUSH_INTERVAL:
            shard_enqueue(sh, p)
    if p.flush_mode == FLUSH_ALWAYS:
        p.sync_requested = True
        shard_enqueue(sh, p)
    elif p.flush_mode == FLUSH_BYTES and a.size - a.synced >= p.flush_bytes and not p.sync_requested:
        p.sync_requested = True
        shard_enqueue(sh, p)
    if (a.full_n or segment_room(a) < a.buf_cap // 2) and not p.write_requested:
        p.write_requested = True  # a full buffer chained, or this one half full: start writing out
        shard_enqueue(sh, p)
    if p.watch_offset >= 0:
        shard_watch_check(sh, p)


cdef int part_roll_locked(PartState *p) noexcept nogil:
    """Starts a new active segment at the log end offset; drops the mutex for the file work.

    A no-op when another thread is rolling or the active segment is empty.
    """
    cdef Shard *sh = p.shard
    cdef Segment *old = part_active(p)
    cdef Segment *s
    cdef int st, err = 0
    cdef int64_t base
    ps_mutex_assert_held(&p.shard.mu)
    if p.closed:
        return PS_ERR_CLOSED
    if p.rolling or old.size == 0:
        return PS_OK
    if old.copying:
        return RESERVE_WAIT         # an appender copies into it: wait on `done`, then roll
    p.rolling = True
    base = p.next_offset
    ps_mutex_unlock(&sh.mu)
    s = segment_new(p.directory, base, p.index_interval)
    st = PS_ERR_NO_MEMORY if s == NULL else segment_open_writer(s, p.want_direct, &sh.pool, sh.chunk_bytes,
                                                                p.buffer_bytes, p.prealloc_bytes, p.segment_bytes)
    if st == PS_OK:
        st = fsync_directory(p.directory)   # the new file's name must survive a crash too
    if st != PS_OK:
        err = errno
    ps_mutex_lock(&sh.mu)
    p.rolling = False
    if st == PS_OK and p.closed:
        st = PS_ERR_CLOSED          # close() won the race: this segment never becomes active
        unlink(s.log_path)
        unlink(s.index_path)
        unlink(s.time_path)
    if st == PS_OK:
        st = part_add_segment(p, s)
    if st == PS_OK:
        s.created_ms = ps_now_ms()
        old.sealed = True
        p.write_requested = True      # the shard finalizes the old segment
        shard_enqueue(sh, p)
    else:
        segment_free(s)
        ps_set_errno(err)
    pthread_cond_broadcast(&sh.done)
    return st


cdef int part_append_raw_locked(PartState *p, const uint8_t *src, ps_batch_header *h, int64_t now_ms,
                                bint on_shard, bint replica=False) noexcept nogil:
    """Copies a validated batch in, assigns its offsets (h.base_offset is set to the result).
    A replica's batch (a follower's copy of its leader's) keeps every field as the leader wrote
    it and must start at the log end offset. Mutex held; dropped for the copy (and whenever it
    waits)."""
    cdef int64_t total = <int64_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
    cdef Placement at
    cdef Segment *a
    cdef int st
    cdef Shard *sh = p.shard
    ps_mutex_assert_held(&p.shard.mu)
    if replica and h.base_offset != p.next_offset:
        return PS_ERR_OFFSET_GAP
    while True:
        st = part_reserve(p, total, h.last_offset_delta + 1, now_ms, &at)
        if st == RESERVE_WAKE:
            st = part_wake(p, part_active(p), total)
        if st == PS_OK:
            break
        if st == RESERVE_ROLL:
            st = part_roll_locked(p)
            if st != PS_OK:
                return st
        elif st == RESERVE_ROOM and on_shard:
            if segment_write_out(part_active(p), &sh.mu) != PS_OK:
                part_fail(p, part_active(p).io_errno, part_active(p).log_path)
        elif st == RESERVE_AGAIN:
            continue
        elif st == RESERVE_OPEN:
            return PS_ERR_IO
        elif st == RESERVE_POOL and on_shard:
            if shard_reclaim(sh, True) == 0:
                return PS_ERR_NO_MEMORY     # nothing can be given back: this batch cannot fit
        elif st == RESERVE_ROOM or st == RESERVE_WAIT or st == RESERVE_POOL:
            if st == RESERVE_ROOM:
                p.write_requested = True
                shard_enqueue(sh, p)
            if st == RESERVE_POOL:
                shard_ask_reclaim(sh)
            ps_cond_wait(&sh.done, &sh.mu)
            if st == RESERVE_POOL:
                sh.pool_waiters -= 1
        else:
            return st
    if replica and h.base_offset != p.next_offset:   # another append came first while the mutex was dropped
        return PS_ERR_OFFSET_GAP
    h.base_offset = p.next_offset
    a = part_copy_begin(p)
    if replica:
        place(&at, 0, src, total)
    else:
        place_raw_batch(&at, src, h, total, ps_load_i32(&p.leader_epoch), ps_load_i32(&p.timestamp_type) != 0,
                        now_ms)
    part_copy_end(p, a)
    part_commit(p, total, h.base_offset + h.last_offset_delta, h.max_timestamp)
    return PS_OK


cdef int check_raw_batch(PartState *p, const uint8_t *src, int64_t length, bint validate, ps_batch_header *h,
                         size_t *errpos, bint replica=False) noexcept nogil:
    """Validation before an append: sizes, magic, CRC, at least one record, the size limit. A
    replica's batch was checked by its leader: sizes, magic and CRC only (compaction leaves
    offset gaps in a batch, and the leader's size limit may differ)."""
    cdef int st = ps_batch_validate(src, <size_t>length, validate, h, errpos)
    if st != PS_OK:
        return st
    if <int64_t>h.batch_length + PS_BATCH_LOG_OVERHEAD != length:
        errpos[0] = PS_OFF_LENGTH
        return PS_ERR_LENGTH_MISMATCH
    if replica:
        return PS_OK
    if h.record_count == 0 or h.last_offset_delta < 0 or h.last_offset_delta != h.record_count - 1:
        errpos[0] = PS_OFF_RECORD_COUNT
        return PS_ERR_RECORD_COUNT
    if length > p.max_message_bytes:
        errpos[0] = 0
        return PS_ERR_TOO_LARGE
    return PS_OK


cdef void shard_run_submissions(Shard *sh) noexcept nogil:
    """Appends the raw batches submitted to this shard (mutex held; dropped for the CRCs)."""
    cdef AppendRequest *req
    cdef AppendRequest *nxt
    cdef ps_batch_header h
    cdef bint rang = False
    ps_mutex_assert_held(&sh.mu)
    while sh.sub_head != NULL:
        req = sh.sub_head
        sh.sub_head = NULL
        sh.sub_tail = NULL
        while req != NULL:
            nxt = req.next
            req.next = NULL
            req.part.busy += 1
            ps_mutex_unlock(&sh.mu)
            req.status = check_raw_batch(req.part, req.data, req.length, True, &h, &req.errpos, req.replica)
            ps_mutex_lock(&sh.mu)
            if req.status == PS_OK:
                req.status = part_append_raw_locked(req.part, req.data, &h, ps_now_ms(), True, req.replica)
            req.part.busy -= 1
            if req.status == PS_OK:
                req.base_offset = h.base_offset
                req.last_offset = h.base_offset + h.last_offset_delta
                req.max_timestamp = h.max_timestamp
            if req.status == PS_OK and req.part.flush_mode == FLUSH_ALWAYS and not req.no_wait:
                req.next = sh.durable_wait
                sh.durable_wait = req
            else:
                req.done = True
                sh.counters.queued -= 1
                rang = True
            req = nxt
    if rang:
        shard_ring(sh)
    else:
        pthread_cond_broadcast(&sh.done)   # close() may be waiting for `busy` to drop


cdef void shard_complete_durable(Shard *sh) noexcept nogil:
    """Finishes the submitted appends whose fdatasync has happened (mutex held)."""
    cdef AppendRequest **link = &sh.durable_wait
    cdef AppendRequest *req
    cdef bint rang = False
    ps_mutex_assert_held(&sh.mu)
    while link[0] != NULL:
        req = link[0]
        if req.part.durable_offset > req.last_offset or req.part.io_errno:
            if req.part.durable_offset <= req.last_offset:
                req.status = PS_ERR_IO
            req.done = True
            sh.counters.queued -= 1
            link[0] = req.next
            req.next = NULL
            rang = True
        else:
            link = &req.next
    if rang:
        shard_ring(sh)


cdef inline void shard_ring(Shard *sh) noexcept nogil:
    pthread_cond_broadcast(&sh.done)
    ps_bells_ring(sh.bells)
