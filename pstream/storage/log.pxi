# One partition's log: its segments, the append paths, rolls and closing (reads: read.pxi,
# retention: retention.pxi, opening: recovery.pxi).
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
import struct as _struct

_log = _logging.getLogger("pstream.storage")

cdef extern from "<errno.h>":
    int EUCLEAN                 # "structure needs cleaning": io_errno of a partition recovery found damaged

cdef size_t MAX_CORRUPT_LOGGED = 1024   # distinct (file, position) pairs remembered to log each once

cdef int64_t DEFAULT_READ_BYTES = 1 << 20
PUBLISHED_FILE = "readable-offsets"   # a partition's durable and log start offsets, for read-only readers
READABLE_SEQ_FILE = "@readable"       # in the data directory: bumped at every publish (ShardPool.publish_readable)


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
        self.p.replicated_hw = -1
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
        recovery_open(self)
        self.p.published = ps_map_published(_os.fsencode(_os.path.join(path, PUBLISHED_FILE)))
        lock_with_gil_released(&self.sh.mu)
        part_publish(self.p)
        ps_mutex_unlock(&self.sh.mu)
        first_dirty, compacted_below, next_expiry = read_cleaner_checkpoint(path)
        self.cleaner = {"first_dirty_offset": first_dirty, "compacted_below": compacted_below, "runs": 0, "bytes_read": 0,
                        "bytes_written": 0, "records_removed": 0, "last_clean_ms": -1, "last_clean_duration_s": 0.0,
                        "next_tombstone_expiry_ms": next_expiry}

    # --- opening (recovery.pxi, checkpoint.pxi) ------------------------------------

    def _damage_error(self):
        d = self.damage
        return _errors.StorageIOError(
            f"writes are refused: recovery found a corrupt batch followed by valid ones at offset {d['offset']}; "
            f"stop the broker and run `pstream log truncate {self.path} --to {d['offset']}` to drop everything "
            f"from there on", topic=self.topic, partition=self.number, offset=d["offset"], file=d["file"],
            position=d["position"])

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
        """One past the last offset consumers may read (Fetch, ListOffsets latest, lag). In a
        cluster, also no further than the in-sync replicas hold (replicated_high_watermark)."""
        return part_high_watermark(self.p)

    @property
    def replicated_high_watermark(self):
        """Cluster mode: the high watermark the in-sync replicas hold, as the partition's leader
        computes it (pstream/cluster/replication.py); -1 while this copy alone decides."""
        return ps_load_i64(&self.p.replicated_hw)

    @replicated_high_watermark.setter
    def replicated_high_watermark(self, int64_t value):
        if value < -1:
            raise ValueError(f"replicated_high_watermark must be -1 or an offset, got {value}")
        ps_store_i64(&self.p.replicated_hw, value)

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
            buffers += s.buf_cap + s.spare_cap + s.loose_cap + frags_bytes(s.full, s.full_n) \
                + frags_bytes(s.flight, s.flight_n) + frags_bytes(s.failed, s.failed_n)
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

    cdef int64_t _begin(self, int64_t total, int64_t count, int64_t now_ms, Placement *at,
                        Segment **pinned) except -1:
        """Reserves `total` bytes in the active buffer; returns the base offset, the mutex
        released and the buffer pinned (`pinned`) until _commit: the caller encodes into
        _encode_target(...), then place_encoded.

        The GIL stays held on the fast path; every wait drops the mutex before the GIL
        is taken back, so the two never deadlock.
        """
        cdef int st
        cdef int64_t base
        while True:
            lock_with_gil_released(&self.sh.mu)
            st = part_reserve(self.p, total, count, now_ms, at)
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

    cdef uint8_t *_encode_target(self, Segment *pinned, Placement *at, int64_t total) except NULL:
        """Where the caller of _begin encodes its batch: in place, or in a scratch buffer when the
        reservation straddles two chained buffers (place_encoded moves it in). If no scratch can
        be had, the reservation is given back and MemoryError raised."""
        cdef uint8_t *scratch
        if at.next == NULL:
            return at.dst
        scratch = <uint8_t *>malloc(total)
        if scratch == NULL:
            with nogil:
                ps_mutex_lock(&self.sh.mu)
                segment_unchain(pinned)     # still pinned: nothing moved since the chain was made
                part_copy_end(self.p, pinned)
                ps_mutex_unlock(&self.sh.mu)
            raise MemoryError(f"no memory for a batch of {total} bytes")
        return scratch

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
        cdef Placement at
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
        base = self._begin(total, 1, now, &at, &pinned)
        dst = self._encode_target(pinned, &at, total)
        with nogil:
            write_record(dst + PS_BATCH_HEADER_SIZE, &r, r.timestamp, 0)
            write_batch_header(dst, total, base, ps_load_i32(&self.p.leader_epoch), attributes, 0, r.timestamp,
                               r.timestamp, -1, -1, -1, 1)
            seal_batch_crc(dst, total)
            place_encoded(&at, dst, total)
            self._commit(pinned, total, base, r.timestamp)
        self._after_append(base)
        return base

    def append_many(self, records, compression=0):
        """Appends records, an iterable of (key, value[, headers[, timestamp_ms]]), as one batch,
        or as several in order when one would exceed max_message_bytes (a single record too
        large for a batch of its own raises BatchTooLargeError, and nothing is appended).

        Returns the first offset. An empty iterable appends nothing and returns None.
        """
        runs = self.append_runs(records, compression)
        return runs[0][0] if runs else None

    def append_runs(self, records, compression=0):
        """append_many, saying where each batch went: [(base offset, record count), ...] in
        the order of the records. Another thread's appends may fall between two batches."""
        cdef BatchBuilder b = BatchBuilder()
        cdef int codec = _compression.codec_id(compression)
        cdef int64_t now = ps_now_ms(), limit = ps_load_i64(&self.p.max_message_bytes)
        cdef Py_ssize_t i
        cdef int16_t attributes = PS_ATTR_TIMESTAMP_TYPE if ps_load_i32(&self.p.timestamp_type) else 0
        b.add_records(records, now)
        if b.n == 0:
            return []
        if attributes:
            for i in range(b.n):
                b.specs[i].timestamp = now
            b.base_ts = b.max_ts = now
        if codec == 0:
            if PS_BATCH_HEADER_SIZE + b.measure() <= limit:
                return [(self._append_built(b, attributes, now), b.n)]
            runs = b.split(limit)   # raises, before anything is appended, for a record too large alone
            return [(self._append_built(b.slice(lo, hi), attributes, now), hi - lo) for lo, hi in runs]
        out = []
        self._append_compressed(b, codec, attributes, limit, out)
        return out

    cdef int _append_compressed(self, BatchBuilder b, int codec, int16_t attributes, int64_t limit,
                                list out) except -1:
        """Compresses b as one batch; if that exceeds the limit, halves it (as Kafka's producer
        splits a batch the broker refused as too large) until each half fits."""
        cdef Py_ssize_t half
        batch = b.build(0, codec, attributes != 0, -1, -1, -1, ps_load_i32(&self.p.leader_epoch), False, False)
        if len(batch) <= limit or b.n == 1:
            out.append((self._append_raw(batch, False), b.n))   # one record too large: refused with its size
            return 0
        half = b.n // 2
        self._append_compressed(b.slice(0, half), codec, attributes, limit, out)
        self._append_compressed(b.slice(half, b.n), codec, attributes, limit, out)
        return 0

    cdef int64_t _append_built(self, BatchBuilder b, int16_t attributes, int64_t now) except -1:
        """Appends b, uncompressed and within max_message_bytes, as one batch; its base offset."""
        cdef Segment *pinned
        cdef int64_t total, base
        cdef uint8_t *dst
        cdef Placement at
        total = PS_BATCH_HEADER_SIZE + (b.records_len if b.measured else b.measure())
        if total >= GIL_FREE_BYTES:
            # Big enough that encoding straight into the segment buffer would hold the GIL (and
            # the shard mutex) for too long: encode aside, GIL released.
            batch = b.build(0, 0, attributes != 0, -1, -1, -1, ps_load_i32(&self.p.leader_epoch), False, False)
            return self._append_raw(batch, False)
        if total > ps_load_i64(&self.p.max_message_bytes):
            self._raise_append_error(PS_ERR_TOO_LARGE, 0, total)
        base = self._begin(total, b.n, now, &at, &pinned)
        dst = self._encode_target(pinned, &at, total)
        with nogil:
            b.write_records(dst + PS_BATCH_HEADER_SIZE)
            write_batch_header(dst, total, base, ps_load_i32(&self.p.leader_epoch), attributes,
                               <int32_t>(b.n - 1), b.base_ts, b.max_ts, -1, -1, -1, <int32_t>b.n)
            seal_batch_crc(dst, total)
            place_encoded(&at, dst, total)
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

    def submit_batch(self, batch, bint wait=True, bint wake=True, bint replica=False):
        """Hands one raw v2 batch to this partition's shard thread; returns a PendingAppend.

        The shard validates it (CRC), assigns its offsets and copies it into the log with
        the GIL released; the PendingAppend completes once the flush policy is met (with
        wait=False: once appended, in the same order as every other submission). Wait
        with `.wait()` from a thread, or `await partition.append_batch_async(batch)`.
        wake=False leaves the shard asleep until `wake_shard()`: a caller submitting several
        batches in a row wakes it once (waking a sleeping thread is the costly part here).
        replica=True: a follower's copy of its leader's batch, stored exactly as it is (offsets,
        leader epoch, timestamps); it must start at the log end offset (ReplicaOffsetError).
        """
        cdef PendingAppend pending = PendingAppend(self, batch)
        pending.req.no_wait = not wait
        pending.req.replica = replica
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
        if wake:
            pthread_cond_signal(&self.sh.work)
        ps_mutex_unlock(&self.sh.mu)
        return pending

    def wake_shard(self):
        """Wakes this partition's shard for what submit_batch(..., wake=False) queued."""
        lock_with_gil_released(&self.sh.mu)
        pthread_cond_signal(&self.sh.work)
        ps_mutex_unlock(&self.sh.mu)

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

    # --- reading (read.pxi) -------------------------------------------------------------

    def read_batches(self, int64_t offset, int64_t max_bytes=DEFAULT_READ_BYTES):
        """Whole batches as bytes, starting with the batch that contains `offset`.

        Returns at most max_bytes of whole batches, but always the first batch even if it
        is larger (KIP-74). b"" at the log end. Every batch's CRC is checked: corrupt data
        raises CorruptSegmentError naming the file and position, never comes back as data.
        """
        return read_batches_at(self, offset, max_bytes)

    def offset_for_timestamp(self, int64_t timestamp_ms):
        """The first offset whose record timestamp is >= timestamp_ms, or None if there is none."""
        return read_offset_for_timestamp(self, timestamp_ms)

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

    # --- retention (retention.pxi) ----------------------------------------------------

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
        part_publish(self.p)
        ps_mutex_unlock(&self.sh.mu)
        checkpoint_write_log_start(self)    # before returning: the deletion is durable
        self.apply_retention()
        return before_offset

    def apply_retention(self, now_ms=None):
        """Deletes whole old segments per retention_bytes, retention_ms and the log start offset.

        Returns the number of segments deleted. The active segment is rolled first when
        everything in it has expired, as Kafka does. Size and time retention apply only when
        the cleanup policy includes delete; segments below the log start offset always go.
        """
        with self.clean_lock:    # never while the cleaner rewrites segments
            return retention_apply(self, now_ms)

    # --- compaction (cleaner.pxi) ---------------------------------------------------------

    def clean(self, *, int64_t dedupe_buffer_bytes=32 << 20, int64_t delete_retention_ms=24 * 3600 * 1000,
              int64_t min_compaction_lag_ms=0, now_ms=None, int64_t stable_offset=INT64_MAX, aborted=()):
        """One compaction pass: keeps every key's latest record in the closed, durable segments
        (see pstream/storage/cleaner.pxi), below stable_offset, dropping the records of the
        aborted transactions given as (producer id, first offset, last offset). Returns what it
        did: segments_cleaned, bytes_read, bytes_written, records_removed, tombstones_removed,
        first_dirty_offset, end_offset (the new first dirty offset), ... Offsets never change;
        the active segment is never touched."""
        cdef int64_t now = ps_now_ms() if now_ms is None else now_ms
        packed = _struct.pack(f"={3 * len(aborted)}q", *[v for t in sorted(aborted) for v in t]) if aborted else b""
        if self.damage is not None:
            raise self._damage_error()
        with self.clean_lock:
            return clean_partition(self, dedupe_buffer_bytes, delete_retention_ms, min_compaction_lag_ms, now,
                                   stable_offset, packed)

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
        failure = None
        try:
            self.revive()   # a failed partition: the disk may have room by now
            self.flush()
        except _errors.StorageIOError as exc:
            failure = exc   # still closed below: its descriptors must not outlive close()
        lock_with_gil_released(&self.sh.mu)
        self.p.closed = True
        ps_mutex_unlock(&self.sh.mu)
        while True:
            # Finalize here once the shard is done with this partition: off the dirty list, no
            # write in flight, no submitted append in progress.
            lock_with_gil_released(&self.sh.mu)
            if not self.p.queued and not self.p.busy and not self.p.rolling \
                    and not part_active(self.p).flight_n:
                a = part_active(self.p)
                with nogil:
                    st = segment_finalize(a, &self.sh.mu)
                    if st != PS_OK:
                        segment_drop_files(a)   # failed: what stayed in memory goes with the object
                    holders_forget(self.sh, self.p)
                    part_forget_indexes(self.p)
                    ps_mutex_unlock(&self.sh.mu)   # before the GIL is taken back
                break
            with nogil:
                mutex_wait_then_unlock(self.sh)
        self._close_idle_files()   # every descriptor goes now, not when the garbage collector frees us
        if failure is not None:
            raise failure
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
            ps_unmap_published(self.p.published)
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
    while sh.running and (p.queued or p.busy or p.rolling or part_active(p).flight_n):
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


