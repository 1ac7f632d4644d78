"""Read-only access to a data directory that another process (a Log, a broker) writes.

    with pstream.Log("/var/lib/app/events", readonly=True) as log:   # no lock taken, nothing written
        for rec in log.topic("orders").partition(0).follow(0, timeout=5.0): ...

The writer publishes each partition's durable offset and log start offset in a shared page,
`<partition>/readable-offsets` (the core's part_publish: one store per fdatasync), which a
reader maps: knowing what it may read costs a memory load, not a system call. A reader reads
only what is durable, so it never sees a record a crash of the writer could take back, and
never a batch half written. Batches come from the segment files, memory-mapped and walked by
their headers (each CRC checked before a batch is returned: corruption is reported, never
served); a cursor per partition makes sequential reads (follow, consumers) resume where the
last one ended. New segments and topics are found when a read runs past the known ones.
A blocked follower waits on the futex of `<data>/@readable`, a counter the writer's shards bump
and wake at every publish: woken within microseconds of the fdatasync, with no polling.

What a reader cannot do: write, commit consumer offsets, or read committed (the transaction
state is the writer's); a partition whose writer predates the shared page (or a directory no
writer has open) is bounded by scanning its last segment's valid batches instead, and its
followers look every few milliseconds (1 ms, backing off to 20 ms while idle).
"""

from __future__ import annotations

import asyncio
import mmap
import os
import struct
import time
from typing import Iterator

from pstream import _core
from pstream.errors import CorruptSegmentError, OffsetOutOfRangeError, UnknownPartitionError, UnknownTopicError
from pstream.follow import Follower, follow_topic
from pstream.storage import layout
from pstream.storage.metadata import read_topic_meta

PUBLISHED_FILE = _core.PUBLISHED_FILE   # written by the core: part_publish
_OFFSETS = struct.Struct("=qq")   # durable offset, log start offset (native order: a shared page, not a file format)
_SEQ = struct.Struct("=I")        # the counter at the start of <data>/@readable
WAIT_SLICE_S = 0.1                # the longest futex wait before looking again (a writer that died, say)
POLL_MIN_S, POLL_MAX_S = 0.001, 0.02
HEADER_SIZE = 61   # a v2 batch header: enough to know a batch's size and offsets


class ReadonlyLog:
    """A data directory opened for reading only (pstream.Log(path, readonly=True))."""

    readonly = True

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"no data directory at {self.path}")
        self._topics: dict[str, ReadonlyTopic] = {}
        self._closed = False
        self._seq_page: mmap.mmap | None = None

    def _readable_seq(self) -> mmap.mmap | None:
        """The writer's publish counter (<data>/@readable), mapped; None if no writer made one."""
        if self._seq_page is None:
            try:
                with open(os.path.join(self.path, _core.READABLE_SEQ_FILE), "rb") as f:
                    self._seq_page = mmap.mmap(f.fileno(), _SEQ.size, access=mmap.ACCESS_READ)
            except (FileNotFoundError, ValueError):
                return None
        return self._seq_page

    def topics(self) -> list[str]:
        return layout.list_topics(self.path)

    def __contains__(self, name: str) -> bool:
        return name in self._topics or name in self.topics()

    def topic(self, name: str) -> ReadonlyTopic:
        """The topic `name` as the writer has it; UnknownTopicError if it has none (yet)."""
        self._check_open()
        topic = self._topics.get(name)
        if topic is None:
            meta = os.path.join(layout.topic_dir(self.path, name), layout.TOPIC_META)
            if not os.path.isfile(meta):
                raise UnknownTopicError(f"topic {name!r} does not exist in {self.path}", topic=name)
            topic = self._topics[name] = ReadonlyTopic(self, name)
        return topic

    get_topic = topic

    def _check_open(self) -> None:
        if self._closed:
            from pstream.errors import LogClosedError
            raise LogClosedError("the log is closed")

    def close(self) -> None:
        """Unmaps every file."""
        self._closed = True
        for topic in self._topics.values():
            for part in topic._partitions:
                part.close()
        if self._seq_page is not None:
            self._seq_page.close()
            self._seq_page = None

    def __enter__(self) -> ReadonlyLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Log({self.path!r}, readonly=True)"


