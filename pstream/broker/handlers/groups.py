"""Consumer groups on the wire: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups and OffsetDelete.

Each handler turns its request (any version) into a call on the broker's GroupCoordinator
(pstream/coordinator/groups.py) and the result back into the response of that version; the
rules live there. This node coordinates every group, and every transactional id (FindCoordinator
with key type 1; transactions.py serves those).
"""

from __future__ import annotations

from collections import defaultdict

from pstream.broker.dispatch import api
from pstream.broker.handlers.common import NO_AUTHORIZED_OPERATIONS, advertised, authorized_operations
from pstream.coordinator.offsets import CommittedOffset, now_ms
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.delete_groups import DeleteGroupsResponse
from pstream.protocol.messages.describe_groups import DescribeGroupsResponse
from pstream.protocol.messages.find_coordinator import FindCoordinatorResponse
from pstream.protocol.messages.heartbeat import HeartbeatResponse
from pstream.protocol.messages.join_group import JoinGroupResponse
from pstream.protocol.messages.leave_group import LeaveGroupResponse
from pstream.protocol.messages.list_groups import ListGroupsResponse
from pstream.protocol.messages.offset_commit import OffsetCommitResponse
from pstream.protocol.messages.offset_delete import OffsetDeleteResponse
from pstream.protocol.messages.offset_fetch import OffsetFetchResponse
from pstream.protocol.messages.sync_group import SyncGroupResponse
from pstream.security.acls import Operation, ResourceType

GROUP_KEY, TRANSACTION_KEY = 0, 1


def _client_host(ctx) -> str:
    """Kafka's form: the client's address as InetAddress.toString prints it ("/127.0.0.1")."""
    return "/" + ctx.connection.peer.rsplit(":", 1)[0]


def _group_denied(ctx, operation: Operation, group_id: str) -> bool:
    return not ctx.allowed(operation, ResourceType.GROUP, group_id)


def _topic_denied(ctx, operation: Operation, topic: str) -> bool:
    return not ctx.allowed(operation, ResourceType.TOPIC, topic)


def _by_topic(rows):
    """[(topic, item)] -> {topic: [item, ...]}, topics in first-seen order."""
    out = defaultdict(list)
    for topic, item in rows:
        out[topic].append(item)
    return out


# --- FindCoordinator ------------------------------------------------------------------------------

@api("FindCoordinator", 0, 6)
def handle_find_coordinator(ctx, request):
    broker = ctx.broker

    def answer(key: str):
        """(error, message, node id of the coordinator)."""
        if request.key_type == TRANSACTION_KEY:
            if not ctx.allowed(Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, key):
                return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "Transactional Id authorization failed.", -1
            if not broker.transactions.active:
                return ErrorCode.COORDINATOR_NOT_AVAILABLE, "the transaction coordinator is not running", -1
            return in_cluster(broker.transactions, key, "transaction")
        if request.key_type != GROUP_KEY:
            return ErrorCode.INVALID_REQUEST, f"unknown coordinator key type {request.key_type}", -1
        if _group_denied(ctx, Operation.DESCRIBE, key):
            return ErrorCode.GROUP_AUTHORIZATION_FAILED, "Group authorization failed.", -1
        if not broker.groups.active:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, "the group coordinator is not running", -1
        return in_cluster(broker.groups, key, "group")

    def in_cluster(shards, key: str, kind: str):
        """The node coordinating the key: this one alone; in a cluster the leader of the key's
        partition of the coordinators' topic."""
        if broker.cluster is None:
            return ErrorCode.NONE, None, broker.node_id
        node = shards.coordinator_node(key)
        if node < 0:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, f"the {kind}'s coordinator is not available yet", -1
        return ErrorCode.NONE, None, node

    def where(node: int):
        if node < 0:
            return -1, "", -1
        if broker.cluster is not None:
            record = broker.cluster.view.brokers.get(node)
            if record is None:
                return -1, "", -1
            listener = ctx.connection.listener.name if ctx.connection is not None else None
            return (node, *record.address(listener))
        return (node, *advertised(ctx))

    if ctx.version >= 4:
        coordinators = []
        for key in request.coordinator_keys:
            error, message, node = answer(key)
            node, host, port = where(node)
            coordinators.append(FindCoordinatorResponse.Coordinator(key=key, node_id=node, host=host, port=port,
                                                                    error_code=error, error_message=message))
        return FindCoordinatorResponse(throttle_time_ms=0, coordinators=coordinators)
    error, message, node = answer(request.key)
    node, host, port = where(node)
    return FindCoordinatorResponse(throttle_time_ms=0, error_code=error, error_message=message, node_id=node,
                                   host=host, port=port)


