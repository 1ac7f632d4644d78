"""Partition administration: DescribeTopicPartitions (KIP-966), List/AlterPartitionReassignments,
ElectLeaders, AlterReplicaLogDirs, DescribeQuorum. In cluster mode reassignments and elections
are the cluster's (pstream/cluster/reassignment.py, election.py, written to etcd); the rest of
this doc is one node alone.

pstream is one node and its own controller: every partition has this node as its only replica,
its leader and its preferred leader; nothing is ever being reassigned; the data directory is the
only log directory. Each answer is the one Apache Kafka 3.9.2 gives a client in that state (asked
of a single-node KRaft Kafka), codes, messages and orders included, also where Kafka's answer is
odd (an empty topic name fails a whole DescribeTopicPartitions), so clients see one behaviour.
Nothing here changes the log.

Authorization is Kafka's: DescribeTopicPartitions shows only topics the principal may DESCRIBE (one
named and refused answers TOPIC_AUTHORIZATION_FAILED, after the others); listing reassignments and
DescribeQuorum need DESCRIBE on the cluster, changing reassignments, leaders or log dirs ALTER
(CLUSTER_AUTHORIZATION_FAILED at the top where the response has a place, and on every partition).
"""

from __future__ import annotations

import os
import time

from pstream.broker.dispatch import api
from pstream.broker.handlers.common import NO_AUTHORIZED_OPERATIONS, authorized_operations, find_topic
from pstream.cluster.reassignment import check_target
from pstream.coordinator import INTERNAL_TOPICS
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.alter_partition_reassignments import AlterPartitionReassignmentsResponse
from pstream.protocol.messages.alter_replica_log_dirs import AlterReplicaLogDirsResponse
from pstream.protocol.messages.describe_quorum import DescribeQuorumResponse
from pstream.protocol.messages.describe_topic_partitions import DescribeTopicPartitionsResponse
from pstream.protocol.messages.elect_leaders import ElectLeadersResponse
from pstream.protocol.messages.list_partition_reassignments import ListPartitionReassignmentsResponse
from pstream.protocol.primitives import ZERO_UUID
from pstream.security.acls import Operation, ResourceType

MAX_RESPONSE_PARTITIONS = 2000   # Kafka's max.request.partition.size.limit (default)
REFUSED = "Cluster authorization failed."

# --- DescribeTopicPartitions --------------------------------------------------------------------

DTP = DescribeTopicPartitionsResponse


def _dtp_refused(request, error: ErrorCode) -> DTP:
    """Kafka's answer to a request it rejects as a whole: each named topic with the error."""
    return DTP(throttle_time_ms=0, next_cursor=None, topics=[
        DTP.DescribeTopicPartitionsResponseTopic(error_code=error, name=t.name, topic_id=ZERO_UUID, is_internal=False,
                                                 partitions=[], topic_authorized_operations=NO_AUTHORIZED_OPERATIONS)
        for t in request.topics])


