"""The index cache: finalized segments' indexes are held only while looked up lately, within
index_cache_bytes; the others are read back from their files by the next look-up."""

from __future__ import annotations

import random
import time

import pytest

from pstream.errors import ConfigError

RECORDS = 3000
VALUE = 200
TS0 = int(time.time() * 1000) - 3_600_000     # recent: time retention keeps them


def fill(log, name="t"):
    """Many small segments with a dense index each (one entry per batch of a few records)."""
    part = log.topic(name, partitions=1, segment_bytes=32 << 10, index_interval_bytes=256,
                     flush="interval").partition(0)
    for n in range(0, RECORDS, 5):
        part.append_many([(None, b"%06d" % i + b"." * (VALUE - 6), None, TS0 + i) for i in range(n, n + 5)])
    part.flush()
    return part


def cache(log) -> dict:
    shard = log.memory_stats()["write_pool"][0]
    return {k: shard[k] for k in ("index_cache_bytes", "index_cache_capacity_bytes", "index_loads",
                                  "index_evictions")}


def check_reads(part, offsets):
    for offset in offsets:
        rec = next(iter(part.read(offset, max_records=1)))
        assert rec.offset == offset and rec.value.startswith(b"%06d" % offset)


@pytest.fixture
def filled(open_log, data_dir):
    """A log written, closed and opened again: every finalized segment's index is on disk."""
    with open_log() as log:
        segments = len(fill(log).segments())
    assert segments > 20
    return data_dir


def test_reopened_segments_hold_no_index_until_read(open_log, filled):
    log = open_log()
    part = log.topic("t").partition(0)
    assert cache(log)["index_cache_bytes"] == 0 and part.stats()[3] < 64 << 10
    check_reads(part, [5, 1234, RECORDS - 1000])
    after = cache(log)
    assert after["index_loads"] >= 2 and after["index_cache_bytes"] > 0


def test_reads_stay_right_with_a_budget_smaller_than_one_index(open_log, filled):
    log = open_log(index_cache_bytes=0)
    part = log.topic("t").partition(0)
    offsets = list(range(0, RECORDS, 7))
    random.Random(1).shuffle(offsets)
    check_reads(part, offsets)
    state = cache(log)
    assert state["index_evictions"] > 20
    # The index just used stays, none beyond it: a 32 KiB segment's fits its arrays' first
    # size, 256 offset entries (8 bytes) and 256 time entries (12 bytes).
    assert 0 < state["index_cache_bytes"] <= 256 * (8 + 12)


def test_lookups_by_time_read_indexes_back(open_log, filled):
    part = open_log(index_cache_bytes=0).topic("t").partition(0)
    for target in (0, TS0 + 17, TS0 + 2222, TS0 + RECORDS - 1):
        assert part.offset_for_timestamp(target) == max(target - TS0, 0)
    assert part.offset_for_timestamp(TS0 + RECORDS) is None


def test_a_damaged_index_file_found_at_read_time_is_only_slower(open_log, filled):
    """An index file spoiled after the log opened: the look-up scans the segment instead."""
    log = open_log()
    part = log.topic("t").partition(0)
    base, nxt, _, path = part.segments()[3]
    with open(path.replace(".log", ".index"), "r+b") as f:
        f.write(b"\xff" * 64)       # entries out of order, past the segment's end
    check_reads(part, range(base, nxt))


def test_cached_indexes_follow_retention_and_close(open_log, filled):
    log = open_log(index_cache_bytes=1 << 30)
    topic = log.topic("t")
    part = topic.partition(0)
    check_reads(part, [s[0] + 1 for s in part.segments()[:-1]])
    held = cache(log)["index_cache_bytes"]
    assert held > 0
    topic.set_config(retention_bytes=200 << 10)
    assert log.apply_retention() > 0
    assert 0 < cache(log)["index_cache_bytes"] < held
    check_reads(part, [part.segments()[0][0]])
    log.close()
    assert cache(log)["index_cache_bytes"] == 0


def test_index_cache_bytes_is_checked(open_log):
    with pytest.raises(ConfigError, match="index_cache_bytes"):
        open_log(index_cache_bytes=-1)
