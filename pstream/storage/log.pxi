# One partition's log: its segments, the append paths, reads, rolls and retention.
#
# The segments and offsets live in a C struct (PartState) shared with the owning shard
# thread under the shard's mutex. Appends run in the caller's thread: reserve room in
# the active segment's buffer (mutex held), write the batch there, commit, and leave
# writes and fdatasyncs to the shard. Nothing on this path creates per-record Python
# objects. Rule that keeps the GIL and the mutex from deadlocking: never wait for the
# GIL while holding the mutex (waits unlock it before taking the GIL back).
#
# Descriptors: the active segment keeps its files open while its partition is one of the
# shard's holders (shard.pxi: appended to lately, within the descriptor budget); a finalized
# or idle segment's read descriptors are opened by the first reader and closed by the last
# (segment_release), so a log of any number of partitions and segments needs a bounded
# number, and close() releases them all.

import logging as _logging
import os as _os
import threading as _threading

_log = _logging.getLogger("pstream.storage")

cdef extern from "<errno.h>":
    int EUCLEAN                 # "structure needs cleaning": io_errno of a partition recovery found damaged

cdef size_t MAX_CORRUPT_LOGGED = 1024   # distinct (file, position) pairs remembered to log each once

cdef int64_t DEFAULT_READ_BYTES = 1 << 20


cdef inline void mutex_wait_then_unlock(Shard *sh) noexcept nogil:
    """Waits on `done` (mutex held) and returns with the mutex released."""
    ps_cond_wait(&sh.done, &sh.mu)
    ps_mutex_unlock(&sh.mu)


cdef int part_add_segment(PartState *p, Segment *s) noexcept nogil:
    cdef Segment **grown
    if p.n_segs == p.cap_segs:
        grown = <Segment **>realloc(p.segs, (p.cap_segs * 2 + 4) * sizeof(Segment *))
        if grown == NULL:
            return PS_ERR_NO_MEMORY
        p.segs = grown
        p.cap_segs = p.cap_segs * 2 + 4
    p.segs[p.n_segs] = s
    p.n_segs += 1
    return PS_OK


cdef size_t part_find_segment(PartState *p, int64_t offset) noexcept nogil:
    """Index of the last segment whose base offset is <= offset (0 if none)."""
    cdef size_t lo = 0, hi = p.n_segs, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if p.segs[mid].base_offset <= offset:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1 if lo else 0


cdef int fsync_directory(const char *path) noexcept nogil:
    cdef int fd = c_open(path, O_RDONLY | O_CLOEXEC)
    cdef int rc
    if fd < 0:
        return PS_ERR_IO
    rc = ps_fdatasync(fd)
    close(fd)
    return PS_OK if rc == 0 else PS_ERR_IO


def segment_bases(str directory):
    """Base offsets of the .log files in a partition directory, ascending (names: storage/layout.py)."""
    from pstream.storage import layout
    return layout.segment_bases(directory)


