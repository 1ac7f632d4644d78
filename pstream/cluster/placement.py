"""Where a new topic's replicas go: Kafka's rack-unaware assignment (AdminUtils), a pure function.

Partition p's replicas are brokers[(start + p) % n] followed by the next rf - 1 brokers, each
shifted by a per-round offset so that two partitions with the same first replica do not also
share their followers. The first replica is the preferred leader, so leaders spread evenly.
"""

from __future__ import annotations

import random


def assign_replicas(partitions: int, replication_factor: int, brokers: list[int], first_partition: int = 0,
                    rng: random.Random | None = None) -> list[tuple[int, ...]]:
    """Replica lists for partitions first_partition .. first_partition + partitions - 1."""
    nodes = sorted(brokers)
    n = len(nodes)
    if replication_factor < 1 or replication_factor > n:
        raise ValueError(f"replication factor {replication_factor} needs between 1 and {n} live brokers")
    rng = rng or random.Random()
    start = rng.randrange(n)
    shift = rng.randrange(n)
    out = []
    for p in range(first_partition, first_partition + partitions):
        if p > 0 and p % n == 0:
            shift += 1
        first = (start + p) % n
        replicas = [nodes[first]]
        for j in range(replication_factor - 1):
            replicas.append(nodes[(first + 1 + (shift + j) % (n - 1)) % n])
        out.append(tuple(replicas))
    return out
