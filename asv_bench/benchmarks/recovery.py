"""Opening a log of about 1 GiB: after a clean close, after a crash, and after losing the
last segment's index files.

setup_cache builds the log once per run in a writer subprocess: 960 MiB of 16 KiB batches
(1 KiB records) appended with flush='interval' into 256 MiB segments (three full ones and
a last one of 192 MiB), flushed; the writer then reports the flushed log end and goes on
appending, and is killed with SIGKILL right away, mid-stream ("sigkill": whatever the
engine had on disk at that moment, index files persisted up to wherever it had got, a
possibly torn tail, preallocated zeros past it). A copy of that, opened and closed once,
is "clean". "lost-index" is "clean" without the .index/.timeindex files of the last
segment: the worst case, where the whole last segment is scanned with CRCs checked.

Opening repairs what it finds, so every timed open gets a fresh, fdatasync'ed copy made
in setup; only pstream.Log(...) and finding the partition are timed. The copies are read
from the page cache: this is the CPU cost of recovery, not cold-disk reads. teardown
checks that every record flushed before the kill is still there.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pstream

from .common import KiB, MiB, cache_dir, copy_tree_synced, exact_batch, remove, temp_dir

_SEGMENT_BYTES = 256 << 20
_BATCH_BYTES = 16 * KiB
_FLUSHED_BYTES = 960 * MiB

_WRITER = textwrap.dedent("""
    import sys, time
    sys.path[:0] = {path!r}
    import pstream
    log = pstream.Log({folder!r}, shards=1, flush="interval", segment_bytes={segment_bytes})
    part = log.topic("bench").partition(0)
    batch = open({batch_file!r}, "rb").read()
    for _ in range({count}):
        part.append_batch(batch)
    part.flush()
    print(part.log_end_offset, flush=True)
    for _ in range(256):  # killed somewhere in here (or just after), the log still open
        part.append_batch(batch)
    time.sleep(3600)
""")


def _write_and_kill(folder, batch_file, count):
    script = _WRITER.format(path=[p for p in sys.path if p], folder=folder, segment_bytes=_SEGMENT_BYTES,
                            batch_file=batch_file, count=count)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = writer.stdout.readline()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    if not line.strip().isdigit():
        raise RuntimeError(f"the writer subprocess failed before it was killed (exit {writer.returncode})")
    return int(line)


def _last_segment_indexes(folder):
    """The index files of the last segment, which must be the big partial one."""
    part_dir = os.path.join(folder, "bench", "0")
    last = sorted(name for name in os.listdir(part_dir) if name.endswith(".log"))[-1]
    size = os.path.getsize(os.path.join(part_dir, last))
    if size < 128 * MiB:
        raise RuntimeError(f"the last segment {last} holds {size} bytes; the lost-index case needs a big one")
    stem = last[:-len(".log")]
    return [os.path.join(part_dir, stem + suffix) for suffix in (".index", ".timeindex")]


class OpenLog:
    params = ["clean", "sigkill", "lost-index"]
    param_names = ["state"]
    timeout = 1200
    processes = 1
    number = 1
    repeat = (1, 5, 60.0)
    warmup_time = 0

    def setup_cache(self):
        root = cache_dir("recovery")
        batch_file = os.path.join(root, "batch")
        with open(batch_file, "wb") as f:
            f.write(exact_batch(_BATCH_BYTES, 1024))
        crashed = os.path.join(root, "sigkill")
        flushed = _write_and_kill(crashed, batch_file, _FLUSHED_BYTES // _BATCH_BYTES)
        clean = os.path.join(root, "clean")
        copy_tree_synced(crashed, clean)
        log = pstream.Log(clean, shards=1)
        log.close()
        lost = os.path.join(root, "lost-index")
        copy_tree_synced(clean, lost)
        for path in _last_segment_indexes(lost):
            os.unlink(path)
        return root, flushed

    setup_cache.timeout = 1200

    def setup(self, cache, state):
        root, self.flushed = cache
        self.folder = temp_dir("recovery")
        self.copy = os.path.join(self.folder, "log")
        copy_tree_synced(os.path.join(root, state), self.copy)
        self.log = None

    def teardown(self, cache, state):
        if self.log is not None:
            self.log.close()
            if self.log_end < self.flushed:
                raise RuntimeError(f"{state}: the reopened log ends at {self.log_end}, but {self.flushed} "
                                   "records were flushed before the crash")
        remove(self.folder)

    def time_open(self, cache, state):
        self.log = pstream.Log(self.copy, shards=1)
        self.log_end = self.log.topic("bench").partition(0).log_end_offset
