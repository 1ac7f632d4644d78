# One segment: a .log file written through a 4 KiB-aligned double buffer.
#
# Appenders copy batches into `buf` under the shard mutex. The shard thread flushes:
# it swaps `buf` and `spare` (carrying the last partial page over, so it is
# rewritten whole next time), drops the mutex, writes the old buffer with O_DIRECT
# (zero-padded to a page; the logical end is `size`, not the file size) and, per the
# flush policy, calls fdatasync. The file is preallocated in steps so writes never
# land in holes. Where O_DIRECT is refused (EINVAL at open or first write) the same
# code writes through the page cache and `direct_fallback` is set for Python to log.
#
# Buffers come from the shard's budget (ps_pool.h) and are sized to the write rate: an
# idle segment's first buffer is one chunk; each swap doubles the next one while writes
# fill half of it (up to buf_limit, write_buffer_bytes) and halves it when they use less
# than a quarter. A batch that does not fit in what is left of the buffer fills it and goes
# on into a new buffer chained after it (segment_chain, Redpanda's iobuf idea): the appender
# neither waits for a write-out nor copies anything twice, and the next write-out hands the
# chain to one pwritev. Every buffer but the last ends on a page, so O_DIRECT takes them as
# they are. When the budget is spent at a swap, the one buffer is written and reused
# (appends wait); when it is spent at a chain, the appender waits for the write-out.
# An idle segment (segment_go_idle) holds no buffer and no descriptor: the next append
# reopens the write descriptor and reads the last partial page back, without the mutex
# (segment_wake_prepare, then segment_wake_install).
#
# A failed write (ENOSPC, EIO) keeps its buffers as `failed`: their bytes stay readable and
# `segment_retry` writes them again once the disk has room, so nothing appended is dropped.
# Every file call goes through a fault point of include/ps_faults.h (tests arm them).


cdef char *path_for(const char *directory, int64_t base_offset, const char *suffix) noexcept nogil:
    cdef size_t n = strlen(directory) + 40
    cdef char *out = <char *>malloc(n)
    if out != NULL:
        snprintf(out, n, "%s/%020lld%s", directory, <long long>base_offset, suffix)
    return out


cdef Segment *segment_new(const char *directory, int64_t base_offset, int64_t index_interval) noexcept nogil:
    cdef Segment *s = <Segment *>calloc(1, sizeof(Segment))
    if s == NULL:
        return NULL
    s.base_offset = base_offset
    s.next_offset = base_offset
    s.written_offset = base_offset
    s.synced_offset = base_offset
    s.wfd = -1
    s.rfd = -1
    s.dfd = -1
    s.index_interval = index_interval
    s.max_timestamp = -1
    s.max_timestamp_offset = -1
    s.log_path = path_for(directory, base_offset, ".log")
    s.index_path = path_for(directory, base_offset, ".index")
    s.time_path = path_for(directory, base_offset, ".timeindex")
    if s.log_path == NULL or s.index_path == NULL or s.time_path == NULL:
        segment_free(s)
        return NULL
    return s


cdef inline int64_t chunk_ceil(int64_t n, int64_t chunk) noexcept nogil:
    return (n + chunk - 1) // chunk * chunk


cdef inline void frags_give(ps_pool *pool, ps_frag *f, int *n) noexcept nogil:
    cdef int i
    for i in range(n[0]):
        ps_pool_give(pool, f[i].data, f[i].cap)
        f[i].data = NULL
    n[0] = 0


cdef inline int64_t frags_bytes(const ps_frag *f, int n) noexcept nogil:
    cdef int64_t total = 0
    cdef int i
    for i in range(n):
        total += f[i].cap
    return total


cdef int64_t frags_copy(const ps_frag *f, int n, int64_t pos, int64_t want, uint8_t *dst) noexcept nogil:
    """Copies up to `want` file bytes at pos from the piece that holds them; how many, or -1."""
    cdef int i
    cdef int64_t avail
    for i in range(n):
        if f[i].start <= pos < f[i].start + f[i].len:
            avail = f[i].start + f[i].len - pos
            if want > avail:
                want = avail
            memcpy(dst, f[i].data + (pos - f[i].start), want)
            return want
    return -1


