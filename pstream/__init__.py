"""pstream: a Kafka-compatible streaming platform and embeddable log.

`pstream.Log` opens a directory and appends, reads, tails and retains records
in-process, in the same on-disk format the broker serves.
"""

from pstream import _core  # the compiled core is required: no pure-Python fallback
from pstream._core import BatchHeader, Record, crc32c, crc32c_implementation
from pstream import errors
from pstream.log import Log, Topic, Partition

__version__ = "0.1.0"

__all__ = ["Log", "Topic", "Partition", "Record", "BatchHeader", "crc32c", "crc32c_implementation", "errors"]
