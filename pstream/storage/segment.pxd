# Declarations of a segment (segment.pxi).

cdef extern from "ps_pool.h" nogil:
    ctypedef struct ps_pool:
        int64_t capacity
        int64_t in_use
        int64_t peak
        int64_t waits
        int64_t released
    uint8_t *ps_pool_take(ps_pool *pool, int64_t nbytes, int *over)
    void ps_pool_give(ps_pool *pool, uint8_t *p, int64_t nbytes)
    int64_t ps_pool_load(const int64_t *counter)
    void ps_pool_count(int64_t *counter)
    void ps_index_bytes_add(int64_t delta)
    int64_t ps_index_bytes_now()


cdef struct Segment:
    int64_t base_offset
    int64_t next_offset         # one past the last offset appended here
    int wfd                     # write fd (O_DIRECT when direct), -1 once finalized
    int rfd                     # buffered read fd
    int dfd                     # O_DIRECT read fd for data served from the file, -1 if refused
    bint direct
    bint direct_fallback        # O_DIRECT was refused at the first write
    int64_t size                # logical end: end of the last batch
    int64_t written             # bytes handed to the file
    int64_t written_offset      # next_offset as of `written`
    int64_t synced              # bytes covered by fdatasync
    int64_t synced_offset       # next_offset as of `synced`
    int64_t allocated           # preallocated file length
    int64_t prealloc_step
    int64_t prealloc_limit      # never preallocate past this (segment.bytes): a small segment stays small
    ps_pool *pool               # where the buffers come from (the shard's budget), NULL before the writer opens
    int64_t buf_min             # the first buffer's size (the shard's chunk)
    int64_t buf_limit           # buffers grow up to this with the write rate (write_buffer_bytes)
    bint idle                   # buffers and descriptors given back; the next append takes them again
    uint8_t *buf                # active buffer: file bytes [buf_start, size); NULL while idle
    int64_t buf_start
    int64_t buf_cap
    uint8_t *spare
    int64_t spare_cap
    int64_t spare_start         # the spare still holds file bytes [spare_start, +spare_len): the
    int64_t spare_len           # last write's buffer, readable until reused (O_DIRECT skips the page cache)
    bint copying                # an appender copies a batch into buf at [size, +n) without the mutex:
                                # until it commits, the buffer must not move, grow or be written out
    uint8_t *inflight           # buffer being written by the shard, or NULL
    int64_t inflight_start
    int64_t inflight_len
    SparseIndex index
    int64_t index_interval
    int64_t bytes_since_index
    size_t index_persisted      # offset entries already in the .index file
    size_t time_persisted       # time entries already in the .timeindex file
    int64_t max_timestamp       # greatest timestamp in the segment, -1 when none
    int64_t max_timestamp_offset
    int64_t created_ms          # wall time of the first append (segment_ms rolls)
    bint sealed                 # no more appends; waits for the shard to finalize
    bint finalized              # flushed, truncated to size, indexes written
    bint deleted
    bint gaps                   # written by the cleaner: offsets may skip from batch to batch
    int refs                    # readers holding it outside the mutex
    int io_errno                # first write/sync error, reported to appenders
    uint8_t *failed_buf         # the buffer of a failed write: file bytes [failed_start, +failed_len),
    int64_t failed_cap          # kept readable and written again by segment_retry
    int64_t failed_start
    int64_t failed_len
    int64_t failed_end_offset   # next_offset as of the end of failed_buf
    char *log_path
    char *index_path
    char *time_path
