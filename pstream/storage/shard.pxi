# Shard threads: one per core, each owning a fixed set of partitions.
#
# A shard is a pthread that never takes the GIL. Appenders (Python threads, or the
# broker's loop) copy batches into a partition's segment buffer under the shard's
# mutex and put the partition on the shard's dirty list; the shard writes buffers
# out, fdatasyncs per the flush policy and wakes whoever waits: threads on `done`,
# the asyncio loop through the doorbell (an eventfd). Every appender waiting on the
# same partition is covered by one fdatasync (group commit).
#
# Memory and descriptors stay planned: a partition's active segment takes write buffers
# from its shard's budget (`pool`, write_pool_bytes) and holds descriptors only while it
# is a "holder". Holders are listed least recently appended first; the shard gives back
# the buffers and descriptors of a holder idle for HOLD_IDLE_NS, and at once, oldest first,
# when an appender finds a budget spent (bytes, or max_holders: the descriptor budget).

cdef int64_t HOLD_IDLE_NS = 1_000_000_000   # idle this long: a partition's buffers and descriptors go

cdef int64_t FSYNC_BOUNDS_NS[FSYNC_BUCKETS]
FSYNC_BOUNDS_NS[:] = [100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000,
                      50_000_000, 100_000_000, 250_000_000, 500_000_000, 1_000_000_000]


cdef inline void shard_note_sync(Shard *sh, int64_t ns) noexcept nogil:
    """Counts one fdatasync that took `ns` in the shard's histogram (mutex held)."""
    cdef int i = 0
    ps_mutex_assert_held(&sh.mu)
    while i < FSYNC_BUCKETS and ns > FSYNC_BOUNDS_NS[i]:
        i += 1
    sh.counters.sync_hist[i] += 1
    sh.counters.sync_ns += ns
    sh.counters.syncs += 1


cdef inline Segment *part_active(PartState *p) noexcept nogil:
    return p.segs[p.n_segs - 1]


cdef inline void holders_unlink(Shard *sh, PartState *p) noexcept nogil:
    if p.hold_prev != NULL:
        p.hold_prev.hold_next = p.hold_next
    else:
        sh.hold_head = p.hold_next
    if p.hold_next != NULL:
        p.hold_next.hold_prev = p.hold_prev
    else:
        sh.hold_tail = p.hold_prev
    p.hold_prev = NULL
    p.hold_next = NULL


cdef inline void holders_touch(Shard *sh, PartState *p) noexcept nogil:
    """Lists p as the most recently appended holder (mutex held)."""
    if p.holding:
        if sh.hold_tail == p:
            return
        holders_unlink(sh, p)
    else:
        p.holding = True
        sh.holders += 1
    p.hold_prev = sh.hold_tail
    if sh.hold_tail != NULL:
        sh.hold_tail.hold_next = p
    else:
        sh.hold_head = p
    sh.hold_tail = p


cdef inline void holders_forget(Shard *sh, PartState *p) noexcept nogil:
    """Takes p off the holders list (mutex held): released, or closing."""
    if p.holding:
        holders_unlink(sh, p)
        p.holding = False
        sh.holders -= 1


cdef bint part_release(Shard *sh, PartState *p) noexcept nogil:
    """Gives back the active segment's buffers and descriptors if everything in them is written
    and synced and nobody works on the partition (mutex held). True once it holds nothing."""
    cdef Segment *a
    if not p.holding:
        return True
    if p.busy or p.rolling or p.reviving or p.io_errno or p.closed:
        return False
    if p.n_segs > 1 and not p.segs[p.n_segs - 2].finalized:
        return False
    a = part_active(p)
    if a.flight_n or a.failed_n or a.size != a.written or a.written != a.synced:
        return False
    segment_go_idle(a)
    holders_forget(sh, p)
    ps_pool_count(&sh.pool.released)
    return True


