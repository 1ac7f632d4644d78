# Declarations of a partition log's state, shared by its Partition object (log.pxi),
# appenders (append.pxi) and its shard thread (shard.pxi).

cdef enum FlushMode:
    FLUSH_ALWAYS = 0
    FLUSH_INTERVAL = 1
    FLUSH_BYTES = 2


cdef struct PartState:
    Shard *shard
    char *directory
    Segment **segs              # ascending base offsets; the last one is active
    size_t n_segs
    size_t cap_segs
    int64_t log_start_offset
    int64_t next_offset         # log end offset: readable up to here
    int64_t durable_offset      # offsets below this are fdatasync'ed
    int flush_mode
    int64_t flush_ms
    int64_t flush_bytes
    # shard bookkeeping (under the shard mutex)
    bint queued
    PartState *next_dirty
    int64_t dirty_since_ns      # first append not yet synced, 0 when clean
    bint sync_requested
    bint write_requested
    bint rolling
    int io_errno                # a write or sync failed: appends refused until part_revive succeeds
    int64_t failures            # failure episodes so far (Python logs each once)
    bint reviving               # part_revive is rewriting (the mutex dropped): one at a time
    char fail_file[512]         # the file of the last failure
    int64_t watch_offset        # ring the doorbell when next_offset passes it (-1: nobody)
    int64_t watch_durable       # ring the doorbell when durable_offset passes it (-1: nobody)
    # settings the shard needs as much as appenders do
    int64_t segment_bytes
    int64_t segment_ms          # -1: no time-based roll
    int64_t index_interval
    int64_t buffer_bytes
    int64_t prealloc_bytes
    int64_t max_message_bytes
    int32_t leader_epoch
    int timestamp_type          # 1: LogAppendTime
    bint want_direct
    bint closed
    int busy                    # submitted appends the shard is working on (close waits for them)
    bint direct_fallback        # a segment fell back to buffered writes (Python logs it once)
    # on the shard's holders list (shard.pxi; under the mutex): its active segment holds write
    # buffers or descriptors, given back once it has been idle for a while or the shard needs them
    bint holding
    PartState *hold_prev
    PartState *hold_next
    int64_t last_append_ns
