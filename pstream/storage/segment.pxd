# Declarations of a segment (segment.pxi).
#
# Who may touch each field (the concurrency contract, docs/architecture.md; as in log.pxd):
#   [open]    set while the segment is created or opened, before another thread sees it
#   [mutex]   read and written with the owning shard's mutex held
#   [writer]  set under the mutex while no write is in flight; the one thread whose write-out
#             is in flight (`flight_n` set) uses and may change it without the mutex, and
#             nobody else touches it meanwhile

cdef extern from "ps_pool.h" nogil:
    ctypedef struct ps_pool:
        int64_t capacity
        int64_t in_use
        int64_t peak
        int64_t waits
        int64_t released
        int64_t chained
    uint8_t *ps_pool_take(ps_pool *pool, int64_t nbytes, int *over)
    void ps_pool_give(ps_pool *pool, uint8_t *p, int64_t nbytes)
    int64_t ps_pool_load(const int64_t *counter)
    void ps_pool_count(int64_t *counter)
    void ps_index_bytes_add(int64_t delta)
    int64_t ps_index_bytes_now()


cdef struct Segment:
    int64_t base_offset         # [open]
    int64_t next_offset         # [mutex] one past the last offset appended here
    int wfd                     # [writer] write fd (O_DIRECT when direct), -1 once finalized
    int rfd                     # [mutex] buffered read fd (opened and closed under the mutex;
                                #         a reader holding a ref preads without it)
    int dfd                     # [mutex] O_DIRECT read fd for data served from the file, -1 if refused
                                #         (as rfd: a reader holding a ref preads without the mutex)
    bint direct                 # [writer]
    bint direct_fallback        # [writer] O_DIRECT was refused at the first write
    int64_t size                # [mutex] logical end: end of the last batch
    int64_t written             # [mutex] bytes handed to the file
    int64_t written_offset      # [mutex] next_offset as of `written`
    int64_t synced              # [mutex] bytes covered by fdatasync
    int64_t synced_offset       # [mutex] next_offset as of `synced`
    int64_t allocated           # [writer] preallocated file length
    int64_t prealloc_step       # [open]
    int64_t prealloc_limit      # [open] never preallocate past this (segment.bytes): a small segment
                                #        stays small
    ps_pool *pool               # [mutex] where the buffers come from (the shard's budget), NULL before
                                #         the writer opens
    int64_t buf_min             # [open] the first buffer's size (the shard's chunk)
    int64_t buf_limit           # [open] buffers grow up to this with the write rate
                                #        (write_buffer_bytes)
    bint idle                   # [mutex] buffers and descriptors given back; the next append takes
                                #         them again
    uint8_t *buf                # [mutex] active buffer: file bytes [buf_start, size); NULL while idle
    int64_t buf_start           # [mutex]
    int64_t buf_cap             # [mutex]
    uint8_t *spare              # [mutex]
    int64_t spare_cap           # [mutex]
    int64_t spare_start         # [mutex] the spare still holds file bytes [spare_start, +spare_len): the
    int64_t spare_len           # [mutex] last write's buffer, readable until reused (O_DIRECT skips
                                #         the page cache)
    bint copying                # [mutex] an appender copies a batch into buf at [size, +n) without
                                #         the mutex: until it commits, the buffer must not move, grow
                                #         or be written out
    ps_frag full[PS_CHAIN_MAX]  # [mutex] buffers a batch filled and went on from (it did not fit), in
    int full_n                  # [mutex]   file order below buf_start, all unwritten: the next
                                #           write-out writes them with buf in one pwritev
    uint8_t *loose              # [mutex] a chained buffer kept after its write for the next chain
    int64_t loose_cap           # [mutex]   (a fresh one would be page-faulted in on every chain)
    ps_frag flight[PS_FRAGS_MAX]  # [mutex] the pieces being written by the shard (their bytes: read by
    int flight_n                  # [mutex]   the writer without the mutex), buf's last
    SparseIndex index           # [mutex] empty while `index_on_disk`
    bint index_on_disk          # [mutex] a finalized segment whose index is in its files only: the next
                                #         look-up loads it (segment_index_ready)
    bint index_cached           # [mutex] a finalized segment holding its index arrays, on its shard's
                                #         index LRU (which may drop them again)
    Segment *ix_prev            # [mutex] on that LRU, most recently used first
    Segment *ix_next            # [mutex]
    int64_t index_interval      # [open]
    int64_t bytes_since_index   # [mutex]
    size_t index_persisted      # [mutex] offset entries already in the .index file
    size_t time_persisted       # [mutex] time entries already in the .timeindex file
    int64_t max_timestamp       # [mutex] greatest timestamp in the segment, -1 when none
    int64_t max_timestamp_offset  # [mutex]
    int64_t created_ms          # [mutex] wall time of the first append (segment_ms rolls)
    bint sealed                 # [mutex] no more appends; waits for the shard to finalize
    bint finalized              # [mutex] flushed, truncated to size, indexes written
    bint deleted                # [mutex]
    bint gaps                   # [open] written by the cleaner: offsets may skip from batch to batch
    int refs                    # [mutex] readers holding it outside the mutex
    int io_errno                # [mutex] first write/sync error, reported to appenders
    ps_frag failed[PS_FRAGS_MAX]  # [mutex] the pieces of a failed write, kept readable and written
    int failed_n                  # [mutex]   again by segment_retry
    int64_t failed_end_offset   # [mutex] next_offset as of the end of the failed pieces
    char *log_path              # [open]
    char *index_path            # [open]
    char *time_path             # [open]