@api("DescribeTopicPartitions", 0, 0)
def handle_describe_topic_partitions(ctx, request):
    """Topics in name order from the cursor on, at most ResponsePartitionLimit partitions (1 to 2000,
    as Kafka clamps it); NextCursor names the first partition left out. Kafka's paging: a topic that
    fits exactly ends the page with a cursor at the next topic's partition 0, an unknown topic costs
    nothing, a cursor past a topic's last partition gives it an empty list. Topics the principal may
    not DESCRIBE are passed over as Kafka's lazy filter does (only those before the page ends are
    answered, when named); topic_authorized_operations is always filled in (the request has no flag)."""
    broker = ctx.broker
    cursor = request.cursor
    after = cursor.topic_name if cursor is not None else ""
    if request.topics:
        names = sorted({t.name for t in request.topics if t.name >= after})
        if cursor is not None and cursor.topic_name not in names:
            return _dtp_refused(request, ErrorCode.INVALID_REQUEST)
        if "" in names:   # Kafka fails the whole request on an empty name (its authorizer's resource check)
            return _dtp_refused(request, ErrorCode.UNKNOWN_SERVER_ERROR)
    else:
        names = [name for name in broker.log.topics() if name >= after]
    if cursor is not None and cursor.partition_index < 0:
        return _dtp_refused(request, ErrorCode.INVALID_REQUEST)
    remaining = max(1, min(MAX_RESPONSE_PARTITIONS, request.response_partition_limit))
    topics, next_cursor, refused = [], None, []
    for name in names:
        if not ctx.allowed(Operation.DESCRIBE, ResourceType.TOPIC, name):
            if request.topics:   # named: refused without telling whether it exists
                refused.append(DTP.DescribeTopicPartitionsResponseTopic(
                    error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, name=name, topic_id=ZERO_UUID, is_internal=False,
                    partitions=[], topic_authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        if remaining == 0:
            next_cursor = DTP.Cursor(topic_name=name, partition_index=0)
            break
        topic, error = find_topic(broker, name)
        out = DTP.DescribeTopicPartitionsResponseTopic(error_code=error, name=name, topic_id=ZERO_UUID,
                                                       is_internal=name in INTERNAL_TOPICS, partitions=[],
                                                       topic_authorized_operations=authorized_operations(
                                                           ctx, ResourceType.TOPIC, name))
        topics.append(out)
        if topic is None:
            continue
        first = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        end = min(topic.partitions, first + remaining)
        out.topic_id = topic.topic_id
        out.partitions = [DTP.DescribeTopicPartitionsResponsePartition(
            partition_index=index, eligible_leader_replicas=[], last_known_elr=[],
            **broker.core_map.leadership(topic, index)) for index in range(first, end)]
        if end < topic.partitions:
            next_cursor = DTP.Cursor(topic_name=name, partition_index=end)
            break
        remaining -= len(out.partitions)
    return DTP(throttle_time_ms=0, topics=topics + refused, next_cursor=next_cursor)


# --- reassignments ------------------------------------------------------------------------------

@api("ListPartitionReassignments", 0, 0)
def handle_list_partition_reassignments(ctx, request):
    """A reassignment to this node completes when asked, so none is ever in progress. Kafka lists
    only partitions being reassigned: names it does not know are left out, without an error."""
    L = ListPartitionReassignmentsResponse
    if not ctx.allowed_on_cluster(Operation.DESCRIBE):
        return L(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=REFUSED, topics=[])
    cluster = ctx.broker.cluster
    if cluster is None:
        return L(throttle_time_ms=0, error_code=0, error_message=None, topics=[])
    moving = cluster.reassignments()   # cluster mode: the partitions whose replicas are moving
    if request.topics is not None:
        asked = {(t.name, index) for t in request.topics for index in t.partition_indexes}
        moving = {key: record for key, record in moving.items() if key in asked}
    by_topic: dict[str, list] = {}
    for (name, index), record in sorted(moving.items()):
        by_topic.setdefault(name, []).append(L.OngoingPartitionReassignment(
            partition_index=index, replicas=list(record.replicas), adding_replicas=list(record.adding),
            removing_replicas=list(record.removing)))
    return L(throttle_time_ms=0, error_code=0, error_message=None,
             topics=[L.OngoingTopicReassignment(name=name, partitions=parts) for name, parts in by_topic.items()])


def _reassignment_error(broker, topic, name: str, index: int, replicas) -> tuple[int, str | None]:
    """Kafka's checks (ReplicationControlManager), in its order: topic, partition, cancel, then the
    replicas sorted, each registered and named once."""
    if topic is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find a topic named {name}."
    if not 0 <= index < topic.partitions:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {name}:{index}."
    if replicas is None:
        return ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, None
    error, message = check_target(replicas, {broker.node_id})
    if error:
        return error, message
    return ErrorCode.NONE, None   # [this node]: the partition's replicas already, nothing to move


@api("AlterPartitionReassignments", 0, 0)
def handle_alter_partition_reassignments(ctx, request):
    broker = ctx.broker
    R = AlterPartitionReassignmentsResponse
    if not ctx.allowed_on_cluster(Operation.ALTER):
        ctx.failed = True
        return R(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=REFUSED,
                 responses=[R.ReassignableTopicResponse(name=t.name, partitions=[
                     R.ReassignablePartitionResponse(partition_index=p.partition_index,
                                                     error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                                                     error_message=REFUSED) for p in t.partitions])
                     for t in request.topics])
    if broker.cluster is not None:
        return _reassign_in_cluster(broker.cluster, request)
    responses = []
    for t in request.topics:
        topic = broker.log.get_topic(t.name) if t.name in broker.log else None
        partitions = []
        for p in t.partitions:
            error, message = _reassignment_error(broker, topic, t.name, p.partition_index, p.replicas)
            partitions.append(R.ReassignablePartitionResponse(partition_index=p.partition_index, error_code=error,
                                                              error_message=message))
        responses.append(R.ReassignableTopicResponse(name=t.name, partitions=partitions))
    # Kafka 3.9 sends an empty message (not null) when the request names no topic.
    return R(throttle_time_ms=0, error_code=0, error_message=None if request.topics else "", responses=responses)


async def _reassign_in_cluster(cluster, request):
    """Cluster mode: each partition's move (or cancellation) written to etcd (reassignment.py);
    the replicas joining catch up, then the controller completes it."""
    R = AlterPartitionReassignmentsResponse
    responses = []
    for t in request.topics:
        topic = cluster.view.topics.get(t.name)
        partitions = []
        for p in t.partitions:
            if topic is None:
                error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find a topic named {t.name}."
            else:
                replicas = tuple(p.replicas) if p.replicas is not None else None
                error, message = await cluster.reassign(t.name, p.partition_index, replicas)
            partitions.append(R.ReassignablePartitionResponse(partition_index=p.partition_index, error_code=error,
                                                              error_message=message))
        responses.append(R.ReassignableTopicResponse(name=t.name, partitions=partitions))
    return R(throttle_time_ms=0, error_code=0, error_message=None if request.topics else "", responses=responses)


# --- ElectLeaders -------------------------------------------------------------------------------

PREFERRED, UNCLEAN = 0, 1
NOT_NEEDED = "Leader election not needed for topic partition."


@api("ElectLeaders", 0, 2)
def handle_elect_leaders(ctx, request):
    if ctx.broker.cluster is not None and ctx.allowed_on_cluster(Operation.ALTER) \
            and request.election_type in (PREFERRED, UNCLEAN):
        return _elect_in_cluster(ctx.broker.cluster, request)
    return _elect_on_one_node(ctx, request)


async def _elect_in_cluster(cluster, request):
    """Cluster mode: each partition's election written to etcd (election.elect_preferred and
    elect_unclean); asked for every partition, those needing none are left out, as Kafka does."""
    E = ElectLeadersResponse
    unclean = request.election_type == UNCLEAN
    if request.topic_partitions is None:
        asked = {}
        for name, index in sorted(cluster.view.partitions):
            asked.setdefault(name, []).append(index)
    else:
        asked = {t.topic: list(t.partitions) for t in request.topic_partitions}
    results = []
    for name, indexes in asked.items():
        out = []
        for index in indexes:
            error, message = await cluster.elect(name, index, unclean)
            if request.topic_partitions is None and error == ErrorCode.ELECTION_NOT_NEEDED:
                continue
            out.append(E.PartitionResult(partition_id=index, error_code=error, error_message=message))
        results.append(E.ReplicaElectionResult(topic=name, partition_result=out))
    return E(throttle_time_ms=0, error_code=0, replica_election_results=results)


def _elect_on_one_node(ctx, request):
    """This node leads every partition and is its preferred and only replica: a preferred or an
    unclean election is never needed (Kafka answers both so with one replica). For all partitions
    (null topics) Kafka leaves the partitions needing none out: each topic with an empty list."""
    log = ctx.broker.log
    E = ElectLeadersResponse
    asked = request.topic_partitions
    if not ctx.allowed_on_cluster(Operation.ALTER):   # v0 has no top-level error: the partitions carry it
        ctx.failed = True
        return E(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, replica_election_results=[
            E.ReplicaElectionResult(topic=t.topic, partition_result=[
                E.PartitionResult(partition_id=p, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                                  error_message=REFUSED) for p in t.partitions]) for t in asked or ()])
    if asked is not None and not asked:
        return E(throttle_time_ms=0, error_code=0, replica_election_results=[])
    if request.election_type not in (PREFERRED, UNCLEAN):
        message = f"Unknown election type {request.election_type}"
        return E(throttle_time_ms=0, error_code=ErrorCode.INVALID_REQUEST, replica_election_results=[
            E.ReplicaElectionResult(topic=t.topic, partition_result=[
                E.PartitionResult(partition_id=p, error_code=ErrorCode.INVALID_REQUEST, error_message=message)
                for p in t.partitions]) for t in asked or ()])
    if asked is None:
        return E(throttle_time_ms=0, error_code=0, replica_election_results=[
            E.ReplicaElectionResult(topic=name, partition_result=[]) for name in log.topics()])
    results = []
    for t in asked:
        topic = log.get_topic(t.topic) if t.topic in log else None
        out = []
        for p in t.partitions:
            if topic is None:
                error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"No such topic as {t.topic}"
            elif not 0 <= p < topic.partitions:
                error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"No such partition as {t.topic}-{p}"
            else:
                error, message = ErrorCode.ELECTION_NOT_NEEDED, NOT_NEEDED
            out.append(E.PartitionResult(partition_id=p, error_code=error, error_message=message))
        results.append(E.ReplicaElectionResult(topic=t.topic, partition_result=out))
    return E(throttle_time_ms=0, error_code=0, replica_election_results=results)


# --- AlterReplicaLogDirs ------------------------------------------------------------------------

# Kafka moves a replica through a "<topic>-<partition>.<32 hex>-future" directory, whose name must
# fit in 255 bytes: the '-', '.', id and suffix add 41 characters to the topic and partition.
FUTURE_DIR_EXTRA, MAX_FILE_NAME = 41, 255


def _log_dir_error(log, log_dir: str, name: str, index: int, path: str) -> ErrorCode:
    """Kafka's checks (ReplicaManager.alterReplicaLogDirs), in its order: the future directory's
    name, the destination (the exact string of a configured log dir), then the replica."""
    if len(name) + len(str(index)) + FUTURE_DIR_EXTRA > MAX_FILE_NAME:
        return ErrorCode.INVALID_TOPIC_EXCEPTION
    if path != log_dir:
        return ErrorCode.LOG_DIR_NOT_FOUND
    if name not in log or not 0 <= index < log.get_topic(name).partitions:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    return ErrorCode.NONE   # already there: nothing to move


@api("AlterReplicaLogDirs", 0, 2)
def handle_alter_replica_log_dirs(ctx, request):
    """The one log dir is named as DescribeLogDirs names it; moving a replica there is a no-op."""
    R = AlterReplicaLogDirsResponse
    if not ctx.allowed_on_cluster(Operation.ALTER):   # Kafka's getErrorResponse: each topic of each dir
        ctx.failed = True
        return R(throttle_time_ms=0, results=[R.AlterReplicaLogDirTopicResult(topic_name=t.name, partitions=[
            R.AlterReplicaLogDirPartitionResult(partition_index=index, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
            for index in t.partitions]) for d in request.dirs for t in d.topics])
    log = ctx.broker.log
    log_dir = os.path.abspath(log.path)
    destination = {}   # (topic, partition) -> path: a partition named twice goes to the last, as in Kafka's map
    for d in request.dirs:
        for t in d.topics:
            for index in t.partitions:
                destination[(t.name, index)] = d.path
    by_topic: dict[str, list] = {}
    for (name, index), path in destination.items():
        by_topic.setdefault(name, []).append(R.AlterReplicaLogDirPartitionResult(
            partition_index=index, error_code=_log_dir_error(log, log_dir, name, index, path)))
    return R(throttle_time_ms=0, results=[R.AlterReplicaLogDirTopicResult(topic_name=name, partitions=parts)
                                          for name, parts in by_topic.items()])


# --- DescribeQuorum -----------------------------------------------------------------------------

METADATA_TOPIC, METADATA_PARTITION = "__cluster_metadata", 0
QUORUM_EPOCH = 1   # elected once, at its first start, by its own vote; no other voter ever contests it
NOT_HOSTED = "This server does not host this topic-partition."


@api("DescribeQuorum", 0, 2)
def handle_describe_quorum(ctx, request):
    """A single-voter KRaft quorum led by this node (a 3.9 broker forwards DescribeQuorum to its
    controller; pstream is both). pstream keeps its metadata in files, not in a replicated log: the
    log Kafka would describe is empty, so its high watermark and the voter's log end offset are 0,
    and the voter, being the leader, is caught up now. Kafka answers only a request naming
    __cluster_metadata-0 alone; any other shape gets UNKNOWN_TOPIC_OR_PARTITION per partition."""
    broker = ctx.broker
    Q = DescribeQuorumResponse
    if not ctx.allowed_on_cluster(Operation.DESCRIBE):   # Kafka's getErrorResponse: the top-level code alone
        return Q(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, topics=[], nodes=[])
    asked = [(t.topic_name, p.partition_index) for t in request.topics for p in t.partitions]
    if asked != [(METADATA_TOPIC, METADATA_PARTITION)]:
        return Q(error_code=0, error_message="", nodes=[], topics=[
            Q.TopicData(topic_name=t.topic_name, partitions=[
                Q.PartitionData(partition_index=p.partition_index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                error_message=NOT_HOSTED, leader_id=0, leader_epoch=0, high_watermark=0,
                                current_voters=[], observers=[]) for p in t.partitions]) for t in request.topics])
    now_ms = int(time.time() * 1000)
    voter = Q.ReplicaState(replica_id=broker.node_id, replica_directory_id=ZERO_UUID, log_end_offset=0,
                           last_fetch_timestamp=now_ms, last_caught_up_timestamp=now_ms)
    partition = Q.PartitionData(partition_index=METADATA_PARTITION, error_code=0, error_message="",
                                leader_id=broker.node_id, leader_epoch=QUORUM_EPOCH, high_watermark=0,
                                current_voters=[voter], observers=[])
    return Q(error_code=0, error_message="", topics=[Q.TopicData(topic_name=METADATA_TOPIC, partitions=[partition])],
             nodes=[Q.Node(node_id=broker.node_id, listeners=[
                 Q.Listener(name=lis.name, host=lis.advertised[0], port=lis.advertised[1])
                 for lis in broker.listeners])])