cdef void segment_free_buffers(Segment *s) noexcept nogil:
    ps_pool_give(s.pool, s.buf, s.buf_cap)
    ps_pool_give(s.pool, s.spare, s.spare_cap)
    ps_pool_give(s.pool, s.loose, s.loose_cap)
    s.loose = NULL
    s.loose_cap = 0
    frags_give(s.pool, s.full, &s.full_n)
    frags_give(s.pool, s.failed, &s.failed_n)
    s.buf = NULL
    s.spare = NULL
    s.buf_cap = 0
    s.spare_cap = 0
    s.spare_len = 0


cdef void segment_free(Segment *s) noexcept nogil:
    if s == NULL:
        return
    if s.wfd >= 0:
        close(s.wfd)
    if s.rfd >= 0:
        close(s.rfd)
    if s.dfd >= 0:
        close(s.dfd)
    segment_free_buffers(s)
    index_free(&s.index)
    free(s.log_path)
    free(s.index_path)
    free(s.time_path)
    free(s)


cdef int segment_open_writer(Segment *s, bint want_direct, ps_pool *pool, int64_t buf_min, int64_t buf_limit,
                             int64_t prealloc_step, int64_t prealloc_limit) noexcept nogil:
    """Opens the write side at the segment's current size. No buffer yet: the first append
    takes one (segment_wake_prepare)."""
    cdef int direct = 0
    s.wfd = ps_f_open_for_write(s.log_path, want_direct, &direct)
    if s.wfd < 0:
        return PS_ERR_IO
    s.direct = direct != 0
    if s.rfd < 0:
        s.rfd = c_open(s.log_path, O_RDONLY | O_CLOEXEC)
        if s.rfd < 0:
            return PS_ERR_IO
    s.pool = pool
    s.buf_min = ps_page_ceil(buf_min if buf_min > PS_PAGE * 2 else PS_PAGE * 2)
    s.buf_limit = chunk_ceil(buf_limit if buf_limit > s.buf_min else s.buf_min, s.buf_min)
    s.prealloc_step = prealloc_step
    s.prealloc_limit = ps_page_ceil(prealloc_limit)
    s.buf_start = s.size    # nothing in memory
    s.written = s.size
    s.synced = s.size
    s.written_offset = s.next_offset
    s.synced_offset = s.next_offset
    s.allocated = lseek(s.wfd, 0, 2)
    if s.allocated < 0:
        return PS_ERR_IO
    return PS_OK


cdef void segment_go_idle(Segment *s) noexcept nogil:
    """Gives the buffers back and closes the descriptors of a written, synced segment (mutex
    held). Read descriptors a reader still uses are closed by segment_release."""
    segment_free_buffers(s)
    s.buf_start = s.size
    segment_drop_files(s)
    s.idle = True


cdef struct Wake:
    uint8_t *buf                # the new buffer, holding the last partial page
    int64_t cap
    int wfd                     # opened here, or -1 (the segment had one)
    int rfd                     # opened for the read-back; kept if the segment has none by then
    int direct
    int64_t allocated


cdef int segment_wake_prepare(Segment *s, bint want_direct, int64_t need, Wake *w, int *over) noexcept nogil:
    """The file work of waking an idle (or fresh) segment, done WITHOUT the mutex (the caller
    keeps appends and the shard off the segment: part_wake sets `rolling`): a buffer for `need`
    more bytes with the last partial page read back into it, and the write descriptor reopened.
    PS_ERR_NO_MEMORY with *over set: the budget is spent (wait for the shard to reclaim)."""
    cdef int64_t start = ps_page_floor(s.size), tail = s.size - ps_page_floor(s.size)
    cdef int direct = 0
    memset(w, 0, sizeof(Wake))
    w.wfd = -1
    w.rfd = -1
    over[0] = 0
    w.cap = chunk_ceil(tail + need + PS_PAGE, s.buf_min)
    if w.cap > s.pool.capacity:
        return PS_ERR_NO_MEMORY     # bigger than the whole budget: waiting would never end
    w.buf = ps_pool_take(s.pool, w.cap, over)
    if w.buf == NULL:
        return PS_ERR_NO_MEMORY
    if s.wfd < 0:
        w.wfd = ps_f_open_for_write(s.log_path, want_direct and not s.direct_fallback, &direct)
        w.direct = direct
        if w.wfd >= 0:
            w.allocated = lseek(w.wfd, 0, 2)
    if s.wfd >= 0 or (w.wfd >= 0 and w.allocated >= 0):
        w.rfd = c_open(s.log_path, O_RDONLY | O_CLOEXEC)
        if w.rfd >= 0 and (not tail or ps_pread_all(w.rfd, <char *>w.buf, tail, start) == tail):
            return PS_OK
    segment_wake_abandon(s, w)
    return PS_ERR_IO


