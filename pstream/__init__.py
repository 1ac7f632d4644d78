"""pstream: a Kafka-compatible streaming platform and embeddable log.

`pstream.Log` opens a directory and appends, reads, tails and retains records
in-process, in the same on-disk format the broker serves.
"""

try:
    from pstream import _core  # the compiled core is required: no pure-Python fallback
except ImportError as exc:  # say what is wrong instead of a bare "cannot import name"
    import os as _os

    raise ImportError(
        f"pstream's compiled core (pstream._core) is not importable from {_os.path.dirname(__file__)}: {exc}. "
        "If that is the source tree, either install (pip install .) and run from outside it, or build "
        "in place with `python setup.py build_ext --inplace`."
    ) from exc
from pstream._core import BatchHeader, Record, crc32c, crc32c_implementation
from pstream import errors
from pstream.log import Log, Topic, Partition
from pstream.transaction import Transaction

__version__ = "0.1.0"

__all__ = ["Log", "Topic", "Partition", "Transaction", "Record", "BatchHeader", "crc32c", "crc32c_implementation", "errors"]
