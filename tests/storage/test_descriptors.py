"""File descriptors: a Log holds descriptors for its active segments and the reads in progress,
not for every segment it has, and close() gives every one back at once (not when the garbage
collector gets round to the partitions)."""

from __future__ import annotations

import gc
import os
import resource

import pytest

import pstream


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def write_segments(path, segments: int) -> None:
    with pstream.Log(path, shards=1, retention_check_ms=None, segment_bytes=4096, preallocate_bytes=0) as log:
        part = log.topic("t").partition(0)
        value = b"x" * 1500
        while len(part.segments()) < segments:
            part.append_many([(None, value), (None, value)])


@pytest.fixture
def no_gc():
    """The bug hid behind the cyclic GC: descriptors were closed only when it freed the partitions."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def test_close_releases_every_descriptor_at_once(tmp_path, no_gc):
    write_segments(tmp_path / "data", 60)
    before = open_fds()
    for _ in range(3):
        log = pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None)
        part = log.topic("t").partition(0)
        assert sum(1 for _ in part.read(0)) > 100          # every segment read once
        log.close()
        assert open_fds() == before, "descriptors left open after Log.close()"


def test_opening_a_log_holds_no_descriptor_per_sealed_segment(tmp_path, no_gc):
    write_segments(tmp_path / "data", 200)
    before = open_fds()
    log = pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None)
    part = log.topic("t").partition(0)
    held = open_fds() - before
    assert len(part.segments()) >= 200
    assert held < 20, f"{held} descriptors held for a log of {len(part.segments())} segments"
    assert sum(1 for _ in part.read(0)) > 300
    assert open_fds() - before == held, "reads left descriptors of sealed segments open"
    log.close()


def test_a_log_with_more_segments_than_the_descriptor_limit_opens_and_reads(tmp_path, no_gc):
    write_segments(tmp_path / "data", 300)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds() + 64, hard))
    try:
        with pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None) as log:
            part = log.topic("t").partition(0)
            count = sum(1 for _ in part.read(0))
            assert count == part.log_end_offset
            part.append(b"still writable")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_running_out_of_descriptors_while_creating_a_topic_leaves_none_of_it(tmp_path, no_gc):
    data = tmp_path / "data"
    log = pstream.Log(data, shards=1, retention_check_ms=None)
    log.topic("kept").partition(0).append(b"v")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An idle partition holds no descriptor, but opening one takes two at once (its file and
    # the write side): with one descriptor to spare, the creation runs out at the first.
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds() + 40, hard))
    fillers = []
    try:
        while True:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        os.close(fillers.pop())
        with pytest.raises(OSError):
            log.topic("big", partitions=200)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # Out of descriptors, the half-made topic may stay as a @deleting- directory: never listed,
    # removed at the next start.
    assert "big" not in log
    assert sorted(n for n in os.listdir(data) if not n.startswith("@deleting-")) == ["@lock", "@readable", "kept"]
    log.close()

    with pstream.Log(data, shards=1, retention_check_ms=None) as log:   # the next start is not hurt
        assert log.topics() == ["kept"] and sorted(os.listdir(data)) == ["@lock", "@readable", "kept"]
        assert log.topic("big", partitions=200).partitions == 200
