# Declarations of the shard threads (shard.pxi) and the appends submitted to them (append.pxi).

# fdatasync latency histogram of each shard: fixed upper bounds (100 us .. 1 s) and one
# overflow bucket; counts per bucket, not cumulative (ShardPool.stats makes them cumulative).
cdef enum:
    FSYNC_BUCKETS = 13


# A raw batch handed to the shard: validated, offset-assigned and copied there.
cdef struct AppendRequest:
    PartState *part
    const uint8_t *data
    int64_t length
    int status
    size_t errpos
    int64_t base_offset
    int64_t last_offset
    int64_t max_timestamp       # as stored (LogAppendTime: the shard's clock)
    bint done                   # appended and durable per policy, or failed
    bint no_wait                # done once appended, whatever the policy (Kafka's acks=0 and acks=1)
    AppendRequest *next


# What a shard counts for metrics (ShardPool.stats), under its mutex.
cdef struct ShardCounters:
    int64_t writes
    int64_t syncs               # fdatasyncs of appended data
    int64_t sync_ns             # time spent in them
    int64_t sync_hist[FSYNC_BUCKETS + 1]
    int64_t busy_ns             # time spent appending submissions, writing and syncing
    int64_t queued              # submitted appends not yet done (the queue depth)


cdef struct Shard:
    pthread_t thread
    pthread_mutex_t mu
    pthread_cond_t work         # the shard waits here for dirty partitions
    pthread_cond_t done         # appenders wait here for durability or buffer room
    PartState *dirty_head
    PartState *dirty_tail
    AppendRequest *sub_head     # raw batches submitted to this shard
    AppendRequest *sub_tail
    AppendRequest *durable_wait # appended, waiting for their fdatasync
    bint running
    bint started
    int doorbell                # fd to ring for the asyncio loop, -1 for none
    ShardCounters counters
    # Resources of the active segments (segment.pxi, shard.pxi), under the mutex: the write
    # buffers come from `pool` (a byte budget); `holders` lists the partitions whose active
    # segment holds buffers or descriptors, least recently appended first.
    ps_pool pool                # counters are atomics: readable without the mutex
    int64_t chunk_bytes         # buffer size unit (and the first buffer of an idle partition)
    PartState *hold_head
    PartState *hold_tail
    int64_t holders
    int64_t max_holders         # descriptor budget: each holder keeps at most 3 open
    int pool_waiters            # appenders waiting for the budget (the shard reclaims for them)
    bint reclaim_requested