cdef void segment_wake_abandon(Segment *s, Wake *w) noexcept nogil:
    ps_pool_give(s.pool, w.buf, w.cap)
    w.buf = NULL
    if w.wfd >= 0:
        close(w.wfd)
        w.wfd = -1
    if w.rfd >= 0:
        close(w.rfd)
        w.rfd = -1


cdef void segment_wake_install(Segment *s, Wake *w) noexcept nogil:
    """Puts what segment_wake_prepare made in place (mutex held)."""
    if w.wfd >= 0:
        s.wfd = w.wfd
        s.direct = w.direct != 0
        s.allocated = w.allocated
    if s.rfd < 0:
        s.rfd = w.rfd       # a reader may have opened one meanwhile
    elif w.rfd >= 0:
        close(w.rfd)
    s.buf = w.buf
    s.buf_cap = w.cap
    s.buf_start = ps_page_floor(s.size)
    s.idle = False


cdef bint segment_chain(Segment *s, int64_t need, int *over) noexcept nogil:
    """Room for a batch of `need` bytes that does not fit in what is left of the active buffer:
    a new buffer is chained after it, and the batch goes on there (the full one waits for the
    next write-out; nothing is copied). The new buffer starts on a page in the file, as the full
    one ends on one, so O_DIRECT writes both as they are. False when the chain is at its length
    or the pool has no buffer (*over set when the budget is spent, not when malloc failed)."""
    cdef int64_t room = segment_room(s)
    cdef int64_t cap = chunk_ceil((need - room) if need - room > s.buf_cap else s.buf_cap, s.buf_min)
    cdef uint8_t *b
    over[0] = 0
    if s.full_n >= PS_CHAIN_MAX or frags_bytes(s.full, s.full_n) >= s.buf_limit or cap > s.pool.capacity:
        # Unwritten bytes stay within write_buffer_bytes: a disk that is behind makes the
        # appender wait for the write-out, and a longer chain would only make that wait longer.
        return False
    if s.loose != NULL and s.loose_cap >= cap:
        b = s.loose
        cap = s.loose_cap
        s.loose = NULL
        s.loose_cap = 0
    else:
        b = ps_pool_take(s.pool, cap, over)
        if b == NULL:
            return False
    s.full[s.full_n].data = s.buf
    s.full[s.full_n].cap = s.buf_cap
    s.full[s.full_n].start = s.buf_start
    s.full[s.full_n].len = s.buf_cap
    s.full_n += 1
    ps_pool_count(&s.pool.chained)
    s.buf = b
    s.buf_start += s.buf_cap
    s.buf_cap = cap
    return True


cdef void segment_unchain(Segment *s) noexcept nogil:
    """Undoes the segment_chain of a reservation that was given up before anything was written."""
    s.full_n -= 1
    if s.loose == NULL:
        s.loose = s.buf
        s.loose_cap = s.buf_cap
    else:
        ps_pool_give(s.pool, s.buf, s.buf_cap)
    s.buf = s.full[s.full_n].data
    s.buf_cap = s.full[s.full_n].cap
    s.buf_start = s.full[s.full_n].start
    s.full[s.full_n].data = NULL


cdef inline int64_t segment_next_size(const Segment *s, int64_t written, int64_t cap) noexcept nogil:
    """The size of the buffer to swap in after writing `written` bytes out of a `cap` one."""
    if written * 2 >= cap:
        cap *= 2
    elif written * 4 < cap:
        cap //= 2
    if cap > s.buf_limit:
        cap = s.buf_limit
    if cap < s.buf_min:
        cap = s.buf_min
    return chunk_ceil(cap, s.buf_min)


cdef inline int64_t segment_room(const Segment *s) noexcept nogil:
    return s.buf_cap - (s.size - s.buf_start)


cdef inline void segment_note_batch(Segment *s, int64_t position, int64_t size, int64_t last_offset,
                                    int64_t max_timestamp) noexcept nogil:
    """Index bookkeeping after a batch of `size` bytes landed at `position` (Kafka's rule)."""
    if max_timestamp > s.max_timestamp:
        s.max_timestamp = max_timestamp
        s.max_timestamp_offset = last_offset
    if s.bytes_since_index > s.index_interval:
        index_add(&s.index, <uint32_t>(last_offset - s.base_offset), <uint32_t>position)
        time_index_add(&s.index, s.max_timestamp, <uint32_t>(s.max_timestamp_offset - s.base_offset))
        s.bytes_since_index = 0
    s.bytes_since_index += size
    s.next_offset = last_offset + 1


