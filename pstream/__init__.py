"""pstream: a Kafka-compatible streaming platform and embeddable log.

`pstream.Log` opens a directory and appends, reads, follows, consumes and retains records
in-process, in the same on-disk format the broker serves; `pstream.serve(log)` and
`pstream.serve_in_thread(log)` serve that open Log to Kafka clients from the same process.
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
from pstream.consumer import Consumer
from pstream.log import Log, Topic, Partition, RecordMetadata
from pstream.transaction import Transaction

__version__ = "0.1.0"

__all__ = ["Log", "Topic", "Partition", "Transaction", "Consumer", "Record", "RecordMetadata", "BatchHeader",
           "crc32c", "crc32c_implementation", "errors", "serve", "serve_in_thread"]


def __getattr__(name: str):
    # The broker (asyncio server, metrics, admin API) loads only for applications that serve.
    if name in ("serve", "serve_in_thread"):
        from pstream.broker import embedded
        return getattr(embedded, name)
    raise AttributeError(f"module 'pstream' has no attribute {name!r}")
