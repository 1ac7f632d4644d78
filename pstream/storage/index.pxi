# Sparse offset index and time index of one segment, held as C arrays.
#
# File formats (big-endian, as Kafka writes them):
#   <base>.index      8 bytes an entry: relative offset u32, file position u32
#   <base>.timeindex 12 bytes an entry: timestamp i64, relative offset u32
# An offset entry maps the LAST offset of a batch to the batch's start position;
# a look-up takes the greatest entry at or below the target and scans forward.
# A time entry records the greatest timestamp seen so far in the segment and the
# offset that carried it. Both are disposable: rebuilt from the log when missing,
# short or inconsistent.


cdef int index_reserve(SparseIndex *ix, size_t n, size_t tn) noexcept nogil:
    cdef size_t cap
    cdef void *p
    if n > ix.cap:
        cap = ix.cap * 2 if ix.cap else 256
        while cap < n:
            cap *= 2
        p = realloc(ix.rel, cap * sizeof(uint32_t))
        if p == NULL:
            return PS_ERR_NO_MEMORY
        ix.rel = <uint32_t *>p
        p = realloc(ix.pos, cap * sizeof(uint32_t))
        if p == NULL:
            return PS_ERR_NO_MEMORY
        ix.pos = <uint32_t *>p
        ps_index_bytes_add(<int64_t>(cap - ix.cap) * 2 * sizeof(uint32_t))
        ix.cap = cap
    if tn > ix.tcap:
        cap = ix.tcap * 2 if ix.tcap else 256
        while cap < tn:
            cap *= 2
        p = realloc(ix.ts, cap * sizeof(int64_t))
        if p == NULL:
            return PS_ERR_NO_MEMORY
        ix.ts = <int64_t *>p
        p = realloc(ix.trel, cap * sizeof(uint32_t))
        if p == NULL:
            return PS_ERR_NO_MEMORY
        ix.trel = <uint32_t *>p
        ps_index_bytes_add(<int64_t>(cap - ix.tcap) * (sizeof(int64_t) + sizeof(uint32_t)))
        ix.tcap = cap
    return PS_OK


cdef void index_free(SparseIndex *ix) noexcept nogil:
    ps_index_bytes_add(-<int64_t>(ix.cap * 2 * sizeof(uint32_t) + ix.tcap * (sizeof(int64_t) + sizeof(uint32_t))))
    free(ix.rel)
    free(ix.pos)
    free(ix.ts)
    free(ix.trel)
    memset(ix, 0, sizeof(SparseIndex))


cdef inline int index_add(SparseIndex *ix, uint32_t rel, uint32_t pos) noexcept nogil:
    if ix.n == ix.cap and index_reserve(ix, ix.n + 1, 0) != PS_OK:
        return PS_ERR_NO_MEMORY
    ix.rel[ix.n] = rel
    ix.pos[ix.n] = pos
    ix.n += 1
    return PS_OK


cdef inline int time_index_add(SparseIndex *ix, int64_t ts, uint32_t rel) noexcept nogil:
    """Adds (ts, rel) only when ts is greater than the last entry's timestamp."""
    if ix.tn and ts <= ix.ts[ix.tn - 1]:
        return PS_OK
    if ix.tn == ix.tcap and index_reserve(ix, 0, ix.tn + 1) != PS_OK:
        return PS_ERR_NO_MEMORY
    ix.ts[ix.tn] = ts
    ix.trel[ix.tn] = rel
    ix.tn += 1
    return PS_OK


cdef int64_t index_position_for(const SparseIndex *ix, uint32_t rel) noexcept nogil:
    """File position to start scanning for relative offset rel: the greatest entry below it."""
    # Entries key the LAST offset of a batch: an entry below rel names a batch that
    # ends before rel, so the batch holding rel starts at or after its position.
    cdef size_t lo = 0, hi = ix.n
    cdef size_t mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if ix.rel[mid] < rel:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0:
        return 0
    return ix.pos[lo - 1]


cdef int64_t time_index_rel_for(const SparseIndex *ix, int64_t ts) noexcept nogil:
    """Relative offset to start scanning for the first record with timestamp >= ts."""
    cdef size_t lo = 0, hi = ix.tn
    cdef size_t mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if ix.ts[mid] < ts:
            lo = mid + 1
        else:
            hi = mid
    # entries before lo have a max timestamp below ts: everything up to their offset is older.
    if lo == 0:
        return 0
    return <int64_t>ix.trel[lo - 1] + 1


