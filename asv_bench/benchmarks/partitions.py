"""What many partitions cost: memory, descriptors and the time to open them again.

A log of 10,000 partitions (100 topics x 100 partitions) at the default settings, each
partition written once (one 100-byte record), is what the issue's targets are about:
RSS under 300 MiB, fewer than 1,000 open descriptors, and opening that log again in
under 2 s. setup_cache builds the directory once per run (creating 10,000 partitions
takes a while); each benchmark opens it in its own process.

track_rss_mib and track_open_files open the log, append one record to every partition,
wait for all of it to be durable, then read /proc/self/status (VmRSS: the whole process,
interpreter included) and count /proc/self/fd. time_reopen times pstream.Log(folder)
and finding every partition, on the directory left by setup_cache (a clean close).

Run by hand for the figures quoted in the issue (prints one line per measure):
    cd asv_bench && python -m benchmarks.partitions [topics] [partitions-per-topic] [setting=value ...]
"""

import os
import sys
import time

import pstream

from .common import cache_dir, remove, temp_dir, values

_TOPICS = 100
_PER_TOPIC = 100


def rss_mib() -> float:
    """VmRSS of this process in MiB (from /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_files() -> int:
    return len(os.listdir("/proc/self/fd")) - 1   # the listing's own descriptor


def _topic_name(t: int) -> str:
    return f"t{t:04d}"


def build(folder: str, topics: int = _TOPICS, per_topic: int = _PER_TOPIC, **settings) -> pstream.Log:
    """Opens a Log on folder with topics x per_topic partitions, each written once; returns it open."""
    log = pstream.Log(folder, **settings)
    value = values(1, 100)[0]
    pending = []
    for t in range(topics):
        topic = log.topic(_topic_name(t), partitions=per_topic)
        for n in range(per_topic):
            # Submitted, not appended one by one: 10,000 fdatasyncs in turn would take minutes.
            pending.append(topic.partition(n).submit_batch(pstream._core.encode_batch([(None, value, [], None)])))
    for p in pending:
        p.wait()
    return log


def reopen(folder: str, topics: int = _TOPICS, per_topic: int = _PER_TOPIC) -> pstream.Log:
    log = pstream.Log(folder)
    for t in range(topics):
        topic = log.topic(_topic_name(t))
        for n in range(per_topic):
            topic.partition(n)
    return log


class ManyPartitions:
    """10,000 partitions, each written once, at the default settings."""

    timeout = 900
    number = 1
    repeat = 3

    def setup_cache(self):
        folder = cache_dir("partitions")
        build(folder).close()
        return folder

    setup_cache.timeout = 900

    def setup(self, folder):
        self.log = None
        self.fresh = None

    def teardown(self, folder):
        if self.log is not None:
            self.log.close()
        remove(self.fresh)

    def _written(self):
        self.fresh = temp_dir("partitions")
        self.log = build(self.fresh)

    def track_rss_mib(self, folder):
        self._written()
        return rss_mib()

    track_rss_mib.unit = "MiB"

    def track_open_files(self, folder):
        self._written()
        return open_files()

    track_open_files.unit = "descriptors"

    def time_reopen(self, folder):
        self.log = reopen(folder)


def main(argv: list[str]) -> None:
    topics = int(argv[0]) if argv else _TOPICS
    per_topic = int(argv[1]) if len(argv) > 1 else _PER_TOPIC
    settings = {k: int(v) for k, v in (a.split("=", 1) for a in argv[2:])}   # e.g. preallocate_bytes=1048576
    folder = temp_dir("partitions")
    try:
        start = time.perf_counter()
        log = build(folder, topics, per_topic, **settings)
        print(f"partitions: {topics * per_topic}")
        print(f"build_s: {time.perf_counter() - start:.2f}")
        print(f"rss_mib: {rss_mib():.1f}")
        print(f"open_files: {open_files()}")
        mem = log.memory_stats()
        print(f"write_pool_in_use_mib: {sum(p['in_use_bytes'] for p in mem['write_pool']) / 2**20:.1f}")
        print(f"write_pool_peak_mib: {sum(p['peak_bytes'] for p in mem['write_pool']) / 2**20:.1f}")
        print(f"index_mib: {mem['index_bytes'] / 2**20:.1f}")
        log.close()
        start = time.perf_counter()
        log = reopen(folder, topics, per_topic)
        print(f"reopen_s: {time.perf_counter() - start:.2f}")
        print(f"rss_after_reopen_mib: {rss_mib():.1f}")
        print(f"open_files_after_reopen: {open_files()}")
        log.close()
    finally:
        remove(folder)


if __name__ == "__main__":
    main(sys.argv[1:])