cdef class Partition:
    """The log of one partition of one topic: append, read, roll, retain.

    Thread-safe: any Python thread may append or read; writes and fsyncs happen on the
    owning shard thread. Offsets are assigned here, in append order.
    """
    cdef PartState *p
    cdef Shard *sh
    cdef ShardPool pool
    cdef readonly str topic
    cdef readonly int number
    cdef readonly str path
    cdef bytes path_bytes
    cdef int64_t retention_bytes
    cdef int64_t retention_ms
    cdef bint fallback_logged
    cdef int64_t failures_logged    # storage failure episodes already logged
    cdef object checkpoint_lock          # held only to compare and rename, never across an fsync
    cdef int64_t checkpoint_written      # the log start offset last renamed into place (under checkpoint_lock)
    cdef readonly object damage          # where recovery found damage it may not cut (writes refused), or None
    cdef readonly int64_t corrupt_reads  # reads that met a corrupt batch (logged once per file and position)
    cdef set corrupt_logged
    cdef object clean_lock               # one cleaning or retention pass at a time (cleaner.pxi)
    cdef readonly dict cleaner           # the cleaner's checkpoint and counters (cleaner.pxi)
    cdef bint deletes                    # cleanup_policy includes delete: retention removes old segments

    def __cinit__(self):
        self.p = NULL

    def __init__(self, ShardPool pool, int shard_index, str topic, int number, str path, *,
                 str flush="always", int64_t flush_ms=10, int64_t flush_bytes=1 << 20,
                 int64_t segment_bytes=1 << 30, segment_ms=None, retention_bytes=None, retention_ms=None,
                 int64_t index_interval_bytes=4096, int64_t write_buffer_bytes=1 << 20,
                 int64_t preallocate_bytes=32 << 20, int64_t max_message_bytes=1048588,
                 int timestamp_type=0, bint direct_io=True, str cleanup_policy="delete"):
        modes = {"always": FLUSH_ALWAYS, "interval": FLUSH_INTERVAL, "bytes": FLUSH_BYTES}
        if flush not in modes:
            raise _errors.ConfigError(f"flush must be one of always, interval, bytes; got {flush!r}")
        self.pool = pool
        self.sh = pool.shard_for(shard_index)
        self.topic = topic
        self.number = number
        self.path = path
        self.path_bytes = _os.fsencode(path)
        self.checkpoint_lock = _threading.Lock()
        self.clean_lock = _threading.Lock()
        self.deletes = "delete" in cleanup_policy
        self.corrupt_logged = set()
        self.retention_bytes = -1 if retention_bytes is None else retention_bytes
        self.retention_ms = -1 if retention_ms is None else retention_ms
        self.p = <PartState *>calloc(1, sizeof(PartState))
        if self.p == NULL:
            raise MemoryError()
        self.p.shard = self.sh
        self.p.flush_mode = modes[flush]
        self.p.flush_ms = flush_ms
        self.p.flush_bytes = flush_bytes
        self.p.watch_offset = -1
        self.p.watch_durable = -1
        self.p.segment_bytes = segment_bytes
        self.p.segment_ms = -1 if segment_ms is None else segment_ms
        self.p.index_interval = index_interval_bytes
        self.p.buffer_bytes = write_buffer_bytes
        self.p.prealloc_bytes = preallocate_bytes
        self.p.max_message_bytes = max_message_bytes
        self.p.timestamp_type = timestamp_type
        self.p.want_direct = direct_io
        self.p.directory = strdup(self.path_bytes)
        _os.makedirs(path, exist_ok=True)
        self._load()
        first_dirty, compacted_below, next_expiry = read_cleaner_checkpoint(path)
        self.cleaner = {"first_dirty_offset": first_dirty, "compacted_below": compacted_below, "runs": 0, "bytes_read": 0,
                        "bytes_written": 0, "records_removed": 0, "last_clean_ms": -1, "last_clean_duration_s": 0.0,
                        "next_tombstone_expiry_ms": next_expiry}

    # --- opening ------------------------------------------------------------------

    cdef int _load(self) except -1:
        recover_cleaner_files(self.path)   # a cleaner swap a crash interrupted (cleaner.pxi)
        cdef list bases = segment_bases(self.path)
        cdef Segment *s
        cdef ScanResult res
        cdef int64_t start, base
        cdef int st
        cdef size_t i, loaded_n, loaded_tn, kept_n, kept_tn
        cdef int64_t found, found_offset = -1
        cdef int64_t checkpoint = self._read_log_start_checkpoint()
        cdef int64_t compacted_below = read_cleaner_checkpoint(self.path)[1]
        if not bases:
            bases = [max(checkpoint, 0)]
        for i in range(len(bases)):
            base = bases[i]
            s = segment_new(self.p.directory, base, self.p.index_interval)
            if s == NULL:
                raise MemoryError()
            if part_add_segment(self.p, s) != PS_OK:
                segment_free(s)
                raise MemoryError()
            s.gaps = base < compacted_below      # the cleaner may have left gaps between its batches
            s.rfd = c_open(s.log_path, O_RDONLY | O_CLOEXEC | O_CREAT, 0o644)
            if s.rfd < 0:
                raise_os_error(errno, "cannot open segment", s.log_path.decode())
            if self.p.want_direct:
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
                    self._cut_tail(s, &res)   # preallocated zeros left by a crash
                elif i + 1 < len(bases):
                    self._keep_corrupt_segment(s, &res, bases[i + 1])
                else:
                    with nogil:
                        found = segment_find_batch_after(s, res.bad_position, s.next_offset, res.file_size,
                                                         &found_offset)
                    if found < 0:
                        self._cut_tail(s, &res)   # a torn tail: nothing valid can follow it
                    else:
                        self._keep_damaged_tail(s, &res, found, found_offset)
            st = PS_OK
            if kept_n != loaded_n or kept_tn != loaded_tn or s.index.n != kept_n or s.index.tn != kept_tn:
                with nogil:  # the index was rebuilt or trimmed: replace the files
                    st = index_write_files(&s.index, s.index_path, s.time_path, 0, 0, True)
            if i + 1 < len(bases):
                segment_close_files(s)     # reopened when read: no descriptors held for sealed segments
                if st == PS_OK:            # its files hold its index: read back by the first look-up
                    index_free(&s.index)
                    s.index_on_disk = True
        if checkpoint > part_active(self.p).next_offset and self.damage is None:
            # A torn tail took the log below its start offset (records deleted by
            # delete_records): everything left is deleted data, so start afresh at the
            # log start offset, as Kafka does, and never hand out an offset twice.
            _log.warning("%s-%d: the log ends at %d, below its start offset %d; restarting it empty at %d",
                         self.topic, self.number, part_active(self.p).next_offset, checkpoint, checkpoint)
            for i in range(self.p.n_segs):
                s = self.p.segs[i]
                for path in (s.log_path, s.index_path, s.time_path):
                    try:
                        _os.unlink(path)
                    except FileNotFoundError:
                        pass
                segment_free(s)
            self.p.n_segs = 0
            s = segment_new(self.p.directory, checkpoint, self.p.index_interval)
            if s == NULL or part_add_segment(self.p, s) != PS_OK:
                segment_free(s)
                raise MemoryError()
        # The last segment becomes the active one again (unless damaged: then it stays sealed as it is).
        s = part_active(self.p)
        if self.damage is not None:
            self.p.io_errno = EUCLEAN     # every append is refused, with the damage named (_raise_locked)
        else:
            s.sealed = s.finalized = False
            s.created_ms = ps_now_ms()
            s.index_persisted = s.index.n
            s.time_persisted = s.index.tn
            with nogil:   # opens and preallocates files: the event loop may need the GIL meanwhile
                st = segment_open_writer(s, self.p.want_direct, &self.sh.pool, self.sh.chunk_bytes,
                                         self.p.buffer_bytes, self.p.prealloc_bytes, self.p.segment_bytes)
            if st != PS_OK:
                raise_os_error(errno, "cannot open segment for writing", s.log_path.decode())
            segment_go_idle(s)   # no buffer, no descriptor until the first append (part_wake)
        if self.p.want_direct and not s.direct:
            _log.warning("%s-%d: the filesystem refused O_DIRECT for %s; writing through the page cache",
                         self.topic, self.number, s.log_path.decode())
            self.fallback_logged = True
        self.p.next_offset = s.next_offset
        self.p.durable_offset = s.next_offset
        self.p.log_start_offset = max(checkpoint, self.p.segs[0].base_offset)
        if self.p.log_start_offset > self.p.next_offset:
            self.p.log_start_offset = self.p.next_offset
        return 0

    cdef int _cut_tail(self, Segment *s, ScanResult *res) except -1:
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
                         "from position %d (%s)", self.topic, self.number, s.log_path.decode(), s.next_offset,
                         res.file_size - res.valid_end, res.valid_end, reason)
        return 0

    cdef int _keep_corrupt_segment(self, Segment *s, ScanResult *res, int64_t next_base) except -1:
        """Damage inside an older segment is not a torn write: the later segments hold acknowledged
        data, so nothing is cut. The bytes stay; reading them raises CorruptSegmentError."""
        reason = status_error(res.status, res.bad_position)
        _log.warning("%s-%d: corrupt batch in %s at position %d (%s); keeping the segment: reads of "
                     "offsets %d..%d will fail", self.topic, self.number, s.log_path.decode(), res.bad_position,
                     reason, s.next_offset, next_base - 1)
        s.size = s.written = s.synced = res.file_size
        s.next_offset = s.written_offset = s.synced_offset = next_base
        return 0

    cdef int _keep_damaged_tail(self, Segment *s, ScanResult *res, int64_t found, int64_t found_offset) except -1:
        """Damage in the active segment with a valid batch after it is not a torn write: what follows
        may be acknowledged and fsynced. Nothing is cut; the partition stays readable up to the damage
        and refuses writes until an operator truncates it (`pstream log truncate`)."""
        reason = status_error(res.status, res.bad_position)
        self.damage = {"file": s.log_path.decode(), "position": res.bad_position, "offset": s.next_offset,
                       "next_valid_position": found, "next_valid_offset": found_offset}
        _log.error("%s-%d: corrupt batch in %s at position %d (%s), followed by valid batches from position %d "
                   "(offset %d): not a torn tail, so nothing is cut. The partition is readable up to offset %d and "
                   "refuses writes. To drop everything from the damage on, stop the broker and run: "
                   "pstream log truncate %s --to %d", self.topic, self.number, s.log_path.decode(), res.bad_position,
                   reason, found, found_offset, s.next_offset, self.path, s.next_offset)
        return 0

    def _damage_error(self):
        d = self.damage
        return _errors.StorageIOError(
            f"writes are refused: recovery found a corrupt batch followed by valid ones at offset {d['offset']}; "
            f"stop the broker and run `pstream log truncate {self.path} --to {d['offset']}` to drop everything "
            f"from there on", topic=self.topic, partition=self.number, offset=d["offset"], file=d["file"],
            position=d["position"])

    cdef int64_t _read_log_start_checkpoint(self) except -2:
        for name in _os.listdir(self.path):   # temporary files of writers a crash interrupted
            if name.startswith("log-start-offset.") and name.endswith(".tmp"):
                _os.unlink(_os.path.join(self.path, name))
        try:
            with open(_os.path.join(self.path, "log-start-offset")) as f:
                self.checkpoint_written = int(f.read().strip() or 0)
                return self.checkpoint_written
        except FileNotFoundError:
            return 0
        except (ValueError, UnicodeDecodeError):
            # Ignoring it would bring deleted records back to consumers: refuse to start instead.
            from pstream.storage.metadata import CorruptMetadataError, LOG_START_ADVICE
            raise CorruptMetadataError(_os.path.join(self.path, "log-start-offset"), "not a decimal offset",
                                       LOG_START_ADVICE) from None

    def _write_log_start_checkpoint(self):
        """Persists the current log start offset, durably before it returns.

        Writers may run at once (the retention thread, DeleteRecords on the disk pool, the
        group coordinator): each writes and fsyncs its own temporary file with no lock held,
        so none waits on another's fsync; checkpoint_lock covers only the compare and the
        rename, so the file never goes back to an older offset. Every writer fsyncs the
        directory after it, which also makes a newer rename by another writer durable.
        """
        value = ps_load_i64(&self.p.log_start_offset)
        tmp = _os.path.join(self.path, f"log-start-offset.{_threading.get_ident()}.tmp")
        with open(tmp, "w") as f:
            f.write(f"{value}\n")
            f.flush()
            _os.fsync(f.fileno())
        with self.checkpoint_lock:
            newer = value > self.checkpoint_written
            if newer:
                _os.replace(tmp, _os.path.join(self.path, "log-start-offset"))
                self.checkpoint_written = value
        if not newer:   # a later offset is in place already
            _os.unlink(tmp)
        with nogil:
            fsync_directory(self.p.directory)

    # --- properties --------------------------------------------------------------

    # The partition's offsets by name, as Kafka names them. On a single node the high watermark
    # is what a crash cannot take back: with flush "always" the durable offset (a consumer never
    # reads a record a crash could undo), with a relaxed policy everything appended (the policy
    # says the user accepts that loss). Storage decides it; the broker only reports it.

    @property
    def log_end_offset(self):
        """One past the last appended offset: what the embedded API can read."""
        return ps_load_i64(&self.p.next_offset)

    @property
    def high_watermark(self):
        """One past the last offset consumers may read (Fetch, ListOffsets latest, lag)."""
        return ps_load_i64(&self.p.durable_offset if self.p.flush_mode == FLUSH_ALWAYS else &self.p.next_offset)

    @property
    def log_start_offset(self):
        """The first offset still in the log (moved by retention and delete_records)."""
        return ps_load_i64(&self.p.log_start_offset)

    @property
    def leader_epoch(self):
        """Stamped into every appended batch (partitionLeaderEpoch)."""
        return ps_load_i32(&self.p.leader_epoch)

    @leader_epoch.setter
    def leader_epoch(self, int32_t value):
        lock_with_gil_released(&self.sh.mu)
        ps_store_i32(&self.p.leader_epoch, value)
        ps_mutex_unlock(&self.sh.mu)

    def reconfigure(self, *, int64_t segment_bytes, segment_ms, retention_bytes, retention_ms,
                    int64_t max_message_bytes, int timestamp_type, int64_t index_interval_bytes,
                    str cleanup_policy="delete", **_ignored):
        """Applies changed topic settings to the open partition (the next append, roll or
        retention check sees them). Settings fixed at open (buffers, flush) are ignored here."""
        cdef int64_t seg_ms = -1 if segment_ms is None else segment_ms
        cdef int64_t ret_bytes = -1 if retention_bytes is None else retention_bytes
        cdef int64_t ret_ms = -1 if retention_ms is None else retention_ms
        lock_with_gil_released(&self.sh.mu)   # converted above: no Python objects under the mutex
        self.p.segment_bytes = segment_bytes
        self.p.segment_ms = seg_ms
        ps_store_i64(&self.p.max_message_bytes, max_message_bytes)
        ps_store_i32(&self.p.timestamp_type, timestamp_type)
        self.p.index_interval = index_interval_bytes
        self.retention_bytes = ret_bytes
        self.retention_ms = ret_ms
        ps_mutex_unlock(&self.sh.mu)
        self.deletes = "delete" in cleanup_policy

    @property
    def timestamp_type(self):
        """0: CreateTime (producers' timestamps), 1: LogAppendTime (the log's clock)."""
        return ps_load_i32(&self.p.timestamp_type)

    @property
    def durable_offset(self):
        """Offsets below this are fdatasync'ed."""
        return ps_load_i64(&self.p.durable_offset)

    @property
    def direct_io(self):
        """Whether the active segment writes with O_DIRECT."""
        cdef bint direct
        lock_with_gil_released(&self.sh.mu)
        direct = part_active(self.p).direct
        ps_mutex_unlock(&self.sh.mu)
        return direct

    @property
    def flush_policy(self):
        return ("always", "interval", "bytes")[self.p.flush_mode]

    def _watch(self, int64_t offset, bint durable=False):
        """Rings the pool's doorbell once offset exists (durable: is fdatasync'ed).

        Returns True instead when that is already the case.
        """
        lock_with_gil_released(&self.sh.mu)
        if durable:
            if self.p.durable_offset > offset or self.p.io_errno:
                ps_mutex_unlock(&self.sh.mu)
                return True
            if self.p.watch_durable < 0 or offset < self.p.watch_durable:
                self.p.watch_durable = offset
        else:
            if self.p.next_offset > offset:
                ps_mutex_unlock(&self.sh.mu)
                return True
            if self.p.watch_offset < 0 or offset < self.p.watch_offset:
                self.p.watch_offset = offset
        ps_mutex_unlock(&self.sh.mu)
        return False

    @property
    def storage_error(self):
        """(errno, file) of the failed write or fdatasync that stops appends here, or None."""
        cdef int err
        cdef bytes path
        lock_with_gil_released(&self.sh.mu)
        err = self.p.io_errno
        path = self.p.fail_file
        ps_mutex_unlock(&self.sh.mu)
        self._log_failure()
        return (err, _os.fsdecode(path)) if err else None

    def revive(self):
        """After a failed write or fdatasync (a full disk): writes again from memory what is not
        on disk yet and syncs it; returns True once the partition takes appends again, False while
        the disk still fails (nothing is lost either way: the data stays in memory and readable)."""
        cdef int st
        with nogil:
            ps_mutex_lock(&self.sh.mu)
            st = part_revive(self.p)
            ps_mutex_unlock(&self.sh.mu)
        if st == PS_OK:
            return True
        self._log_failure()
        return False

    cdef int _log_failure(self) except -1:
        """Logs each failure episode once, with the partition, the file and the error."""
        cdef int err
        cdef int64_t failures
        cdef bytes path
        if self.p.failures == self.failures_logged:
            return 0
        lock_with_gil_released(&self.sh.mu)
        err = self.p.io_errno
        failures = self.p.failures
        path = self.p.fail_file
        ps_mutex_unlock(&self.sh.mu)
        self.failures_logged = failures
        if err:
            _log.error("%s-%d: writing %s failed: %s (errno %d); appends to this partition are refused "
                       "until %s", self.topic, self.number, _os.fsdecode(path), _os.strerror(err), err,
                       "the disk has room again" if err in (ENOSPC, EDQUOT) else "a restart")
        return 0

    def _raise_if_failed(self):
        """Raises the error of a failed write or fdatasync on this partition, if any."""
        lock_with_gil_released(&self.sh.mu)
        if self.p.io_errno:
            self._raise_locked(PS_ERR_IO)
        ps_mutex_unlock(&self.sh.mu)

    def segments(self):
        """(base_offset, next_offset, size_bytes, path) of every segment, oldest first."""
        cdef size_t i, n
        cdef Segment *snap = NULL
        lock_with_gil_released(&self.sh.mu)
        n = self.p.n_segs
        snap = <Segment *>malloc(n * sizeof(Segment))
        if snap != NULL:
            for i in range(n):
                snap[i] = self.p.segs[i][0]
                snap[i].log_path = strdup(self.p.segs[i].log_path)
        ps_mutex_unlock(&self.sh.mu)
        if snap == NULL:
            raise MemoryError()
        out = []
        for i in range(n):
            out.append((snap[i].base_offset, snap[i].next_offset, snap[i].size, snap[i].log_path.decode()))
            free(snap[i].log_path)
        free(snap)
        return out

    def size_bytes(self):
        return sum(seg[2] for seg in self.segments())

    def stats(self):
        """(size_bytes, segments, buffer_bytes, index_bytes), read in one go under the mutex:
        the bytes of the log, its segment count, the write buffers it holds (the active
        segment's, from the shard's pool, none while idle; a sealed one's until finalized)
        and its index arrays."""
        cdef size_t i
        cdef Segment *s
        cdef int64_t size = 0, buffers = 0, indexes = 0, n
        lock_with_gil_released(&self.sh.mu)
        n = self.p.n_segs
        for i in range(self.p.n_segs):
            s = self.p.segs[i]
            size += s.size
            buffers += s.buf_cap + s.spare_cap
            if s.inflight != NULL:
                buffers += s.buf_cap   # being written: the buffer swapped out (the same size, unless grown)
            indexes += s.index.cap * 2 * sizeof(uint32_t) + s.index.tcap * (sizeof(int64_t) + sizeof(uint32_t))
        ps_mutex_unlock(&self.sh.mu)
        return size, n, buffers, indexes

    # --- appending ---------------------------------------------------------------

    cdef int _raise_locked(self, int status) except -1:
        """Raises the error for a status (mutex held on entry, released before raising)."""
        cdef int err = self.p.io_errno
        ps_mutex_unlock(&self.sh.mu)
        if status == PS_ERR_IO and self.damage is not None:
            raise self._damage_error()
        if status == PS_ERR_IO:
            self._log_failure()
            raise status_error(status, None, "a write to this partition failed", self.topic, self.number,
                               err or errno, _os.fsdecode(self.p.fail_file) if err else None)
        if status == PS_ERR_NO_MEMORY:
            raise MemoryError("the batch does not fit in the shard's write pool (write_pool_bytes)")
        raise status_error(status, None, None, self.topic, self.number)

    cdef int64_t _begin(self, int64_t total, int64_t count, int64_t now_ms, uint8_t **dst,
                        Segment **pinned) except -1:
        """Reserves `total` bytes in the active buffer; returns the base offset, the mutex
        released and the buffer pinned (`pinned`) until _commit: the caller encodes into *dst.

        The GIL stays held on the fast path; every wait drops the mutex before the GIL
        is taken back, so the two never deadlock.
        """
        cdef int st
        cdef int64_t base
        while True:
            lock_with_gil_released(&self.sh.mu)
            st = part_reserve(self.p, total, count, now_ms, dst)
            if st == RESERVE_WAKE:
                with nogil:
                    st = part_wake(self.p, part_active(self.p), total)
            if st == PS_OK:
                base = self.p.next_offset
                pinned[0] = part_copy_begin(self.p)
                return base
            if st == RESERVE_ROLL:
                with nogil:
                    st = part_roll_locked(self.p)
                    ps_mutex_unlock(&self.sh.mu)
                if st != PS_OK:
                    raise_os_error(errno, "cannot create a new segment", self.path)
            elif st == RESERVE_ROOM or st == RESERVE_WAIT:
                if st == RESERVE_ROOM:   # the shard writes the buffer out and swaps in the spare
                    self.p.write_requested = True
                    shard_enqueue(self.sh, self.p)
                with nogil:
                    mutex_wait_then_unlock(self.sh)
            elif st == RESERVE_AGAIN:
                ps_mutex_unlock(&self.sh.mu)
            elif st == RESERVE_OPEN:
                ps_mutex_unlock(&self.sh.mu)
                raise_os_error(errno, "cannot open segment for writing", self.path)
            elif st == RESERVE_POOL:     # the shard gives back idle partitions' buffers, then wakes us
                shard_ask_reclaim(self.sh)
                with nogil:
                    ps_cond_wait(&self.sh.done, &self.sh.mu)
                    self.sh.pool_waiters -= 1
                    ps_mutex_unlock(&self.sh.mu)
            else:
                self._raise_locked(st)

    cdef inline void _commit(self, Segment *pinned, int64_t total, int64_t last_offset,
                             int64_t max_timestamp) noexcept nogil:
        """Publishes what _begin reserved and the caller encoded (without the GIL: it takes the mutex)."""
        part_copy_end(self.p, pinned)
        part_commit(self.p, total, last_offset, max_timestamp)
        ps_mutex_unlock(&self.sh.mu)

    cdef int _after_append(self, int64_t last_offset) except -1:
        """With flush='always', returns only after the fdatasync that covers last_offset."""
        if not self.fallback_logged and self.p.direct_fallback:
            self.fallback_logged = True
            _log.warning("%s-%d: the filesystem refused an O_DIRECT write; writing through the page cache",
                         self.topic, self.number)
        if self.p.flush_mode != FLUSH_ALWAYS:
            return 0
        while True:
            lock_with_gil_released(&self.sh.mu)
            if self.p.durable_offset > last_offset:
                ps_mutex_unlock(&self.sh.mu)
                return 0
            if self.p.io_errno:
                self._raise_locked(PS_ERR_IO)
            with nogil:
                mutex_wait_then_unlock(self.sh)

    def append(self, value, key=None, headers=None, timestamp_ms=None):
        """Appends one record as its own batch; returns its offset."""
        cdef RecordSpec r
        cdef Segment *pinned
        cdef int64_t total, base, now
        cdef uint8_t *dst
        cdef int32_t hcount = 0
        cdef bytes hb = None
        cdef int16_t attributes = PS_ATTR_TIMESTAMP_TYPE if ps_load_i32(&self.p.timestamp_type) else 0
        if not PyBytes_CheckExact(value):
            value = as_bytes(value, "value")
        if key is not None and not PyBytes_CheckExact(key):
            key = as_bytes(key, "key")
        if value is None:
            r.value = NULL
            r.value_len = -1
        else:
            r.value = <const uint8_t *>PyBytes_AS_STRING(value)
            r.value_len = PyBytes_GET_SIZE(value)
        if key is None:
            r.key = NULL
            r.key_len = -1
        else:
            r.key = <const uint8_t *>PyBytes_AS_STRING(key)
            r.key_len = PyBytes_GET_SIZE(key)
        if headers:
            hb = encode_headers(headers, &hcount)
            r.headers = <const uint8_t *>PyBytes_AS_STRING(hb)
            r.headers_len = PyBytes_GET_SIZE(hb)
        else:
            r.headers = NULL
            r.headers_len = 0
        r.header_count = hcount
        now = ps_now_ms()
        r.timestamp = now if timestamp_ms is None or attributes else <int64_t>timestamp_ms
        r.body_len = record_body_len(&r, r.timestamp, 0)
        total = PS_BATCH_HEADER_SIZE + ps_sizeof_varint(<int32_t>r.body_len) + r.body_len
        if total > ps_load_i64(&self.p.max_message_bytes):
            self._raise_append_error(PS_ERR_TOO_LARGE, 0, total)
        base = self._begin(total, 1, now, &dst, &pinned)
        with nogil:
            write_record(dst + PS_BATCH_HEADER_SIZE, &r, r.timestamp, 0)
            write_batch_header(dst, total, base, ps_load_i32(&self.p.leader_epoch), attributes, 0, r.timestamp,
                               r.timestamp, -1, -1, -1, 1)
            seal_batch_crc(dst, total)
            self._commit(pinned, total, base, r.timestamp)
        self._after_append(base)
        return base

    def append_many(self, records, compression=0):
        """Appends records, an iterable of (key, value[, headers[, timestamp_ms]]), as one batch.

        Returns the first offset. An empty iterable appends nothing and returns None.
        """
        cdef BatchBuilder b = BatchBuilder()
        cdef Segment *pinned
        cdef int codec = _compression.codec_id(compression)
        cdef int64_t now = ps_now_ms(), total, base
        cdef uint8_t *dst
        cdef Py_ssize_t i
        cdef int16_t attributes = PS_ATTR_TIMESTAMP_TYPE if ps_load_i32(&self.p.timestamp_type) else 0
        b.add_records(records, now)
        if b.n == 0:
            return None
        if attributes:
            for i in range(b.n):
                b.specs[i].timestamp = now
            b.base_ts = b.max_ts = now
        total = PS_BATCH_HEADER_SIZE + b.measure()
        if codec != 0 or total >= GIL_FREE_BYTES:
            # Compressed, or big enough that encoding straight into the segment buffer would
            # hold the GIL (and the shard mutex) for too long: encode aside, GIL released.
            batch = b.build(0, codec, attributes != 0, -1, -1, -1, ps_load_i32(&self.p.leader_epoch), False, False)
            return self._append_raw(batch, False)
        if total > ps_load_i64(&self.p.max_message_bytes):
            self._raise_append_error(PS_ERR_TOO_LARGE, 0, total)
        base = self._begin(total, b.n, now, &dst, &pinned)
        with nogil:
            b.write_records(dst + PS_BATCH_HEADER_SIZE)
            write_batch_header(dst, total, base, ps_load_i32(&self.p.leader_epoch), attributes,
                               <int32_t>(b.n - 1), b.base_ts, b.max_ts, -1, -1, -1, <int32_t>b.n)
            seal_batch_crc(dst, total)
            self._commit(pinned, total, base + b.n - 1, b.max_ts)
        self._after_append(base + b.n - 1)
        return base

    def append_batch(self, batch, bint wait=True):
        """Appends one already-encoded v2 batch (a bytes-like, e.g. a memoryview of a request).

        The batch is validated (sizes, magic, CRC) and stored as it is, with its base
        offset and leader epoch assigned here. Returns the assigned base offset. With
        wait=False it returns once the batch is readable, whatever the flush policy:
        asyncio callers then `await partition.wait_durable(last_offset)`.
        """
        return self._append_raw(batch, True, wait)

    cdef object _append_raw(self, object batch, bint validate, bint wait=True):
        cdef _BufferView b = _BufferView(batch)
        cdef const uint8_t *src = <const uint8_t *>b.view.buf
        cdef ps_batch_header h
        cdef size_t errpos = 0
        cdef int st
        cdef int64_t now = ps_now_ms()
        with nogil:
            st = check_raw_batch(self.p, src, b.view.len, validate, &h, &errpos)
            if st == PS_OK:
                ps_mutex_lock(&self.sh.mu)
                st = part_append_raw_locked(self.p, src, &h, now, False)
                ps_mutex_unlock(&self.sh.mu)
        if st != PS_OK:
            self._raise_append_error(st, errpos, b.view.len)
        if wait:
            self._after_append(h.base_offset + h.last_offset_delta)
        return h.base_offset

    cdef int _raise_append_error(self, int st, size_t errpos, int64_t length) except -1:
        if st == PS_ERR_TOO_LARGE:
            raise status_error(st, None, f"record batch of {length} bytes exceeds max_message_bytes "
                                         f"{ps_load_i64(&self.p.max_message_bytes)}", self.topic, self.number)
        if st == PS_ERR_IO or st == PS_ERR_CLOSED or st == PS_ERR_NO_MEMORY:
            lock_with_gil_released(&self.sh.mu)
            self._raise_locked(st)
        detail = None
        if st == PS_ERR_RECORD_COUNT:
            detail = "a batch to append must hold at least one record"
        elif st == PS_ERR_LENGTH_MISMATCH and errpos == PS_OFF_LENGTH and length >= PS_BATCH_HEADER_SIZE:
            detail = f"the buffer holds {length} bytes, not exactly one batch"
        raise status_error(st, errpos, detail, self.topic, self.number)

    def submit_batch(self, batch, bint wait=True):
        """Hands one raw v2 batch to this partition's shard thread; returns a PendingAppend.

        The shard validates it (CRC), assigns its offsets and copies it into the log with
        the GIL released; the PendingAppend completes once the flush policy is met (with
        wait=False: once appended, in the same order as every other submission). Wait
        with `.wait()` from a thread, or `await partition.append_batch_async(batch)`.
        """
        cdef PendingAppend pending = PendingAppend(self, batch)
        pending.req.no_wait = not wait
        lock_with_gil_released(&self.sh.mu)
        if self.p.closed or not self.sh.running:
            ps_mutex_unlock(&self.sh.mu)
            raise status_error(PS_ERR_CLOSED, None, None, self.topic, self.number)
        if self.sh.sub_tail == NULL:
            self.sh.sub_head = &pending.req
        else:
            self.sh.sub_tail.next = &pending.req
        self.sh.sub_tail = &pending.req
        self.sh.counters.queued += 1
        pending.queued = True
        pthread_cond_signal(&self.sh.work)
        ps_mutex_unlock(&self.sh.mu)
        return pending

    # --- rolling ------------------------------------------------------------------

    def roll(self):
        """Closes the active segment (if it holds data) and starts a new one."""
        cdef int st
        if self.damage is not None:
            raise self._damage_error()
        while True:
            with nogil:
                ps_mutex_lock(&self.sh.mu)
                while self.p.rolling or part_active(self.p).copying:
                    ps_cond_wait(&self.sh.done, &self.sh.mu)
                st = PS_ERR_CLOSED if self.p.closed else part_roll_locked(self.p)
                ps_mutex_unlock(&self.sh.mu)
            if st == PS_OK:
                return
            if st == PS_ERR_CLOSED:
                raise status_error(st, None, None, self.topic, self.number)
            raise_os_error(errno, "cannot create a new segment", self.path)

    def flush(self):
        """Writes and fdatasyncs everything appended so far, whatever the policy."""
        cdef int64_t target
        if self.damage is not None:
            return      # nothing was appended since the open (writes are refused), so nothing to sync
        lock_with_gil_released(&self.sh.mu)
        target = self.p.next_offset
        self.p.sync_requested = True
        shard_enqueue(self.sh, self.p)
        ps_mutex_unlock(&self.sh.mu)
        while True:
            lock_with_gil_released(&self.sh.mu)
            if self.p.durable_offset >= target and (self.p.n_segs < 2 or self.p.segs[self.p.n_segs - 2].finalized):
                ps_mutex_unlock(&self.sh.mu)
                return
            if self.p.io_errno:
                self._raise_locked(PS_ERR_IO)
            self.p.sync_requested = True
            shard_enqueue(self.sh, self.p)
            with nogil:
                mutex_wait_then_unlock(self.sh)

    # --- reading --------------------------------------------------------------------

    def read_batches(self, int64_t offset, int64_t max_bytes=DEFAULT_READ_BYTES):
        """Whole batches as bytes, starting with the batch that contains `offset`.

        Returns at most max_bytes of whole batches, but always the first batch even if it
        is larger (KIP-74). b"" at the log end. Every batch's CRC is checked: corrupt data
        raises CorruptSegmentError naming the file and position, never comes back as data.
        """
        cdef Segment *s
        cdef size_t i
        cdef int64_t pos, start, end, got, want, seg_next, lo, hi
        cdef ps_batch_header h
        cdef PyObject *raw = NULL
        cdef int opened
        lock_with_gil_released(&self.sh.mu)
        if offset < self.p.log_start_offset or offset > self.p.next_offset:
            lo = self.p.log_start_offset
            hi = self.p.next_offset
            ps_mutex_unlock(&self.sh.mu)
            raise _errors.OffsetOutOfRangeError(f"offset {offset} is outside [{lo}, {hi}]",
                                                topic=self.topic, partition=self.number, offset=offset)
        if offset == self.p.next_offset:
            ps_mutex_unlock(&self.sh.mu)
            return b""
        i = part_find_segment(self.p, offset)
        while True:
            s = self.p.segs[i]
            s.refs += 1
            seg_next = s.next_offset
            pos = 0
            if offset > s.base_offset:
                with nogil:     # may drop the mutex to read the index from its files
                    segment_index_ready(self.p, s)
                pos = index_position_for(&s.index, <uint32_t>(offset - s.base_offset))
            opened = segment_open_files(s, self.p.want_direct)
            ps_mutex_unlock(&self.sh.mu)
            try:
                if opened != PS_OK:
                    raise_os_error(errno, "cannot open segment", s.log_path.decode())
                start = self._find_batch(s, pos, offset, &h)
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
                            got = segment_copy_out(s, &self.sh.mu, start, want, <uint8_t *>bytes_ptr_data(raw))
                        if got < 0:
                            raise _errors.StorageIOError("cannot read segment", file=s.log_path.decode(),
                                                         position=start)
                        end = self._whole_batches(s, <const uint8_t *>bytes_ptr_data(raw), got, start, offset, seg_next)
                        if end != want and _PyBytes_Resize(&raw, end) != 0:
                            raw = NULL
                            raise MemoryError()
                        return <object>raw
                    finally:
                        Py_XDECREF(raw)
                if offset < seg_next:
                    # The segment ends before the offset it claims to hold: a damaged length.
                    self._corrupt(s, pos, offset, f"segment ends before offset {offset} (it holds offsets "
                                                  f"up to {seg_next - 1})")
            finally:
                with nogil:   # segment_release takes the mutex
                    segment_release(s, &self.sh.mu)
            # The offset lies past this segment's last batch: continue in the next one.
            lock_with_gil_released(&self.sh.mu)
            if seg_next >= self.p.next_offset:
                ps_mutex_unlock(&self.sh.mu)
                return b""
            i = part_find_segment(self.p, seg_next)
            if self.p.segs[i].base_offset < seg_next or self.p.segs[i].next_offset <= seg_next:
                if i + 1 >= self.p.n_segs:
                    ps_mutex_unlock(&self.sh.mu)
                    return b""
                # a gap (a cut tail before a roll, or what compaction removed; a cleaned segment may
                # be empty): go on at the next segment
                i += 1
            offset = self.p.segs[i].base_offset if self.p.segs[i].base_offset > offset else offset

    cdef int _corrupt(self, Segment *s, int64_t position, int64_t offset, str why) except -1:
        """Counts the read, logs the damage once per file and position, and raises."""
        path = s.log_path.decode()
        self.corrupt_reads += 1
        if (path, position) not in self.corrupt_logged and len(self.corrupt_logged) < MAX_CORRUPT_LOGGED:
            self.corrupt_logged.add((path, position))
            _log.error("%s-%d: corrupt data in %s at position %d, met reading offset %d: %s; reads of it fail "
                       "(pstream log verify %s lists the damage)", self.topic, self.number, path, position, offset,
                       why, self.path)
        raise _errors.CorruptSegmentError(why, file=path, position=position, topic=self.topic,
                                          partition=self.number, offset=offset)

    cdef int64_t _find_batch(self, Segment *s, int64_t pos, int64_t offset, ps_batch_header *h) except -2:
        """Walks batch headers from pos to the batch holding offset; -1 if the segment ends first.

        Offsets must follow on from batch to batch: base offsets and lengths sit outside
        the CRC, so this is what catches a damaged one before it is served.
        """
        cdef uint8_t window[16384]
        cdef int64_t got, at, expect = -1
        while True:
            with nogil:
                got = segment_copy_out(s, &self.sh.mu, pos, sizeof(window), window)
            if got < 0:
                raise _errors.StorageIOError("cannot read segment", file=s.log_path.decode(), position=pos)
            if got == 0:
                return -1
            at = 0
            while at + PS_BATCH_HEADER_SIZE <= got:
                ps_batch_read_header(window + at, h)
                if h.magic != PS_MAGIC_V2 or h.batch_length < PS_BATCH_HEADER_SIZE - PS_BATCH_LOG_OVERHEAD \
                        or h.last_offset_delta < 0:
                    self._corrupt(s, pos + at, offset, "invalid batch header in segment")
                # Offsets follow on from batch to batch; in a compacted segment they only grow
                # (the cleaner leaves gaps, never overlaps).
                if (expect >= 0 and (h.base_offset < expect or (h.base_offset != expect and not s.gaps))) \
                        or h.base_offset < s.base_offset:
                    self._corrupt(s, pos + at, offset, f"batch offsets do not follow on (base offset "
                                                       f"{h.base_offset}, expected {expect})")
                if h.base_offset + h.last_offset_delta >= offset:
                    if h.base_offset > offset and not s.gaps:
                        self._corrupt(s, pos + at, offset, f"no batch holds offset {offset} (next batch starts "
                                                           f"at {h.base_offset})")
                    return pos + at     # it holds offset, or offset fell in a gap compaction left
                expect = h.base_offset + h.last_offset_delta + 1
                at += <int64_t>h.batch_length + PS_BATCH_LOG_OVERHEAD
            if at == 0:
                self._corrupt(s, pos, offset, "segment ends inside a batch header")
            pos += at

    cdef int64_t _whole_batches(self, Segment *s, const uint8_t *p, int64_t length, int64_t file_pos,
                                int64_t offset, int64_t seg_next) except -1:
        """Length of the whole, CRC-valid, offset-contiguous batches at the start of p (the first required)."""
        cdef int64_t pos = 0, size, expect = -1
        cdef ps_batch_header h
        cdef size_t errpos
        cdef int st
        while pos + PS_BATCH_LOG_OVERHEAD <= length:
            size = <int64_t><int32_t>ps_load_be32(p + pos + PS_OFF_LENGTH) + PS_BATCH_LOG_OVERHEAD
            if pos + size > length:
                if pos == 0:
                    self._corrupt(s, file_pos, offset, "segment ends inside a batch")
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
                    self._corrupt(s, file_pos, offset, f"batch offsets do not follow on (base offset "
                                                       f"{h.base_offset}, last offset delta {h.last_offset_delta})")
                self._corrupt(s, file_pos, offset, f"corrupt batch in segment: {status_error(st, None)}")
            expect = h.base_offset + h.last_offset_delta + 1
            pos += size
        return pos

    def offset_for_timestamp(self, int64_t timestamp_ms):
        """The first offset whose record timestamp is >= timestamp_ms, or None if there is none."""
        cdef size_t i
        cdef Segment *s
        cdef int64_t rel = 0, found = -1
        lock_with_gil_released(&self.sh.mu)
        for i in range(self.p.n_segs):
            s = self.p.segs[i]
            if s.max_timestamp >= timestamp_ms and s.next_offset > self.p.log_start_offset:
                s.refs += 1
                with nogil:     # may drop the mutex to read the index from its files
                    segment_index_ready(self.p, s)
                rel = time_index_rel_for(&s.index, timestamp_ms)
                found = s.base_offset + rel
                break
        if found < self.p.log_start_offset and found >= 0:
            found = self.p.log_start_offset
        ps_mutex_unlock(&self.sh.mu)
        if found >= 0:
            with nogil:   # segment_release takes the mutex
                segment_release(s, &self.sh.mu)
        if found < 0:
            return None
        # Scan records from there for the first timestamp at or past the target.
        offset = found
        while offset < ps_load_i64(&self.p.next_offset):
            data = self.read_batches(offset)
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

    def max_timestamp(self):
        """(timestamp, offset) of the greatest timestamp in the log, or (-1, -1) when empty."""
        cdef size_t i
        cdef int64_t ts = -1, off = -1
        lock_with_gil_released(&self.sh.mu)
        for i in range(self.p.n_segs):
            if self.p.segs[i].max_timestamp > ts and self.p.segs[i].max_timestamp_offset >= self.p.log_start_offset:
                ts = self.p.segs[i].max_timestamp
                off = self.p.segs[i].max_timestamp_offset
        ps_mutex_unlock(&self.sh.mu)
        return ts, off

    # --- retention --------------------------------------------------------------------

    def delete_records(self, int64_t before_offset):
        """Moves the log start offset to before_offset (records below it are gone); returns it.

        -1 means the high watermark, as in Kafka's DeleteRecords.
        """
        lock_with_gil_released(&self.sh.mu)
        if before_offset == -1:
            before_offset = self.p.next_offset
        cdef int64_t hi = self.p.next_offset
        if before_offset > hi or before_offset < 0:
            ps_mutex_unlock(&self.sh.mu)
            raise _errors.OffsetOutOfRangeError(f"cannot delete records before {before_offset}: the log ends at {hi}",
                                                topic=self.topic, partition=self.number, offset=before_offset)
        if before_offset <= self.p.log_start_offset:
            before_offset = self.p.log_start_offset
            ps_mutex_unlock(&self.sh.mu)
            return before_offset
        ps_store_i64(&self.p.log_start_offset, before_offset)
        ps_mutex_unlock(&self.sh.mu)
        self._write_log_start_checkpoint()    # before returning: the deletion is durable
        self.apply_retention()
        return before_offset

    def apply_retention(self, now_ms=None):
        """Deletes whole old segments per retention_bytes, retention_ms and the log start offset.

        Returns the number of segments deleted. The active segment is rolled first when
        everything in it has expired, as Kafka does. Size and time retention apply only when
        the cleanup policy includes delete; segments below the log start offset always go.
        """
        with self.clean_lock:    # never while the cleaner rewrites segments
            return self._apply_retention(now_ms)

    def _apply_retention(self, now_ms):
        cdef int64_t now = ps_now_ms() if now_ms is None else now_ms
        cdef int64_t total = 0
        cdef size_t i, n_delete = 0, j
        cdef Segment *s
        cdef Segment **to_free
        cdef char **doomed
        cdef size_t n_free = 0, n_doomed = 0
        cdef int64_t new_start
        if self.retention_ms >= 0 and self.deletes and self.damage is None:
            lock_with_gil_released(&self.sh.mu)
            s = part_active(self.p)
            expired_active = s.size > 0 and s.max_timestamp < now - self.retention_ms
            ps_mutex_unlock(&self.sh.mu)
            if expired_active:
                self.roll()
                self.flush()
        lock_with_gil_released(&self.sh.mu)
        to_free = <Segment **>malloc((self.p.n_segs + 1) * sizeof(Segment *))
        doomed = <char **>calloc(self.p.n_segs * 3 + 1, sizeof(char *))
        if to_free == NULL or doomed == NULL:
            ps_mutex_unlock(&self.sh.mu)
            free(to_free)
            free(doomed)
            raise MemoryError()
        for i in range(self.p.n_segs):
            total += self.p.segs[i].size
        while n_delete + 1 < self.p.n_segs:
            s = self.p.segs[n_delete]
            if not s.finalized:
                break
            if s.next_offset <= self.p.log_start_offset:
                pass
            elif self.deletes and self.retention_bytes >= 0 and total - s.size >= self.retention_bytes:
                pass
            elif self.deletes and self.retention_ms >= 0 and s.max_timestamp < now - self.retention_ms:
                pass
            else:
                break
            total -= s.size
            n_delete += 1
        if n_delete:
            # No Python objects while the mutex is held (a GC pass could run code that takes it).
            for i in range(n_delete):
                s = self.p.segs[i]
                s.deleted = True
                index_cache_forget(self.sh, s)
                doomed[n_doomed] = strdup(s.log_path)
                doomed[n_doomed + 1] = strdup(s.index_path)
                doomed[n_doomed + 2] = strdup(s.time_path)
                n_doomed += 3
                if s.refs == 0:         # readers holding it free it when they let go
                    to_free[n_free] = s
                    n_free += 1
            new_start = self.p.segs[n_delete].base_offset
            memmove(self.p.segs, self.p.segs + n_delete, (self.p.n_segs - n_delete) * sizeof(Segment *))
            self.p.n_segs -= n_delete
            # Move the start with the segments, so no reader sees offsets that have no segment.
            # (The checkpoint may lag after a crash: the first segment's base wins at open.)
            if new_start > self.p.log_start_offset:
                ps_store_i64(&self.p.log_start_offset, new_start)
        ps_mutex_unlock(&self.sh.mu)
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
            self._write_log_start_checkpoint()
        self._close_idle_files()   # segments rolled since: their descriptors until they are read
        return n_delete

    # --- compaction (cleaner.pxi) ---------------------------------------------------------

    def clean(self, *, int64_t dedupe_buffer_bytes=32 << 20, int64_t delete_retention_ms=24 * 3600 * 1000,
              int64_t min_compaction_lag_ms=0, now_ms=None):
        """One compaction pass: keeps every key's latest record in the closed, durable segments
        (see pstream/storage/cleaner.pxi). Returns what it did: segments_cleaned, bytes_read,
        bytes_written, records_removed, tombstones_removed, first_dirty_offset, end_offset (the
        new first dirty offset), ... Offsets never change; the active segment is never touched."""
        cdef int64_t now = ps_now_ms() if now_ms is None else now_ms
        if self.damage is not None:
            raise self._damage_error()
        with self.clean_lock:
            return clean_partition(self, dedupe_buffer_bytes, delete_retention_ms, min_compaction_lag_ms, now)

    def cleaner_state(self, *, int64_t min_compaction_lag_ms=0, bint first_timestamp=False, now_ms=None):
        """What the cleaner scheduler needs: first_dirty_offset, clean_bytes, dirty_bytes (of the
        cleanable dirty segments), dirty_ratio, first_dirty_timestamp (with first_timestamp: of the
        first dirty segment's first batch, read from its file (Kafka's max.compaction.lag.ms rule);
        -1 if unknown), next_tombstone_expiry_ms, and the counters of past passes (runs, bytes_read,
        bytes_written, records_removed, last_clean_ms)."""
        cdef int64_t now = ps_now_ms() if now_ms is None else now_ms
        cdef int64_t first_dirty = self.cleaner["first_dirty_offset"], clean = 0, dirty = 0
        cdef size_t i
        cdef Segment *s
        cdef bint stop = False
        cdef char *first_path = NULL
        lock_with_gil_released(&self.sh.mu)
        if first_dirty < self.p.log_start_offset:
            first_dirty = self.p.log_start_offset
        for i in range(self.p.n_segs - 1):
            s = self.p.segs[i]
            if not s.finalized or s.next_offset > self.p.durable_offset:
                break
            if s.next_offset <= first_dirty:
                clean += s.size
                continue
            if min_compaction_lag_ms > 0 and s.max_timestamp > now - min_compaction_lag_ms:
                break
            if first_timestamp and first_path == NULL and s.size > 0:
                first_path = strdup(s.log_path)
            dirty += s.size
        ps_mutex_unlock(&self.sh.mu)
        first_ts = -1
        if first_path != NULL:
            try:
                with open(first_path, "rb") as fh:
                    head = fh.read(PS_BATCH_HEADER_SIZE)
                if len(head) == PS_BATCH_HEADER_SIZE:
                    first_ts = int.from_bytes(head[PS_OFF_BASE_TIMESTAMP:PS_OFF_BASE_TIMESTAMP + 8], "big",
                                              signed=True)
                    if int.from_bytes(head[PS_OFF_ATTRIBUTES:PS_OFF_ATTRIBUTES + 2], "big") & PS_ATTR_DELETE_HORIZON:
                        first_ts = -1   # the base timestamp is a delete horizon, not a record's time
            except OSError:
                pass    # cleaned away meanwhile: the next look finds the new first segment
            finally:
                free(first_path)
        state = dict(self.cleaner)
        state.update(first_dirty_offset=first_dirty, clean_bytes=clean, dirty_bytes=dirty,
                     dirty_ratio=(<double>dirty) / (clean + dirty) if clean + dirty else 0.0, first_dirty_timestamp=first_ts)
        return state

    cdef int _close_idle_files(self) except -1:
        """Closes the descriptors of finalized segments nobody is reading (reopened on read)."""
        cdef size_t i
        cdef Segment *s
        lock_with_gil_released(&self.sh.mu)
        for i in range(self.p.n_segs):
            s = self.p.segs[i]
            if s.finalized and s.refs == 0 and not s.deleted:
                segment_close_files(s)
        ps_mutex_unlock(&self.sh.mu)
        return 0

    # --- closing ---------------------------------------------------------------------

    def close(self):
        """Writes and syncs everything, finalizes the active segment (indexes written)."""
        if self.p.closed:
            return
        with self.clean_lock:   # a cleaning pass in progress finishes first
            self._close()

    def _close(self):
        cdef Segment *a
        cdef int st = PS_OK
        if self.p.closed:
            return
        self.revive()   # a failed partition: the disk may have room by now
        self.flush()
        lock_with_gil_released(&self.sh.mu)
        self.p.closed = True
        ps_mutex_unlock(&self.sh.mu)
        while True:
            # Finalize here once the shard is done with this partition: off the dirty list, no
            # write in flight, no submitted append in progress.
            lock_with_gil_released(&self.sh.mu)
            if not self.p.queued and not self.p.busy and not self.p.rolling \
                    and part_active(self.p).inflight == NULL:
                a = part_active(self.p)
                with nogil:
                    st = segment_finalize(a, &self.sh.mu)
                    holders_forget(self.sh, self.p)
                    part_forget_indexes(self.p)
                    ps_mutex_unlock(&self.sh.mu)   # before the GIL is taken back
                break
            with nogil:
                mutex_wait_then_unlock(self.sh)
        self._close_idle_files()   # every descriptor goes now, not when the garbage collector frees us
        if st != PS_OK:
            raise _errors.StorageIOError(f"closing the active segment failed: {_os.strerror(a.io_errno or errno)}",
                                         topic=self.topic, partition=self.number, file=a.log_path.decode())

    def __dealloc__(self):
        cdef size_t i
        if self.p != NULL:
            if not self.p.closed and self.p.n_segs:
                with nogil:   # dropped without close(): still write, sync and finalize everything
                    partition_shutdown(self.p, self.sh)
            for i in range(self.p.n_segs):
                if self.p.segs[i].refs == 0:
                    segment_free(self.p.segs[i])
            free(self.p.segs)
            free(self.p.directory)
            free(self.p)
            self.p = NULL


