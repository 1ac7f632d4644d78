"""The cluster's metadata as every broker sees it: brokers, the controller, topics and each
partition's replicas, leader, leader epoch and in-sync replicas.

etcd holds it (etcd_store.py); this module is the model and its key layout, with no I/O, so
that the controller's decisions and the simulator run on the same data. Every value is JSON:

    <root>/cluster_id                 the cluster id, set once by the first broker
    <root>/brokers/<node id>          {"listeners": {name: [host, port]}, "rack": ...}, under the
                                      broker's lease: it vanishes when the broker stops renewing
    <root>/controller                 {"node_id": N}, under the controller's lease (election)
    <root>/topics/<name>              {"topic_id", "partitions", "configs"}
    <root>/partitions/<name>/<index>  {"replicas", "leader", "leader_epoch", "isr", "partition_epoch",
                                       "isr_incarnations", "adding", "removing"}
    <root>/shared/<document>          users, ACLs, client quotas, cluster-wide broker configs
                                      (shared_state.py), each the JSON its local store keeps
    <root>/locks/<name>               held by a broker (under its lease) while it changes them

A partition's record changes only by compare-and-swap on its etcd revision, so two writers
(the controller electing, a leader changing its ISR) never overwrite each other unseen.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace

NO_LEADER = -1


@dataclass(frozen=True)
class BrokerRecord:
    node_id: int
    listeners: dict[str, tuple[str, int]]
    rack: str | None = None
    directory_id: str = ""   # its data directory's id (KIP-858): new when the directory is, e.g. an empty disk

    def address(self, listener: str | None = None) -> tuple[str, int]:
        """The address on the named listener, else the first one."""
        if listener is not None and listener in self.listeners:
            return self.listeners[listener]
        return next(iter(self.listeners.values()))

    def encode(self) -> bytes:
        return json.dumps({"listeners": {k: list(v) for k, v in self.listeners.items()}, "rack": self.rack,
                           "directory_id": self.directory_id}).encode()

    @classmethod
    def decode(cls, node_id: int, value: bytes) -> BrokerRecord:
        d = json.loads(value)
        return cls(node_id, {k: (h, int(p)) for k, (h, p) in d["listeners"].items()}, d.get("rack"),
                   d.get("directory_id", ""))


@dataclass(frozen=True)
class TopicRecord:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)   # the topic's Kafka configs, as set
    revision: int = 0       # etcd's mod_revision of the record (not stored): the compare of a CAS

    def encode(self) -> bytes:
        return json.dumps({"topic_id": str(self.topic_id), "partitions": self.partitions,
                           "configs": self.configs}).encode()

    @classmethod
    def decode(cls, name: str, value: bytes, revision: int = 0) -> TopicRecord:
        d = json.loads(value)
        return cls(name, uuid.UUID(d["topic_id"]), int(d["partitions"]), dict(d.get("configs") or {}), revision)


@dataclass(frozen=True)
class PartitionRecord:
    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    partition_epoch: int = 0
    revision: int = 0       # etcd's mod_revision of the record (not stored): the compare of a CAS
    # The data directory id each ISR member had when it joined: a broker back on another
    # directory (an empty disk) is not in sync any more, and does not lead.
    isr_incarnations: tuple[str, ...] = ()
    # A reassignment in progress (KIP-455): `replicas` is the target followed by the replicas
    # leaving; those joining catch up and enter the ISR, then the controller drops the leaving.
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    def incarnation_of(self, node: int) -> str:
        """The directory id the ISR recorded for `node` ("" if not a member or not recorded)."""
        for member, incarnation in zip(self.isr, self.isr_incarnations):
            if member == node:
                return incarnation
        return ""

    def encode(self) -> bytes:
        return json.dumps({"replicas": list(self.replicas), "leader": self.leader, "leader_epoch": self.leader_epoch,
                           "isr": list(self.isr), "partition_epoch": self.partition_epoch,
                           "isr_incarnations": list(self.isr_incarnations), "adding": list(self.adding),
                           "removing": list(self.removing)}).encode()

    @classmethod
    def decode(cls, value: bytes, revision: int = 0) -> PartitionRecord:
        d = json.loads(value)
        return cls(tuple(d["replicas"]), int(d["leader"]), int(d["leader_epoch"]), tuple(d["isr"]),
                   int(d.get("partition_epoch", 0)), revision, tuple(d.get("isr_incarnations", ())),
                   tuple(d.get("adding", ())), tuple(d.get("removing", ())))

    def changed(self, **fields) -> PartitionRecord:
        """The next record: the partition epoch moves with every change, as in KRaft."""
        return replace(self, partition_epoch=self.partition_epoch + 1, **fields)


@dataclass
class ClusterView:
    """What one broker knows of the cluster, kept current by applying etcd's events in order."""

    root: str
    cluster_id: str = ""
    brokers: dict[int, BrokerRecord] = field(default_factory=dict)
    controller: int = NO_LEADER
    topics: dict[str, TopicRecord] = field(default_factory=dict)
    topic_names: dict[uuid.UUID, str] = field(default_factory=dict)   # by topic id (Fetch v13+ names them so)
    partitions: dict[tuple[str, int], PartitionRecord] = field(default_factory=dict)
    shared: dict[str, tuple[bytes, int]] = field(default_factory=dict)   # document -> (value, revision)
    revision: int = 0

    # --- keys -------------------------------------------------------------------------------

    def key(self, *parts) -> bytes:
        return "/".join((self.root, *map(str, parts))).encode()

    def broker_key(self, node_id: int) -> bytes:
        return self.key("brokers", node_id)

    def topic_key(self, name: str) -> bytes:
        return self.key("topics", name)

    def partition_key(self, name: str, index: int) -> bytes:
        return self.key("partitions", name, index)

    # --- events -----------------------------------------------------------------------------

    def apply(self, key: bytes, value: bytes | None, revision: int) -> tuple[str, object] | None:
        """Applies one put (value) or delete (None); returns what changed: ("broker", id),
        ("controller", id), ("topic", name), ("partition", (name, index)), ("cluster_id", id), ("shared", document),
        or None for a key outside the layout."""
        self.revision = max(self.revision, revision)
        path = key.decode()
        if not path.startswith(self.root + "/"):
            return None
        parts = path[len(self.root) + 1:].split("/")
        kind = parts[0]
        if kind == "cluster_id" and len(parts) == 1:
            self.cluster_id = value.decode() if value is not None else ""
            return "cluster_id", self.cluster_id
        if kind == "controller" and len(parts) == 1:
            self.controller = json.loads(value)["node_id"] if value is not None else NO_LEADER
            return "controller", self.controller
        if kind == "brokers" and len(parts) == 2:
            node_id = int(parts[1])
            if value is None:
                self.brokers.pop(node_id, None)
            else:
                self.brokers[node_id] = BrokerRecord.decode(node_id, value)
            return "broker", node_id
        if kind == "topics" and len(parts) == 2:
            gone = self.topics.pop(parts[1], None)
            if gone is not None:
                self.topic_names.pop(gone.topic_id, None)
            if value is not None:
                record = self.topics[parts[1]] = TopicRecord.decode(parts[1], value, revision)
                self.topic_names[record.topic_id] = parts[1]
            return "topic", parts[1]
        if kind == "partitions" and len(parts) == 3:
            tp = (parts[1], int(parts[2]))
            if value is None:
                self.partitions.pop(tp, None)
            else:
                self.partitions[tp] = PartitionRecord.decode(value, revision)
            return "partition", tp
        if kind == "shared" and len(parts) == 2:
            if value is None:
                self.shared.pop(parts[1], None)
            else:
                self.shared[parts[1]] = (value, revision)
            return "shared", parts[1]
        return None

    # --- questions --------------------------------------------------------------------------

    def live(self) -> set[int]:
        return set(self.brokers)
