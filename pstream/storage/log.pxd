# Declarations of a partition log's state, shared by its Partition object (log.pxi),
# appenders (append.pxi) and its shard thread (shard.pxi).
#
# Who may touch each field (the concurrency contract, docs/architecture.md):
#   [open]    written once while the Partition opens, before any other thread sees it; read freely
#   [mutex]   read and written only with the owning shard's mutex (Shard.mu) held
#   [atomic]  written with the mutex held through ps_store_*, read anywhere through ps_load_*
#             (include/ps_atomic.h): lock-free readers see a whole value, and the bytes before it
#   [shard]   touched by the owning shard thread only

cdef enum FlushMode:
    FLUSH_ALWAYS = 0
    FLUSH_INTERVAL = 1
    FLUSH_BYTES = 2


cdef struct PartState:
    Shard *shard                # [open] the shard that owns this partition
    char *directory             # [open]
    Segment **segs              # [mutex] ascending base offsets; the last one is active
    size_t n_segs               # [mutex]
    size_t cap_segs             # [mutex]
    int64_t log_start_offset    # [atomic] first offset readers may ask for
    int64_t next_offset         # [atomic] log end offset: readable up to here
    int64_t durable_offset      # [atomic] offsets below this are fdatasync'ed
    int64_t replicated_hw       # [atomic] cluster mode: the high watermark the in-sync replicas hold,
                                #          set by the replication layer; -1: this copy alone decides
    int64_t *published          # [open] a shared page: [0] durable offset, [1] log start offset, for
                                #        read-only readers in other processes (part_publish); or NULL
    int flush_mode              # [open]
    int64_t flush_ms            # [open]
    int64_t flush_bytes         # [open]
    # shard bookkeeping
    bint queued                 # [mutex] on the shard's dirty list
    PartState *next_dirty       # [mutex]
    int64_t dirty_since_ns      # [mutex] first append not yet synced, 0 when clean
    bint sync_requested         # [mutex]
    bint write_requested        # [mutex]
    bint rolling                # [mutex] an appender is rolling the segment (others wait on `done`)
    int io_errno                # [mutex] a write or sync failed: appends refused until part_revive succeeds
    int64_t failures            # [mutex] failure episodes so far (Python logs each once)
    bint reviving               # [mutex] part_revive is rewriting (the mutex dropped): one at a time
    char fail_file[512]         # [mutex] the file of the last failure
    int64_t watch_offset        # [mutex] ring the doorbell when next_offset passes it (-1: nobody)
    int64_t watch_durable       # [mutex] ring the doorbell when durable_offset passes it (-1: nobody)
    # settings the shard needs as much as appenders do (reconfigure changes some at run time)
    int64_t segment_bytes       # [mutex]
    int64_t segment_ms          # [mutex] -1: no time-based roll
    int64_t index_interval      # [mutex]
    int64_t buffer_bytes        # [open]
    int64_t prealloc_bytes      # [open]
    int64_t max_message_bytes   # [atomic] checked by appenders before they reserve
    int32_t leader_epoch        # [atomic] stamped into every appended batch
    int32_t timestamp_type      # [atomic] 1: LogAppendTime
    bint want_direct            # [open]
    bint closed                 # [mutex]
    int busy                    # [mutex] submitted appends the shard is working on (close waits for them)
    bint direct_fallback        # [mutex] a segment fell back to buffered writes (Python logs it once;
                                #         read without the mutex as a hint only)
    # on the shard's holders list (shard.pxi): its active segment holds write buffers or
    # descriptors, given back once it has been idle for a while or the shard needs them
    bint holding                # [mutex]
    PartState *hold_prev        # [mutex]
    PartState *hold_next        # [mutex]
    int64_t last_append_ns      # [mutex]