cdef void partition_shutdown(PartState *p, Shard *sh) noexcept nogil:
    """close() for a partition garbage-collected unclosed: takes it off its shard, then
    finalizes every segment, so the shard never touches freed memory and nothing is lost."""
    cdef size_t i
    ps_mutex_lock(&sh.mu)
    p.closed = True
    if sh.running and not p.io_errno:
        p.sync_requested = True
        shard_enqueue(sh, p)
    while sh.running and (p.queued or p.busy or p.rolling or part_active(p).inflight != NULL):
        ps_cond_wait(&sh.done, &sh.mu)
    for i in range(p.n_segs):
        if not p.segs[i].finalized and not p.io_errno:
            segment_finalize(p.segs[i], &sh.mu)
    holders_forget(sh, p)
    part_forget_indexes(p)
    ps_mutex_unlock(&sh.mu)


@cython.no_gc_clear   # __dealloc__ needs `partition` to wait for the shard: the collector must not clear it
cdef class PendingAppend:
    """A raw batch submitted to a shard (Partition.submit_batch); holds the buffer until done.

    The buffer is let go as soon as the result is taken: a refused append's exception (and
    its traceback, often in a reference cycle) must not keep the request's memory exported.
    """
    cdef AppendRequest req
    cdef Py_buffer view
    cdef bint has_view
    cdef bint queued
    cdef readonly Partition partition

    def __cinit__(self, Partition partition, batch):
        PyObject_GetBuffer(batch, &self.view, PyBUF_SIMPLE)
        self.has_view = True
        self.partition = partition
        memset(&self.req, 0, sizeof(AppendRequest))
        self.req.part = partition.p
        self.req.data = <const uint8_t *>self.view.buf
        self.req.length = self.view.len

    @property
    def done(self):
        cdef bint done
        lock_with_gil_released(&self.partition.sh.mu)
        done = self.req.done
        ps_mutex_unlock(&self.partition.sh.mu)
        return done

    def result(self):
        """The assigned base offset; raises the append's error. Call once done."""
        if not self.done:
            raise RuntimeError("the append has not completed yet")
        if self.has_view:   # the shard is done with it
            self.has_view = False
            PyBuffer_Release(&self.view)
        if self.req.status != PS_OK:
            self.partition._raise_append_error(self.req.status, self.req.errpos, self.req.length)
        return self.req.base_offset

    @property
    def last_offset(self):
        return self.req.last_offset

    @property
    def max_timestamp(self):
        """The batch's max timestamp as stored: on a LogAppendTime topic, the append time."""
        return self.req.max_timestamp

    def wait(self):
        """Blocks (GIL released) until done; returns result()."""
        self._wait_done()
        return self.result()

    cdef void _wait_done(self) noexcept:
        with nogil:
            ps_mutex_lock(&self.partition.sh.mu)
            while self.queued and not self.req.done:
                ps_cond_wait(&self.partition.sh.done, &self.partition.sh.mu)
            ps_mutex_unlock(&self.partition.sh.mu)

    def __dealloc__(self):
        if self.partition is not None:
            self._wait_done()   # the shard may still be reading the buffer
        if self.has_view:
            PyBuffer_Release(&self.view)