# --- membership -----------------------------------------------------------------------------------

@api("JoinGroup", 0, 9)
async def handle_join_group(ctx, request):
    v = ctx.version
    if _group_denied(ctx, Operation.READ, request.group_id):
        return JoinGroupResponse(throttle_time_ms=0, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, generation_id=-1,
                                 protocol_name=None if v >= 7 else "", leader="", member_id="", members=[])
    result = await ctx.broker.groups.for_group(request.group_id).join(
        request.group_id, request.member_id, request.group_instance_id, ctx.header.client_id or "",
        _client_host(ctx), request.session_timeout_ms,
        request.session_timeout_ms if v == 0 else request.rebalance_timeout_ms,   # v0 has no rebalance timeout
        request.protocol_type, [(p.name, bytes(p.metadata)) for p in request.protocols],
        require_known_member_id=v >= 4, supports_skip_assignment=v >= 9, reason=request.reason)
    return JoinGroupResponse(
        throttle_time_ms=0, error_code=result.error, generation_id=result.generation,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name if v >= 7 else result.protocol_name or "",
        leader=result.leader, skip_assignment=result.skip_assignment, member_id=result.member_id,
        members=[JoinGroupResponse.JoinGroupResponseMember(member_id=m, group_instance_id=i, metadata=md)
                 for m, i, md in result.members])


@api("SyncGroup", 0, 5)
async def handle_sync_group(ctx, request):
    if _group_denied(ctx, Operation.READ, request.group_id):
        return SyncGroupResponse(throttle_time_ms=0, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, assignment=b"")
    result = await ctx.broker.groups.for_group(request.group_id).sync(
        request.group_id, request.generation_id, request.member_id, request.group_instance_id,
        request.protocol_type, request.protocol_name, {a.member_id: bytes(a.assignment) for a in request.assignments})
    return SyncGroupResponse(throttle_time_ms=0, error_code=result.error, protocol_type=result.protocol_type,
                             protocol_name=result.protocol_name, assignment=result.assignment)


