"""Serving on every core (`pstream serve --cores N`): N processes over one data directory.

Core k is a broker of its own to clients: node id node_id + k, on each listener's port + k,
and the leader of the partitions pstream.log.owner_core gives it, which only its process
writes and serves. Kafka clients send Produce, Fetch and every other partition request to the
partition's leader, read from Metadata, so such a request never crosses cores: the client does
the routing Redpanda does with cross-core `submit_to` (as ScyllaDB's shard-aware drivers do
with a port per shard). Core 0 is also the controller and every coordinator: it alone creates,
changes and deletes topics, runs the group and transaction coordinators and allocates producer
ids; the other cores relay to it whatever only it answers (relay.py), and it tells them what
changed (home.py -> member.py: topics, ACLs, users, quotas, transactions, markers to write).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pstream.log import owner_core
from pstream.protocol.error_codes import ErrorCode

# What a core other than 0 answers itself; every other API goes to core 0 through the relay.
# Metadata naming a topic this core does not know goes too (core 0 may create it).
LOCAL_APIS = frozenset({
    0,    # Produce
    1,    # Fetch
    2,    # ListOffsets
    3,    # Metadata
    17,   # SaslHandshake
    18,   # ApiVersions
    21,   # DeleteRecords
    23,   # OffsetForLeaderEpoch
    35,   # DescribeLogDirs: each broker its own
    36,   # SaslAuthenticate
    60,   # DescribeCluster
    61,   # DescribeProducers
})
# Sent by clients to every broker and merged: a core without coordinators has none to list.
EMPTY_ON_MEMBERS = frozenset({16, 66})   # ListGroups, ListTransactions
# Requests core 0 answers after which the other cores read topics, ACLs, users and quotas again.
CHANGES_SHARED_STATE = frozenset({
    3,    # Metadata (may create a topic)
    19,   # CreateTopics
    20,   # DeleteTopics
    30,   # CreateAcls
    31,   # DeleteAcls
    33,   # AlterConfigs
    37,   # CreatePartitions
    44,   # IncrementalAlterConfigs
    49,   # AlterClientQuotas
    51,   # AlterUserScramCredentials
})


@dataclass
class CoreMap:
    """The cores of this node as brokers: node ids, and each live core's advertised address per
    listener name. With one core: this broker alone."""

    node_id: int    # core 0's; core k is node_id + k
    count: int
    core: int       # this process's
    addresses: dict[int, dict[str, tuple[str, int]]] = field(default_factory=dict)   # live cores only

    def node_of(self, core: int) -> int:
        return self.node_id + core

    def node_names(self) -> set[str]:
        """Every core's node id, as a broker resource names it."""
        return {str(self.node_of(core)) for core in range(self.count)}

    def leadership(self, topic, number: int) -> dict:
        """A partition's fields of Metadata and DescribeTopicPartitions (error code, leader, its
        epoch, replicas, in-sync and offline ones): this core alone, or with several the
        partition's core, offline (LEADER_NOT_AVAILABLE) while it is down."""
        replica = self.replica(topic.name, number)
        leader = self.leader(topic.name, number)
        epoch = topic.partition(number).leader_epoch if self.count == 1 else 0
        up = leader >= 0
        return {"error_code": ErrorCode.NONE if up else ErrorCode.LEADER_NOT_AVAILABLE, "leader_id": leader,
                "leader_epoch": epoch, "replica_nodes": [replica], "isr_nodes": [replica] if up else [],
                "offline_replicas": [] if up else [replica]}

    def replica(self, topic: str, partition: int) -> int:
        """The node id of the core holding the partition."""
        return self.node_of(owner_core(topic, partition, self.count))

    @property
    def controller(self) -> int:
        return self.node_id

    def leader(self, topic: str, partition: int) -> int:
        """The node id leading the partition, or -1 while its core is down."""
        core = owner_core(topic, partition, self.count)
        return self.node_of(core) if self.count == 1 or core in self.addresses else -1

    def answers_here(self, api_key: int, request, log) -> bool:
        """On a core other than 0: whether it answers this request itself (else core 0 does)."""
        if api_key == 3 and request.topics:   # Metadata: topics this core does not know may be created
            return all(t.name is None or t.name in log for t in request.topics)
        return api_key in LOCAL_APIS or api_key in EMPTY_ON_MEMBERS

    def brokers(self, listener: str) -> list[tuple[int, str, int]]:
        """(node id, host, port) of every live core on the listener a client came through."""
        out = []
        for core, by_name in sorted(self.addresses.items()):
            address = by_name.get(listener) or next(iter(by_name.values()))
            out.append((self.node_of(core), *address))
        return out
