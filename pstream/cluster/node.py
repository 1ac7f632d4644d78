"""A broker's membership of a cluster (`pstream serve --cluster etcd://... --node-id N`).

ClusterNode joins the cluster through etcd (etcd_store.py), keeps the broker's local Log in
step with the cluster's topics, runs the controller's duty while this broker holds the
controller key (election.py: move leaderships off brokers that left or came back on an empty
disk, elect a returning last ISR member), and hands every change to the ReplicaManager (replication.py), which
makes this broker lead or follow each of its partitions.

It also answers the questions the handlers ask of `broker.core_map` with one node (leaders,
replicas, ISRs, brokers, the controller) from the cluster's view instead, so Metadata,
DescribeCluster and DescribeTopicPartitions show the whole cluster.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from types import SimpleNamespace

from pstream.broker.topic_configs import format_topic_configs, parse_topic_configs
from pstream.cluster import election, placement, reassignment
from pstream.cluster.etcd_store import TXN_OPS, EtcdMetadata, parse_cluster_url
from pstream.cluster.replication import ReplicaManager
from pstream.cluster.shared_state import SharedState
from pstream.cluster.state import NO_LEADER, BrokerRecord, PartitionRecord, TopicRecord
from pstream.coordinator.offsets import OFFSETS_TOPIC, offsets_topic_settings
from pstream.coordinator.txn_log import TXN_TOPIC, txn_topic_settings
from pstream.errors import ClusterUnavailableError, ConfigError, PStreamError, UnknownTopicError
from pstream.protocol.error_codes import ErrorCode
from pstream.security.acls import Operation, ResourceType
from pstream.security.listeners import ANONYMOUS
from pstream.storage.config import TopicConfig

_log = logging.getLogger("pstream.cluster")

TOPIC_WAIT_S = 10.0
STOP_STEP_S = 5.0   # each step of a controlled shutdown, at most
CAS_TRIES = 20   # compare-and-swaps of one record lost to concurrent writers before giving up
PRODUCER_ID_BLOCK = 1000   # as Kafka's controller hands them to brokers
# The coordinators' topics get their settings, not the etcd record's (which has none).
INTERNAL_SETTINGS = {OFFSETS_TOPIC: offsets_topic_settings, TXN_TOPIC: txn_topic_settings}


class ClusterNode:
    def __init__(self, broker):
        config = broker.config
        self.broker = broker
        self.node_id = broker.node_id
        endpoints, root = parse_cluster_url(config.cluster)
        self.metadata = EtcdMetadata(endpoints, root, self.node_id, max(1, round(config.cluster_lease_ms / 1000)),
                                     self._changed)
        self.view = self.metadata.view
        self.replicas = ReplicaManager(self)
        self.shared = SharedState(self)
        self._reconcile_task: asyncio.Task | None = None
        self._dirty = False
        self._next_producer_id = self._producer_id_limit = 0
        self._ever_seen: set[int] = set()     # brokers seen registered since this one started
        self._started_at = 0.0
        self._grace_check = None
        self._rebalancer: asyncio.Task | None = None
        self._leaving = False   # stopping: no campaign for the controller any more
        self._seen_topics: set[str] = set()   # in the cluster's view once: deleted here when it leaves it
        self._strays: set[str] = set()        # local topics the cluster does not have (warned about once)
        self._configs_applied: dict[str, int] = {}   # topic -> revision of the record whose configs it has
        self.elections = 0  # leaders this broker elected as the controller, since start
        self.count = 1      # as CoreMap: one process per broker in cluster mode
        self.core = 0

    # --- life -------------------------------------------------------------------------------

    async def start(self) -> str:
        """Joins; returns the cluster id (the first broker's, kept in etcd)."""
        self._started_at = asyncio.get_running_loop().time()
        listeners = {lis.name: lis.advertised for lis in self.broker.listeners}
        cluster_id = await self.metadata.start(BrokerRecord(self.node_id, listeners,
                                                            directory_id=self.broker.directory_id),
                                               self.broker.cluster_id)
        await self.shared.start()
        self._check_inter_broker_principal()
        self.replicas.start()
        self._schedule()
        if self.broker.config.auto_leader_rebalance_enable:
            self._rebalancer = asyncio.get_running_loop().create_task(self._rebalance_periodically())
        return cluster_id

    def _check_inter_broker_principal(self) -> None:
        """Warns where ACLs would refuse the brokers' own requests (replica fetches, markers)."""
        config = self.broker.config
        listener = config.inter_broker_listener()
        if config.authorization != "acls" or listener.tls and not listener.sasl:
            return   # a certificate's principal depends on the mapping rules: not guessed here
        principal = f"User:{config.inter_broker_credentials()[0]}" if listener.sasl else ANONYMOUS
        if not self.broker.authorizer.authorize(principal, "", Operation.CLUSTER_ACTION, ResourceType.CLUSTER,
                                                "kafka-cluster"):
            _log.warning("broker %d: brokers reach each other on listener %s as %s, which may not CLUSTER_ACTION "
                         "on the cluster: replication will be refused; add it to super_users", self.node_id,
                         listener.name, principal)

    async def stop(self) -> None:
        """Controlled shutdown: leave etcd first, and wait (a lease at most) until the controller
        has moved the leaderships another in-sync replica can take; then stop replicating. Until
        then this broker serves its followers, so they hold everything it acknowledged."""
        self._leaving = True
        await self._bounded("leaving etcd", self.metadata.leave())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.broker.config.cluster_lease_ms / 1000
        while self._movable_leaderships() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self._bounded("closing the etcd client", self.metadata.stop())
        self.shared.stop()
        if self._grace_check is not None:
            self._grace_check.cancel()
        if self._rebalancer is not None:
            self._rebalancer.cancel()
        if self._reconcile_task is not None:
            self._reconcile_task.cancel()
            await self._bounded("the metadata pass", asyncio.gather(self._reconcile_task, return_exceptions=True))
        await self._bounded("stopping replication", self.replicas.stop())

    async def _bounded(self, what: str, step) -> None:
        """One step of the shutdown, given STOP_STEP_S at most: a SIGTERM always ends the process
        (a step that hangs is logged, and the data is synced at close all the same)."""
        try:
            await asyncio.wait_for(step, STOP_STEP_S)
        except asyncio.TimeoutError:
            _log.warning("broker %d: %s took more than %.0f s at shutdown; going on", self.node_id, what,
                         STOP_STEP_S)

    def _movable_leaderships(self) -> list[tuple[str, int]]:
        """Partitions this broker still leads where a live in-sync replica could lead instead."""
        live = self.view.live() - {self.node_id}
        return [key for key, record in self.view.partitions.items()
                if record.leader == self.node_id and any(r in live for r in record.isr)]

    def _changed(self, kind: str, what) -> None:
        if kind in ("shared", "loaded"):   # "loaded": the watch restarted, documents may have changed meanwhile
            self.shared.changed()
            if kind == "shared":
                return
        if kind == "controller" and what == NO_LEADER and not self._leaving:
            asyncio.get_running_loop().create_task(self._campaign())
        self._schedule()

    async def _campaign(self) -> None:
        try:
            await self.metadata.campaign()
        except Exception as exc:
            _log.warning("broker %d: controller campaign failed: %s", self.node_id, exc)

    def _schedule(self) -> None:
        """Coalesces changes: one reconcile pass at a time, run again if more arrived meanwhile."""
        self._dirty = True
        if self._reconcile_task is None or self._reconcile_task.done():
            self._reconcile_task = asyncio.get_running_loop().create_task(self._reconcile())

    async def _reconcile(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._materialize_topics()
                if self.is_controller:
                    await self._control()
                self.replicas.apply_view()
                self.broker.groups.apply_view()   # coordinators follow their partitions' leaders
                self.broker.transactions.apply_view()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("broker %d: applying the cluster metadata failed; retrying", self.node_id)
                self._dirty = True
                await asyncio.sleep(0.5)

    async def _materialize_topics(self) -> None:
        """The local Log holds every topic of the cluster, with the cluster's topic id. A topic is
        deleted here only once this broker saw it deleted in the cluster: a topic the cluster
        never had (a directory from before joining) is left alone, with a warning."""
        log = self.broker.log
        for name, topic in list(self.view.topics.items()):
            self._seen_topics.add(name)
            if name in log and log.get_topic(name).topic_id != topic.topic_id:
                if name not in self._strays:
                    self._strays.add(name)
                    _log.warning("broker %d: topic %s here has id %s, the cluster's has %s: not serving it; "
                                 "move its directory away to take the cluster's", self.node_id, name,
                                 log.get_topic(name).topic_id, topic.topic_id)
            elif name not in log:
                settings = INTERNAL_SETTINGS[name]() if name in INTERNAL_SETTINGS \
                    else parse_topic_configs(topic.configs.items())
                await log.create_topic_async(name, partitions=topic.partitions, topic_id=topic.topic_id, **settings)
                self._configs_applied[name] = topic.revision
            else:
                local = log.get_topic(name)
                if local.partitions < topic.partitions:   # CreatePartitions through any broker
                    await local.add_partitions_async(topic.partitions)
                if self._configs_applied.get(name) != topic.revision and name not in INTERNAL_SETTINGS:
                    await self._apply_configs(local, topic)
        for name in list(log.topics()):
            if name in self.view.topics or name.startswith("__"):
                continue
            if name in self._seen_topics:
                self._seen_topics.discard(name)
                await log.delete_topic_async(name)
            elif name not in self._strays:
                self._strays.add(name)
                _log.warning("broker %d: topic %s is in the data directory but not in the cluster: left alone",
                             self.node_id, name)

    async def _apply_configs(self, local, topic: TopicRecord) -> None:
        """Gives the local topic the configs of its etcd record (AlterConfigs through any broker)."""
        try:
            settings = parse_topic_configs(topic.configs.items())
            if local.overrides != TopicConfig.normalize(settings):
                if topic.name not in self._configs_applied:   # set here alone (before configs were in etcd)
                    _log.warning("broker %d: topic %s: configs here %s differ from the cluster's %s: taking the "
                                 "cluster's", self.node_id, topic.name, format_topic_configs(local.overrides),
                                 topic.configs)
                await self.broker.log.run_blocking(local.replace_config, **settings)
        except ConfigError as exc:   # written by a broker that took them: a newer version's config, say
            _log.warning("broker %d: topic %s: cannot apply the cluster's configs %s: %s", self.node_id,
                         topic.name, topic.configs, exc)
        self._configs_applied[topic.name] = topic.revision

    async def alter_topic_configs(self, name: str, new_overrides) -> None:
        """A topic's configs changed through this broker: new_overrides(current) gives the new
        overrides (ConfigError if invalid) from those etcd holds, written back by compare-and-swap
        (recomputed after a concurrent change); returns once this broker applies them."""
        for _ in range(CAS_TRIES):
            record = await self.metadata.read_topic(name)
            if record is None:
                raise UnknownTopicError(name)
            overrides = parse_topic_configs(record.configs.items())
            current = SimpleNamespace(overrides=overrides,
                                      config=TopicConfig.from_kwargs(self.broker.log.defaults, **overrides))
            wanted = replace(record, configs=format_topic_configs(new_overrides(current)))
            if await self.metadata.replace_topic(record, wanted):
                break
        else:
            raise PStreamError(f"topic {name!r}: configs changed concurrently {CAS_TRIES} times; try again")
        applied = TopicConfig.normalize(parse_topic_configs(wanted.configs.items()))
        await self._local_topic_where(name, lambda local: local.overrides == applied,
                                      "its configs were written to the cluster but not applied here")

    # --- the controller's duty --------------------------------------------------------------

    @property
    def is_controller(self) -> bool:
        return self.view.controller == self.node_id

    async def _control(self) -> None:
        registered = self.view.live()
        self._ever_seen |= registered
        loop = asyncio.get_running_loop()
        since_start_ms = (loop.time() - self._started_at) * 1000
        lease_ms = self.broker.config.cluster_lease_ms
        if since_start_ms < lease_ms and not self._grace_check:   # look again once the grace is over
            self._grace_check = loop.call_later((lease_ms - since_start_ms) / 1000 + 0.05, self._schedule)
        directories = self.directories()
        changes = []
        for (name, index), record in list(self.view.partitions.items()):
            live = election.presumed_live(registered, self._ever_seen, record.replicas, since_start_ms, lease_ms)
            wanted = election.reconcile(record, live, directories)
            wanted = reassignment.complete(wanted or record) or wanted   # every joining replica in sync
            if wanted is not None:
                changes.append((name, index, record, wanted))
        # A broker's partitions move together: one etcd transaction per TXN_OPS of them, each
        # alone again if one of them changed meanwhile (a leader shrank its ISR, say).
        for start in range(0, len(changes), TXN_OPS):
            chunk = changes[start:start + TXN_OPS]
            if len(chunk) > 1 and await self.metadata.replace_partitions(chunk):
                written = chunk
            else:
                written = [c for c in chunk if await self.metadata.replace_partition(*c)]
            for name, index, record, wanted in written:
                self.elections += wanted.leader != record.leader
                _log.info("controller %d: %s-%d leader %d -> %d (epoch %d), isr %s", self.node_id, name, index,
                          record.leader, wanted.leader, wanted.leader_epoch, list(wanted.isr))

    async def _rebalance_periodically(self) -> None:
        """Kafka's auto.leader.rebalance.enable: the controller gives leaderships back to the
        preferred replicas of brokers past leader.imbalance.per.broker.percentage."""
        cfg = self.broker.config
        while True:
            await asyncio.sleep(cfg.leader_imbalance_check_interval_seconds)
            if not self.is_controller:
                continue
            try:
                for (name, index), record, wanted in election.imbalanced(
                        list(self.view.partitions.items()), self.view.live(), self.directories(),
                        cfg.leader_imbalance_per_broker_percentage):
                    await self._write_election(name, index, record, wanted, "rebalance")
            except Exception as exc:   # etcd unreachable: the next round tries again
                _log.warning("controller %d: leader rebalance failed: %s", self.node_id, exc)

    async def elect(self, name: str, index: int, unclean: bool) -> tuple[ErrorCode, str | None]:
        """ElectLeaders for one partition (any broker runs it: the write is a CAS)."""
        record = self.record(name, index)
        if record is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"No such partition as {name}-{index}"
        elect = election.elect_unclean if unclean else election.elect_preferred
        wanted, error = elect(record, self.view.live(), self.directories())
        if wanted is None:
            messages = {ErrorCode.ELECTION_NOT_NEEDED: "Leader election not needed for topic partition.",
                        ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE:
                            f"The preferred leader {record.replicas[0]} of {name}-{index} is not alive and in sync.",
                        ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE:
                            f"No replica of {name}-{index} is alive to lead it."}
            return error, messages.get(error)
        if not await self._write_election(name, index, record, wanted, "unclean election" if unclean else "election"):
            return ErrorCode.REQUEST_TIMED_OUT, f"{name}-{index} changed meanwhile; ask again"
        return ErrorCode.NONE, None

    async def reassign(self, name: str, index: int, target: tuple[int, ...] | None) -> tuple[ErrorCode, str | None]:
        """AlterPartitionReassignments for one partition: start moving to `target`, or cancel (None)."""
        record = self.record(name, index)
        if record is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {name}:{index}."
        refusal = reassignment.revert_refusal(record, name, index)
        if refusal is not None:
            return ErrorCode.INVALID_REPLICA_ASSIGNMENT, refusal
        if target is None:
            wanted = reassignment.cancel(record)
            if wanted is None:
                return ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, None
        else:
            error, message = reassignment.check_target(target, self.view.live())
            if error:
                return error, message
            wanted = reassignment.start(record, tuple(target))
            if wanted is None:
                return ErrorCode.NONE, None
        if not await self.metadata.replace_partition(name, index, record, wanted):
            return ErrorCode.REQUEST_TIMED_OUT, f"{name}-{index} changed meanwhile; ask again"
        _log.info("broker %d: %s-%d reassignment %s: replicas %s, adding %s, removing %s", self.node_id, name, index,
                  "cancelled" if target is None else f"to {list(target)}", list(wanted.replicas), list(wanted.adding),
                  list(wanted.removing))
        return ErrorCode.NONE, None

    def reassignments(self) -> dict[tuple[str, int], PartitionRecord]:
        """The partitions being reassigned."""
        return {key: r for key, r in self.view.partitions.items() if r.adding or r.removing}

    async def _write_election(self, name: str, index: int, record: PartitionRecord, wanted: PartitionRecord,
                              why: str) -> bool:
        """Writes `wanted` if the partition's record is still `record` (the one it was decided from)."""
        if not await self.metadata.replace_partition(name, index, record, wanted):
            return False
        self.elections += 1
        _log.info("broker %d (%s): %s-%d leader %d -> %d (epoch %d), isr %s", self.node_id, why, name, index,
                  record.leader, wanted.leader, wanted.leader_epoch, list(wanted.isr))
        return True

    def directories(self) -> dict[int, str]:
        """Each registered broker's data directory id."""
        return {node: b.directory_id for node, b in self.view.brokers.items()}

    # --- topics -----------------------------------------------------------------------------

    def check_replication_factor(self, replication_factor: int) -> int:
        """The factor in force (-1: the default), or ValueError naming the registered brokers."""
        factor = self.broker.config.default_replication_factor if replication_factor == -1 else replication_factor
        live = len(self.view.brokers)
        if factor > live:
            raise ValueError(f"Unable to replicate the partition {factor} time(s): The target replication factor of "
                             f"{factor} cannot be reached because only {live} broker(s) are registered.")
        return factor

    def replication_factor(self, name: str) -> int:
        """An existing topic's: its first partition's replicas, without those a reassignment adds."""
        first = self.view.partitions.get((name, 0))
        return len(reassignment.original(first)) if first is not None else 1

    async def create_topic(self, name: str, partitions: int, replication_factor: int, configs: dict[str, str],
                           assignments: list[tuple[int, ...]] | None = None):
        """Writes the topic to etcd and waits until the local Log has it; the local Topic, or None
        if the name exists in the cluster already. `configs`: Kafka's names and string values;
        `assignments`: each partition's replicas (checked by the caller), else placed here."""
        if assignments is None:
            factor = self.check_replication_factor(replication_factor)
            assignments = placement.assign_replicas(partitions, factor, sorted(self.view.live()))
        topic = TopicRecord(name, uuid.uuid4(), len(assignments), dict(configs))
        if not await self.metadata.create_topic(topic, self._new_partitions(assignments)):
            return None
        return await self.local_topic(name, topic.topic_id)

    async def create_partitions(self, name: str, count: int, assignments: list[tuple[int, ...]] | None = None):
        """Grows the topic to `count` partitions (CreatePartitions) by compare-and-swap on its etcd
        record, and waits until the local Log has them. The new partitions get the replication
        factor of the topic's first (without its reassignment's newcomers), placed as a new
        topic's are unless `assignments` (checked by the caller) gives their replicas.
        UnknownTopicError; ConfigError if the topic has `count` partitions or more."""
        for _ in range(CAS_TRIES):
            record = await self.metadata.read_topic(name)
            if record is None:
                raise UnknownTopicError(name)
            if count <= record.partitions:
                raise ConfigError(f"Topic currently has {record.partitions} partitions, which is higher than the "
                                  f"requested {count}.")
            wanted = assignments
            if wanted is None:
                wanted = placement.assign_replicas(count - record.partitions, self.replication_factor(name),
                                                   sorted(self.view.live()), first_partition=record.partitions)
            if await self.metadata.add_partitions(record, self._new_partitions(wanted)):
                break
        else:
            raise PStreamError(f"topic {name!r} changed concurrently {CAS_TRIES} times; try again")
        await self._local_topic_where(name, lambda local: local.partitions >= count,
                                      f"it has {count} partitions in the cluster but not here")

    def _new_partitions(self, assignments) -> list[PartitionRecord]:
        """Records of new partitions at epoch 0: every registered replica in sync (none holds a
        record yet), with the directory it has now; the first of them leads."""
        directories = self.directories()
        records = []
        for replicas in assignments:
            isr = tuple(r for r in replicas if r in directories)
            if not isr:   # checked by the caller, gone since
                raise ClusterUnavailableError(f"no broker of the assignment {list(replicas)} is registered")
            records.append(PartitionRecord(tuple(replicas), isr[0], 0, isr,
                                           isr_incarnations=tuple(directories[r] for r in isr)))
        return records

    async def local_topic(self, name: str, topic_id: uuid.UUID | None = None):
        return await self._local_topic_where(name, lambda local: topic_id is None or local.topic_id == topic_id,
                                             "it was created in the cluster but not here")

    async def _local_topic_where(self, name: str, done, what: str):
        """The local Topic once done(it) holds (this broker's watch applied a change made in
        etcd), within TOPIC_WAIT_S; else PStreamError saying `what`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TOPIC_WAIT_S
        log = self.broker.log
        while loop.time() < deadline:
            local = log.get_topic(name) if name in log else None
            if local is not None and done(local):
                return local
            await asyncio.sleep(0.01)
        raise PStreamError(f"topic {name!r}: {what} within {TOPIC_WAIT_S} s")

    async def delete_topic(self, name: str) -> None:
        await self.metadata.delete_topic(name)

    async def allocate_producer_id(self) -> int:
        """A producer id no other broker of the cluster hands out: from blocks reserved in etcd."""
        if self._next_producer_id >= self._producer_id_limit:
            first = await self.metadata.reserve_producer_ids(PRODUCER_ID_BLOCK)
            self._next_producer_id, self._producer_id_limit = first, first + PRODUCER_ID_BLOCK
        self._next_producer_id += 1
        return self._next_producer_id - 1

    # --- what operators ask -------------------------------------------------------------------

    def status(self) -> dict:
        """The cluster as this broker sees it: brokers, controller, partitions without a leader or
        with replicas out of sync, and this broker's replication counters (admin API, metrics)."""
        live = self.view.live()
        known = live | {r for record in self.view.partitions.values() for r in record.replicas}
        leaderless, under = [], []
        for (name, index), record in sorted(self.view.partitions.items()):
            if record.leader not in live:
                leaderless.append({"topic": name, "partition": index})
            if len(record.isr) < len(record.replicas):
                under.append({"topic": name, "partition": index, "leader": record.leader,
                              "replicas": list(record.replicas), "isr": list(record.isr)})
        lag = [{"topic": name, "partition": index, "replica": replica, "lag": behind}
               for (name, index), by_replica in sorted(self.replicas.lag().items())
               for replica, behind in sorted(by_replica.items())]
        return {"node_id": self.node_id, "controller": self.view.controller,
                "brokers": [{"node_id": node, "alive": node in live} for node in sorted(known)],
                "partitions": len(self.view.partitions), "leaders_here": len(self.replicas.leading),
                "leaderless_partitions": leaderless, "under_replicated_partitions": under, "replica_lag": lag,
                "counters": {**self.replicas.counters, "elections": self.elections}}

    # --- what handlers ask (as CoreMap) ---------------------------------------------------------

    @property
    def controller(self) -> int:
        return self.view.controller

    def node_names(self) -> set[str]:
        return {str(self.node_id)}

    def record(self, name: str, index: int) -> PartitionRecord | None:
        return self.view.partitions.get((name, index))

    def leader(self, name: str, index: int) -> int:
        record = self.record(name, index)
        return record.leader if record is not None else NO_LEADER

    def replica(self, name: str, index: int) -> int:
        return self.node_id

    def leadership(self, topic, number: int) -> dict:
        record = self.record(topic.name, number)
        if record is None and topic.name.startswith("__"):
            # Internal topics stay local to each broker for now (their coordinators too).
            return {"error_code": ErrorCode.NONE, "leader_id": self.node_id, "leader_epoch": 0,
                    "replica_nodes": [self.node_id], "isr_nodes": [self.node_id], "offline_replicas": []}
        if record is None:
            return {"error_code": ErrorCode.LEADER_NOT_AVAILABLE, "leader_id": NO_LEADER, "leader_epoch": -1,
                    "replica_nodes": [], "isr_nodes": [], "offline_replicas": []}
        live = self.view.live()
        leader = record.leader if record.leader in live else NO_LEADER
        return {"error_code": ErrorCode.NONE if leader != NO_LEADER else ErrorCode.LEADER_NOT_AVAILABLE,
                "leader_id": leader, "leader_epoch": record.leader_epoch, "replica_nodes": list(record.replicas),
                "isr_nodes": list(record.isr), "offline_replicas": [r for r in record.replicas if r not in live]}

    def brokers(self, listener: str) -> list[tuple[int, str, int]]:
        return [(node, *b.address(listener)) for node, b in sorted(self.view.brokers.items())]
