"""Reusable receive buffers for large request frames.

A fresh bytearray of a megabyte costs more than the request it holds: CPython zero-fills
it, and on this kind of VM first-touch of new memory runs at ~0.5 GB/s. The pool keeps a
few buffers per power-of-two size class and hands them out again, so the pages stay
resident. A buffer comes back only when nothing still views it (records memoryviews held
by a pending append): `release` checks that by trying to resize it, which CPython refuses
while a view exists; such a buffer is simply dropped for the garbage collector.
"""

from __future__ import annotations

MIN_CLASS_BYTES = 64 * 1024
KEEP_PER_CLASS = 8
MAX_POOLED_BYTES = 16 << 20   # larger frames get a buffer of their own each time


class FramePool:
    def __init__(self):
        self._free: dict[int, list[bytearray]] = {}

    @staticmethod
    def _class_of(size: int) -> int:
        return max(MIN_CLASS_BYTES, 1 << (size - 1).bit_length())

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
