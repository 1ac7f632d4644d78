# Retention: whole old segments go per retention_bytes, retention_ms and the log start offset
# (Partition.apply_retention, log.pxi, calls in here with the partition's clean_lock held).
# Segments are taken out of the list under the mutex; their files are unlinked and their memory
# freed after it (a reader still holding one frees it when it lets go).


cdef int64_t retention_apply(Partition part, now_ms) except -1:
    cdef int64_t now = ps_now_ms() if now_ms is None else now_ms
    cdef int64_t total = 0
    cdef size_t i, n_delete = 0, j
    cdef Segment *s
    cdef Segment **to_free
    cdef char **doomed
    cdef size_t n_free = 0, n_doomed = 0
    cdef int64_t new_start
    if part.retention_ms >= 0 and part.deletes and part.damage is None:
        lock_with_gil_released(&part.sh.mu)
        s = part_active(part.p)
        expired_active = s.size > 0 and s.max_timestamp < now - part.retention_ms
        ps_mutex_unlock(&part.sh.mu)
        if expired_active:
            part.roll()
            part.flush()
    lock_with_gil_released(&part.sh.mu)
    to_free = <Segment **>malloc((part.p.n_segs + 1) * sizeof(Segment *))
    doomed = <char **>calloc(part.p.n_segs * 3 + 1, sizeof(char *))
    if to_free == NULL or doomed == NULL:
        ps_mutex_unlock(&part.sh.mu)
        free(to_free)
        free(doomed)
        raise MemoryError()
    for i in range(part.p.n_segs):
        total += part.p.segs[i].size
    while n_delete + 1 < part.p.n_segs:
        s = part.p.segs[n_delete]
        if not s.finalized:
            break
        if s.next_offset <= part.p.log_start_offset:
            pass
        elif part.deletes and part.retention_bytes >= 0 and total - s.size >= part.retention_bytes:
            pass
        elif part.deletes and part.retention_ms >= 0 and s.max_timestamp < now - part.retention_ms:
            pass
        else:
            break
        total -= s.size
        n_delete += 1
    if n_delete:
        # No Python objects while the mutex is held (a GC pass could run code that takes it).
        for i in range(n_delete):
            s = part.p.segs[i]
            s.deleted = True
            index_cache_forget(part.sh, s)
            doomed[n_doomed] = strdup(s.log_path)
            doomed[n_doomed + 1] = strdup(s.index_path)
            doomed[n_doomed + 2] = strdup(s.time_path)
            n_doomed += 3
            if s.refs == 0:         # readers holding it free it when they let go
                to_free[n_free] = s
                n_free += 1
        new_start = part.p.segs[n_delete].base_offset
        memmove(part.p.segs, part.p.segs + n_delete, (part.p.n_segs - n_delete) * sizeof(Segment *))
        part.p.n_segs -= n_delete
        # Move the start with the segments, so no reader sees offsets that have no segment.
        # (The checkpoint may lag after a crash: the first segment's base wins at open.)
        if new_start > part.p.log_start_offset:
            ps_store_i64(&part.p.log_start_offset, new_start)
            part_publish(part.p)
    ps_mutex_unlock(&part.sh.mu)
    with nogil:
        for i in range(n_doomed):
            if doomed[i] != NULL:
                unlink(doomed[i])
                free(doomed[i])
        for i in range(n_free):
            segment_free(to_free[i])
    free(doomed)
    free(to_free)
    if n_delete:
        checkpoint_write_log_start(part)
    part._close_idle_files()   # segments rolled since: their descriptors until they are read
    return n_delete
