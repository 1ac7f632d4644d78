"""Where a record appended to a topic goes: Kafka's default partitioner.

Keyed records go to murmur2(key) modulo the partition count (the core's `key_partition`, the
hash Kafka's Java producer and librdkafka's `murmur2_random` use), so a Kafka client reading
later finds each key where it expects it. Unkeyed records stick to one partition until about
`batch_bytes` of them went there, then move to another one chosen at random (KIP-480's sticky
partitioner, with Kafka's batch.size as the switch point): batches stay large and partitions
even out over time.
"""

from __future__ import annotations

import random

from pstream._core import key_partition, murmur2

__all__ = ["StickyPartitioner", "key_partition", "murmur2"]

BATCH_BYTES = 16384   # Kafka's batch.size default


class StickyPartitioner:
    """One topic's partition choice. Safe to share between threads: a race between two of them
    only makes a switch early or late, never sends a keyed record astray."""

    def __init__(self, batch_bytes: int = BATCH_BYTES) -> None:
        self.batch_bytes = batch_bytes
        self._current = -1
        self._filled = 0

    def partition(self, key, size: int, partitions: int) -> int:
        """The partition for a record with this key (None: unkeyed) of about `size` bytes."""
        if key is not None:
            return key_partition(key, partitions)
        return self.unkeyed(size, partitions)

    def unkeyed(self, size: int, partitions: int) -> int:
        current = self._current
        if current < 0 or current >= partitions or self._filled >= self.batch_bytes:
            current = self._switch(current, partitions)
        self._filled += size
        return current

    def _switch(self, previous: int, partitions: int) -> int:
        if partitions == 1:
            chosen = 0
        else:   # any other partition, uniformly
            chosen = random.randrange(partitions - 1)
            if 0 <= previous <= chosen:
                chosen += 1
        self._current, self._filled = chosen, 0
        return chosen
