"""Named consumers of the embedded log: durable positions in `__consumer_offsets`, partitions
split between the consumers of one group in the process.

    with log.consumer("billing", topics=["orders"]) as c:
        while True:
            for rec in c.poll(max_records=500, timeout=1.0):
                handle(rec)
            c.commit()              # durable before it returns

A consumer reads its partitions from its group's committed offsets (the log start when there
is none, or when retention took the committed one), as a Kafka consumer with
auto.offset.reset=earliest does. `commit()` stores the positions reached in Kafka's own
records (pstream/coordinator/offsets.py), so `pstream group describe billing`, a Kafka client's
OffsetFetch and a broker started on the directory later all see them.

The consumers of one group in this process split the partitions of their topics as Kafka's
range assignor would (each topic's partitions in order, in contiguous runs, over the members
subscribed to it in the order they joined); a consumer joining or closing rebalances the others
at their next poll. Progress not committed when a partition moves is read again by its new
owner (at least once, as in Kafka).

Where commits go: with no broker serving the Log, straight into `__consumer_offsets` from the
caller's thread (one at a time, under a lock); while `pstream.serve(log)` serves it, through the
broker's group coordinator on its event loop, as a Kafka client's OffsetCommit of a group
without members (so a group that Kafka clients have joined refuses them).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Iterable

from pstream import _core
from pstream.coordinator.offsets import CommittedOffset, OffsetStore, now_ms, offset_key, offset_value
from pstream.errors import CommitFailedError, LogClosedError
from pstream.follow import Follower

if TYPE_CHECKING:
    from pstream.log import Log

TopicPartition = tuple[str, int]
ASSIGNMENT_WAIT_S = 0.1   # a consumer without partitions looks again this often


class Consumer:
    """One member of a named group, for one thread at a time (as a Kafka consumer is)."""

    def __init__(self, log: Log, group: str, topics: Iterable[str], *, isolation_level: str = "read_uncommitted",
                 max_bytes: int = 1 << 20) -> None:
        if not isinstance(group, str) or not group:
            raise ValueError(f"a consumer group name must be a non-empty string, got {group!r}")
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.topics:
            raise ValueError("a consumer needs at least one topic")
        self.group = group
        self.isolation_level = isolation_level
        self.max_bytes = max_bytes
        self._log = log
        self._membership = log._consumer_groups.join(group, self)
        self._generation = -1
        self._assigned: list[TopicPartition] = []
        self._follower: Follower | None = None
        self._closed = False

    # --- reading --------------------------------------------------------------------------

    def poll(self, max_records: int = 500, timeout: float | None = 0.0) -> list[_core.Record]:
        """The next records of this consumer's partitions (rec.topic, rec.partition, .offset,
        .key, .value, ...), at most max_records; waits up to `timeout` seconds (None: until some
        arrive) when none is readable, and returns [] if none came in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        follower = self._current()
        while follower is None:   # no partition (more consumers than partitions): look again now and then
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return []
            time.sleep(ASSIGNMENT_WAIT_S if left is None else min(left, ASSIGNMENT_WAIT_S))
            follower = self._current()
        return follower.poll(max_records, None if deadline is None else max(0.0, deadline - time.monotonic()))

    async def poll_async(self, max_records: int = 500, timeout: float | None = 0.0) -> list[_core.Record]:
        """poll() for asyncio."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        follower = self._current()
        while follower is None:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return []
            await asyncio.sleep(ASSIGNMENT_WAIT_S if left is None else min(left, ASSIGNMENT_WAIT_S))
            follower = self._current()
        return await follower.poll_async(max_records, None if deadline is None else max(0.0, deadline - loop.time()))

    def assignment(self) -> list[TopicPartition]:
        """The (topic, partition)s this consumer reads, as of its last poll (or now)."""
        self._current()
        return list(self._assigned)

    def position(self) -> dict[TopicPartition, int]:
        """(topic, partition) -> the next offset this consumer reads there."""
        self._current()
        return {} if self._follower is None else self._follower.position

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Reads (topic, partition), one of this consumer's, from `offset` on."""
        self._current()
        tp = (topic, partition)
        if tp not in self._assigned:
            raise ValueError(f"{topic}-{partition} is not assigned to this consumer (it has {self._assigned})")
        self._follower._positions[self._assigned.index(tp)] = offset

    # --- committing -----------------------------------------------------------------------

    def commit(self, offsets: dict[TopicPartition, int] | None = None, metadata: str = "") -> None:
        """Stores offsets (default: this consumer's positions) as the group's committed ones;
        returns once they are durable. CommitFailedError if the store refuses them."""
        self._check_open()
        wanted = self.position() if offsets is None else dict(offsets)
        if wanted:
            self._log._group_offsets().commit(self.group, wanted, metadata)

    async def commit_async(self, offsets: dict[TopicPartition, int] | None = None, metadata: str = "") -> None:
        """commit() for asyncio: on a thread, or on the serving broker's loop when this is it."""
        self._check_open()
        wanted = self.position() if offsets is None else dict(offsets)
        if wanted:
            await self._log._group_offsets().commit_async(self.group, wanted, metadata)

    def committed(self) -> dict[TopicPartition, int]:
        """The group's committed offsets of this consumer's topics."""
        return {tp: c.offset for tp, c in self._log._group_offsets().fetch(self.group).items()
                if tp[0] in self.topics}

    # --- membership -----------------------------------------------------------------------

    def _current(self) -> Follower | None:
        """The follower of this consumer's partitions, rebuilt when the group's assignment
        changed since the last call."""
        self._check_open()
        generation, assigned = self._membership.assignment(self)
        if generation != self._generation:
            self._generation = generation
            self._assigned = assigned
            self._follower = self._start(assigned) if assigned else None
        return self._follower

    def _start(self, assigned: list[TopicPartition]) -> Follower:
        committed = self._log._group_offsets().fetch(self.group)
        parts, positions = [], []
        for topic, number in assigned:
            part = self._log.get_topic(topic).partition(number)
            c = committed.get((topic, number))
            offset = c.offset if c is not None else part.log_start_offset
            if not part.log_start_offset <= offset <= part.log_end_offset:
                offset = part.log_start_offset   # out of range: auto.offset.reset=earliest
            parts.append(part)
            positions.append(offset)
        return Follower(parts, positions, max_bytes=self.max_bytes, isolation_level=self.isolation_level)

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"this consumer of group {self.group!r} is closed")

    def close(self) -> None:
        """Leaves the group (its partitions go to the others at their next poll); commits nothing."""
        if not self._closed:
            self._closed = True
            self._membership.leave(self)

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Consumer(group={self.group!r}, topics={self.topics!r})"


