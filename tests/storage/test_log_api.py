"""The embedded API around the partition log: background retention, shard-side appends,
asyncio completion."""

import asyncio
import time

import pytest

import pstream
from pstream import _core, errors


def _batch(count=3, size=100):
    return _core.encode_batch([(None, b"v" * size, [], None)] * count)


def test_retention_runs_in_the_background(tmp_path):
    with pstream.Log(tmp_path, shards=1, retention_check_ms=20, flush="interval") as log:
        part = log.topic("t", segment_bytes=1024, retention_bytes=2048).partition(0)
        for _ in range(60):
            part.append(b"x" * 100)
        part.flush()
        # Nobody calls apply_retention: the background check must bring the log under the limit.
        deadline = time.monotonic() + 10
        while part.size_bytes() > 2048 + 1024 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert part.size_bytes() <= 2048 + 1024
        assert part.log_start_offset > 0
        assert [r.offset for r in part.read(part.log_start_offset)][-1] == 59


def test_bad_retention_check_interval_is_refused(tmp_path):
    with pytest.raises(errors.ConfigError, match="retention_check_ms"):
        pstream.Log(tmp_path, retention_check_ms=0)


@pytest.mark.parametrize("flush", ["always", "interval"])
def test_submitted_batches_get_contiguous_offsets_from_the_shard(tmp_path, flush):
    with pstream.Log(tmp_path, shards=2, flush=flush) as log:
        part = log.topic("t", partitions=2, segment_bytes=4096).partition(1)
        pending = [part.submit_batch(_batch()) for _ in range(50)]
        assert [p.wait() for p in pending] == list(range(0, 150, 3))
        assert part.log_end_offset == 150
        assert len(part.segments()) > 1
        assert [r.offset for r in part.read(0)] == list(range(150))
        if flush == "always":
            assert part.durable_offset == 150


@pytest.mark.parametrize("in_flight", [1, 7, 1000])
def test_append_batches_appends_in_order_whatever_the_window(tmp_path, in_flight):
    with pstream.Log(tmp_path, shards=1, flush="interval") as log:
        part = log.topic("t").partition(0)
        part.append_batches((_core.encode_batch([(None, b"v%d" % i, [], None)]) for i in range(50)),
                            in_flight=in_flight)
        assert [(r.offset, r.value) for r in part.read(0)] == [(i, b"v%d" % i) for i in range(50)]


def test_append_batches_raises_a_refused_batchs_error(tmp_path):
    with pstream.Log(tmp_path, shards=1) as log:
        part = log.topic("t").partition(0)
        bad = bytearray(_batch())
        bad[-1] ^= 0xFF
        with pytest.raises(errors.CrcMismatchError):
            part.append_batches([_batch(), bytes(bad)], in_flight=1)
        assert part.log_end_offset == 3


def test_a_submitted_bad_batch_fails_with_its_error(tmp_path):
    with pstream.Log(tmp_path, shards=1) as log:
        part = log.topic("t").partition(0)
        bad = bytearray(_batch())
        bad[-1] ^= 0xFF
        with pytest.raises(errors.CrcMismatchError) as caught:
            part.submit_batch(bytes(bad)).wait()
        assert caught.value.position == 17 and caught.value.topic == "t"
        with pytest.raises(errors.RecordCountMismatchError):
            part.submit_batch(_core.encode_batch([])).wait()
        assert part.log_end_offset == 0
        assert part.submit_batch(_batch()).wait() == 0


def test_asyncio_appends_complete_through_the_doorbell(tmp_path):
    async def main():
        with pstream.Log(tmp_path, shards=2, flush="always") as log:
            parts = list(log.topic("t", partitions=4))
            offsets = await asyncio.gather(*[parts[i % 4].append_batch_async(_batch(2)) for i in range(200)])
            assert sorted(offsets) == sorted(list(range(0, 100, 2)) * 4)
            assert [p.durable_offset for p in parts] == [100] * 4
            # wait_durable after a non-blocking append
            last = parts[0].append_batch(_batch(1), wait=False)
            assert await asyncio.wait_for(parts[0].wait_durable(last), 10) > last

    asyncio.run(main())


def test_a_data_directory_is_opened_by_one_log_at_a_time(tmp_path):
    with pstream.Log(tmp_path, shards=1):
        with pytest.raises(errors.DirectoryInUseError):
            pstream.Log(tmp_path, shards=1)
    with pstream.Log(tmp_path, shards=1):  # released on close
        pass