cdef int segment_write_out(Segment *s, ps_mutex *mu) noexcept nogil:
    """Writes everything appended so far: the chained full buffers and the active one, in one
    pwritev. Called and returns with mu held; drops it for the I/O."""
    cdef uint8_t *old = NULL
    cdef int64_t start, length = 0, end, end_offset, tail = 0, padded, total, old_cap = 0, grow, want
    cdef int rc = 0, err = 0, direct = 0, over = 0, n, i, chained
    cdef bint single = False, have_buf
    ps_mutex_assert_held(mu)
    if s.io_errno:
        return PS_ERR_IO    # fail-stop: after a failed write, never move `written` past the hole
    if s.size == s.written or s.flight_n or s.copying:
        return PS_OK
    end = s.size
    end_offset = s.next_offset
    chained = s.full_n
    for i in range(chained):
        s.flight[i] = s.full[i]
    s.full_n = 0
    n = chained
    have_buf = end > s.buf_start    # the active buffer holds bytes (not only the chain does)
    if have_buf:
        old = s.buf
        old_cap = s.buf_cap
        length = end - s.buf_start
        tail = end - ps_page_floor(end)
        want = segment_next_size(s, length, old_cap)
        if s.spare != NULL and s.spare_cap != want:
            ps_pool_give(s.pool, s.spare, s.spare_cap)   # resized to the write rate
            s.spare = NULL
            s.spare_cap = 0
        s.spare_len = 0     # about to be overwritten (or given back): no longer a copy of the file
        if s.spare == NULL:
            s.spare = ps_pool_take(s.pool, want, &over)
            s.spare_cap = want if s.spare != NULL else 0
        single = s.spare == NULL
        s.flight[n].data = old
        s.flight[n].cap = old_cap
        s.flight[n].start = s.buf_start
        s.flight[n].len = length
        n += 1
        if single:
            # The budget is spent: write this buffer and reuse it; appends wait (part_reserve).
            s.buf = NULL
            s.buf_cap = 0
            s.buf_start = end
        else:
            memcpy(s.spare, old + (length - tail), tail)
            s.buf = s.spare
            s.buf_cap = s.spare_cap
            s.buf_start = end - tail
            s.spare = NULL
            s.spare_cap = 0
    s.flight_n = n
    start = s.flight[0].start
    ps_mutex_unlock(mu)

    # Every piece but the last is a whole buffer (pages); the last is padded for O_DIRECT.
    length = s.flight[n - 1].len
    padded = ps_page_ceil(length) if s.direct else length
    if padded > length:
        memset(s.flight[n - 1].data + length, 0, padded - length)
    total = s.flight[n - 1].start + padded - start
    if start + total > s.allocated and s.prealloc_step > 0:
        # Preallocate in steps: writing into holes of a sparse file halves throughput here.
        # At most up to the segment's size limit (a batch past it: only what it needs).
        # Steps double from 64 KiB up to prealloc_step: a partition written once in a while
        # does not take 32 MiB of disk (10,000 of them would need 320 GB).
        grow = ps_page_ceil(start + total - s.allocated)
        want = s.allocated if s.allocated > 16 * PS_PAGE else 16 * PS_PAGE
        if want > s.prealloc_step:
            want = s.prealloc_step
        if grow < want:
            grow = want
        if s.allocated + grow > s.prealloc_limit and start + total <= s.prealloc_limit:
            grow = s.prealloc_limit - s.allocated
        elif s.allocated + grow > s.prealloc_limit:
            grow = ps_page_ceil(start + total - s.allocated)
        if ps_f_preallocate(s.log_path, s.wfd, s.allocated, grow) == 0:
            s.allocated += grow
    rc = ps_f_pwrite_frags(s.log_path, s.wfd, s.flight, n, padded)
    if rc != 0 and errno == EINVAL and s.direct:
        # The filesystem accepted O_DIRECT at open but refuses the write: go buffered.
        close(s.wfd)
        s.wfd = ps_f_open_for_write(s.log_path, 0, &direct)
        s.direct = False
        s.direct_fallback = True
        rc = -1 if s.wfd < 0 else ps_f_pwrite_frags(s.log_path, s.wfd, s.flight, n, length)
    if rc != 0:
        err = errno

    ps_mutex_lock(mu)
    if err:
        # Keep what failed: it stays readable, and segment_retry writes it again.
        for i in range(n):
            s.failed[i] = s.flight[i]
        s.failed_n = n
        s.flight_n = 0
        s.failed_end_offset = end_offset
        if not s.io_errno:
            s.io_errno = err
        return PS_ERR_IO
    s.flight_n = 0
    for i in range(chained):    # the biggest chained buffer stays for the next chain
        if s.flight[i].cap > s.loose_cap:
            ps_pool_give(s.pool, s.loose, s.loose_cap)
            s.loose = s.flight[i].data
            s.loose_cap = s.flight[i].cap
        else:
            ps_pool_give(s.pool, s.flight[i].data, s.flight[i].cap)
    if end > s.written:
        s.written = end
        s.written_offset = end_offset
    if not have_buf:
        return PS_OK
    length = end - s.flight[n - 1].start
    if single:
        memmove(old, old + (length - tail), tail)
        s.buf = old
        s.buf_cap = old_cap
        s.buf_start = end - tail
        return PS_OK
    s.spare = old
    s.spare_cap = old_cap
    s.spare_start = end - length
    s.spare_len = length
    return PS_OK