cdef int64_t shard_reclaim(Shard *sh, bint may_write) noexcept nogil:
    """Releases holders, least recently appended first (mutex held); with may_write (the
    shard thread), a holder with unwritten or unsynced data is written and synced first
    (the mutex is dropped for that). Returns how many let go."""
    cdef PartState *q = sh.hold_head
    cdef PartState *nxt
    cdef int64_t freed = 0, steps = sh.holders * 2 + 1
    while q != NULL and steps > 0:
        steps -= 1
        nxt = q.hold_next
        if part_release(sh, q):
            freed += 1
        elif may_write and not q.busy and not q.io_errno and not q.reviving and not q.rolling \
                and not q.closed and not part_active(q).flight_n:
            q.busy += 1        # close() waits while the mutex is dropped
            q.sync_requested = True
            part_service(sh, q, ps_monotonic_ns())
            q.busy -= 1
            if part_release(sh, q):
                freed += 1
            nxt = sh.hold_head   # the list may have changed meanwhile
        q = nxt
    if freed:
        pthread_cond_broadcast(&sh.done)
    return freed


cdef inline void shard_ask_reclaim(Shard *sh) noexcept nogil:
    """An appender found a budget spent: it waits on `done`, the shard reclaims (mutex held)."""
    sh.pool_waiters += 1
    ps_pool_count(&sh.pool.waits)
    sh.reclaim_requested = True
    pthread_cond_signal(&sh.work)


cdef int64_t shard_release_idle(Shard *sh, int64_t now) noexcept nogil:
    """Releases holders idle for HOLD_IDLE_NS (mutex held); returns when to look again."""
    cdef PartState *q = sh.hold_head
    cdef PartState *nxt
    while q != NULL:
        nxt = q.hold_next
        if now - q.last_append_ns < HOLD_IDLE_NS:
            return q.last_append_ns + HOLD_IDLE_NS
        part_release(sh, q)     # not yet written or synced: looked at again after its service
        q = nxt
    return INT64_MAX


cdef inline void shard_enqueue(Shard *sh, PartState *p) noexcept nogil:
    """Puts p on the dirty list (mutex held) and wakes the shard."""
    ps_mutex_assert_held(&sh.mu)
    if not p.queued:
        p.queued = True
        p.next_dirty = NULL
        if sh.dirty_tail == NULL:
            sh.dirty_head = p
        else:
            sh.dirty_tail.next_dirty = p
        sh.dirty_tail = p
    pthread_cond_signal(&sh.work)


cdef inline void shard_watch_check(Shard *sh, PartState *p) noexcept nogil:
    if (p.watch_offset >= 0 and p.next_offset > p.watch_offset) or \
            (p.watch_durable >= 0 and (p.durable_offset > p.watch_durable or p.io_errno)):
        p.watch_offset = -1
        p.watch_durable = -1
        ps_bells_ring(sh.bells)


cdef bint part_needs_service(PartState *p, int64_t now_ns, int64_t *deadline, bint stopping) noexcept nogil:
    cdef Segment *a = part_active(p)
    cdef int64_t due
    if p.io_errno:
        return False        # fail-stop: nothing more is written for this partition
    if stopping and a.size > a.synced:
        p.sync_requested = True
    if p.sync_requested or p.write_requested or p.n_segs > 1 and not p.segs[p.n_segs - 2].finalized:
        return True
    if a.size == a.synced:
        return False
    if p.flush_mode == FLUSH_ALWAYS:
        return True
    if p.flush_mode == FLUSH_BYTES:
        return a.size - a.synced >= p.flush_bytes
    due = p.dirty_since_ns + p.flush_ms * 1000000
    if now_ns >= due:
        return True
    if due < deadline[0]:
        deadline[0] = due
    return False


cdef void part_fail(PartState *p, int err, const char *path) noexcept nogil:
    """Marks the partition failed (mutex held): appends are refused, waiters are told at once."""
    ps_mutex_assert_held(&p.shard.mu)
    if p.io_errno:
        return
    p.io_errno = err if err else EIO
    p.failures += 1
    p.fail_file[0] = 0
    if path != NULL:
        strncpy(p.fail_file, path, sizeof(p.fail_file) - 1)
        p.fail_file[sizeof(p.fail_file) - 1] = 0


