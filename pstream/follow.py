"""Following partitions: records as they become readable, in a thread or in asyncio.

    for rec in log.topic("orders").partition(0).follow(offset=0, timeout=5.0):
        ...                                   # blocks, GIL released, until records arrive
    async for rec in log.topic("orders").follow(start="earliest"):
        ...                                   # every partition of the topic

A Follower reads what consumers may read: up to each partition's high watermark (with flush
"always", what is durable), or its last stable offset with isolation_level "read_committed"
(aborted transactions skipped); transaction markers are never records. Records carry their
topic and partition. Blocking iteration waits in the core (`_core.wait_readable`: woken by the
shard threads when a high watermark moves, no polling); `async for` awaits the Log's doorbell.
With a `timeout`, iteration ends once no record came for that many seconds; `position` says
where to resume.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, AsyncIterator, Iterator

from pstream import _core

if TYPE_CHECKING:
    from pstream.log import Partition

ISOLATION_LEVELS = ("read_uncommitted", "read_committed")
ITERATION_RECORDS = 500   # records a `for`/`async for` takes per poll


class Follower:
    """Records of some partitions of one Log from given offsets on, as they become readable.
    Iterate it once, with `for` or `async for`."""

    def __init__(self, parts: list[Partition], positions: list[int], *, timeout: float | None = None,
                 max_bytes: int = 1 << 20, isolation_level: str = "read_uncommitted") -> None:
        if isolation_level not in ISOLATION_LEVELS:
            raise ValueError(f"isolation_level must be read_uncommitted or read_committed, got {isolation_level!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must not be negative, got {timeout!r}")
        if not parts:
            raise ValueError("nothing to follow: no partitions")
        self._parts = list(parts)
        self._positions = list(positions)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.committed = isolation_level == "read_committed"
        self._next = 0   # the partition poll() reads first: round robin, so none starves
        # How to wait: the core's wake-ups for a Log's partitions, looking at the shared page
        # for a read-only reader's (pstream/storage/reader.py).
        self._wait_readable = type(self._parts[0]).wait_readable

    @property
    def position(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the next offset this follower reads there."""
        return {(p.topic, p.number): pos for p, pos in zip(self._parts, self._positions)}

    # --- blocking -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[_core.Record]:
        while batch := self.poll(ITERATION_RECORDS, self.timeout):   # [] once idle for `timeout`
            yield from self._hand_out(batch)

    def poll(self, max_records: int = 500, timeout: float = 0.0) -> list[_core.Record]:
        """Up to max_records records, from the partitions in turn; waits up to `timeout` seconds
        (None: until some arrive) when none is readable. [] when none came in time."""
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            out = self._fill(max_records)
            wait = None if deadline is None else deadline - time.monotonic()
            if out or (wait is not None and wait <= 0):
                return out
            self._wait_readable(self._parts, self._positions, wait)

    async def poll_async(self, max_records: int = 500, timeout: float = 0.0) -> list[_core.Record]:
        """poll() for asyncio: awaits instead of blocking (reads from disk on a reader thread)."""
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records!r}")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            out: list[_core.Record] = []
            for i, part in self._in_turn():
                end = await part.last_stable_offset_async() if self.committed else part.high_watermark
                if end > self._positions[i]:
                    data = await part.read_batches_async(self._positions[i], self.max_bytes)
                    if self._take(i, data, end, out, max_records):
                        return out
            wait = None if deadline is None else deadline - loop.time()
            if out or (wait is not None and wait <= 0):
                return out
            await self._any_readable(wait)

    def _fill(self, max_records: int) -> list[_core.Record]:
        out: list[_core.Record] = []
        for i, part in self._in_turn():
            end = self._end(part)
            if end > self._positions[i] and self._take(i, part.read_batches(self._positions[i], self.max_bytes),
                                                       end, out, max_records):
                break
        return out

    def _in_turn(self) -> Iterator[tuple[int, Partition]]:
        n = len(self._parts)
        first, self._next = self._next, (self._next + 1) % n
        for k in range(n):
            i = (first + k) % n
            yield i, self._parts[i]

    def _take(self, i: int, data: bytes, end: int, out: list, max_records: int) -> bool:
        """Adds partition i's records of data to out; True once out holds max_records."""
        for rec in self._read(i, data, end):
            out.append(rec)
            if len(out) >= max_records:
                return True
        return False

    def _end(self, part: Partition) -> int:
        return part.last_stable_offset if self.committed else part.high_watermark

    # --- asyncio --------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[_core.Record]:
        return self._follow_async()

    async def _follow_async(self) -> AsyncIterator[_core.Record]:
        while batch := await self.poll_async(ITERATION_RECORDS, self.timeout):
            for rec in self._hand_out(batch):
                yield rec

    def _hand_out(self, batch: list[_core.Record]) -> Iterator[_core.Record]:
        """The records of a poll one by one; a loop that stops early resumes after the last it
        took (the positions go back to the first record not handed out)."""
        for k, rec in enumerate(batch):
            try:
                yield rec
            except GeneratorExit:
                self._rewind(batch[k + 1:])
                raise

    def _rewind(self, untaken: list[_core.Record]) -> None:
        index = {(p.topic, p.number): i for i, p in enumerate(self._parts)}
        for rec in untaken:
            i = index[(rec.topic, rec.partition)]
            self._positions[i] = min(self._positions[i], rec.offset)

    async def _any_readable(self, timeout: float | None) -> None:
        """Returns once some partition's high watermark passes its position, or after timeout."""
        if len(self._parts) == 1:
            try:
                await asyncio.wait_for(self._parts[0].wait_visible(self._positions[0]), timeout)
            except asyncio.TimeoutError:
                pass
            return
        waits = [asyncio.ensure_future(part.wait_visible(pos)) for part, pos in zip(self._parts, self._positions)]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    # --- decoding -------------------------------------------------------------------------

    def _read(self, i: int, data: bytes, end: int) -> Iterator[_core.Record]:
        """The records of `data` (whole batches from partition i's position) below `end`,
        without control batches and, read committed, without aborted transactions; moves the
        position past each batch read."""
        part = self._parts[i]
        offset = self._positions[i]
        aborted = part.producer_state.aborted_by_producer(offset) if self.committed and part.has_transactions else {}
        for header, records in _core.iter_batches(data):
            if header.base_offset >= end:
                break
            skip = header.is_control or aborted and header.is_transactional and any(
                first <= header.base_offset <= last for first, last in aborted.get(header.producer_id, ()))
            if not skip:
                for rec in records:
                    if rec.offset >= offset:
                        rec.topic, rec.partition = part.topic, part.number
                        self._positions[i] = rec.offset + 1   # a loop that stops here resumes after it
                        yield rec
            self._positions[i] = header.last_offset + 1


def follow_topic(partitions: list, offsets: dict[int, int] | None, start: str, **options) -> Follower:
    """A Follower of a topic's partitions: from offsets[n] where given, else from `start`
    ("earliest": the log start, "latest": only new records)."""
    if start not in ("earliest", "latest"):
        raise ValueError(f"start must be earliest or latest, got {start!r}")
    if offsets is not None and not isinstance(offsets, dict):
        raise TypeError(f"offsets must be a dict of partition -> offset (or None), not {type(offsets).__name__}")
    offsets = offsets or {}
    unknown = sorted(set(offsets) - {p.number for p in partitions})
    if unknown:
        from pstream.errors import UnknownPartitionError
        raise UnknownPartitionError(f"partition {unknown[0]} does not exist (the topic has {len(partitions)})",
                                    partition=unknown[0])
    positions = [offsets.get(p.number, p.log_start_offset if start == "earliest" else p.high_watermark)
                 for p in partitions]
    return Follower(partitions, positions, **options)