cdef int segment_sync(Segment *s, ps_mutex *mu) noexcept nogil:
    """fdatasync what is written. Called and returns with mu held; drops it for the sync."""
    cdef int64_t target = s.written, target_offset = s.written_offset
    cdef int rc
    ps_mutex_assert_held(mu)
    if s.io_errno:
        return PS_ERR_IO
    if s.synced >= target or s.wfd < 0:
        return PS_OK
    ps_mutex_unlock(mu)
    rc = ps_f_fdatasync(s.log_path, s.wfd)
    ps_mutex_lock(mu)
    if rc != 0:
        if not s.io_errno:
            s.io_errno = errno
        return PS_ERR_IO
    if target > s.synced:
        s.synced = target
        s.synced_offset = target_offset
    return PS_OK


cdef int segment_retry(Segment *s, ps_mutex *mu) noexcept nogil:
    """After a failed write or fdatasync: writes again what is not known to be on disk, from
    memory, and fdatasyncs; clears io_errno on success. Called and returns with mu held; drops it
    for the I/O (the caller keeps the shard off this segment: its io_errno is set until the end).

    A failed fdatasync is never simply retried (the kernel may have dropped the dirty pages and
    the next fsync succeed): the unsynced bytes are written again from the last write's buffer.
    PS_ERR_IO when they are no longer in memory: the segment stays failed until a restart."""
    cdef ps_frag one
    cdef const ps_frag *pieces = NULL
    cdef int n = 0, rc = 0, err = 0, direct = 0, i
    cdef int64_t length = 0, padded
    ps_mutex_assert_held(mu)
    if not s.io_errno:
        return PS_OK
    if s.failed_n:
        pieces = s.failed
        n = s.failed_n
    elif s.written > s.synced:
        if s.spare == NULL or s.spare_len == 0 or s.spare_start > s.synced \
                or s.spare_start + s.spare_len != s.written:
            return PS_ERR_IO
        one.data = s.spare
        one.cap = s.spare_cap
        one.start = s.spare_start
        one.len = s.spare_len
        pieces = &one
        n = 1
    ps_mutex_unlock(mu)
    if s.wfd < 0:
        s.wfd = ps_f_open_for_write(s.log_path, 0, &direct)
        s.direct = False
        rc = -1 if s.wfd < 0 else 0
    if rc == 0 and n:
        length = pieces[n - 1].len
        padded = ps_page_ceil(length) if s.direct else length
        rc = ps_f_pwrite_frags(s.log_path, s.wfd, pieces, n, padded)
    if rc == 0:
        rc = ps_f_fdatasync(s.log_path, s.wfd)
    if rc != 0:
        err = errno if errno else EIO
    ps_mutex_lock(mu)
    if err:
        s.io_errno = err
        return PS_ERR_IO
    if s.failed_n:
        # Written: the last piece becomes the spare (a copy of the file's tail), the rest go back.
        n = s.failed_n - 1
        s.written = s.failed[n].start + s.failed[n].len
        s.written_offset = s.failed_end_offset
        ps_pool_give(s.pool, s.spare, s.spare_cap)   # NULL when the write that failed had taken it
        s.spare = s.failed[n].data
        s.spare_cap = s.failed[n].cap
        s.spare_start = s.failed[n].start
        s.spare_len = s.failed[n].len
        s.failed_n = n
        frags_give(s.pool, s.failed, &s.failed_n)
    s.synced = s.written
    s.synced_offset = s.written_offset
    s.io_errno = 0
    return PS_OK