cdef int part_revive(PartState *p) noexcept nogil:
    """Retries a failed partition (mutex held; dropped for the I/O): every segment's failed write
    or fdatasync is done again from memory, oldest segment first; on success appends are taken
    again and the shard goes on writing. PS_ERR_IO (io_errno updated) while the disk still fails."""
    cdef Shard *sh = p.shard
    cdef Segment *s
    cdef size_t i = 0
    cdef int st = PS_OK
    ps_mutex_assert_held(&p.shard.mu)
    while p.reviving:       # two rewrites of one buffer must never overlap
        ps_cond_wait(&sh.done, &sh.mu)
    if not p.io_errno:
        return PS_OK
    if p.closed:
        return PS_ERR_CLOSED
    if p.io_errno == EUCLEAN:   # damage found at recovery: only the operator's truncate clears it
        return PS_ERR_IO
    p.reviving = True
    p.busy += 1             # close() waits for it: no segment is freed under the retry
    while i < p.n_segs:
        s = p.segs[i]
        if s.io_errno:
            st = segment_retry(s, &sh.mu)
            if st != PS_OK:
                p.io_errno = s.io_errno
                break
            i = 0           # the list may have changed while the mutex was dropped
            continue
        i += 1
    p.busy -= 1
    p.reviving = False
    if st == PS_OK:
        p.io_errno = 0
        part_update_durable(p)
        p.write_requested = True
        p.sync_requested = True
        shard_enqueue(sh, p)
    shard_watch_check(sh, p)
    pthread_cond_broadcast(&sh.done)
    return st


cdef inline void part_publish(PartState *p) noexcept nogil:
    """Tells read-only readers (other processes) what they may read: the durable offsets."""
    if p.published != NULL:
        ps_store_i64(&p.published[1], ps_load_i64(&p.log_start_offset))
        ps_store_i64(&p.published[0], ps_load_i64(&p.durable_offset))
        ps_bells_publish(p.shard.bells)


cdef void part_update_durable(PartState *p) noexcept nogil:
    """durable_offset: synced up to the first segment not yet finalized (all before it are).

    Never moves after a failed write or sync: acknowledged means on disk."""
    cdef size_t j = 0
    ps_mutex_assert_held(&p.shard.mu)
    if p.io_errno:
        return
    while j + 1 < p.n_segs and p.segs[j].finalized:
        j += 1
    if p.segs[j].synced_offset > p.durable_offset:
        ps_store_i64(&p.durable_offset, p.segs[j].synced_offset)
        part_publish(p)
        if p.flush_mode == FLUSH_ALWAYS:
            ps_bells_moved(p.shard.bells)   # the high watermark is the durable offset


cdef void part_service(Shard *sh, PartState *p, int64_t now_ns) noexcept nogil:
    """Finalizes sealed segments, writes the active buffer, and syncs per policy (mutex held)."""
    cdef Segment *a
    cdef Segment *s
    cdef size_t i
    cdef int st
    cdef bint sync
    cdef int64_t t0 = ps_monotonic_ns()
    cdef int64_t t_sync
    cdef bint fresh
    ps_mutex_assert_held(&sh.mu)
    a = part_active(p)
    sync = (p.sync_requested or p.flush_mode == FLUSH_ALWAYS
            or (p.flush_mode == FLUSH_INTERVAL and p.dirty_since_ns and now_ns >= p.dirty_since_ns + p.flush_ms * 1000000)
            or (p.flush_mode == FLUSH_BYTES and a.size - a.synced >= p.flush_bytes))
    p.sync_requested = False
    p.write_requested = False
    # Finalize sealed segments oldest first; the list can change while the mutex is
    # dropped (rolls append, retention removes finalized ones), so re-read it each time.
    i = 0
    while i + 1 < p.n_segs and not p.io_errno:
        s = p.segs[i]
        if s.sealed and not s.finalized:
            st = segment_finalize(s, &sh.mu)
            if st != PS_OK:
                part_fail(p, s.io_errno, s.log_path)
            elif not p.closed:
                index_cache_add(sh, s)      # its index files are whole now: the LRU may drop the arrays
            i = 0
            continue
        i += 1
    a = part_active(p)
    if a.copying:       # the buffer must stay put: part_copy_end puts the partition back on the list
        p.write_requested = True
        p.sync_requested = sync
        sh.counters.busy_ns += ps_monotonic_ns() - t0
        return
    st = segment_write_out(a, &sh.mu)
    sh.counters.writes += 1
    if st == PS_OK and sync:
        fresh = a.synced < a.written   # else segment_sync has nothing to fdatasync
        t_sync = ps_monotonic_ns()
        st = segment_sync(a, &sh.mu)
        if fresh:
            shard_note_sync(sh, ps_monotonic_ns() - t_sync)
        if st == PS_OK:
            segment_persist_index(a, &sh.mu, False)
    if st != PS_OK:
        part_fail(p, a.io_errno, a.log_path)
    part_update_durable(p)
    a = part_active(p)
    if a.direct_fallback:
        p.direct_fallback = True
    if a.size == a.synced:
        p.dirty_since_ns = 0
    elif sync:
        p.dirty_since_ns = t0  # what is still unsynced arrived after this sync began
    sh.counters.busy_ns += ps_monotonic_ns() - t0
    shard_watch_check(sh, p)
    pthread_cond_broadcast(&sh.done)


