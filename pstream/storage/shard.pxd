# Declarations of the shard threads (shard.pxi) and the appends submitted to them (append.pxi).
# Field tags as in log.pxd: [open], [mutex] (Shard.mu), [atomic], [shard].

# fdatasync latency histogram of each shard: fixed upper bounds (100 us .. 1 s) and one
# overflow bucket; counts per bucket, not cumulative (ShardPool.stats makes them cumulative).
cdef enum:
    FSYNC_BUCKETS = 13


# A raw batch handed to the shard: validated, offset-assigned and copied there.
cdef struct AppendRequest:
    PartState *part             # [open] set by the submitter before it queues the request
    const uint8_t *data         # [open] the batch (a pinned buffer of the submitter's)
    int64_t length              # [open]
    int status                  # [mutex] the results below are written by the shard and read
    size_t errpos               # [mutex]   by the submitter once `done`
    int64_t base_offset         # [mutex]
    int64_t last_offset         # [mutex]
    int64_t max_timestamp       # [mutex] as stored (LogAppendTime: the shard's clock)
    bint done                   # [mutex] appended and durable per policy, or failed
    bint no_wait                # [open] done once appended, whatever the policy (Kafka's acks=0 and acks=1)
    bint replica                # [open] a follower's copy of its leader's batch: kept as it is, at the log end
    AppendRequest *next         # [mutex] the shard's submission or durable-wait list


# What a shard counts for metrics (ShardPool.stats): [mutex], every field.
cdef struct ShardCounters:
    int64_t writes
    int64_t syncs               # fdatasyncs of appended data
    int64_t sync_ns             # time spent in them
    int64_t sync_hist[FSYNC_BUCKETS + 1]
    int64_t busy_ns             # time spent appending submissions, writing and syncing
    int64_t queued              # submitted appends not yet done (the queue depth)


cdef struct Shard:
    pthread_t thread            # [open]
    ps_mutex mu                 # guards every [mutex] field of this shard and its partitions
    pthread_cond_t work         # [open] the shard waits here for dirty partitions
    pthread_cond_t done         # [open] appenders wait here for durability or buffer room
    PartState *dirty_head       # [mutex]
    PartState *dirty_tail       # [mutex]
    AppendRequest *sub_head     # [mutex] raw batches submitted to this shard
    AppendRequest *sub_tail     # [mutex]
    AppendRequest *durable_wait # [mutex] appended, waiting for their fdatasync
    bint running                # [mutex] cleared by ShardPool.stop
    bint started                # [open]
    ps_bells *bells             # [open] the pool's doorbells and followers (include/ps_bells.h)
    ShardCounters counters      # [mutex]
    # Resources of the active segments (segment.pxi, shard.pxi): the write buffers come from
    # `pool` (a byte budget); `holders` lists the partitions whose active segment holds buffers
    # or descriptors, least recently appended first.
    ps_pool pool                # [mutex] to take and give; its counters are atomics, read anywhere
    int64_t chunk_bytes         # [open] buffer size unit (and the first buffer of an idle partition)
    PartState *hold_head        # [mutex]
    PartState *hold_tail        # [mutex]
    int64_t holders             # [mutex]
    int64_t max_holders         # [open] descriptor budget: each holder keeps at most 3 open
    int pool_waiters            # [mutex] appenders waiting for the budget (the shard reclaims for them)
    # Indexes of finalized segments (index.pxi): held while looked up lately, within a budget;
    # the others are read from their files by the next look-up.
    Segment *ix_head            # [mutex] most recently used first
    Segment *ix_tail            # [mutex]
    int64_t ix_bytes            # [mutex] index arrays on the list
    int64_t ix_budget           # [open]
    int64_t ix_loads            # [mutex] indexes read back from their files
    int64_t ix_evictions        # [mutex] indexes dropped to stay within the budget
    bint reclaim_requested      # [mutex]