cdef void index_truncate_to_position(SparseIndex *ix, int64_t end) noexcept nogil:
    """Drops offset entries pointing at or past end, and time entries past the last kept offset."""
    while ix.n and ix.pos[ix.n - 1] >= end:
        ix.n -= 1
    cdef uint32_t last_rel = ix.rel[ix.n - 1] if ix.n else 0
    while ix.tn and (ix.n == 0 or ix.trel[ix.tn - 1] > last_rel):
        ix.tn -= 1


cdef int index_write_files(const SparseIndex *ix, const char *index_path, const char *time_path,
                           size_t from_n, size_t from_tn, bint truncate) noexcept nogil:
    """Writes entries [from_n, n) and [from_tn, tn) at their places in the two files."""
    cdef int st = PS_OK
    cdef size_t i, count
    cdef uint8_t *out
    cdef int fd
    count = ix.n - from_n if ix.n > from_n else 0
    out = <uint8_t *>malloc(count * 8 + 1)
    if out == NULL:
        return PS_ERR_NO_MEMORY
    for i in range(count):
        ps_store_be32(out + i * 8, ix.rel[from_n + i])
        ps_store_be32(out + i * 8 + 4, ix.pos[from_n + i])
    fd = c_open(index_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
    if fd < 0 or ps_pwrite_all(fd, <const char *>out, count * 8, <int64_t>from_n * 8) != 0 \
            or (truncate and ftruncate(fd, <off_t>(ix.n * 8)) != 0):
        st = PS_ERR_IO
    if fd >= 0:
        close(fd)
    free(out)
    if st != PS_OK:
        return st
    count = ix.tn - from_tn if ix.tn > from_tn else 0
    out = <uint8_t *>malloc(count * 12 + 1)
    if out == NULL:
        return PS_ERR_NO_MEMORY
    for i in range(count):
        ps_store_be64(out + i * 12, <uint64_t>ix.ts[from_tn + i])
        ps_store_be32(out + i * 12 + 8, ix.trel[from_tn + i])
    fd = c_open(time_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
    if fd < 0 or ps_pwrite_all(fd, <const char *>out, count * 12, <int64_t>from_tn * 12) != 0 \
            or (truncate and ftruncate(fd, <off_t>(ix.tn * 12)) != 0):
        st = PS_ERR_IO
    if fd >= 0:
        close(fd)
    free(out)
    return st


cdef int read_whole_file(const char *path, uint8_t **data, ssize_t *size) noexcept nogil:
    """Reads a small file into malloc'd memory; a missing file reads as empty."""
    cdef int fd = c_open(path, O_RDONLY | O_CLOEXEC)
    cdef ssize_t n
    data[0] = NULL
    size[0] = 0
    if fd < 0:
        return PS_OK
    n = <ssize_t>lseek(fd, 0, 2)
    if n < 0:
        close(fd)
        return PS_ERR_IO
    data[0] = <uint8_t *>malloc(n + 1)
    if data[0] == NULL:
        close(fd)
        return PS_ERR_NO_MEMORY
    size[0] = ps_pread_all(fd, <char *>data[0], n, 0)
    close(fd)
    return PS_OK if size[0] >= 0 else PS_ERR_IO


cdef int index_load_files(SparseIndex *ix, const char *index_path, const char *time_path) noexcept nogil:
    """Loads both files (whole entries only); callers check consistency with the log."""
    cdef uint8_t *data
    cdef ssize_t size
    cdef size_t i, n
    cdef int st = read_whole_file(index_path, &data, &size)
    if st != PS_OK:
        return st
    n = <size_t>size // 8
    st = index_reserve(ix, n, 0)
    if st == PS_OK:
        for i in range(n):
            ix.rel[i] = ps_load_be32(data + i * 8)
            ix.pos[i] = ps_load_be32(data + i * 8 + 4)
        ix.n = n
    free(data)
    if st != PS_OK:
        return st
    st = read_whole_file(time_path, &data, &size)
    if st != PS_OK:
        return st
    n = <size_t>size // 12
    st = index_reserve(ix, 0, n)
    if st == PS_OK:
        for i in range(n):
            ix.ts[i] = <int64_t>ps_load_be64(data + i * 12)
            ix.trel[i] = ps_load_be32(data + i * 12 + 8)
        ix.tn = n
    free(data)
    return st


cdef bint index_is_monotonic(const SparseIndex *ix, int64_t log_size) noexcept nogil:
    cdef size_t i
    for i in range(ix.n):
        if ix.pos[i] >= log_size:
            return False
        if i and (ix.rel[i] <= ix.rel[i - 1] or ix.pos[i] <= ix.pos[i - 1]):
            return False
    for i in range(1, ix.tn):
        if ix.ts[i] <= ix.ts[i - 1] or ix.trel[i] < ix.trel[i - 1]:
            return False
    return True


# --- the index cache: finalized segments' indexes within a budget -------------------------
#
# An active segment builds its index in memory. Once finalized (its files written), the
# index joins its shard's LRU list; beyond the shard's budget the least recently used ones
# are dropped, and the next look-up reads them back from their files (Kafka maps its index
# files lazily for the same reason). So a log with many segments holds the indexes it reads,
# not all of them. A closed partition has none on the list (close() takes them off; nothing
# adds one once `closed` is set), so freeing its segments later leaves nothing dangling.
# Everything here runs with the shard's mutex held.

cdef inline int64_t index_bytes_of(const SparseIndex *ix) noexcept nogil:
    return <int64_t>(ix.cap * 2 * sizeof(uint32_t) + ix.tcap * (sizeof(int64_t) + sizeof(uint32_t)))


cdef void index_cache_unlink(Shard *sh, Segment *s) noexcept nogil:
    if s.ix_prev != NULL:
        s.ix_prev.ix_next = s.ix_next
    else:
        sh.ix_head = s.ix_next
    if s.ix_next != NULL:
        s.ix_next.ix_prev = s.ix_prev
    else:
        sh.ix_tail = s.ix_prev
    s.ix_prev = NULL
    s.ix_next = NULL


cdef void index_cache_push(Shard *sh, Segment *s) noexcept nogil:
    s.ix_prev = NULL
    s.ix_next = sh.ix_head
    if sh.ix_head != NULL:
        sh.ix_head.ix_prev = s
    else:
        sh.ix_tail = s
    sh.ix_head = s


cdef void index_cache_add(Shard *sh, Segment *s) noexcept nogil:
    """A finalized segment whose index files hold what its arrays hold joins the list (first),
    and the least recently used others go until the list fits the budget (never this one)."""
    cdef Segment *old
    if s.index_cached or s.index_on_disk:
        return
    s.index_cached = True
    index_cache_push(sh, s)
    sh.ix_bytes += index_bytes_of(&s.index)
    while sh.ix_bytes > sh.ix_budget and sh.ix_tail != s:
        old = sh.ix_tail
        index_cache_forget(sh, old)
        index_free(&old.index)
        old.index_on_disk = True
        sh.ix_evictions += 1


cdef void index_cache_forget(Shard *sh, Segment *s) noexcept nogil:
    """Takes a segment off the list (it leaves its partition, or its arrays are about to go)."""
    if s.index_cached:
        index_cache_unlink(sh, s)
        sh.ix_bytes -= index_bytes_of(&s.index)
        s.index_cached = False


cdef int segment_index_ready(PartState *p, Segment *s) noexcept nogil:
    """Makes a segment's index usable for a look-up (the caller holds a reference to it).

    Reading it back from its files drops the mutex meanwhile. A read error leaves the index
    empty for this look-up (it scans from the segment's start: slower, still right) and the
    next one tries again; a file that does not fit the segment is replaced by an empty index.
    """
    cdef Shard *sh = p.shard
    cdef SparseIndex ix
    cdef int st
    if s.index_cached:
        if sh.ix_head != s:
            index_cache_unlink(sh, s)
            index_cache_push(sh, s)
        return PS_OK
    if not s.index_on_disk:
        return PS_OK        # an active segment (or a cleaned one not yet indexed): its arrays are its index
    memset(&ix, 0, sizeof(SparseIndex))
    ps_mutex_unlock(&sh.mu)
    st = index_load_files(&ix, s.index_path, s.time_path)
    ps_mutex_lock(&sh.mu)
    sh.ix_loads += 1
    if st == PS_OK and not index_is_monotonic(&ix, s.size):
        index_free(&ix)
    if st != PS_OK or not s.index_on_disk or s.deleted:
        index_free(&ix)     # failed, or another reader loaded it meanwhile, or it left the partition
        return st
    s.index = ix
    s.index_on_disk = False
    if not p.closed:
        index_cache_add(sh, s)
    return PS_OK


cdef void part_forget_indexes(PartState *p) noexcept nogil:
    """Takes a closing partition's segments off its shard's list."""
    cdef size_t i
    for i in range(p.n_segs):
        index_cache_forget(p.shard, p.segs[i])
