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
