"""A partition's leader epochs: which epoch wrote which offsets (Kafka's LeaderEpochFileCache).

Kept in the partition's directory as `leader-epoch-checkpoint`, in Kafka's format (a version
line "0", a count line, then "epoch start_offset" per line), written atomically. A leader adds
its epoch at its log end when it takes over; a follower adds each epoch its leader's batches
bring. OffsetForLeaderEpoch answers from it (end_offset_for), which is how a follower finds
where its log and its new leader's part (KIP-101, KIP-279), never by high watermark alone.
"""

from __future__ import annotations

import os

from pstream import _core
from pstream.storage import layout

FILE = "leader-epoch-checkpoint"
UNDEFINED = -1


class LeaderEpochCache:
    """directory None: kept in memory only (the simulator's replicas)."""

    def __init__(self, directory: str | None):
        self.path = os.path.join(directory, FILE) if directory is not None else None
        self.entries: list[tuple[int, int]] = []   # (epoch, start offset), both ascending

    @classmethod
    def load(cls, part) -> LeaderEpochCache:
        """The partition's cache; built from its batches' epochs when the file is missing (a
        directory written before cluster mode), and saved."""
        cache = cls(part.path)
        if os.path.exists(cache.path):
            with open(cache.path) as f:
                lines = f.read().split("\n")
            count = int(lines[1])
            cache.entries = [(int(e), int(o)) for e, o in (line.split() for line in lines[2:2 + count])]
        else:
            offset = part.log_start_offset
            while offset < part.log_end_offset:
                data = part.read_batches(offset, 1 << 20)
                if not data:
                    break
                position = 0
                while position + _core.BATCH_HEADER_SIZE <= len(data):
                    head = _core.peek_batch(data, position)
                    if head.partition_leader_epoch >= 0:
                        cache._add(head.partition_leader_epoch, head.base_offset)
                    position += head.size
                    offset = head.last_offset + 1
            cache.save()
        return cache

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else UNDEFINED

    def _add(self, epoch: int, start_offset: int) -> bool:
        if self.entries and epoch <= self.entries[-1][0]:
            return False
        self.entries.append((epoch, start_offset))
        return True

    def assign(self, epoch: int, start_offset: int) -> None:
        """Epoch `epoch` writes from start_offset on (an older or equal epoch changes nothing)."""
        if self._add(epoch, start_offset):
            self.save()

    def truncate_from(self, offset: int) -> None:
        """The log was cut at `offset`: epochs that began at or past it are gone."""
        kept = [(e, o) for e, o in self.entries if o < offset]
        if kept != self.entries:
            self.entries = kept
            self.save()

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(the largest epoch <= `epoch`, the offset where it ended): the next epoch's start, or the
        log end for the latest one. (UNDEFINED, UNDEFINED) when `epoch` predates every entry."""
        found = None
        for i, (e, _) in enumerate(self.entries):
            if e <= epoch:
                found = i
        if found is None:
            return UNDEFINED, UNDEFINED
        end = self.entries[found + 1][1] if found + 1 < len(self.entries) else log_end_offset
        return self.entries[found][0], end

    def save(self) -> None:
        if self.path is None:
            return
        text = "0\n%d\n%s" % (len(self.entries), "".join(f"{e} {o}\n" for e, o in self.entries))
        layout.write_text_atomic(self.path, text)
