"""The Log's disk pool: blocking disk work runs on a few threads it owns, callers on an event
loop await it while the loop keeps running, and nothing outlives Log.close(). Also the
producer state each partition owns: recovered off the loop, in arrival order, snapshotted
at close; and the log start checkpoint written by several threads at once."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pstream
from pstream import _core
from pstream.errors import ConfigError, LogClosedError, UnknownTopicError
from pstream.log import DiskPool
from pstream.storage import layout, producer_state
from pstream.storage.producer_state import ProducerStateManager, SequenceCheck

PID = 9


def disk_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("pstream-disk")]


def idempotent(seq: int, count: int = 1, pid: int = PID) -> bytes:
    return _core.encode_batch([(None, b"v%d" % i, [], None) for i in range(count)], producer_id=pid,
                              producer_epoch=0, base_sequence=seq)


async def ticking_while(work) -> tuple[object, int]:
    """(result of awaiting work, how many times another coroutine ran on the loop meanwhile)."""
    ticks = 0
    done = False

    async def tick():
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(tick())
    try:
        result = await work
    finally:
        done = True
        await ticker
    return result, ticks


def test_jobs_run_on_the_pool_threads_and_return_or_raise():
    pool = DiskPool(2)
    try:
        assert pool.submit(threading.current_thread).result().name.startswith("pstream-disk")

        async def main():
            assert await pool.run(sum, [1, 2, 3]) == 6
            with pytest.raises(ZeroDivisionError):
                await pool.run(lambda: 1 / 0)
        asyncio.run(main())
    finally:
        pool.close()


def test_no_more_jobs_run_at_once_than_the_pool_has_threads():
    pool = DiskPool(2)
    running, most = 0, 0
    lock, release = threading.Lock(), threading.Event()

    def job():
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1

    try:
        jobs = [pool.submit(job) for _ in range(6)]
        threading.Timer(0.2, release.set).start()
        for j in jobs:
            j.result(10)
    finally:
        pool.close()
    assert most == 2


def test_close_finishes_queued_jobs_refuses_new_ones_and_leaves_no_thread():
    pool = DiskPool(1)
    gate = threading.Event()
    first = pool.submit(gate.wait, 10)
    queued = pool.submit(lambda: "done")
    threading.Timer(0.1, gate.set).start()
    pool.close()
    assert first.result() is True and queued.result() == "done"
    with pytest.raises(LogClosedError):
        pool.submit(print)
    assert disk_threads() == []


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, None])
def test_a_bad_thread_count_is_refused(threads):
    with pytest.raises(ConfigError, match="disk_threads"):
        DiskPool(threads)


def test_a_log_closes_its_pool(open_log):
    log = open_log(disk_threads=3)

    async def main():
        await log.create_topic_async("t", partitions=2)
    asyncio.run(main())
    assert disk_threads()
    log.close()
    assert disk_threads() == []

    async def after():
        await log.run_blocking(print)
    with pytest.raises(LogClosedError):
        asyncio.run(after())


def test_the_loop_keeps_running_while_topics_are_created_and_deleted(open_log):
    log = open_log()

    async def main():
        topic, ticks = await ticking_while(log.create_topic_async("wide", partitions=64))
        assert topic is log.get_topic("wide") and topic.partitions == 64
        assert ticks > 0, "creating the topic blocked the event loop"
        _, ticks = await ticking_while(topic.add_partitions_async(80))
        assert ticks > 0 and topic.partitions == 80
        _, ticks = await ticking_while(log.delete_topic_async("wide"))
        assert ticks > 0 and "wide" not in log
    asyncio.run(main())
    assert not os.path.exists(os.path.join(log.path, "wide"))
    log.close()   # waits for the files' removal, which follows the answer
    assert layout.deleting_dirs(log.path) == []   # no @creating-/@deleting- left


def test_concurrent_creations_of_one_name_create_it_once(open_log):
    log = open_log()

    async def main():
        return await asyncio.gather(*[log.create_topic_async("once", partitions=3) for _ in range(4)])
    results = asyncio.run(main())
    assert [r for r in results if r is not None] == [log.get_topic("once")]


def test_a_change_queued_behind_a_deletion_finds_no_topic(open_log):
    log = open_log()
    topic = log.topic("gone", partitions=2)

    async def main():
        deletion = asyncio.ensure_future(log.delete_topic_async("gone"))
        growth = asyncio.ensure_future(topic.add_partitions_async(4))
        config = asyncio.ensure_future(log.run_blocking(topic.set_config, retention_ms=1000))
        await deletion
        for late in (growth, config):
            with pytest.raises(UnknownTopicError):
                await late
    asyncio.run(main())
    assert "gone" not in log and not os.path.exists(os.path.join(log.path, "gone"))


def test_producer_state_is_replayed_off_the_loop_in_arrival_order(open_log, monkeypatch):
    log = open_log()
    part = log.topic("p").partition(0)
    for seq in range(0, 300, 3):
        part.append_batch(idempotent(seq, 3))
    monkeypatch.setattr(producer_state, "READ_BYTES", 512)   # many reads: the replay takes a while
    replayed_on = []
    real = pstream.log.Partition._recover_producer_state

    def recover(self):
        replayed_on.append(threading.current_thread().name)
        return real(self)
    monkeypatch.setattr(pstream.log.Partition, "_recover_producer_state", recover)

    async def main():
        assert part.producer_state_ready is None
        order = []
        calls = [part.with_producer_state(lambda s, i=i: order.append(i) or s.check(PID, 0, 297, 299))
                 for i in range(5)]
        results, ticks = await ticking_while(asyncio.gather(*calls))
        assert order == [0, 1, 2, 3, 4] and ticks > 0
        assert results == [(SequenceCheck.DUPLICATE, 297)] * 5
        assert part.producer_state_ready is part.producer_state
        assert await part.load_producer_state() is part.producer_state   # no second replay
    asyncio.run(main())
    assert len(replayed_on) == 1 and replayed_on[0].startswith("pstream-disk")


def test_a_failed_replay_fails_the_waiting_calls_and_the_next_use_tries_again(open_log, monkeypatch):
    log = open_log()
    part = log.topic("p").partition(0)
    part.append_batch(idempotent(0))
    real = pstream.log.Partition._recover_producer_state
    monkeypatch.setattr(pstream.log.Partition, "_recover_producer_state",
                        lambda self: (_ for _ in ()).throw(OSError(5, "EIO")))

    async def main():
        with pytest.raises(OSError):
            await part.load_producer_state()
        monkeypatch.setattr(pstream.log.Partition, "_recover_producer_state", real)
        state = await part.load_producer_state()
        assert state.check(PID, 0, 0, 0) == (SequenceCheck.DUPLICATE, 0)
    asyncio.run(main())


def test_producer_states_are_snapshotted_on_the_pool_and_at_close(open_log, data_dir):
    log = open_log()
    part = log.topic("p").partition(0)
    part.append_batch(idempotent(0, 2))

    async def main():
        await part.load_producer_state()
        await log.snapshot_producer_states()
    asyncio.run(main())
    assert sorted(n for n in os.listdir(part.path) if n.endswith(".snapshot")) == [f"{2:020d}.snapshot"]
    state = part.producer_state
    token = state.begin(PID, 0, 2, 2)
    state.complete(token, part.append_batch(idempotent(2)), 2, 0)
    log.close()   # writes the newest state: a restart replays nothing
    assert sorted(n for n in os.listdir(part.path) if n.endswith(".snapshot")) == [f"{3:020d}.snapshot"]
    fresh = ProducerStateManager(part.path)
    assert fresh.load() == 3 and fresh.check(PID, 0, 2, 2) == (SequenceCheck.DUPLICATE, 2)


def test_an_older_snapshot_written_late_never_replaces_a_newer_one(tmp_path):
    m = ProducerStateManager(str(tmp_path))
    m.complete(m.begin(PID, 0, 0, 0), 0, 0, 1)
    old = m.capture(1)
    m.complete(m.begin(PID, 0, 1, 1), 1, 1, 1)
    m.capture(2).write()
    old.write()   # a slow writer of the older state finishes last
    assert sorted(os.listdir(tmp_path)) == [f"{2:020d}.snapshot"]


def test_the_log_start_checkpoint_never_goes_back_under_concurrent_writers(open_log):
    log = open_log(retention_check_ms=None)
    part = log.topic("c").partition(0)
    for _ in range(400):
        part.append(b"x")
    targets = list(range(1, 401))
    barrier = threading.Barrier(4)

    def delete(offsets):
        barrier.wait()
        for o in offsets:
            part.delete_records(o)
    threads = [threading.Thread(target=delete, args=(targets[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(os.path.join(part.path, "log-start-offset")) as f:
        assert int(f.read()) == part.log_start_offset == 400
    assert [n for n in os.listdir(part.path) if n.endswith(".tmp")] == []


def test_temporary_checkpoint_files_of_a_crash_are_removed_at_open(open_log, data_dir):
    log = open_log()
    part = log.topic("c").partition(0)
    part.append(b"x")
    part.delete_records(1)
    path = part.path
    log.close()
    with open(os.path.join(path, "log-start-offset.12345.tmp"), "w") as f:
        f.write("0\n")   # a writer killed before its rename
    again = open_log()
    assert again.get_topic("c").partition(0).log_start_offset == 1
    assert [n for n in os.listdir(path) if n.endswith(".tmp")] == []


def test_a_snapshot_taken_before_a_deletion_is_not_written_after_it(open_log):
    log = open_log(disk_threads=1)
    part = log.topic("doomed").partition(0)
    part.append_batch(idempotent(0))

    async def main():
        await part.load_producer_state()
        gate = threading.Event()
        log._disk.submit(gate.wait, 10)                               # holds the pool's one thread
        deletion = asyncio.ensure_future(log.delete_topic_async("doomed"))
        await asyncio.sleep(0)                                        # queued first
        snapshots = asyncio.ensure_future(log.snapshot_producer_states())
        await asyncio.sleep(0)                                        # captured while the topic is there
        gate.set()
        await deletion
        await snapshots
    asyncio.run(main())
    assert not os.path.exists(os.path.join(log.path, "doomed"))


def test_a_reset_during_the_replay_replays_again(open_log, monkeypatch):
    log = open_log()
    part = log.topic("p").partition(0)
    part.append_batch(idempotent(0))
    replayed, proceed = threading.Event(), threading.Event()
    real = pstream.log.Partition._recover_producer_state

    def recover(self):
        state = real(self)
        if not replayed.is_set():   # the first replay read the log; it finishes only when told
            replayed.set()
            proceed.wait(10)
        return state
    monkeypatch.setattr(pstream.log.Partition, "_recover_producer_state", recover)

    async def main():
        first = part.with_producer_state(lambda s: s.check(PID, 0, 1, 1))
        while not replayed.is_set():
            await asyncio.sleep(0.001)
        part.append_batch(idempotent(1))            # as a revived partition's batches land in the log
        part.reset_producer_state()
        proceed.set()
        assert await first == (SequenceCheck.DUPLICATE, 1)
    asyncio.run(main())


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.sampled_from(["call", "yield", "finish"]), min_size=1, max_size=30))
def test_calls_on_the_producer_state_run_in_the_order_made_whatever_the_replay_timing(tmp_path_factory, steps):
    """Calls made before, during and after the replay (which finishes at a random step) run in
    the order they were made: none overtakes one queued earlier."""
    with pstream.Log(tmp_path_factory.mktemp("order"), shards=1, retention_check_ms=None) as log:
        part = log.topic("p").partition(0)
        part.append_batch(idempotent(0))
        finish = threading.Event()
        real = pstream.log.Partition._recover_producer_state

        def recover(self):
            finish.wait(10)
            return real(self)

        async def main():
            order, calls = [], []
            for step in steps:
                if step == "call":
                    calls.append(part.with_producer_state(lambda s, i=len(calls): order.append(i)))
                elif step == "finish":
                    finish.set()
                await asyncio.sleep(0 if step != "finish" else 0.001)
            finish.set()
            await asyncio.gather(*calls)
            return order, len(calls)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pstream.log.Partition, "_recover_producer_state", recover)
            order, made = asyncio.run(main())
        assert order == list(range(made))
