"""Group coordinators in cluster mode: one for each partition of __consumer_offsets this broker leads.

A group belongs to partition abs(hash(group id)) % partitions, Kafka's rule with Java's
String.hashCode, so its coordinator is that partition's leader and moves with it:

- When this broker becomes the leader, the shard loads. It first waits until the in-sync
  replicas hold everything its log had then (what earlier leaders wrote is committed, so the
  state it replays is the one every replica will keep), replays the partition, and serves.
  Until then the shard's groups get COORDINATOR_LOAD_IN_PROGRESS.
- Every write waits for the in-sync replicas (acks=all) before it counts: an offset commit a
  client was told succeeded survives the loss of the leader.
- When this broker stops leading, the shard stops: waiting JoinGroup and SyncGroup requests,
  and writes waiting for the replicas, get NOT_COORDINATOR; clients ask FindCoordinator again.

The first FindCoordinator for a group creates the topic (as Kafka does), with
offsets.topic.num.partitions partitions and offsets.topic.replication.factor replicas (fewer
when fewer brokers are registered).
"""

from __future__ import annotations

import asyncio
import logging

from pstream.cluster.replication import NotLeaderError, ReplicationTimeoutError
from pstream.coordinator.groups import GroupCoordinator
from pstream.coordinator.offsets import OFFSETS_TOPIC, OffsetStore
from pstream.protocol.error_codes import ErrorCode

_log = logging.getLogger("pstream.cluster")

COMMIT_TIMEOUT_S = 5.0   # Kafka's offsets.commit.timeout.ms


def java_hash(text: str) -> int:
    """Java's String.hashCode, as an int32."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(group_id: str, partitions: int) -> int:
    """Kafka's GroupMetadataManager.partitionFor: Utils.abs (the sign bit cleared), then modulo."""
    return (java_hash(group_id) & 0x7FFFFFFF) % partitions


class GroupShards:
    """Stands where the one GroupCoordinator stands on a broker alone: `for_group(id)` is the
    coordinator a request about that group goes to."""

    def __init__(self, broker, make_coordinator):
        self.broker = broker
        self.make_coordinator = make_coordinator    # (OffsetStore) -> GroupCoordinator
        self.shards: dict[int, GroupCoordinator] = {}
        self._loads: dict[int, asyncio.Task] = {}
        self._creating: asyncio.Task | None = None
        self.active = True
        self.unavailable = self._idle(ErrorCode.COORDINATOR_NOT_AVAILABLE)   # no topic or no cluster yet
        self.elsewhere = self._idle(ErrorCode.NOT_COORDINATOR)

    def _idle(self, error: int) -> GroupCoordinator:
        coordinator = self.make_coordinator(OffsetStore(self.broker.log))
        coordinator.inactive_error = error
        return coordinator

    # --- where a group lives ----------------------------------------------------------------------

    def partitions(self) -> int:
        """__consumer_offsets's partitions in the cluster (0: not created yet)."""
        cluster = self.broker.cluster
        topic = cluster.view.topics.get(OFFSETS_TOPIC) if cluster is not None else None
        return topic.partitions if topic is not None else 0

    def partition_of(self, group_id: str) -> int | None:
        partitions = self.partitions()
        return partition_for(group_id, partitions) if partitions else None

    def for_group(self, group_id: str) -> GroupCoordinator:
        index = self.partition_of(group_id or "")
        if index is None:
            return self.unavailable
        return self.shards.get(index, self.elsewhere)

    def coordinator_node(self, group_id: str) -> int:
        """The broker that coordinates the group (-1: none now). Creates the topic on first use."""
        index = self.partition_of(group_id)
        if index is None:
            self.ensure_topic()
            return -1
        cluster = self.broker.cluster
        leader = cluster.leader(OFFSETS_TOPIC, index)
        return leader if leader in cluster.view.live() else -1

    def ensure_topic(self) -> None:
        cluster = self.broker.cluster
        if cluster is None or (self._creating is not None and not self._creating.done()):
            return
        self._creating = asyncio.get_running_loop().create_task(self._create_topic())

    async def _create_topic(self) -> None:
        cfg = self.broker.config
        cluster = self.broker.cluster
        factor = min(cfg.offsets_topic_replication_factor, len(cluster.view.brokers))
        try:
            if await cluster.create_topic(OFFSETS_TOPIC, cfg.offsets_topic_num_partitions, factor, {}) is not None:
                _log.info("created %s: %d partitions, replication factor %d", OFFSETS_TOPIC,
                          cfg.offsets_topic_num_partitions, factor)
        except Exception as exc:   # clients ask again; so will the next FindCoordinator
            _log.warning("cannot create %s yet: %s", OFFSETS_TOPIC, exc)

    # --- following the leaders ----------------------------------------------------------------------

    def apply_view(self) -> None:
        """Loads a shard for each offsets partition this broker leads; stops those it no longer does."""
        replicas = self.broker.cluster.replicas
        led = {index for name, index in replicas.leading if name == OFFSETS_TOPIC}
        for index in led - set(self.shards):
            store = OffsetStore(self.broker.log, partition=index,
                                committed=lambda offset, index=index: replicas.wait_replicated(
                                    OFFSETS_TOPIC, index, offset, COMMIT_TIMEOUT_S))
            coordinator = self.shards[index] = self.make_coordinator(store)
            coordinator.inactive_error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
            self._loads[index] = asyncio.get_running_loop().create_task(self._load(index, coordinator))
        for index in set(self.shards) - led:
            self._unload(index)

    async def _load(self, index: int, coordinator: GroupCoordinator) -> None:
        replicas = self.broker.cluster.replicas
        part = self.broker.log.get_topic(OFFSETS_TOPIC).partition(index)
        end = part.log_end_offset
        while end > 0:
            try:
                await replicas.wait_replicated(OFFSETS_TOPIC, index, end - 1, COMMIT_TIMEOUT_S)
                break
            except ReplicationTimeoutError:
                _log.info("%s-%d: waiting for the in-sync replicas to reach %d before loading its groups",
                          OFFSETS_TOPIC, index, end)
            except NotLeaderError:
                return   # apply_view unloads it
        await asyncio.get_running_loop().run_in_executor(None, coordinator.store.open)
        if self.shards.get(index) is coordinator:
            coordinator.start()
            _log.info("broker %d coordinates the groups of %s-%d (%d groups)", self.broker.node_id,
                      OFFSETS_TOPIC, index, len(coordinator.groups))

    def _unload(self, index: int) -> None:
        load = self._loads.pop(index, None)
        if load is not None:
            load.cancel()
        coordinator = self.shards.pop(index)
        coordinator.stop()
        coordinator.inactive_error = ErrorCode.NOT_COORDINATOR
        _log.info("broker %d no longer coordinates the groups of %s-%d", self.broker.node_id, OFFSETS_TOPIC, index)

    def stop(self) -> None:
        for index in list(self.shards):
            self._unload(index)
        if self._creating is not None:
            self._creating.cancel()

    # --- what spans every shard here ----------------------------------------------------------------

    def coordinators(self) -> list[GroupCoordinator]:
        return [c for c in self.shards.values() if c.active]

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