def test_a_log_dropped_without_close_still_keeps_its_records(tmp_path):
    import gc

    log = pstream.Log(tmp_path, shards=1, flush="bytes", flush_bytes=1 << 30)
    part = log.topic("t").partition(0)
    for _ in range(500):
        part.append(b"z" * 100)
    del part, log
    gc.collect()
    with pstream.Log(tmp_path, shards=1) as log:
        assert log.topic("t").partition(0).log_end_offset == 500


def test_async_reads_near_and_far_from_the_end_return_what_read_batches_returns(tmp_path):
    with pstream.Log(tmp_path, shards=1, flush="interval") as log:
        part = log.topic("t").partition(0)
        for _ in range(pstream.log.INLINE_READ_LAG // 10 + 20):
            part.append_batch(_batch(count=10))
        part.flush()

        async def both():
            far = await part.read_batches_async(0, 4096)           # on a reader thread
            near = await part.read_batches_async(part.log_end_offset - 10, 4096)   # inline
            return far, near

        far, near = asyncio.run(both())
        assert far == part.read_batches(0, 4096)
        assert near == part.read_batches(part.log_end_offset - 10, 4096)
        assert _core.validate_batch(near).base_offset == part.log_end_offset - 10


@pytest.mark.parametrize("durable", [True, False])
def test_waiters_at_different_offsets_all_wake(tmp_path, durable):
    """A resolved waiter not yet removed must not hide the watch that the others need."""
    with pstream.Log(tmp_path, shards=1, flush="interval", flush_ms=1) as log:
        part = log.topic("t").partition(0)

        async def scenario():
            wait = part.wait_durable if durable else part.wait_for
            for round_ in range(10):
                base = part.log_end_offset
                first = asyncio.ensure_future(wait(base))
                second = asyncio.ensure_future(wait(base + 1))
                await asyncio.sleep(0)
                part.append_batch(_batch(count=1), wait=False)
                await asyncio.wait_for(first, 5)
                part.append_batch(_batch(count=1), wait=False)
                await asyncio.wait_for(second, 5)

        asyncio.run(scenario())


def test_submissions_that_do_not_wait_for_the_sync_keep_submission_order(tmp_path):
    """submit_batch(wait=False) (Kafka's acks=1) completes once appended, but never overtakes
    an earlier submission that waits for the fdatasync (acks=all)."""
    with pstream.Log(tmp_path, shards=1, flush="always") as log:
        part = log.topic("t").partition(0)
        pendings = [part.submit_batch(_batch(count=2), wait=(i % 2 == 0)) for i in range(20)]
        assert [p.wait() for p in pendings] == list(range(0, 40, 2))
        part.flush()
        assert part.durable_offset == 40


def test_high_watermark_is_the_durable_offset_under_flush_always(tmp_path):
    """Storage names its offsets: a record appended but not yet fdatasync'ed is in the log
    (log_end_offset) and not visible to consumers (high_watermark) under flush="always"."""
    with pstream.Log(tmp_path, shards=1, flush="always") as log:
        part = log.topic("t").partition(0)
        part.append_batch(_batch(), wait=True)
        assert (part.log_start_offset, part.high_watermark, part.log_end_offset) == (0, 3, 3)
        _core.arm_fault("fdatasync", "EIO", topic="t", count=None)
        try:
            part.append_batch(_batch(), wait=False)
            assert part.log_end_offset == 6
            with pytest.raises(errors.StorageIOError):
                part.flush()
            assert part.high_watermark == part.durable_offset == 3, "an unsynced record became visible"
        finally:
            _core.disarm_faults()


def test_high_watermark_is_the_log_end_under_a_relaxed_flush_policy(tmp_path):
    with pstream.Log(tmp_path, shards=1, flush="interval", flush_ms=60_000) as log:
        part = log.topic("t").partition(0)
        part.append_batch(_batch(), wait=False)
        assert part.high_watermark == part.log_end_offset == 3


def test_wait_visible_wakes_once_consumers_may_read_the_offset(tmp_path):
    async def main():
        with pstream.Log(tmp_path, shards=1, flush="always") as log:
            part = log.topic("t").partition(0)
            waiter = asyncio.ensure_future(part.wait_visible(1))
            await asyncio.sleep(0)
            assert not waiter.done()
            await part.append_batch_async(_batch())
            assert await asyncio.wait_for(waiter, 10) == 3 == part.high_watermark
    asyncio.run(main())
