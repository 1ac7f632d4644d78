# Declarations of the log cleaner (cleaner.pxi): the key map, and the reader, writer and
# record filter of one cleaning pass. Everything here is owned by the thread running the
# pass (Partition.clean, one at a time per partition under its clean_lock); nothing is
# shared with the shard threads except through the segment list, under the shard mutex.

cdef extern from "ps_keymap.h" nogil:
    ctypedef struct ps_keymap:
        size_t capacity
        size_t used
        size_t max_used
    int ps_keymap_init(ps_keymap *m, size_t bytes, int growable)
    void ps_keymap_free(ps_keymap *m)
    int ps_keymap_put(ps_keymap *m, const uint8_t *key, size_t n, int64_t offset)
    int64_t ps_keymap_get(const ps_keymap *m, const uint8_t *key, size_t n)
    ctypedef struct ps_pidmap:
        size_t used
    int ps_pidmap_init(ps_pidmap *m)
    void ps_pidmap_free(ps_pidmap *m)
    int ps_pidmap_put(ps_pidmap *m, int64_t pid, int64_t offset)
    int64_t ps_pidmap_get(const ps_pidmap *m, int64_t pid)


cdef enum:
    # KIP-534: the batch's base timestamp holds its delete horizon (Kafka's DELETE_HORIZON_FLAG_MASK)
    PS_ATTR_DELETE_HORIZON = 0x40
    # what the cleaner's loops return besides a ps_status
    CLEAN_END = 100             # the segment is done
    CLEAN_CODEC = 101           # a compressed batch: Python decompresses it (h and batch set)
    CLEAN_FULL = 102            # the key map cannot take the next batch (h set)


# Batches of one segment file, read in windows and CRC-checked.
cdef struct BatchReader:
    int fd
    const char *path
    int64_t pos                 # file position of the next batch
    int64_t end                 # the segment's size
    uint8_t *buf
    int64_t cap
    int64_t wstart              # the window holds file bytes [wstart, wend)
    int64_t wend
    int64_t bytes_read
    int64_t bad_position        # where a failed check happened
    bint headers_only           # no CRC check (the producer pass; the rewrite checks every batch)


# The output of one group: a `.cleaned` file written through a buffer, and the Segment that
# will serve it (its index and offsets are built as batches are written).
cdef struct SegmentWriter:
    int fd
    const char *path
    uint8_t *buf
    int64_t cap
    int64_t len                 # bytes in buf
    int64_t flushed             # bytes already written to the file
    Segment *seg
    int64_t bytes_written
    int io_errno                # the errno of a failed write, 0 while none failed


# What decides, record by record, what a pass keeps (Kafka's Cleaner.shouldRetainRecord).
cdef struct CleanFilter:
    ps_keymap *map
    ps_pidmap *last_batch       # producer id -> base offset of its last batch in the cleaned range
    int64_t now_ms
    int64_t delete_retention_ms
    int64_t records_read
    int64_t records_removed
    int64_t tombstones_removed
    int64_t batches_emptied     # producer batches kept empty (the producer's last)
    int64_t next_horizon_ms     # the earliest delete horizon of a kept tombstone, -1 when none
    uint8_t *scratch            # retained records of one batch
    size_t scratch_cap
    const int64_t *aborted      # aborted transactions: (producer id, first, last offset) triples,
    size_t n_aborted            #   sorted by producer id then first offset; their records go
