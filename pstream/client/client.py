"""A small synchronous Kafka client for operators: admin calls, produce, fetch, group state.

It speaks the Kafka protocol to any Kafka-compatible broker (pstream, Kafka, Redpanda):
bootstrap, metadata, one connection per broker, requests routed to partition leaders and
to group coordinators. Every call raises KafkaError with the error code and what was
asked when the broker refuses. It is what `pstream` commands are built on; it is not a
high-throughput producer (use librdkafka for that).

Versions are capped where this code fills in a version's fields (e.g. OffsetFetch v8
batches groups, Fetch v13 names topics by id): the cap is in each call.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from pstream import _core
from pstream.client.connection import BrokerConnection, KafkaError, Security, check
from pstream.client.wire import api_key, codec_classes
from pstream.protocol.error_codes import ErrorCode
from pstream.security import scram

LATEST, EARLIEST = -1, -2
TOPIC_RESOURCE, BROKER_RESOURCE = 2, 4
CONFIG_SOURCES = {0: "unknown", 1: "dynamic topic", 2: "dynamic broker", 3: "dynamic default broker",
                  4: "static broker", 5: "default", 6: "dynamic broker logger", 7: "client metrics",
                  8: "group"}
SET, DELETE = 0, 1   # IncrementalAlterConfigs operations
_RETRIABLE = {ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.COORDINATOR_NOT_AVAILABLE,
              ErrorCode.NOT_COORDINATOR, ErrorCode.LEADER_NOT_AVAILABLE}


@dataclass
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass
class PartitionInfo:
    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]
    error_code: int = 0
    offline: list[int] = field(default_factory=list)   # replicas on brokers that are down


@dataclass
class TopicInfo:
    name: str
    topic_id: object
    internal: bool
    partitions: list[PartitionInfo]
    error_code: int = 0


@dataclass
class ClusterMetadata:
    cluster_id: str | None
    controller_id: int
    brokers: dict[int, BrokerInfo]
    topics: dict[str, TopicInfo]


@dataclass
class ConfigEntry:
    name: str
    value: str | None
    source: str
    read_only: bool
    sensitive: bool


@dataclass
class FetchedPartition:
    high_watermark: int
    log_start_offset: int
    records: object   # the records field: back-to-back batches (may end in a partial one)
    error_code: int = 0


@dataclass
class GroupMember:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes
    assigned: dict[str, list[int]] | None = None   # a consumer-protocol (KIP-848) member's partitions


@dataclass
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: list[GroupMember] = field(default_factory=list)


@dataclass
class TransactionDescription:
    transactional_id: str
    state: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    start_ms: int
    partitions: list[tuple[str, int]]


GROUP_KEY, TRANSACTION_KEY = 0, 1   # FindCoordinator key types


class KafkaClient:
    def __init__(self, bootstrap: str, client_id: str = "pstream-cli", timeout: float = 30.0,
                 security: Security | None = None):
        self.bootstrap = [_split_address(a) for a in bootstrap.split(",") if a.strip()]
        if not self.bootstrap:
            raise KafkaError("no broker address given")
        self.client_id = client_id
        self.timeout = timeout
        self.security = security
        self._bootstrap_conn: BrokerConnection | None = None
        self._conns: dict[int, BrokerConnection] = {}
        self._brokers: dict[int, BrokerInfo] = {}
        self._leaders: dict[tuple[str, int], int] = {}

    def __enter__(self) -> KafkaClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for conn in {id(c): c for c in [*self._conns.values(), self._bootstrap_conn] if c}.values():
            conn.close()
        self._conns.clear()
        self._bootstrap_conn = None

    # --- connections ---------------------------------------------------------------

    def any_connection(self) -> BrokerConnection:
        if self._bootstrap_conn is None:
            errors = []
            for host, port in self.bootstrap:
                try:
                    self._bootstrap_conn = BrokerConnection(host, port, self.client_id, self.timeout, self.security)
                    break
                except KafkaError as exc:
                    errors.append(str(exc))
            else:
                raise KafkaError("; ".join(errors))
        return self._bootstrap_conn

    def connection(self, node_id: int) -> BrokerConnection:
        conn = self._conns.get(node_id)
        if conn is None:
            if node_id not in self._brokers:
                self.metadata([])
            info = self._brokers.get(node_id)
            if info is None:
                raise KafkaError(f"broker {node_id} is not in the cluster's metadata", ErrorCode.LEADER_NOT_AVAILABLE)
            boot = self.any_connection()
            if boot.address == f"{info.host}:{info.port}":
                conn = boot
            else:
                conn = BrokerConnection(info.host, info.port, self.client_id, self.timeout, self.security)
            self._conns[node_id] = conn
        return conn

    def _call_any(self, api: str, highest: int, request, timeout: float | None = None):
        conn = self.any_connection()
        return conn.call(api, conn.version(api, highest), request, timeout)

    # --- metadata ------------------------------------------------------------------

    def metadata(self, topics: list[str] | None = None, auto_create: bool = False) -> ClusterMetadata:
        """Brokers and topics (all of them when topics is None)."""
        req_cls, _ = codec_classes("Metadata")
        conn = self.any_connection()
        version = conn.version("Metadata", 12)
        wanted = None if topics is None else [req_cls.MetadataRequestTopic(name=t) for t in topics]
        if wanted is None and version == 0:
            wanted = []   # v0: an empty list means all topics
        resp = conn.call("Metadata", version, req_cls(topics=wanted, allow_auto_topic_creation=auto_create))
        brokers = {b.node_id: BrokerInfo(b.node_id, b.host, b.port, b.rack) for b in resp.brokers}
        self._brokers.update(brokers)
        out = {}
        for t in resp.topics:
            parts = sorted((PartitionInfo(p.partition_index, p.leader_id, list(p.replica_nodes), list(p.isr_nodes),
                                          p.error_code, list(p.offline_replicas or ()))
                            for p in t.partitions), key=lambda p: p.partition)
            out[t.name] = TopicInfo(t.name, t.topic_id, t.is_internal, parts, t.error_code)
            for p in parts:
                self._leaders[(t.name, p.partition)] = p.leader
        return ClusterMetadata(resp.cluster_id, resp.controller_id, brokers, out)

    def topic(self, name: str) -> TopicInfo:
        """One topic's metadata; KafkaError(UNKNOWN_TOPIC_OR_PARTITION) if it does not exist."""
        info = self.metadata([name]).topics.get(name)
        if info is None:
            raise KafkaError.from_code(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r}")
        check(info.error_code, f"topic {name!r}")
        return info

    def leader(self, topic: str, partition: int) -> BrokerConnection:
        node = self._leaders.get((topic, partition))
        if node is None:
            info = self.topic(topic)
            if not any(p.partition == partition for p in info.partitions):
                raise KafkaError(f"topic {topic!r} has no partition {partition} "
                                 f"(it has {len(info.partitions)})", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            node = self._leaders[(topic, partition)]
        if node < 0:
            raise KafkaError.from_code(ErrorCode.LEADER_NOT_AVAILABLE, f"{topic}-{partition}")
        return self.connection(node)

    def _by_leader(self, topic: str, partitions) -> list[tuple[BrokerConnection, list[int]]]:
        """The partitions grouped by their leader's connection, in the order given."""
        by_node: dict[int, list[int]] = {}
        for p in partitions:
            self.leader(topic, p)
            by_node.setdefault(self._leaders[(topic, p)], []).append(p)
        return [(self.connection(node), parts) for node, parts in by_node.items()]

    def describe_cluster(self):
        req_cls, _ = codec_classes("DescribeCluster")
        resp = self._call_any("DescribeCluster", 1, req_cls(endpoint_type=1))
        check(resp.error_code, "DescribeCluster", resp.error_message)
        return resp

    # --- topics --------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = -1,
                     configs: dict[str, str] | None = None, validate_only: bool = False) -> None:
        req_cls, _ = codec_classes("CreateTopics")
        topic = req_cls.CreatableTopic(
            name=name, num_partitions=partitions, replication_factor=replication_factor,
            configs=[req_cls.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()])
        resp = self._call_any("CreateTopics", 7, req_cls(topics=[topic], timeout_ms=int(self.timeout * 1000),
                                                          validate_only=validate_only))
        result = resp.topics[0]
        check(result.error_code, f"cannot create topic {name!r}", result.error_message)

    def delete_topic(self, name: str) -> None:
        req_cls, _ = codec_classes("DeleteTopics")
        resp = self._call_any("DeleteTopics", 5, req_cls(topic_names=[name], timeout_ms=int(self.timeout * 1000)))
        result = resp.responses[0]
        check(result.error_code, f"cannot delete topic {name!r}", result.error_message)

    def create_partitions(self, name: str, total: int) -> None:
        req_cls, _ = codec_classes("CreatePartitions")
        req = req_cls(topics=[req_cls.CreatePartitionsTopic(name=name, count=total, assignments=None)],
                      timeout_ms=int(self.timeout * 1000))
        result = self._call_any("CreatePartitions", 3, req).results[0]
        check(result.error_code, f"cannot grow topic {name!r} to {total} partitions", result.error_message)

    def describe_configs(self, name: str, resource_type: int = TOPIC_RESOURCE) -> list[ConfigEntry]:
        req_cls, _ = codec_classes("DescribeConfigs")
        req = req_cls(resources=[req_cls.DescribeConfigsResource(resource_type=resource_type, resource_name=name,
                                                                 configuration_keys=None)])
        result = self._call_any("DescribeConfigs", 4, req).results[0]
        check(result.error_code, f"cannot describe the configs of {name!r}", result.error_message)
        return [ConfigEntry(c.name, c.value, CONFIG_SOURCES.get(c.config_source, str(c.config_source)),
                            c.read_only, c.is_sensitive) for c in result.configs]

    def alter_configs(self, name: str, set_: dict[str, str] | None = None, delete: list[str] | None = None,
                      resource_type: int = TOPIC_RESOURCE) -> None:
        req_cls, _ = codec_classes("IncrementalAlterConfigs")
        configs = [req_cls.AlterableConfig(name=k, config_operation=SET, value=v) for k, v in (set_ or {}).items()]
        configs += [req_cls.AlterableConfig(name=k, config_operation=DELETE, value=None) for k in delete or ()]
        req = req_cls(resources=[req_cls.AlterConfigsResource(resource_type=resource_type, resource_name=name,
                                                              configs=configs)])
        result = self._call_any("IncrementalAlterConfigs", 1, req).responses[0]
        check(result.error_code, f"cannot alter the configs of {name!r}", result.error_message)

    def partition_sizes(self, topic: str) -> dict[int, int]:
        """partition -> bytes on disk, summed over the log dirs of every broker that has the topic."""
        req_cls, _ = codec_classes("DescribeLogDirs")
        info = self.topic(topic)
        nodes = {p.leader for p in info.partitions if p.leader >= 0}
        sizes: dict[int, int] = {}
        for node in sorted(nodes):
            conn = self.connection(node)
            req = req_cls(topics=[req_cls.DescribableLogDirTopic(
                topic=topic, partitions=[p.partition for p in info.partitions])])
            resp = conn.call("DescribeLogDirs", conn.version("DescribeLogDirs", 4), req)
            check(resp.error_code, f"DescribeLogDirs on {conn.address}")
            for result in resp.results:
                for t in result.topics:
                    for p in t.partitions:
                        if t.name == topic and not p.is_future_key:
                            sizes[p.partition_index] = sizes.get(p.partition_index, 0) + p.partition_size
        return sizes

    # --- offsets, produce, fetch ---------------------------------------------------

    def list_offsets(self, topic: str, partitions: list[int], timestamp: int) -> dict[int, tuple[int, int]]:
        """partition -> (offset, timestamp) for LATEST, EARLIEST or a timestamp in ms (offset -1: none that late)."""
        req_cls, _ = codec_classes("ListOffsets")
        out = {}
        for conn, parts in self._by_leader(topic, partitions):
            req = req_cls(replica_id=-1, isolation_level=0, topics=[req_cls.ListOffsetsTopic(
                name=topic, partitions=[req_cls.ListOffsetsPartition(partition_index=p, timestamp=timestamp)
                                        for p in parts])])
            for t in conn.call("ListOffsets", conn.version("ListOffsets", 8), req).topics:
                for p in t.partitions:
                    check(p.error_code, f"ListOffsets {topic}-{p.partition_index}")
                    out[p.partition_index] = (p.offset, p.timestamp)
        return out

    def produce(self, topic: str, partition: int, batch, acks: int = -1, timeout_ms: int = 30000) -> int:
        """Sends one record batch; returns its base offset (-1 with acks=0, which gets no answer)."""
        req_cls, _ = codec_classes("Produce")
        conn = self.leader(topic, partition)
        req = req_cls(transactional_id=None, acks=acks, timeout_ms=timeout_ms, topic_data=[
            req_cls.TopicProduceData(name=topic, partition_data=[
                req_cls.PartitionProduceData(index=partition, records=batch)])])
        version = conn.version("Produce", 11)
        if acks == 0:
            conn.send("Produce", version, req, expect_answer=False)
            return -1
        part = conn.call("Produce", version, req).responses[0].partition_responses[0]
        check(part.error_code, f"produce to {topic}-{partition}", part.error_message)
        return part.base_offset

    def fetch(self, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20,
              max_wait_ms: int = 500) -> FetchedPartition:
        """One partition from offset; KafkaError for its error code."""
        part = self.fetch_many(topic, {partition: offset}, max_bytes, max_wait_ms)[partition]
        check(part.error_code, f"fetch {topic}-{partition} at offset {offset}")
        return part

    def fetch_many(self, topic: str, offsets: dict[int, int], max_bytes: int = 1 << 20,
                   max_wait_ms: int = 500) -> dict[int, FetchedPartition]:
        """partition -> what one Fetch per leader (sent together, then awaited) returned from
        each offset; per-partition errors are in error_code, not raised."""
        req_cls, _ = codec_classes("Fetch")
        sent = []
        for conn, parts in self._by_leader(topic, sorted(offsets)):
            req = req_cls(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=max_bytes,
                          isolation_level=0, session_id=0, session_epoch=-1, topics=[req_cls.FetchTopic(
                              topic=topic, partitions=[req_cls.FetchPartition(
                                  partition=p, fetch_offset=offsets[p], partition_max_bytes=max_bytes)
                                  for p in parts])])
            sent.append((conn, conn.send("Fetch", conn.version("Fetch", 12), req)))
        out = {}
        for conn, cid in sent:
            resp = conn.receive(cid, timeout=self.timeout + max_wait_ms / 1000)
            check(resp.error_code, f"fetch {topic}")
            for t in resp.responses:
                for p in t.partitions:
                    if t.topic == topic and p.partition_index in offsets:
                        out[p.partition_index] = FetchedPartition(p.high_watermark, p.log_start_offset, p.records,
                                                                  p.error_code)
        missing = [p for p in offsets if p not in out]
        if missing:   # some brokers (Tansu) leave out partitions with nothing new
            for p, (end, _) in self.list_offsets(topic, missing, LATEST).items():
                out[p] = FetchedPartition(end, -1, None)
        return out

    # --- groups --------------------------------------------------------------------

    def coordinator(self, key: str, key_type: int = GROUP_KEY) -> BrokerConnection:
        """The connection to the coordinator of a group (or of a transactional id, key_type 1)."""
        req_cls, _ = codec_classes("FindCoordinator")
        what = f"{'group' if key_type == GROUP_KEY else 'transactional id'} {key!r}"
        for _attempt in range(20):
            resp = self._call_any("FindCoordinator", 3, req_cls(key=key, key_type=key_type))
            if resp.error_code in _RETRIABLE:
                time.sleep(0.1)
                continue
            check(resp.error_code, f"find the coordinator of {what}", resp.error_message)
            self._brokers.setdefault(resp.node_id, BrokerInfo(resp.node_id, resp.host, resp.port))
            return self.connection(resp.node_id)
        raise KafkaError.from_code(resp.error_code, f"find the coordinator of {what}")

    def list_transactions(self, states=()) -> list[tuple[str, int, str]]:
        """(transactional id, producer id, state) of every transactional id (in these states)."""
        req_cls, _ = codec_classes("ListTransactions")
        resp = self._call_any("ListTransactions", 1, req_cls(state_filters=list(states), producer_id_filters=[]))
        check(resp.error_code, "ListTransactions")
        if resp.unknown_state_filters:
            raise KafkaError.from_code(ErrorCode.INVALID_REQUEST, f"unknown transaction states "
                                                                  f"{', '.join(resp.unknown_state_filters)}")
        return sorted((t.transactional_id, t.producer_id, t.transaction_state) for t in resp.transaction_states)

    def describe_transaction(self, transactional_id: str) -> TransactionDescription:
        req_cls, _ = codec_classes("DescribeTransactions")
        conn = self.coordinator(transactional_id, TRANSACTION_KEY)
        t = conn.call("DescribeTransactions", 0, req_cls(transactional_ids=[transactional_id])).transaction_states[0]
        check(t.error_code, f"describe transactional id {transactional_id!r}")
        return TransactionDescription(t.transactional_id, t.transaction_state, t.producer_id, t.producer_epoch,
                                      t.transaction_timeout_ms, t.transaction_start_time_ms,
                                      sorted((topic.topic, p) for topic in t.topics for p in topic.partitions))

    def list_groups(self) -> list[tuple[str, str, str, str]]:
        """(group id, protocol type, state, type: "classic" or "consumer") of every group."""
        req_cls, _ = codec_classes("ListGroups")
        resp = self._call_any("ListGroups", 5, req_cls(states_filter=[], types_filter=[]))
        check(resp.error_code, "ListGroups")
        return sorted((g.group_id, g.protocol_type, g.group_state, g.group_type or "classic") for g in resp.groups)

    def describe_group(self, group: str) -> GroupDescription:
        """A classic group through DescribeGroups; a consumer-protocol group (which DescribeGroups
        reports as Dead) through ConsumerGroupDescribe, as Kafka's admin client does."""
        req_cls, _ = codec_classes("DescribeGroups")
        conn = self.coordinator(group)
        g = conn.call("DescribeGroups", conn.version("DescribeGroups", 5), req_cls(groups=[group])).groups[0]
        check(g.error_code, f"describe group {group!r}")
        if g.group_state == "Dead" and api_key("ConsumerGroupDescribe") in conn.versions:
            c = conn.call("ConsumerGroupDescribe", 0, codec_classes("ConsumerGroupDescribe")[0](group_ids=[group]))
            found = c.groups[0]
            if found.error_code == 0:
                return GroupDescription(found.group_id, found.group_state, "consumer", found.assignor_name, [
                    GroupMember(m.member_id, m.instance_id, m.client_id, m.client_host, b"", b"",
                                {t.topic_name: sorted(t.partitions) for t in m.assignment.topic_partitions})
                    for m in found.members])
        members = [GroupMember(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                               bytes(m.member_metadata), bytes(m.member_assignment)) for m in g.members]
        return GroupDescription(g.group_id, g.group_state, g.protocol_type, g.protocol_data, members)

    def committed_offsets(self, group: str, topics: dict[str, list[int]] | None = None) -> dict[tuple[str, int], int]:
        """(topic, partition) -> committed offset of a group (all it committed when topics is None)."""
        req_cls, _ = codec_classes("OffsetFetch")
        conn = self.coordinator(group)
        version = conn.version("OffsetFetch", 8)
        if version >= 8:   # KIP-709: groups batched in one request
            wanted = None if topics is None else [req_cls.OffsetFetchRequestTopics(name=t, partition_indexes=ps)
                                                  for t, ps in topics.items()]
            resp = conn.call("OffsetFetch", version, req_cls(groups=[req_cls.OffsetFetchRequestGroup(
                group_id=group, topics=wanted)]))
            answer = resp.groups[0]
            code, answered = answer.error_code, answer.topics
        else:
            wanted = None if topics is None else [req_cls.OffsetFetchRequestTopic(name=t, partition_indexes=ps)
                                                  for t, ps in topics.items()]
            resp = conn.call("OffsetFetch", version, req_cls(group_id=group, topics=wanted))
            code, answered = resp.error_code, resp.topics
        check(code, f"fetch the offsets of group {group!r}")
        out = {}
        for t in answered:
            for p in t.partitions:
                check(p.error_code, f"offset of group {group!r} on {t.name}-{p.partition_index}")
                if p.committed_offset >= 0:
                    out[(t.name, p.partition_index)] = p.committed_offset
        return out

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int], generation: int = -1,
                       member_id: str = "") -> None:
        req_cls, _ = codec_classes("OffsetCommit")
        by_topic: dict[str, list] = {}
        for (topic, partition), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append(req_cls.OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset, committed_metadata=""))
        conn = self.coordinator(group)
        req = req_cls(group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
                      group_instance_id=None, retention_time_ms=-1,
                      topics=[req_cls.OffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in by_topic.items()])
        for t in conn.call("OffsetCommit", conn.version("OffsetCommit", 8), req).topics:
            for p in t.partitions:
                check(p.error_code, f"commit group {group!r} offset on {t.name}-{p.partition_index}")

    # --- ACLs -------------------------------------------------------------------------

    def create_acls(self, acls: list) -> None:
        """acls: pstream.security.acls.Acl bindings to add."""
        req_cls, _ = codec_classes("CreateAcls")
        conn = self.any_connection()
        resp = conn.call("CreateAcls", conn.version("CreateAcls", 3), req_cls(creations=[req_cls.AclCreation(
            resource_type=a.resource_type, resource_name=a.resource_name, resource_pattern_type=a.pattern_type,
            principal=a.principal, host=a.host, operation=a.operation, permission_type=a.permission) for a in acls]))
        for acl, result in zip(acls, resp.results):
            check(result.error_code, f"create ACL {acl.permission.name} {acl.principal} {acl.operation.name} on "
                                     f"{acl.resource_type.name} {acl.resource_name}", result.error_message)

    def describe_acls(self, flt) -> list:
        """The ACLs matching an AclFilter, as Acl bindings."""
        from pstream.security.acls import Acl, Operation, PatternType, Permission, ResourceType
        req_cls, _ = codec_classes("DescribeAcls")
        conn = self.any_connection()
        resp = conn.call("DescribeAcls", conn.version("DescribeAcls", 3), req_cls(
            resource_type_filter=flt.resource_type, resource_name_filter=flt.resource_name,
            pattern_type_filter=flt.pattern_type, principal_filter=flt.principal, host_filter=flt.host,
            operation=flt.operation, permission_type=flt.permission))
        check(resp.error_code, "describe ACLs", resp.error_message)
        return [Acl(ResourceType(r.resource_type), r.resource_name, PatternType(r.pattern_type), a.principal, a.host,
                    Operation(a.operation), Permission(a.permission_type)) for r in resp.resources for a in r.acls]

    def delete_acls(self, flt) -> int:
        """Deletes the ACLs matching an AclFilter; returns how many."""
        req_cls, _ = codec_classes("DeleteAcls")
        conn = self.any_connection()
        resp = conn.call("DeleteAcls", conn.version("DeleteAcls", 3), req_cls(filters=[req_cls.DeleteAclsFilter(
            resource_type_filter=flt.resource_type, resource_name_filter=flt.resource_name,
            pattern_type_filter=flt.pattern_type, principal_filter=flt.principal, host_filter=flt.host,
            operation=flt.operation, permission_type=flt.permission)]))
        [result] = resp.filter_results
        check(result.error_code, "delete ACLs", result.error_message)
        return len(result.matching_acls)

    # --- SCRAM users ------------------------------------------------------------------

    def scram_users(self) -> dict[str, dict[str, int]]:
        """{user: {mechanism: iterations}} of every SCRAM user."""
        req_cls, _ = codec_classes("DescribeUserScramCredentials")
        conn = self.any_connection()
        resp = conn.call("DescribeUserScramCredentials", 0, req_cls(users=None))
        check(resp.error_code, "describe the SCRAM users", resp.error_message)
        names = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
        out = {}
        for r in resp.results:
            check(r.error_code, f"describe SCRAM user {r.user!r}", r.error_message)
            out[r.user] = {names.get(c.mechanism, str(c.mechanism)): c.iterations for c in r.credential_infos}
        return out

    def alter_scram_user(self, user: str, mechanism: str, password: str | None,
                         iterations: int = scram.MIN_ITERATIONS) -> None:
        """Sets the user's credential for `mechanism` (salted here: the password never leaves this
        process), or deletes it when password is None."""
        req_cls, _ = codec_classes("AlterUserScramCredentials")
        ids = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
        if mechanism not in ids:
            raise KafkaError(f"unknown SCRAM mechanism {mechanism!r} (SCRAM-SHA-256 or SCRAM-SHA-512)")
        if password is None:
            req = req_cls(deletions=[req_cls.ScramCredentialDeletion(name=user, mechanism=ids[mechanism])],
                          upsertions=[])
        else:
            salt = os.urandom(32)
            req = req_cls(deletions=[], upsertions=[req_cls.ScramCredentialUpsertion(
                name=user, mechanism=ids[mechanism], iterations=iterations, salt=salt,
                salted_password=scram.salted_password(mechanism, password.encode(), salt, iterations))])
        [result] = self.any_connection().call("AlterUserScramCredentials", 0, req).results
        check(result.error_code, f"{'delete' if password is None else 'set'} the {mechanism} credential of "
                                 f"{user!r}", result.error_message)

    def delete_records(self, topic: str, before: dict[int, int]) -> dict[int, int]:
        """DeleteRecords: drops the records of each partition below its offset (-1: the high
        watermark); returns each partition's new low watermark (log start offset)."""
        req_cls, _ = codec_classes("DeleteRecords")
        by_leader: dict[int, list[int]] = {}
        for partition in before:
            by_leader.setdefault(id(self.leader(topic, partition)), []).append(partition)
        out = {}
        for partitions in by_leader.values():
            conn = self.leader(topic, partitions[0])
            req = req_cls(topics=[req_cls.DeleteRecordsTopic(name=topic, partitions=[
                req_cls.DeleteRecordsPartition(partition_index=p, offset=before[p]) for p in partitions])],
                timeout_ms=int(self.timeout * 1000))
            for t in conn.call("DeleteRecords", conn.version("DeleteRecords", 2), req).topics:
                for p in t.partitions:
                    check(p.error_code, f"cannot delete records of {topic}-{p.partition_index}")
                    out[p.partition_index] = p.low_watermark
        return out

    def delete_offsets(self, group: str, partitions: list[tuple[str, int]]) -> None:
        """OffsetDelete: forgets the group's committed offsets of these partitions (Kafka refuses
        it for partitions the group's members are subscribed to)."""
        req_cls, _ = codec_classes("OffsetDelete")
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(partitions):
            by_topic.setdefault(topic, []).append(partition)
        conn = self.coordinator(group)
        req = req_cls(group_id=group, topics=[req_cls.OffsetDeleteRequestTopic(name=t, partitions=[
            req_cls.OffsetDeleteRequestPartition(partition_index=p) for p in ps]) for t, ps in by_topic.items()])
        resp = conn.call("OffsetDelete", conn.version("OffsetDelete", 0), req)
        check(resp.error_code, f"cannot delete offsets of group {group!r}")
        for t in resp.topics:
            for p in t.partitions:
                check(p.error_code, f"cannot delete the offset of group {group!r} on {t.name}-{p.partition_index}")

    def delete_group(self, group: str) -> None:
        req_cls, _ = codec_classes("DeleteGroups")
        conn = self.coordinator(group)
        result = conn.call("DeleteGroups", conn.version("DeleteGroups", 2), req_cls(groups_names=[group])).results[0]
        check(result.error_code, f"cannot delete group {group!r}")


def fetched_batches(records):
    """(BatchHeader, [Record]) of each whole batch in a fetched records field; CorruptBatchError
    for a bad one. A trailing partial batch, which Kafka may send, is skipped."""
    if not records:
        return
    view = memoryview(records)
    cut = _core.cut_batches(view)
    for start, end in cut:
        yield _core.decode_batch(view[start:end])
    if cut.stop == _core.CUT_CORRUPT:
        _core.decode_batch(view[cut.end:])   # raises: a length that no batch has


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise KafkaError(f"broker address {address.strip()!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