cdef void *shard_main(void *arg) noexcept nogil:
    cdef Shard *sh = <Shard *>arg
    cdef PartState *p
    cdef PartState *batch
    cdef PartState *nxt
    cdef int64_t now, deadline
    cdef timespec ts
    cdef int64_t idle_due
    ps_mutex_lock(&sh.mu)
    while True:
        if sh.reclaim_requested:
            sh.reclaim_requested = False
            shard_reclaim(sh, True)
            pthread_cond_broadcast(&sh.done)
        if sh.sub_head != NULL:
            now = ps_monotonic_ns()
            shard_run_submissions(sh)
            sh.counters.busy_ns += ps_monotonic_ns() - now
        now = ps_monotonic_ns()
        deadline = INT64_MAX
        batch = sh.dirty_head
        sh.dirty_head = NULL
        sh.dirty_tail = NULL
        while batch != NULL:
            p = batch
            batch = p.next_dirty
            p.next_dirty = NULL
            if part_needs_service(p, now, &deadline, not sh.running):
                part_service(sh, p, now)
                now = ps_monotonic_ns()
            # Still holding unsynced data? Keep it listed for its deadline (an appender copying
            # into its buffer lists it again itself, in part_copy_end: no spinning meanwhile).
            p.queued = False
            if p.closed:
                pthread_cond_broadcast(&sh.done)    # close() waits for the partition to be off the list
            if not p.io_errno and not part_active(p).copying and (part_active(p).size > part_active(p).synced and p.flush_mode != FLUSH_BYTES
                                   or p.sync_requested or p.write_requested
                                   or p.n_segs > 1 and not p.segs[p.n_segs - 2].finalized):
                shard_enqueue(sh, p)
                if p.flush_mode == FLUSH_INTERVAL and p.dirty_since_ns:
                    if p.dirty_since_ns + p.flush_ms * 1000000 < deadline:
                        deadline = p.dirty_since_ns + p.flush_ms * 1000000
        if sh.durable_wait != NULL:
            shard_complete_durable(sh)
        if sh.hold_head != NULL:
            idle_due = shard_release_idle(sh, ps_monotonic_ns())
            if idle_due < deadline and sh.running:
                deadline = idle_due
        if sh.sub_head != NULL or sh.reclaim_requested or sh.dirty_head != NULL and (
                sh.dirty_head.sync_requested or sh.dirty_head.write_requested):
            continue
        if not sh.running and sh.dirty_head == NULL and sh.durable_wait == NULL:
            break
        if deadline == INT64_MAX:
            if sh.dirty_head != NULL and not sh.running:
                continue
            ps_cond_wait(&sh.work, &sh.mu)
        else:
            ts.tv_sec = deadline // 1000000000
            ts.tv_nsec = deadline % 1000000000
            ps_cond_timedwait(&sh.work, &sh.mu, &ts)
    ps_mutex_unlock(&sh.mu)
    return NULL