class ReadonlyTopic:
    def __init__(self, log: ReadonlyLog, name: str) -> None:
        self._log = log
        self.name = name
        self._partitions: list[ReadonlyPartition] = []
        self._refresh()

    def _refresh(self) -> None:
        meta = read_topic_meta(os.path.join(layout.topic_dir(self._log.path, self.name), layout.TOPIC_META))
        for number in range(len(self._partitions), meta["partitions"]):
            self._partitions.append(ReadonlyPartition(layout.partition_dir(self._log.path, self.name, number),
                                                      self.name, number, self._log))

    @property
    def partitions(self) -> int:
        return len(self._partitions)

    def partition(self, number: int) -> ReadonlyPartition:
        if number >= len(self._partitions):
            self._refresh()   # the writer may have added partitions
        if not 0 <= number < len(self._partitions):
            raise UnknownPartitionError(f"partition {number} does not exist (the topic has {len(self._partitions)})",
                                        topic=self.name, partition=number)
        return self._partitions[number]

    def __iter__(self) -> Iterator[ReadonlyPartition]:
        return iter(self._partitions)

    def follow(self, offsets: dict[int, int] | None = None, *, start: str = "latest", timeout: float | None = None,
               max_bytes: int = 1 << 20) -> Follower:
        return follow_topic(self._partitions, offsets, start, timeout=timeout, max_bytes=max_bytes)


class _Segment:
    """One .log file, mapped as far as it was long when last needed."""

    def __init__(self, path: str, base: int) -> None:
        self.path = path
        self.base = base
        self.mm: mmap.mmap | None = None
        self.size = 0

    def view(self, need: int) -> mmap.mmap | None:
        """The file's bytes, mapped again if it grew past what is mapped and `need` asks for more."""
        if self.mm is None or need > self.size:
            try:
                with open(self.path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size == 0:
                        return None
                    if self.mm is None or size > self.size:
                        self.close()
                        self.mm, self.size = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), size
            except FileNotFoundError:   # retention or the cleaner took it
                self.close()
                return None
        return self.mm

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm, self.size = None, 0


