"""part.follow / topic.follow: records as they become readable, blocking or in asyncio."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import pstream
from pstream import _core
from pstream.errors import LogClosedError


@pytest.fixture
def log(tmp_path):
    with pstream.Log(tmp_path / "data", shards=2, retention_check_ms=None, cleaner=False) as log:
        yield log


def _append_later(topic, values, delay=0.02, **kwargs):
    def run():
        for v in values:
            time.sleep(delay)
            topic.append(v, **kwargs)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_follow_yields_existing_then_new_records_and_ends_after_idle_timeout(log):
    topic = log.topic("t")
    part = topic.partition(0)
    part.append(b"old")
    writer = _append_later(topic, [b"a", b"b", b"c"])
    got = [(r.offset, r.value, r.topic, r.partition) for r in part.follow(0, timeout=1.0)]
    writer.join()
    assert got == [(0, b"old", "t", 0), (1, b"a", "t", 0), (2, b"b", "t", 0), (3, b"c", "t", 0)]


def test_follow_from_none_sees_only_new_records(log):
    part = log.topic("t").partition(0)
    part.append(b"before")
    follower = part.follow(timeout=0.3)
    part.append(b"after")
    assert [r.value for r in follower] == [b"after"]


def test_follow_of_a_topic_covers_every_partition(log):
    topic = log.topic("t", partitions=4)
    keys = [b"k%d" % i for i in range(20)]
    threading.Thread(target=lambda: [topic.append(b"v", key=k) or time.sleep(0.005) for k in keys]).start()
    follower = topic.follow(start="earliest", timeout=1.0)
    got = sorted(r.key for r in follower)
    assert got == sorted(keys)
    assert sum(follower.position.values()) == 20


def test_blocking_follow_waits_with_the_gil_released(log):
    """A thread blocked in follow must not stop others from running Python."""
    part = log.topic("t").partition(0)
    done = threading.Event()
    results = []
    thread = threading.Thread(target=lambda: (results.extend(part.follow(timeout=1.0)), done.set()))
    thread.start()
    counted = 0
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        counted += 1                       # pure Python: runs only if the follower let the GIL go
    part.append(b"x")
    thread.join()
    assert counted > 10_000 and [r.value for r in results] == [b"x"]


def test_wait_readable_times_out_and_reports_which_partitions_have_records(log):
    topic = log.topic("t", partitions=2)
    parts = list(topic)
    started = time.monotonic()
    assert _core.wait_readable(parts, [0, 0], 0.05) == []
    assert time.monotonic() - started >= 0.05
    topic.append(b"v", partition=1)
    assert _core.wait_readable(parts, [0, 0], 5) == [1]
    with pytest.raises(ValueError):
        _core.wait_readable(parts, [0], 1)


def test_a_follower_blocked_when_the_log_closes_gets_log_closed(tmp_path):
    log = pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None, cleaner=False)
    part = log.topic("t").partition(0)
    errors = []

    def follow():
        try:
            list(part.follow())
        except LogClosedError as exc:
            errors.append(exc)
    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(0.1)
    log.close()
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1


def test_follow_with_flush_always_delivers_only_durable_records(log):
    part = log.topic("t", flush="always").partition(0)
    for rec in part.follow(0, timeout=0.01):
        pass
    part.append(b"x")          # returns once durable: the follower sees it
    [rec] = list(part.follow(0, timeout=0.01))
    assert rec.offset < part.durable_offset


def test_async_follow_across_partitions(log):
    topic = log.topic("t", partitions=3)

    async def main():
        follower = topic.follow(timeout=0.5)
        writer = asyncio.ensure_future(asyncio.to_thread(
            lambda: [topic.append(b"v%d" % i, key=b"%d" % i) or time.sleep(0.01) for i in range(10)]))
        got = [r.value async for r in follower]
        await writer
        return got

    assert sorted(asyncio.run(main())) == sorted(b"v%d" % i for i in range(10))


def test_async_follow_read_committed_skips_aborted_transactions(log):
    topic = log.topic("t")
    with log.transaction() as txn:
        txn.append("t", b"kept")
    txn = log.transaction()
    txn.append("t", b"dropped")
    txn.abort()
    topic.partition(0).append(b"plain")

    async def main():
        return [r.value async for r in topic.partition(0).follow(0, timeout=0.05, isolation_level="read_committed")]

    assert asyncio.run(main()) == [b"kept", b"plain"]
    assert [r.value for r in topic.partition(0).follow(0, timeout=0.05)] == [b"kept", b"dropped", b"plain"]


def test_every_append_wakes_a_follower_that_waits_without_a_timeout(log):
    """No lost wake-up: a follower with no timeout gets each record (a lost one hangs the test)."""
    part = log.topic("t", flush="interval", flush_ms=1000).partition(0)
    writer = _append_later(log.topic("t"), [b"x%d" % i for i in range(50)], delay=0.001)
    got = []
    for rec in part.follow(0):
        got.append(rec.value)
        if len(got) == 50:
            break
    writer.join()
    assert got == [b"x%d" % i for i in range(50)]


def test_topic_follow_refuses_an_offset_where_a_dict_is_due(log):
    with pytest.raises(TypeError, match="dict of partition -> offset"):
        log.topic("t").follow(0)


def test_a_loop_that_stops_early_resumes_after_the_last_record_it_took(log):
    part = log.topic("t").partition(0)
    part.append_many([(None, b"%d" % i) for i in range(10)])
    follower = part.follow(0, timeout=0.01)
    for rec in follower:
        if rec.offset == 3:
            break
    assert follower.position == {("t", 0): 4}
    assert [r.offset for r in follower] == list(range(4, 10))