cdef int segment_persist_index(Segment *s, ps_mutex *mu, bint whole) noexcept nogil:
    """Appends the index entries that cover synced bytes to the index files (whole: rewrite all)."""
    cdef SparseIndex snap
    cdef size_t n = s.index.n, tn = s.index.tn, i
    cdef size_t from_n = 0 if whole else s.index_persisted
    cdef size_t from_tn = 0 if whole else s.time_persisted
    cdef int st
    ps_mutex_assert_held(mu)
    if not whole:
        while n > from_n and s.index.pos[n - 1] >= s.synced:
            n -= 1
        while tn > from_tn and s.index.trel[tn - 1] + s.base_offset >= s.synced_offset:
            tn -= 1
        if n == from_n and tn == from_tn:
            return PS_OK
    # Copy under the mutex: appenders may realloc the arrays while we write.
    memset(&snap, 0, sizeof(SparseIndex))
    if index_reserve(&snap, n + 1, tn + 1) != PS_OK:
        index_free(&snap)
        return PS_ERR_NO_MEMORY
    memcpy(snap.rel, s.index.rel, n * sizeof(uint32_t))
    memcpy(snap.pos, s.index.pos, n * sizeof(uint32_t))
    memcpy(snap.ts, s.index.ts, tn * sizeof(int64_t))
    memcpy(snap.trel, s.index.trel, tn * sizeof(uint32_t))
    snap.n = n
    snap.tn = tn
    ps_mutex_unlock(mu)
    st = index_write_files(&snap, s.index_path, s.time_path, from_n, from_tn, whole)
    ps_mutex_lock(mu)
    index_free(&snap)
    if st == PS_OK:
        s.index_persisted = n
        s.time_persisted = tn
    return st


cdef int segment_finalize(Segment *s, ps_mutex *mu) noexcept nogil:
    """Seals a rolled or closing segment: write, sync, trim the preallocation, write indexes."""
    cdef int st = segment_write_out(s, mu)
    cdef int direct = 0
    ps_mutex_assert_held(mu)
    if st == PS_OK:
        st = segment_sync(s, mu)
    if st != PS_OK:
        return st
    if s.wfd < 0 and s.allocated > s.size:
        # Idle (its descriptors closed) with preallocated room left: reopen to trim it.
        s.wfd = ps_f_open_for_write(s.log_path, 0, &direct)
        if s.wfd < 0:
            if not s.io_errno:
                s.io_errno = errno if errno else EIO
            return PS_ERR_IO
    if s.wfd >= 0:
        # Sealed: nobody appends or writes here any more, so the slow calls run unlocked.
        ps_mutex_unlock(mu)
        if ftruncate(s.wfd, s.size) != 0 or ps_f_fdatasync(s.log_path, s.wfd) != 0:
            st = PS_ERR_IO
        else:
            close(s.wfd)
        ps_mutex_lock(mu)
        if st != PS_OK:
            if not s.io_errno:
                s.io_errno = errno if errno else EIO
            return st
        s.wfd = -1
    st = segment_persist_index(s, mu, True)
    if st != PS_OK:
        return st
    segment_free_buffers(s)
    s.finalized = True
    return PS_OK


cdef int segment_open_files(Segment *s, bint want_direct) noexcept nogil:
    """Opens a sealed segment's read descriptors (closed while nobody reads it). Mutex held."""
    if s.rfd < 0:
        s.rfd = c_open(s.log_path, O_RDONLY | O_CLOEXEC)
        if s.rfd < 0:
            return PS_ERR_IO
    if want_direct and s.dfd < 0:
        s.dfd = ps_open_direct_read(s.log_path)
    return PS_OK


cdef void segment_close_files(Segment *s) noexcept nogil:
    """Closes the read descriptors; the next reader reopens them (segment_open_files)."""
    if s.rfd >= 0:
        close(s.rfd)
        s.rfd = -1
    if s.dfd >= 0:
        close(s.dfd)
        s.dfd = -1


