"""Memory for requests and responses: reusable receive buffers for large request frames
(`FramePool`), and the broker-wide budget that every request and response is charged to
(`MemoryBudget`, Kafka's queued.max.request.bytes).

A fresh bytearray of a megabyte costs more than the request it holds: CPython zero-fills
it, and on this kind of VM first-touch of new memory runs at ~0.5 GB/s. The pool keeps a
few buffers per power-of-two size class and hands them out again, so the pages stay
resident. A buffer comes back only when nothing still views it (records memoryviews held
by a pending append): `release` checks that by trying to resize it, which CPython refuses
while a view exists; such a buffer is simply dropped for the garbage collector.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

MIN_CLASS_BYTES = 64 * 1024
KEEP_PER_CLASS = 8
MAX_POOLED_BYTES = 16 << 20   # larger frames get a buffer of their own each time


class FramePool:
    def __init__(self):
        self._free: dict[int, list[bytearray]] = {}

    @staticmethod
    def _class_of(size: int) -> int:
        return max(MIN_CLASS_BYTES, 1 << (size - 1).bit_length())

    @classmethod
    def size_for(cls, size: int) -> int:
        """The length of the buffer `acquire(size)` hands out (what the budget is charged)."""
        c = cls._class_of(size)
        return c if c <= MAX_POOLED_BYTES else size

    def acquire(self, size: int) -> bytearray:
        """A buffer of at least `size` bytes (its contents are arbitrary)."""
        cls = self._class_of(size)
        free = self._free.get(cls)
        if free:
            return free.pop()
        return bytearray(cls if cls <= MAX_POOLED_BYTES else size)

    def stats(self) -> dict:
        """What the pool holds now: buffers and bytes per size class (for /v1/debug/memory)."""
        classes = {cls: len(free) for cls, free in sorted(self._free.items()) if free}
        return {"pooled_buffers": sum(classes.values()), "pooled_bytes": sum(c * n for c, n in classes.items()),
                "by_class": {str(c): n for c, n in classes.items()}}

    def release(self, buf: bytearray) -> None:
        cls = len(buf)
        if cls > MAX_POOLED_BYTES or cls != self._class_of(cls):
            return
        free = self._free.setdefault(cls, [])
        if len(free) >= KEEP_PER_CLASS:
            return
        try:   # raises BufferError while any memoryview of buf is alive
            buf.append(0)
            del buf[-1]
        except BufferError:
            return
        free.append(buf)


class MemoryBudget:
    """Bytes of requests being received or waiting for their answer, and of responses being
    built or not yet handed to the kernel, for the whole broker (one event loop: no locks).

    A taker that does not fit waits instead of allocating: `request` either takes the bytes
    at once or queues a callback that is called once they have been taken for it. Waiters
    that fit are served in arrival order on each release, and a taker that fits never waits
    behind one that does not: a large waiter does not hold back small requests (as in Kafka's
    memory pool, a large one may wait longer). `headroom`
    is budget a taker must leave free: fetch data leaves room for one largest request, so
    responses that clients never read cannot stall producers. `force` charges memory that is
    already allocated (a response encoded, bytes queued on a socket), even past the limit.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.waits = 0          # takers that had to wait (a counter for /metrics)
        self._waiters: list[list] = []   # [need, headroom, callback]; callback None once cancelled
        self._wake_scheduled = False

    def request(self, need: int, callback: Callable[[], None], headroom: int = 0) -> list | None:
        """Takes `need` bytes now (returns None) or queues `callback`, called once they have
        been taken; returns a handle for `cancel`."""
        if self.used + need <= self.limit - headroom:
            self.used += need
            return None
        self.waits += 1
        handle = [need, headroom, callback]
        self._waiters.append(handle)
        return handle

    async def acquire(self, need: int, headroom: int = 0) -> None:
        """Waits until `need` bytes are taken (cancelling the wait takes nothing)."""
        fut = asyncio.get_running_loop().create_future()
        handle = self.request(need, lambda: fut.set_result(None), headroom)
        if handle is None:
            return
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(need)   # granted in the same turn as the cancel
            self.cancel(handle)
            raise

    def cancel(self, handle: list | None) -> None:
        if handle is not None and handle[2] is not None:
            handle[2] = None
            self._waiters.remove(handle)

    def force(self, nbytes: int) -> None:
        self.used += nbytes

    def release(self, nbytes: int) -> None:
        self.used -= nbytes
        if self._waiters and not self._wake_scheduled:
            self._wake_scheduled = True   # wake once per loop turn, not once per release
            asyncio.get_running_loop().call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        for handle in list(self._waiters):
            need, headroom, callback = handle
            if callback is None or self.used + need > self.limit - headroom:
                continue
            self.used += need
            handle[2] = None
            self._waiters.remove(handle)
            callback()

    @property
    def waiting(self) -> int:
        return len(self._waiters)
