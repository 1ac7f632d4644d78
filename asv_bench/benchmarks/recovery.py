"""Opening a log of about 1 GiB: after a clean close, after a crash, and after losing the
last segment's index files.

setup_cache builds the log once per run in a writer subprocess: ~1 GiB of 16 KiB batches
(1 KiB records) appended with flush='interval' into 256 MiB segments, flushed, then the
writer is killed with SIGKILL while it holds the log open ("sigkill": what the engine
left on disk is what recovery gets, index files persisted up to wherever the writer had
got, preallocated zeros past the end). A copy of it is opened and closed once to make
"clean". "lost-index" is "clean" without the .index/.timeindex files of the last segment:
the worst case for the last segment, which must be scanned whole with CRCs checked.

Opening repairs what it finds, so every timed open gets a fresh, fdatasync'ed copy made
in setup (the timed part is only pstream.Log(...) and finding the partition). The copies
are read from the page cache: this is the CPU cost of recovery, not cold-disk reads.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pstream

from .common import GiB, KiB, cache_dir, copy_tree_synced, exact_batch, remove, temp_dir

_SEGMENT_BYTES = 256 << 20
_BATCH_BYTES = 16 * KiB

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
    print(part.high_watermark, flush=True)
    time.sleep(3600)  # killed here, the log still open
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
    part_dir = os.path.join(folder, "bench", "0")
    bases = sorted(name for name in os.listdir(part_dir) if name.endswith(".log"))
    stem = bases[-1][:-len(".log")]
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
        records = _write_and_kill(crashed, batch_file, GiB // _BATCH_BYTES)
        clean = os.path.join(root, "clean")
        copy_tree_synced(crashed, clean)
        log = pstream.Log(clean, shards=1)
        log.close()
        lost = os.path.join(root, "lost-index")
        copy_tree_synced(clean, lost)
        for path in _last_segment_indexes(lost):
            os.unlink(path)
        return root, records

    setup_cache.timeout = 1200

    def setup(self, cache, state):
        root, self.records = cache
        self.folder = temp_dir("recovery")
        self.copy = os.path.join(self.folder, "log")
        copy_tree_synced(os.path.join(root, state), self.copy)
        self.log = None

    def teardown(self, cache, state):
        if self.log is not None:
            self.log.close()
            if self.log_end != self.records:
                raise RuntimeError(f"{state}: the reopened log ends at {self.log_end}, expected {self.records}")
        remove(self.folder)

    def time_open(self, cache, state):
        self.log = pstream.Log(self.copy, shards=1)
        self.log_end = self.log.topic("bench").partition(0).high_watermark