cdef void segment_drop_files(Segment *s) noexcept nogil:
    """Closes the write descriptor, and the read ones unless a reader holds them (segment_release
    closes those). Mutex held: an idle segment, or one that failed to finalize at close."""
    if s.wfd >= 0:
        close(s.wfd)
        s.wfd = -1
    if s.refs == 0:
        segment_close_files(s)


cdef void segment_release(Segment *s, ps_mutex *mu) noexcept nogil:
    """Drops a reader's reference; frees a deleted segment once nobody reads it, and closes a
    finalized one's descriptors, so a log holds descriptors for its active segment and its
    reads in progress only, however many segments it has."""
    cdef bint free_it
    ps_mutex_lock(mu)
    s.refs -= 1
    free_it = s.deleted and s.refs == 0
    if s.refs == 0 and (s.finalized or s.idle) and not s.deleted:
        segment_close_files(s)
    ps_mutex_unlock(mu)
    if free_it:
        segment_free(s)


cdef int64_t COPY_CHUNK = 64 * 1024   # the most memory a reader copies per hold of the mutex


cdef inline int64_t segment_memory_start(const Segment *s) noexcept nogil:
    """Where the bytes a reader must copy from memory begin (mutex held): those below are in
    the file, except what the spare still holds from the last write (O_DIRECT writes leave
    nothing in the page cache, so a consumer at the tail is served from memory)."""
    if s.spare != NULL and s.spare_len > 0 and s.spare_start + s.spare_len == s.written:
        return s.spare_start
    return s.written


cdef int64_t segment_copy_memory(const Segment *s, int64_t pos, int64_t n, uint8_t *dst) noexcept nogil:
    """Copies up to n bytes at pos (>= segment_memory_start, < size) from the buffer that holds
    them (mutex held); returns how many (fewer at a buffer's end), -1 if no buffer does."""
    cdef int64_t avail
    if pos < s.written:                                   # the spare, kept from the last write
        avail = s.written - pos
        memcpy(dst, s.spare + (pos - s.spare_start), n if n < avail else avail)
        return n if n < avail else avail
    if pos >= s.buf_start:                                # the active buffer
        memcpy(dst, s.buf + (pos - s.buf_start), n)
        return n
    avail = s.buf_start - pos
    if n > avail:
        n = avail
    # Below the active buffer: a write in flight, the chain of full buffers after it, or a
    # failed write kept until written again.
    avail = frags_copy(s.flight, s.flight_n, pos, n, dst)
    if avail < 0:
        avail = frags_copy(s.full, s.full_n, pos, n, dst)
    if avail < 0:
        avail = frags_copy(s.failed, s.failed_n, pos, n, dst)
    return avail                                          # -1: nothing holds these bytes (never expected)


cdef int64_t segment_copy_out(Segment *s, ps_mutex *mu, int64_t pos, int64_t length, uint8_t *dst) noexcept nogil:
    """Copies [pos, pos+length) of the segment into dst (clipped at its end); returns the byte count or -1.

    Bytes in the file are pread without the mutex (they never change once written). Bytes in
    memory are copied under it, at most COPY_CHUNK at a time: a reader never holds the mutex
    across a whole batch. Between chunks the bytes may move from memory to the file; where
    each chunk is read from is decided afresh.
    """
    cdef int64_t end, b = pos, n, mem_lo
    ps_mutex_lock(mu)
    end = pos + length
    if end > s.size:
        end = s.size
    if end <= pos:
        ps_mutex_unlock(mu)
        return 0
    while True:
        mem_lo = segment_memory_start(s)
        if b < mem_lo:
            n = (end if end < mem_lo else mem_lo) - b
            ps_mutex_unlock(mu)
            # O_DIRECT first (see ps_pread_direct); buffered where it is refused or comes up short.
            if (s.dfd < 0 or ps_pread_direct(s.dfd, <char *>dst + (b - pos), n, b) != n) and \
                    ps_pread_all(s.rfd, <char *>dst + (b - pos), n, b) != n:
                return -1
        else:
            n = segment_copy_memory(s, b, COPY_CHUNK if end - b > COPY_CHUNK else end - b, dst + (b - pos))
            ps_mutex_unlock(mu)
            if n < 0:
                return -1
        b += n
        if b >= end:
            return end - pos
        ps_mutex_lock(mu)
