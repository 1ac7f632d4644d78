"""Group coordinators in cluster mode: one for each partition of __consumer_offsets this broker
leads (coordinator_shards.py says how they load, write and move). A group's coordinator is the
leader of partition abs(hash(group id)) % offsets.topic.num.partitions."""

from __future__ import annotations

import asyncio

from pstream.cluster.coordinator_shards import CoordinatorShards
from pstream.coordinator.groups import GroupCoordinator
from pstream.coordinator.offsets import OFFSETS_TOPIC, OffsetStore
from pstream.protocol.error_codes import ErrorCode

class GroupShards(CoordinatorShards):
    topic = OFFSETS_TOPIC
    partitions_setting = "offsets_topic_num_partitions"
    factor_setting = "offsets_topic_replication_factor"

    def _store(self, index: int | None) -> OffsetStore:
        if index is None:
            return OffsetStore(self.broker.log)
        return OffsetStore(self.broker.log, partition=index, committed=self.committed(index))

    def _open(self, coordinator: GroupCoordinator) -> None:
        coordinator.store.open()

    def for_group(self, group_id: str) -> GroupCoordinator:
        return self.for_key(group_id)

    def for_partition(self, index: int) -> GroupCoordinator | None:
        """The shard of an offsets partition led here (a transaction's marker landed on it)."""
        return self.shards.get(index)

    # --- what spans every shard here ----------------------------------------------------------------

    def list_groups(self, states: list[str] | None = None, types: list[str] | None = None):
        """The groups this broker coordinates (Kafka's ListGroups is answered per broker)."""
        return ErrorCode.NONE, [g for c in self.coordinators() for g in c.list_groups(states, types)[1]]

    async def delete_groups(self, group_ids: list[str]) -> dict[str, int]:
        by_coordinator: dict[int, tuple[GroupCoordinator, list[str]]] = {}
        for group_id in group_ids:
            coordinator = self.for_group(group_id)
            by_coordinator.setdefault(id(coordinator), (coordinator, []))[1].append(group_id)
        results: dict[str, int] = {}
        for part in await asyncio.gather(*(c.delete_groups(ids) for c, ids in by_coordinator.values())):
            results.update(part)
        return results

    def on_topic_deleted(self, topic: str) -> None:
        for coordinator in self.coordinators():
            coordinator.on_topic_deleted(topic)