class ReadonlyPartition:
    """One partition, read from its files; bounded by what its writer published as durable."""

    def __init__(self, path: str, topic: str, number: int, log: ReadonlyLog | None = None) -> None:
        self._log = log
        self.path = path
        self.topic = topic
        self.number = number
        self._published: mmap.mmap | None = None
        self._segments: list[_Segment] = []
        self._cursor = (-1, 0, 0)   # (segment base, position, offset there): where the last read ended

    # --- offsets ----------------------------------------------------------------------------

    def _offsets(self) -> tuple[int, int] | None:
        if self._published is None:
            try:
                with open(os.path.join(self.path, PUBLISHED_FILE), "rb") as f:
                    self._published = mmap.mmap(f.fileno(), _OFFSETS.size, access=mmap.ACCESS_READ)
            except (FileNotFoundError, ValueError):   # no writer has published here (yet)
                return None
        return _OFFSETS.unpack_from(self._published)

    @property
    def high_watermark(self) -> int:
        """One past the last durable offset: what a reader may read."""
        published = self._offsets()
        return published[0] if published is not None else self._scan_end()

    durable_offset = log_end_offset = high_watermark

    @property
    def log_start_offset(self) -> int:
        published = self._offsets()
        if published is not None:
            return published[1]
        segments = self._segment_list()   # no writer published: the first file says
        return segments[0].base if segments else 0

    has_transactions = False   # read_committed needs the writer's transaction state

    # --- reading ----------------------------------------------------------------------------

    def read_batches(self, offset: int, max_bytes: int = 1 << 20) -> bytes:
        """Whole batches from the one holding `offset`, at most max_bytes (the first always),
        none past the high watermark; b"" at it. Every CRC is checked."""
        end = self.high_watermark
        start = self.log_start_offset
        if offset == end:
            return b""
        if not start <= offset < end:
            raise OffsetOutOfRangeError(f"offset {offset} is outside [{start}, {end}]", topic=self.topic,
                                        partition=self.number, offset=offset)
        # The segments known, and only if they end before the data does, the directory again
        # (a roll or retention happened): no listing per read.
        return self._collect(offset, end, max_bytes, False) or self._collect(offset, end, max_bytes, True)

    def _collect(self, offset: int, end: int, max_bytes: int, refresh: bool) -> bytes:
        out = bytearray()
        for seg in self._segments_from(offset, refresh):
            position = self._cursor[1] if self._cursor[0] == seg.base and self._cursor[2] <= offset else 0
            data = seg.view(position + HEADER_SIZE)
            floor = self._cursor[2] if position else seg.base   # offsets only grow along a file
            while data is not None and position + HEADER_SIZE <= len(data):
                header = _core.peek_batch(data, position)
                if header.base_offset >= end or header.magic != 2 or header.size < HEADER_SIZE \
                        or header.base_offset < floor:
                    break   # the durable end, or the zeros past the written part of the file
                if position + header.size > len(data):
                    data = seg.view(position + header.size)   # the file grew since it was mapped
                    if data is None or position + header.size > len(data):
                        break
                if header.last_offset >= offset:
                    if out and len(out) + header.size > max_bytes:
                        self._cursor = (seg.base, position, header.base_offset)
                        return bytes(out)
                    batch = data[position:position + header.size]   # a copy: the map may be replaced
                    try:
                        _core.validate_batch(batch)
                    except Exception as exc:
                        raise CorruptSegmentError(f"a batch cannot be read: {exc}", topic=self.topic,
                                                  partition=self.number, file=seg.path, position=position) from None
                    out += batch
                position += header.size
                floor = header.last_offset + 1
                self._cursor = (seg.base, position, floor)
            if out or self._cursor[2] >= end:
                break
        return bytes(out)

    def _segment_list(self) -> list[_Segment]:
        bases = layout.segment_bases(self.path)
        known = {s.base: s for s in self._segments}
        for seg in self._segments:
            if seg.base not in bases:
                seg.close()
        self._segments = [known.get(b) or _Segment(os.path.join(self.path, layout.segment_file_name(b)), b)
                          for b in bases]
        return self._segments

    def _segments_from(self, offset: int, refresh: bool) -> list[_Segment]:
        segments = self._segments
        if refresh or not segments or offset < segments[0].base:
            segments = self._segment_list()
        first = max((i for i, s in enumerate(segments) if s.base <= offset), default=0)
        return segments[first:]

    def _scan_end(self) -> int:
        """Without a published offset: one past the last whole batch with a good CRC."""
        segments = self._segment_list()
        for seg in reversed(segments):
            end = None
            with _core.SegmentScanner(seg.path) as scanner:
                for _, header, crc_ok in scanner:
                    if not crc_ok:
                        break
                    end = header.last_offset + 1
            if end is not None:
                return end
        return segments[0].base if segments else 0

    def read(self, offset: int = 0, max_records: int | None = None,
             max_bytes: int = 1 << 20) -> Iterator[_core.Record]:
        """Records from `offset` up to the high watermark (as Partition.read)."""
        remaining = -1 if max_records is None else max_records
        while remaining != 0:
            data = self.read_batches(offset, max_bytes)
            if not data:
                return
            for header, records in _core.iter_batches(data):
                for rec in () if header.is_control else records:
                    if rec.offset >= offset:
                        yield rec
                        remaining -= 1
                        if remaining == 0:
                            return
                offset = header.last_offset + 1

    def read_columns(self, offset: int = 0, max_records: int | None = None,
                     max_bytes: int = 1 << 20) -> _core.RecordColumns:
        builder = _core.ColumnsBuilder(offset, -1 if max_records is None else max_records, max_bytes,
                                       check_crc=False)   # read_batches checked them
        while builder.wants_more:
            data = self.read_batches(builder.next_offset, builder.read_size)
            if not data:
                break
            builder.add(data)
        return builder.finish()

    def follow(self, offset: int | None = None, *, timeout: float | None = None,
               max_bytes: int = 1 << 20) -> Follower:
        return Follower([self], [self.high_watermark if offset is None else offset], timeout=timeout,
                        max_bytes=max_bytes)

    # --- waiting (Follower) -----------------------------------------------------------------

    @staticmethod
    def wait_readable(parts: list[ReadonlyPartition], positions: list[int], timeout: float | None = None) -> list[int]:
        """Waits until some partition has records past its position: on the futex of the writer's
        publish counter (GIL released, woken at each fdatasync), else looking every few ms."""
        deadline = None if timeout is None else time.monotonic() + timeout
        page = parts[0]._log._readable_seq() if parts[0]._log is not None else None
        pause = POLL_MIN_S
        while True:
            seen = _SEQ.unpack_from(page)[0] if page is not None else 0
            ready = [i for i, (p, pos) in enumerate(zip(parts, positions)) if p.high_watermark > pos]
            left = None if deadline is None else deadline - time.monotonic()
            if ready or (left is not None and left <= 0):
                return ready
            if page is not None:
                _core.wait_shared_seq(page, seen, WAIT_SLICE_S if left is None else min(left, WAIT_SLICE_S))
            else:
                time.sleep(pause if left is None else min(pause, left))
                pause = min(pause * 2, POLL_MAX_S)

    async def wait_visible(self, offset: int) -> int:
        pause = POLL_MIN_S
        while self.high_watermark <= offset:
            await asyncio.sleep(pause)
            pause = min(pause * 2, POLL_MAX_S)
        return self.high_watermark

    async def read_batches_async(self, offset: int, max_bytes: int = 1 << 20) -> bytes:
        return self.read_batches(offset, max_bytes)

    def close(self) -> None:
        for seg in self._segments:
            seg.close()
        if self._published is not None:
            self._published.close()
            self._published = None

    def __repr__(self) -> str:
        return f"ReadonlyPartition({self.topic!r}, {self.number})"
