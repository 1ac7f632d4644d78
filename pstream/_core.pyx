# cython: language_level=3
"""pstream's compiled core: CRC-32C, the record batch codec and the storage engine
(segments, indexes, recovery, the shard threads). The hot path runs here with the GIL
released.

One extension built from fragments, one concept each. Generic pieces live in
pstream/_corelib/:
  cdefs     C declarations (include/*.h, libc, pthread)
  errors    status code -> pstream.errors exception (the only place that maps them)
  batch     Record, BatchHeader, encode/decode/validate/check; peek_batch, cut_batches,
            scan_segment: the one reader of the batch layout above the C headers
  partitioner  murmur2: where Kafka's default partitioner puts a key
  faults    fault injection points for tests (pwrite, fdatasync, open, rename, fallocate)
The storage engine lives in pstream/storage/, declarations (*.pxd: every shared field
says which thread owns it or which lock guards it) apart from code (*.pxi):
  index       sparse offset and time indexes; the LRU of finalized segments' indexes
  segment     one .log file behind an aligned double buffer (O_DIRECT)
  recovery    opening a partition's log: scanning segments, cutting a torn tail
  shard       shard threads: flush policy, group commit, doorbell
  append      reserve/commit/roll on a partition, raw batches submitted to shards
  log         the partition log (Partition): its state, appends, rolls, closing
  checkpoint  the log start offset checkpoint
  read        reading whole batches (CRC and offsets checked), look-ups by timestamp
  retention   deleting old segments
  columns     columnar reads: batches -> numpy arrays (RecordColumns), no object per record
  cleaner     compaction: key map, one cleaning pass, the crash-safe segment swap
"""

include "_corelib/cdefs.pxi"
include "_corelib/errors.pxi"
include "_corelib/batch.pxi"
include "_corelib/partitioner.pxi"

include "storage/index.pxd"
include "storage/segment.pxd"
include "storage/log.pxd"
include "storage/shard.pxd"
include "storage/cleaner.pxd"

include "storage/index.pxi"
include "storage/segment.pxi"
include "storage/recovery.pxi"
include "storage/shard.pxi"
include "storage/append.pxi"
include "storage/log.pxi"
include "storage/checkpoint.pxi"
include "storage/read.pxi"
include "storage/retention.pxi"
include "storage/columns.pxi"
include "storage/cleaner.pxi"
include "_corelib/faults.pxi"

ps_crc32c_init()