class ConsumerGroups:
    """The groups of one Log's in-process consumers, and each one's assignment."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._groups: dict[str, _Membership] = {}

    def join(self, group: str, consumer: Consumer) -> _Membership:
        with self._lock:
            membership = self._groups.get(group)
            if membership is None:
                membership = self._groups[group] = _Membership(self._log, group)
            membership.add(consumer)
            return membership

    def members(self, group: str) -> list[Consumer]:
        with self._lock:
            membership = self._groups.get(group)
            return [] if membership is None else list(membership.members)


class _Membership:
    """One group's consumers and their range assignment, recomputed when a member joins or
    leaves or a subscribed topic's partition count changes."""

    def __init__(self, log: Log, group: str) -> None:
        self._log = log
        self.group = group
        self.members: list[Consumer] = []
        self._lock = threading.Lock()
        self._generation = 0
        self._shape: tuple = ()
        self._assignments: dict[int, list[TopicPartition]] = {}

    def add(self, consumer: Consumer) -> None:
        with self._lock:
            self.members.append(consumer)
            self._shape = ()   # recompute at the next look

    def leave(self, consumer: Consumer) -> None:
        with self._lock:
            if consumer in self.members:
                self.members.remove(consumer)
                self._shape = ()

    def assignment(self, consumer: Consumer) -> tuple[int, list[TopicPartition]]:
        """(generation, this consumer's partitions)."""
        with self._lock:
            shape = (tuple(id(m) for m in self.members), self._partition_counts())
            if shape != self._shape:
                self._shape = shape
                self._generation += 1
                self._assignments = self._assign(shape[1])
            return self._generation, self._assignments.get(id(consumer), [])

    def _partition_counts(self) -> tuple:
        topics = sorted({t for m in self.members for t in m.topics})
        log = self._log
        return tuple((t, log.get_topic(t).partitions if t in log else 0) for t in topics)

    def _assign(self, counts: tuple) -> dict[int, list[TopicPartition]]:
        """Kafka's RangeAssignor: per topic, partitions in order over its subscribers in order."""
        out: dict[int, list[TopicPartition]] = {id(m): [] for m in self.members}
        for topic, count in counts:
            subscribers = [m for m in self.members if topic in m.topics]
            per, extra = divmod(count, len(subscribers))
            start = 0
            for k, member in enumerate(subscribers):
                n = per + (1 if k < extra else 0)
                out[id(member)].extend((topic, p) for p in range(start, start + n))
                start += n
        return out


