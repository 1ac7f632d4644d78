"""pstream.Log(path, readonly=True): other processes read what the writer made durable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

import pstream
from pstream.errors import CorruptSegmentError, DirectoryInUseError, OffsetOutOfRangeError, UnknownTopicError

WRITER = textwrap.dedent("""
    import sys, time, pstream
    path, count, flush = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with pstream.Log(path, shards=2, retention_check_ms=None, cleaner=False) as log:
        topic = log.topic("events", partitions=2, flush=flush, flush_ms=5, segment_bytes=64 << 10)
        print("open", flush=True)
        for i in range(count):
            topic.append(b"v%d" % i, key=b"k%d" % (i % 7))
            if i % 50 == 0:
                time.sleep(0.005)
        if flush != "always":
            for part in topic:
                part.flush()
        print("done", flush=True)
        sys.stdin.readline()          # hold the directory until told to go
""")


@pytest.fixture
def writer(tmp_path):
    procs = []

    def start(count, flush="always"):
        proc = subprocess.Popen([sys.executable, "-P", "-c", WRITER, str(tmp_path / "data"), str(count), flush],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "open"
        return proc
    yield start
    for proc in procs:
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()
        assert proc.returncode == 0


def test_a_reader_follows_a_writer_in_another_process(tmp_path, writer):
    proc = writer(5000)
    with pstream.Log(tmp_path / "data", readonly=True) as log:
        with pytest.raises(DirectoryInUseError):
            pstream.Log(tmp_path / "data")              # the writer holds it: one writer only
        follower = log.topic("events").follow(start="earliest", timeout=2.0)
        got = [r.value for r in follower]
        assert proc.stdout.readline().strip() == "done"
        assert sorted(got, key=lambda v: int(v[1:])) == [b"v%d" % i for i in range(5000)]
        for part in log.topic("events"):
            offsets = [r.offset for r in part.read(part.log_start_offset)]
            assert offsets == list(range(part.log_start_offset, part.high_watermark))
            assert len(part._segment_list()) > 1          # it read across rolled segments


def test_a_reader_never_sees_past_the_durable_offset(tmp_path):
    with pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None, cleaner=False) as log:
        part = log.topic("t", flush="interval", flush_ms=60_000).partition(0)
        part.append(b"first")
        part.flush()
        part.append(b"not yet durable")           # readable in the writer, not synced
        assert part.log_end_offset == 2 and part.durable_offset == 1
        with pstream.Log(tmp_path / "data", readonly=True) as reader:
            rpart = reader.topic("t").partition(0)
            assert rpart.high_watermark == 1
            assert [r.value for r in rpart.read(0)] == [b"first"]
            part.flush()
            assert rpart.high_watermark == 2      # seen without reopening anything
            assert [r.value for r in rpart.read(0)] == [b"first", b"not yet durable"]


def test_reading_needs_no_writer_and_refuses_bad_offsets_and_unknown_topics(tmp_path):
    with pstream.Log(tmp_path / "data", shards=1) as log:
        log.topic("t").append_many([(None, b"%d" % i) for i in range(10)])
    with pstream.Log(tmp_path / "data", readonly=True) as reader:
        part = reader.topic("t").partition(0)
        assert [r.value for r in part.read(0)] == [b"%d" % i for i in range(10)]
        assert part.read_batches(10) == b""
        with pytest.raises(OffsetOutOfRangeError):
            part.read_batches(11)
        with pytest.raises(UnknownTopicError):
            reader.topic("nope")
        cols = part.read_columns(0)
        assert list(cols.offsets) == list(range(10))
    with pytest.raises(pstream.errors.ConfigError, match="takes no settings"):
        pstream.Log(tmp_path / "data", readonly=True, shards=2)


def test_a_corrupt_batch_is_reported_not_served(tmp_path):
    with pstream.Log(tmp_path / "data", shards=1) as log:
        part = log.topic("t").partition(0)
        part.append(b"a" * 100)
        part.append(b"b" * 100)
        path = part.segments()[0][3]
    with open(path, "r+b") as f:
        f.seek(150)               # inside the second batch's records
        f.write(b"X")
    with pstream.Log(tmp_path / "data", readonly=True) as reader:
        part = reader.topic("t").partition(0)
        with pytest.raises(CorruptSegmentError, match="cannot be read") as err:
            list(part.read(0))
        assert err.value.file == path


def test_topics_created_after_the_reader_opened_are_found(tmp_path):
    with pstream.Log(tmp_path / "data", shards=1) as log:
        log.topic("first").append(b"x")
        reader = pstream.Log(tmp_path / "data", readonly=True)
        with pytest.raises(UnknownTopicError):
            reader.topic("later")
        log.topic("later", partitions=2).append(b"y", partition=1)
        assert [r.value for r in reader.topic("later").partition(1).read(0)] == [b"y"]
        log.topic("later").add_partitions(3)
        log.topic("later").append(b"z", partition=2)
        assert [r.value for r in reader.topic("later").partition(2).read(0)] == [b"z"]
        reader.close()


def test_a_blocked_reader_is_woken_by_the_writers_publish(tmp_path):
    """The reader sleeps on the futex of <data>/@readable; the writer's fdatasync wakes it (a lost
    wake-up would leave it asleep for the whole 60 s)."""
    import threading

    from pstream import _core

    with pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None, cleaner=False) as log:
        part = log.topic("t").partition(0)
        with pstream.Log(tmp_path / "data", readonly=True) as reader:
            page = reader._readable_seq()
            assert page is not None
            seen = int.from_bytes(page[:4], sys.byteorder)
            woken = threading.Event()
            sleeper = threading.Thread(target=lambda: (_core.wait_shared_seq(page, seen, 60.0), woken.set()))
            sleeper.start()
            time.sleep(0.05)
            part.append(b"x")                 # flush "always": published after its fdatasync
            sleeper.join(30)
            assert woken.is_set()
            assert int.from_bytes(page[:4], sys.byteorder) != seen