# --- following: waiting for the high watermark to move (include/ps_bells.h) ----------------

cdef inline int64_t part_high_watermark(PartState *p) noexcept nogil:
    cdef int64_t own = ps_load_i64(&p.durable_offset if p.flush_mode == FLUSH_ALWAYS else &p.next_offset)
    cdef int64_t replicated = ps_load_i64(&p.replicated_hw)
    return replicated if 0 <= replicated < own else own


def wait_readable(parts, positions, timeout=None):
    """Blocks, the GIL released, until some partition of `parts` (all of one Log) has records
    at its position (high watermark > positions[i]) or `timeout` seconds pass (None: no
    limit); returns the indexes of those that have, [] on a timeout. LogClosedError once the
    Log closes meanwhile."""
    cdef Py_ssize_t n = len(parts), i, found = 0
    cdef PartState **ps
    cdef int64_t *at
    cdef ps_bells *bells
    cdef int64_t deadline = INT64_MAX
    cdef uint64_t seen
    cdef int closed = 0
    if n != len(positions):
        raise ValueError(f"{n} partitions but {len(positions)} positions")
    if n == 0:
        raise ValueError("wait_readable needs at least one partition")
    if timeout is not None:
        if timeout < 0:
            raise ValueError(f"timeout must not be negative, got {timeout!r}")
        deadline = ps_monotonic_ns() + <int64_t>(timeout * 1e9)
    ps = <PartState **>malloc(n * sizeof(PartState *))
    at = <int64_t *>malloc(n * sizeof(int64_t))
    if ps == NULL or at == NULL:
        free(ps)
        free(at)
        raise MemoryError()
    try:
        for i in range(n):
            part = <Partition?>parts[i]
            if (<Partition>part).p == NULL:
                raise _errors.LogClosedError("the partition is closed")
            ps[i] = (<Partition>part).p
            at[i] = positions[i]
        bells = ps[0].shard.bells
        for i in range(1, n):
            if ps[i].shard.bells != bells:
                raise ValueError("wait_readable follows partitions of one Log at a time")
        with nogil:
            ps_follow_enter(bells)
            while True:
                seen = ps_follow_gen(bells)
                for i in range(n):
                    if part_high_watermark(ps[i]) > at[i]:
                        found += 1
                closed = ps_bells_closed(bells)
                if found or closed or ps_monotonic_ns() >= deadline:
                    break
                ps_follow_wait(bells, seen, deadline)
            ps_follow_leave(bells)
        if closed and not found:
            raise _errors.LogClosedError("the log was closed")
        return [i for i in range(n) if part_high_watermark(ps[i]) > at[i]]
    finally:
        free(ps)
        free(at)


def wait_shared_seq(page, uint32_t seen, double timeout):
    """Blocks, the GIL released, until the counter at the start of `page` (a mapped
    <data>/@readable: ShardPool.publish_readable) differs from `seen` or is woken, or `timeout`
    seconds pass; a read-only reader's wait for its writer."""
    cdef const uint8_t[::1] view = page
    cdef const uint32_t *seq
    cdef int64_t ns = <int64_t>(timeout * 1e9) if timeout > 0 else 0
    if view.shape[0] < 4:
        raise ValueError("the shared page is shorter than its counter")
    seq = <const uint32_t *>&view[0]
    with nogil:
        ps_shared_seq_wait(seq, seen, ns)
