"""Coordinators in cluster mode: one for each partition of an internal topic this broker leads,
moving with those partitions' leaders. group_shards.py (__consumer_offsets) and txn_shards.py
(__transaction_state) say what each coordinator is; this module is what they share:

- A key (a group id, a transactional id) belongs to partition abs(hash(key)) % partitions,
  Kafka's rule with Java's String.hashCode, so its coordinator is that partition's leader.
- When this broker becomes the leader, the shard loads. It first waits until the in-sync
  replicas hold everything its log had then (what earlier leaders wrote is committed, so the
  state it replays is the one every replica will keep), replays the partition, and serves.
  Until then the shard's keys get COORDINATOR_LOAD_IN_PROGRESS.
- Every write waits for the in-sync replicas (acks=all) before it counts, so what a client was
  told survives the loss of the leader.
- When this broker stops leading, the shard stops: requests waiting on it, and writes waiting for
  the replicas, get NOT_COORDINATOR; clients ask FindCoordinator again.
- The first FindCoordinator for the topic's kind creates it (as Kafka does), with the configured
  partitions and replication factor (fewer replicas when fewer brokers are registered).
"""

from __future__ import annotations

import asyncio
import logging

from pstream.cluster.replication import NotLeaderError, ReplicationTimeoutError
from pstream.protocol.error_codes import ErrorCode

_log = logging.getLogger("pstream.cluster")

COMMIT_TIMEOUT_S = 5.0   # Kafka's offsets.commit.timeout.ms and transaction's equivalent


def java_hash(text: str) -> int:
    """Java's String.hashCode, as an int32."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, partitions: int) -> int:
    """Kafka's partitionFor: Utils.abs (the sign bit cleared), then modulo."""
    return (java_hash(key) & 0x7FFFFFFF) % partitions


class CoordinatorShards:
    """Stands where the one coordinator stands on a broker alone. Subclasses name the topic and
    its sizing settings, the store of one partition (`_store(index)`; index None: the store of an
    idle coordinator, which answers for keys not served here) and how a coordinator replays it
    (`_open`); `make_coordinator(store)` is the broker's."""

    topic = ""
    partitions_setting = ""    # BrokerConfig fields
    factor_setting = ""

    def __init__(self, broker, make_coordinator):
        self.broker = broker
        self.make_coordinator = make_coordinator
        self.shards: dict[int, object] = {}
        self._loads: dict[int, asyncio.Task] = {}
        self._creating: asyncio.Task | None = None
        self.active = True
        self.unavailable = self._idle(ErrorCode.COORDINATOR_NOT_AVAILABLE)   # no topic or no cluster yet
        self.elsewhere = self._idle(ErrorCode.NOT_COORDINATOR)

    def _idle(self, error: int):
        coordinator = self._make(None)
        coordinator.inactive_error = error
        return coordinator

    def _make(self, index: int | None):
        return self.make_coordinator(self._store(index))

    def _store(self, index: int | None):
        raise NotImplementedError

    def _current(self, index: int, coordinator) -> bool:
        """Whether a loaded shard still stands for this broker's leadership of its partition."""
        return True

    def _open(self, coordinator) -> None:
        """Replays the coordinator's partition (on a disk thread)."""
        raise NotImplementedError

    def committed(self, index: int):
        """What a shard's store awaits before a write counts: the partition's ISR holding it."""
        replicas = self.broker.cluster.replicas
        return lambda offset: replicas.wait_replicated(self.topic, index, offset, COMMIT_TIMEOUT_S)

    # --- where a key lives ----------------------------------------------------------------------

    def partitions(self) -> int:
        """The topic's partitions in the cluster (0: not created yet)."""
        cluster = self.broker.cluster
        topic = cluster.view.topics.get(self.topic) if cluster is not None else None
        return topic.partitions if topic is not None else 0

    def partition_of(self, key: str) -> int | None:
        partitions = self.partitions()
        return partition_for(key, partitions) if partitions else None

    def for_key(self, key: str):
        index = self.partition_of(key or "")
        if index is None:
            return self.unavailable
        return self.shards.get(index, self.elsewhere)

    def coordinator_node(self, key: str) -> int:
        """The broker that coordinates the key (-1: none now). Creates the topic on first use."""
        index = self.partition_of(key)
        if index is None:
            self.ensure_topic()
            return -1
        cluster = self.broker.cluster
        leader = cluster.leader(self.topic, index)
        return leader if leader in cluster.view.live() else -1

    def ensure_topic(self) -> None:
        cluster = self.broker.cluster
        if cluster is None or (self._creating is not None and not self._creating.done()):
            return
        self._creating = asyncio.get_running_loop().create_task(self._create_topic())

    async def _create_topic(self) -> None:
        cfg = self.broker.config
        cluster = self.broker.cluster
        partitions = getattr(cfg, self.partitions_setting)
        factor = min(getattr(cfg, self.factor_setting), len(cluster.view.brokers))
        try:
            if await cluster.create_topic(self.topic, partitions, factor, {}) is not None:
                _log.info("created %s: %d partitions, replication factor %d", self.topic, partitions, factor)
        except Exception as exc:   # clients ask again; so will the next FindCoordinator
            _log.warning("cannot create %s yet: %s", self.topic, exc)

    # --- following the leaders ------------------------------------------------------------------

    def apply_view(self) -> None:
        """Loads a shard for each partition this broker leads; stops those it no longer does."""
        led = {index for name, index in self.broker.cluster.replicas.leading if name == self.topic}
        for index in [i for i, shard in self.shards.items() if i in led and not self._current(i, shard)]:
            self._unload(index)   # led again at a newer epoch since it loaded: loads anew
        for index in led - set(self.shards):
            coordinator = self.shards[index] = self._make(index)
            coordinator.inactive_error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
            self._loads[index] = asyncio.get_running_loop().create_task(self._load(index, coordinator))
        for index in set(self.shards) - led:
            self._unload(index)

    async def _load(self, index: int, coordinator) -> None:
        replicas = self.broker.cluster.replicas
        end = self.broker.log.get_topic(self.topic).partition(index).log_end_offset
        while end > 0:
            try:
                await replicas.wait_replicated(self.topic, index, end - 1, COMMIT_TIMEOUT_S)
                break
            except ReplicationTimeoutError:
                _log.info("%s-%d: waiting for the in-sync replicas to reach %d before loading it", self.topic,
                          index, end)
            except NotLeaderError:
                return   # apply_view unloads it
        await asyncio.get_running_loop().run_in_executor(None, self._open, coordinator)
        if self.shards.get(index) is coordinator:
            coordinator.start()
            _log.info("broker %d coordinates %s-%d", self.broker.node_id, self.topic, index)

    def _unload(self, index: int) -> None:
        load = self._loads.pop(index, None)
        if load is not None:
            load.cancel()
        coordinator = self.shards.pop(index)
        coordinator.stop()
        coordinator.inactive_error = ErrorCode.NOT_COORDINATOR
        _log.info("broker %d no longer coordinates %s-%d", self.broker.node_id, self.topic, index)

    def stop(self) -> None:
        for index in list(self.shards):
            self._unload(index)
        if self._creating is not None:
            self._creating.cancel()

    def coordinators(self) -> list:
        """The shards serving on this broker."""
        return [c for c in self.shards.values() if c.active]
