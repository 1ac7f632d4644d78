"""FramePool: large receive buffers are reused, but never while a view of one is alive."""

from pstream.broker.frames import MAX_POOLED_BYTES, MIN_CLASS_BYTES, FramePool


def test_released_buffer_is_handed_out_again_for_the_same_size_class():
    pool = FramePool()
    buf = pool.acquire(700_000)
    assert len(buf) == 1 << 20
    pool.release(buf)
    assert pool.acquire(600_000) is buf


def test_buffer_still_viewed_is_not_reused():
    pool = FramePool()
    buf = pool.acquire(100_000)
    view = memoryview(buf)[10:20]  # e.g. records held by a pending append
    pool.release(buf)
    assert pool.acquire(100_000) is not buf
    view.release()


def test_small_and_huge_frames():
    pool = FramePool()
    assert len(pool.acquire(10)) == MIN_CLASS_BYTES
    huge = pool.acquire(MAX_POOLED_BYTES + 1)
    assert len(huge) == MAX_POOLED_BYTES + 1
    pool.release(huge)
    assert pool.acquire(MAX_POOLED_BYTES + 1) is not huge


# --- MemoryBudget: requests wait for memory instead of allocating it ---

import asyncio  # noqa: E402
import contextlib  # noqa: E402

from pstream.broker.frames import MemoryBudget  # noqa: E402


def test_budget_takes_what_fits_and_queues_the_rest_until_released():
    async def run():
        budget = MemoryBudget(100)
        granted = []
        assert budget.request(60, lambda: granted.append("a")) is None
        handle = budget.request(50, lambda: granted.append("b"))
        assert handle is not None and budget.used == 60 and budget.waiting == 1
        assert budget.request(30, lambda: granted.append("small")) is None   # fits: does not queue behind b
        budget.release(60)
        await asyncio.sleep(0)
        assert granted == ["b"] and budget.used == 80 and budget.waiting == 0
        assert budget.waits == 1

    asyncio.run(run())


def test_headroom_keeps_budget_for_requests():
    async def run():
        budget = MemoryBudget(100)
        assert budget.request(70, lambda: None, headroom=30) is None
        assert budget.request(1, lambda: None, headroom=30) is not None   # fetch data: would eat the reserve
        assert budget.request(30, lambda: None) is None                   # a request: may use it
        assert budget.used == 100

    asyncio.run(run())


def test_cancelled_wait_takes_nothing():
    async def run():
        budget = MemoryBudget(10)
        budget.force(10)
        waiter = asyncio.ensure_future(budget.acquire(5))
        await asyncio.sleep(0)
        assert budget.waiting == 1
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        assert budget.waiting == 0
        budget.release(10)
        await asyncio.sleep(0)
        assert budget.used == 0

    asyncio.run(run())


def test_size_for_is_the_length_acquire_hands_out():
    pool = FramePool()
    for size in (10, 100_000, 3 << 20, MAX_POOLED_BYTES + 5):
        assert len(pool.acquire(size)) == FramePool.size_for(size)