@api("Heartbeat", 0, 4)
def handle_heartbeat(ctx, request):
    if _group_denied(ctx, Operation.READ, request.group_id):
        return HeartbeatResponse(throttle_time_ms=0, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    error = ctx.broker.groups.for_group(request.group_id).heartbeat(
        request.group_id, request.generation_id, request.member_id, request.group_instance_id)
    return HeartbeatResponse(throttle_time_ms=0, error_code=error)


@api("LeaveGroup", 0, 5)
def handle_leave_group(ctx, request):
    if _group_denied(ctx, Operation.READ, request.group_id):
        return LeaveGroupResponse(throttle_time_ms=0, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, members=[])
    if ctx.version < 3:
        group_error, errors = ctx.broker.groups.for_group(request.group_id).leave(request.group_id,
                                                                                   [(request.member_id, None)])
        # One member, one error: the group's, else the member's (Kafka's LeaveGroupResponse for v0-v2).
        return LeaveGroupResponse(throttle_time_ms=0, error_code=group_error or next(iter(errors), 0))
    identities = [(m.member_id, m.group_instance_id) for m in request.members]
    group_error, errors = ctx.broker.groups.for_group(request.group_id).leave(request.group_id, identities)
    return LeaveGroupResponse(throttle_time_ms=0, error_code=group_error, members=[
        LeaveGroupResponse.MemberResponse(member_id=member_id, group_instance_id=instance_id, error_code=error)
        for (member_id, instance_id), error in zip(identities, errors)])


# --- offsets --------------------------------------------------------------------------------------

@api("OffsetCommit", 0, 9)
async def handle_offset_commit(ctx, request):
    v = ctx.version
    now = now_ms()
    retention = request.retention_time_ms if 2 <= v <= 4 else -1
    offsets = {}
    for t in request.topics:
        for p in t.partitions:
            offsets[(t.name, p.partition_index)] = CommittedOffset(
                offset=p.committed_offset, leader_epoch=p.committed_leader_epoch if p.committed_leader_epoch >= 0 else -1,
                metadata=p.committed_metadata or "",
                commit_ms=p.commit_timestamp if v == 1 and p.commit_timestamp != -1 else now,
                expire_ms=now + retention if retention != -1 else None)
    if _group_denied(ctx, Operation.READ, request.group_id):
        results = dict.fromkeys(offsets, ErrorCode.GROUP_AUTHORIZATION_FAILED)
    else:
        denied = {tp: ErrorCode.TOPIC_AUTHORIZATION_FAILED for tp in offsets if _topic_denied(ctx, Operation.READ, tp[0])}
        results = await ctx.broker.groups.for_group(request.group_id).commit(
            request.group_id, request.generation_id_or_member_epoch, request.member_id, request.group_instance_id,
            {tp: o for tp, o in offsets.items() if tp not in denied}, api_version=v) if len(denied) < len(offsets) \
            else {}
        results.update(denied)
    return OffsetCommitResponse(throttle_time_ms=0, topics=[
        OffsetCommitResponse.OffsetCommitResponseTopic(name=t.name, partitions=[
            OffsetCommitResponse.OffsetCommitResponsePartition(partition_index=p.partition_index,
                                                               error_code=results[(t.name, p.partition_index)])
            for p in t.partitions])
        for t in request.topics])


def _fetched_partitions(ctx, group_id, topics, require_stable, partition_cls, member=(None, -1)):
    """(group error, [(topic, partition response)]) for OffsetFetch; topics None: every committed one
    the principal may describe. member: the (member id, epoch) an OffsetFetch v9 names, checked in a
    consumer group."""
    coordinator = ctx.broker.groups.for_group(group_id)
    wanted = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
    if _group_denied(ctx, Operation.DESCRIBE, group_id):
        error, found = ErrorCode.GROUP_AUTHORIZATION_FAILED, {}
    else:
        error, found = coordinator.fetch_offsets(group_id, wanted, require_stable, *member)
    if error != ErrorCode.NONE:
        # Versions without a group error code carry it in every partition.
        return error, [(t, partition_cls(partition_index=p, committed_offset=-1, committed_leader_epoch=-1,
                                         metadata="", error_code=error)) for t, p in wanted or ()]
    rows = []
    for (topic, p), (committed, code) in found.items():
        if _topic_denied(ctx, Operation.DESCRIBE, topic):
            if wanted is None:
                continue   # not asked for by name: left out
            committed, code = None, ErrorCode.TOPIC_AUTHORIZATION_FAILED
        c = committed or CommittedOffset(-1)
        rows.append((topic, partition_cls(partition_index=p, committed_offset=c.offset,
                                          committed_leader_epoch=c.leader_epoch, metadata=c.metadata,
                                          error_code=code)))
    return ErrorCode.NONE, rows


@api("OffsetFetch", 0, 9)
def handle_offset_fetch(ctx, request):
    require_stable = ctx.version >= 7 and request.require_stable
    if ctx.version >= 8:
        groups = []
        for g in request.groups:
            error, rows = _fetched_partitions(ctx, g.group_id, g.topics, require_stable,
                                              OffsetFetchResponse.OffsetFetchResponsePartitions,
                                              (g.member_id, g.member_epoch))
            groups.append(OffsetFetchResponse.OffsetFetchResponseGroup(
                group_id=g.group_id, error_code=error,
                topics=[] if error else [OffsetFetchResponse.OffsetFetchResponseTopics(name=t, partitions=ps)
                                         for t, ps in _by_topic(rows).items()]))
        return OffsetFetchResponse(throttle_time_ms=0, groups=groups)
    error, rows = _fetched_partitions(ctx, request.group_id, request.topics, require_stable,
                                      OffsetFetchResponse.OffsetFetchResponsePartition)
    if error and ctx.version >= 2:
        rows = []
    return OffsetFetchResponse(throttle_time_ms=0, error_code=error, topics=[
        OffsetFetchResponse.OffsetFetchResponseTopic(name=t, partitions=ps) for t, ps in _by_topic(rows).items()])


@api("OffsetDelete", 0, 0)
async def handle_offset_delete(ctx, request):
    wanted = [(t.name, p.partition_index) for t in request.topics for p in t.partitions]
    if _group_denied(ctx, Operation.DELETE, request.group_id):
        return OffsetDeleteResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, throttle_time_ms=0, topics=[])
    denied = {tp: ErrorCode.TOPIC_AUTHORIZATION_FAILED for tp in wanted if _topic_denied(ctx, Operation.READ, tp[0])}
    error, results = await ctx.broker.groups.for_group(request.group_id).delete_offsets(
        request.group_id, [tp for tp in wanted if tp not in denied])
    results.update(denied)
    rows = [(t, OffsetDeleteResponse.OffsetDeleteResponsePartition(partition_index=p, error_code=code))
            for (t, p), code in results.items()]
    return OffsetDeleteResponse(error_code=error, throttle_time_ms=0, topics=[
        OffsetDeleteResponse.OffsetDeleteResponseTopic(name=t, partitions=ps) for t, ps in _by_topic(rows).items()])