cdef class ShardPool:
    """The shard threads of one Log; partitions are assigned by a stable hash."""
    cdef Shard *shards
    cdef int n
    cdef ps_bells bells
    cdef bint bells_ready
    cdef int read_fds[PS_MAX_BELLS]   # the ends event loops watch, beside bells.fds (equal for an eventfd)

    def __cinit__(self, int count, int64_t write_pool_bytes=64 << 20, int64_t chunk_bytes=64 << 10,
                  int64_t max_open_files=600, int64_t index_cache_bytes=64 << 20):
        cdef pthread_condattr_t attr
        cdef int i
        self.n = 0
        self.bells_ready = False    # before anything can raise: __dealloc__ looks at it
        if count < 1:
            raise _errors.ConfigError(f"shards must be at least 1, got {count}")
        if chunk_bytes < 8192 or chunk_bytes % PS_PAGE:
            raise _errors.ConfigError(f"chunk_bytes must be a multiple of {PS_PAGE} of at least 8192, got {chunk_bytes}")
        if write_pool_bytes < 4 * chunk_bytes:
            raise _errors.ConfigError(f"write_pool_bytes must be at least 4 chunks ({4 * chunk_bytes}), "
                                      f"got {write_pool_bytes}")
        if max_open_files < 3 * count:
            raise _errors.ConfigError(f"max_open_files must be at least 3 per shard ({3 * count}), "
                                      f"got {max_open_files}")
        if index_cache_bytes < 0:
            raise _errors.ConfigError(f"index_cache_bytes must not be negative, got {index_cache_bytes}")
        if ps_bells_init(&self.bells) != 0:
            raise MemoryError()
        self.bells_ready = True
        self.shards = <Shard *>calloc(count, sizeof(Shard))
        if self.shards == NULL:
            raise MemoryError()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        for i in range(count):
            ps_mutex_init(&self.shards[i].mu)
            pthread_cond_init(&self.shards[i].work, &attr)
            pthread_cond_init(&self.shards[i].done, NULL)
            self.shards[i].bells = &self.bells
            self.shards[i].pool.capacity = write_pool_bytes
            self.shards[i].chunk_bytes = chunk_bytes
            self.shards[i].max_holders = max_open_files // 3 // count
            self.shards[i].ix_budget = index_cache_bytes // count
            self.shards[i].running = True
            if pthread_create(&self.shards[i].thread, NULL, shard_main, &self.shards[i]) != 0:
                self.shards[i].running = False
                self.n = i
                raise_os_error(errno, "cannot start a shard thread")
            self.shards[i].started = True
            self.n = i + 1

    @property
    def count(self):
        return self.n

    def open_doorbell(self):
        """A new doorbell (an eventfd, or a pipe's read end) for an event loop to watch: readable
        when a watched partition moved or a submitted append completed. One per loop, at most
        PS_MAX_BELLS; close_doorbell gives it back."""
        cdef int fds[2]
        cdef int i
        if self.bells.n >= PS_MAX_BELLS:
            raise RuntimeError(f"at most {PS_MAX_BELLS} event loops may await one Log's offsets at once")
        if ps_doorbell_open(fds) != 0:
            raise_os_error(errno, "cannot create a doorbell")
        self._lock_all()
        self.read_fds[self.bells.n] = fds[0]
        self.bells.fds[self.bells.n] = fds[1]
        self.bells.n += 1
        self._unlock_all()
        return fds[0]

    def close_doorbell(self, int fd):
        """Stops ringing the doorbell open_doorbell returned, and closes it."""
        cdef int i, w = -1
        self._lock_all()
        for i in range(self.bells.n):
            if self.read_fds[i] == fd:
                w = self.bells.fds[i]
                self.bells.n -= 1
                self.read_fds[i] = self.read_fds[self.bells.n]
                self.bells.fds[i] = self.bells.fds[self.bells.n]
                break
        self._unlock_all()
        if w >= 0:
            close(fd)
            if w != fd:
                close(w)

    def drain_doorbell(self, int fd):
        ps_doorbell_drain(fd)

    def publish_readable(self, path):
        """Maps `path` (<data>/@readable) as the counter read-only readers in other processes
        wait on (pstream/storage/reader.py); the shards bump it and wake them at every publish."""
        cdef int64_t *page = ps_map_published(_os.fsencode(path))
        if page == NULL:
            return False     # a read-only filesystem, say: readers look every few milliseconds instead
        self._lock_all()
        if self.bells.shared_seq != NULL:
            ps_unmap_published(<int64_t *>self.bells.shared_seq)
        self.bells.shared_seq = <uint32_t *>page
        self._unlock_all()
        return True

    cdef void _lock_all(self):
        cdef int i
        for i in range(self.n):
            lock_with_gil_released(&self.shards[i].mu)

    cdef void _unlock_all(self):
        cdef int i
        for i in range(self.n):
            ps_mutex_unlock(&self.shards[i].mu)

    cdef Shard *shard_for(self, int index):
        return &self.shards[index % self.n]

    def stats(self):
        """Per-shard counters, one dict a shard: writes, syncs (fdatasyncs of appended data),
        sync_s (seconds in them), sync_buckets ([(upper bound in seconds, cumulative count)],
        the last bound inf), busy_s (seconds appending, writing and syncing), queue_depth
        (submitted appends not yet done). Each shard's values are read in one go under its mutex."""
        cdef ShardCounters snap
        cdef int i, b
        cdef int64_t running
        out = []
        for i in range(self.n):
            lock_with_gil_released(&self.shards[i].mu)
            snap = self.shards[i].counters
            ps_mutex_unlock(&self.shards[i].mu)
            buckets = []
            running = 0
            for b in range(FSYNC_BUCKETS + 1):
                running += snap.sync_hist[b]
                buckets.append((FSYNC_BOUNDS_NS[b] / 1e9 if b < FSYNC_BUCKETS else float("inf"), running))
            out.append(dict(writes=snap.writes, syncs=snap.syncs, sync_s=snap.sync_ns / 1e9, sync_buckets=buckets,
                            busy_s=snap.busy_ns / 1e9, queue_depth=snap.queued))
        return out

    def memory(self):
        """The write pool of each shard, one dict a shard: capacity_bytes (the budget), in_use_bytes,
        peak_bytes, waits (appends that waited for the budget), released (idle partitions that
        gave their buffers back), chained (batches that went on into a chained buffer), holders (partitions holding buffers or descriptors) and
        max_holders; and its index cache: index_cache_bytes (finalized segments' indexes held),
        index_cache_capacity_bytes, index_loads (read back from their files) and index_evictions.
        The pool's counters are atomics; the index cache's are read under the mutex."""
        cdef int i
        cdef Shard *sh
        cdef int64_t ix_bytes, ix_loads, ix_evictions
        out = []
        for i in range(self.n):
            sh = &self.shards[i]
            lock_with_gil_released(&sh.mu)
            ix_bytes, ix_loads, ix_evictions = sh.ix_bytes, sh.ix_loads, sh.ix_evictions
            ps_mutex_unlock(&sh.mu)
            out.append(dict(capacity_bytes=sh.pool.capacity, in_use_bytes=ps_pool_load(&sh.pool.in_use),
                            peak_bytes=ps_pool_load(&sh.pool.peak), waits=ps_pool_load(&sh.pool.waits),
                            released=ps_pool_load(&sh.pool.released), chained=ps_pool_load(&sh.pool.chained),
                            holders=sh.holders,
                            max_holders=sh.max_holders, index_cache_bytes=ix_bytes,
                            index_cache_capacity_bytes=sh.ix_budget, index_loads=ix_loads,
                            index_evictions=ix_evictions))
        return out

    @staticmethod
    def index_bytes():
        """Bytes of the index arrays of every open segment in the process (an atomic counter)."""
        return ps_index_bytes_now()

    def stop(self):
        """Drains every dirty list, then joins the threads."""
        cdef int i
        for i in range(self.n):
            if self.shards[i].started:
                with nogil:
                    ps_mutex_lock(&self.shards[i].mu)
                    self.shards[i].running = False
                    pthread_cond_signal(&self.shards[i].work)
                    ps_mutex_unlock(&self.shards[i].mu)
                    pthread_join(self.shards[i].thread, NULL)
                self.shards[i].started = False
        # No thread rings any more: the doorbells go now, not when a garbage collector frees the pool.
        self._close_doorbells()
        if self.bells_ready:
            ps_bells_close(&self.bells)   # followers waiting return and find the log closed

    cdef void _close_doorbells(self):
        cdef int i
        for i in range(self.bells.n if self.bells_ready else 0):
            close(self.read_fds[i])
            if self.bells.fds[i] != self.read_fds[i]:
                close(self.bells.fds[i])
        if self.bells_ready:
            self.bells.n = 0

    def __dealloc__(self):
        cdef int i
        if self.shards != NULL:
            self.stop()
            for i in range(self.n):
                ps_mutex_destroy(&self.shards[i].mu)
                pthread_cond_destroy(&self.shards[i].work)
                pthread_cond_destroy(&self.shards[i].done)
            free(self.shards)
            self.shards = NULL
        self._close_doorbells()
        if self.bells_ready:
            ps_unmap_published(<int64_t *>self.bells.shared_seq)
            self.bells.shared_seq = NULL
            ps_bells_destroy(&self.bells)
            self.bells_ready = False