# --- where commits go ------------------------------------------------------------------------

class LocalGroupOffsets:
    """Commits of a Log no broker serves: `__consumer_offsets` written from the caller's thread."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._store = OffsetStore(log)
        self._store.open()

    def fetch(self, group: str) -> dict[TopicPartition, CommittedOffset]:
        with self._lock:
            return dict(self._store.state.offsets.get(group, {}))

    def commit(self, group: str, offsets: dict[TopicPartition, int], metadata: str) -> None:
        records = _commit_records(self._log, group, offsets, metadata)
        with self._lock:
            self._store.write_sync(records)

    async def commit_async(self, group: str, offsets: dict[TopicPartition, int], metadata: str) -> None:
        await asyncio.to_thread(self.commit, group, offsets, metadata)


class ServedGroupOffsets:
    """Commits of a Log a broker serves: through its group coordinator, on its event loop."""

    def __init__(self, groups, loop: asyncio.AbstractEventLoop) -> None:
        self._groups = groups
        self._loop = loop

    def fetch(self, group: str) -> dict[TopicPartition, CommittedOffset]:
        return dict(self._groups.store.state.offsets.get(group, {}))

    def commit(self, group: str, offsets: dict[TopicPartition, int], metadata: str) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("commit() would block the event loop that serves the Log: await commit_async()")
        asyncio.run_coroutine_threadsafe(self.commit_async(group, offsets, metadata), self._loop).result()

    async def commit_async(self, group: str, offsets: dict[TopicPartition, int], metadata: str) -> None:
        if asyncio.get_running_loop() is not self._loop:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                self.commit_async(group, offsets, metadata), self._loop))
        stamp = now_ms()
        results = await self._groups.commit(group, -1, "", None, {
            tp: CommittedOffset(offset, -1, metadata, stamp) for tp, offset in offsets.items()})
        failed = {tp: code for tp, code in results.items() if code}
        if failed:
            from pstream.protocol.error_codes import ErrorCode
            raise CommitFailedError(f"group {group!r} refused the commit: " + ", ".join(
                f"{t}-{p}: {ErrorCode(code).name}" for (t, p), code in sorted(failed.items())))


def _commit_records(log: Log, group: str, offsets: dict[TopicPartition, int], metadata: str) -> list:
    stamp = now_ms()
    records = []
    for (topic, partition), offset in sorted(offsets.items()):
        log.get_topic(topic).partition(partition)   # UnknownTopicError / UnknownPartitionError
        records.append((offset_key(group, topic, partition), offset_value(CommittedOffset(offset, -1, metadata, stamp))))
    return records