# --- admin ----------------------------------------------------------------------------------------

@api("DescribeGroups", 0, 5)
def handle_describe_groups(ctx, request):
    described = []
    for group_id in request.groups:
        if _group_denied(ctx, Operation.DESCRIBE, group_id):
            described.append(DescribeGroupsResponse.DescribedGroup(
                error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, group_id=group_id, group_state="", protocol_type="",
                protocol_data="", authorized_operations=NO_AUTHORIZED_OPERATIONS, members=[]))
            continue
        s = ctx.broker.groups.for_group(group_id).describe(group_id)
        operations = NO_AUTHORIZED_OPERATIONS
        if ctx.version >= 3 and request.include_authorized_operations:
            operations = authorized_operations(ctx, ResourceType.GROUP, group_id)
        described.append(DescribeGroupsResponse.DescribedGroup(
            error_code=s.error, group_id=group_id, group_state=s.state, protocol_type=s.protocol_type,
            protocol_data=s.protocol, members=[
                DescribeGroupsResponse.DescribedGroupMember(
                    member_id=m.member_id, group_instance_id=m.instance_id, client_id=m.client_id,
                    client_host=m.client_host, member_metadata=m.metadata, member_assignment=m.assignment)
                for m in s.members], authorized_operations=operations))
    return DescribeGroupsResponse(throttle_time_ms=0, groups=described)


@api("ListGroups", 0, 5)
def handle_list_groups(ctx, request):
    states = request.states_filter if ctx.version >= 4 else None
    types = request.types_filter if ctx.version >= 5 else None
    coordinator = ctx.broker.groups   # None on a core other than 0, which coordinates no group
    error, groups = coordinator.list_groups(states, types) if coordinator is not None else (ErrorCode.NONE, [])
    if not ctx.allowed_on_cluster(Operation.DESCRIBE):   # without it, only the groups it may describe
        groups = [g for g in groups if not _group_denied(ctx, Operation.DESCRIBE, g[0])]
    return ListGroupsResponse(throttle_time_ms=0, error_code=error, groups=[
        ListGroupsResponse.ListedGroup(group_id=g, protocol_type=p, group_state=s, group_type=t)
        for g, p, s, t in groups])


@api("DeleteGroups", 0, 2)
async def handle_delete_groups(ctx, request):
    names = list(dict.fromkeys(request.groups_names))
    denied = {g: ErrorCode.GROUP_AUTHORIZATION_FAILED for g in names if _group_denied(ctx, Operation.DELETE, g)}
    results = await ctx.broker.groups.delete_groups([g for g in names if g not in denied]) if len(denied) < len(names) \
        else {}
    results.update(denied)
    return DeleteGroupsResponse(throttle_time_ms=0, results=[
        DeleteGroupsResponse.DeletableGroupResult(group_id=g, error_code=results[g]) for g in names])
