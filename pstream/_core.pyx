# cython: language_level=3
"""pstream's compiled core: CRC-32C, the record batch codec, segments, indexes,
recovery and the shard threads. The hot path runs here with the GIL released.

Built from fragments, one concept each (see pstream/_corelib/):
  cdefs     C declarations (include/*.h, libc, pthread)
  errors    status code -> pstream.errors exception (the only place that maps them)
  batch     Record, BatchHeader, encode/decode/validate
  index     sparse offset and time indexes
  segment   one .log file behind an aligned double buffer (O_DIRECT)
  recovery  scanning segments at open, cutting a torn tail
  shard     shard threads: flush policy, group commit, doorbell
  append    reserve/commit/roll on a partition, raw batches submitted to shards
  partition the partition log: append, read, roll, retention
  faults    fault injection points for tests (pwrite, fdatasync, open, rename, fallocate)
"""

include "_corelib/cdefs.pxi"
include "_corelib/errors.pxi"
include "_corelib/batch.pxi"
include "_corelib/index.pxi"
include "_corelib/segment.pxi"
include "_corelib/recovery.pxi"
include "_corelib/shard.pxi"
include "_corelib/append.pxi"
include "_corelib/partition.pxi"
include "_corelib/faults.pxi"

ps_crc32c_init()
