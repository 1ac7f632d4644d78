"""Consumer groups of the new protocol (KIP-848) on the wire: ConsumerGroupHeartbeat and
ConsumerGroupDescribe. The rules live in pstream/coordinator/consumer_groups.py; these handlers
only translate topic ids and the request's nullable fields."""

from __future__ import annotations

from pstream.broker.dispatch import api
from pstream.broker.handlers.common import NO_AUTHORIZED_OPERATIONS, authorized_operations
from pstream.broker.handlers.groups import _client_host
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.consumer_group_describe import ConsumerGroupDescribeResponse as CGD
from pstream.protocol.messages.consumer_group_heartbeat import ConsumerGroupHeartbeatResponse as CGH
from pstream.security.acls import Operation, ResourceType


@api("ConsumerGroupHeartbeat", 0, 1)
def handle_consumer_group_heartbeat(ctx, request):
    if not ctx.allowed(Operation.READ, ResourceType.GROUP, request.group_id):
        return CGH(throttle_time_ms=0, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED,
                   error_message="Group authorization failed.")
    names = request.subscribed_topic_names or ()
    if any(not ctx.allowed(Operation.DESCRIBE, ResourceType.TOPIC, name) for name in names):
        # as Kafka's KafkaApis: a member may subscribe only to topics it may describe
        return CGH(throttle_time_ms=0, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                   error_message="Topic authorization failed.")
    owned = None
    if request.topic_partitions is not None:
        owned = [(t.topic_id, list(t.partitions)) for t in request.topic_partitions]
    result = ctx.broker.groups.for_group(request.group_id).consumer.heartbeat(
        ctx.version, request.group_id, request.member_id, request.member_epoch, request.instance_id,
        request.rack_id, request.rebalance_timeout_ms, request.subscribed_topic_names,
        request.subscribed_topic_regex, request.server_assignor, owned, ctx.header.client_id or "",
        _client_host(ctx), may_describe=_describable(ctx) if ctx.broker.authorizer.enabled else None)
    if result.error != ErrorCode.NONE:
        return CGH(throttle_time_ms=0, error_code=result.error, error_message=result.message)
    assignment = None
    if result.assignment is not None:
        assignment = CGH.Assignment(topic_partitions=[
            CGH.TopicPartitions(topic_id=topic, partitions=sorted(parts))
            for topic, parts in sorted(result.assignment.items(), key=lambda kv: str(kv[0])) if parts])
    return CGH(throttle_time_ms=0, error_code=0, member_id=result.member_id, member_epoch=result.epoch,
               heartbeat_interval_ms=result.interval_ms, assignment=assignment)


def _describable(ctx):
    """(topic name) -> whether this connection's principal may describe it (bound now, not to ctx)."""
    conn, authorizer = ctx.connection, ctx.broker.authorizer
    principal, host = conn.principal, conn.host
    return lambda name: authorizer.authorize(principal, host, Operation.DESCRIBE, ResourceType.TOPIC, name)


def _assignment(assignment: dict, names: dict) -> CGD.Assignment:
    rows = [(names[topic], topic, parts) for topic, parts in assignment.items() if parts and topic in names]
    return CGD.Assignment(topic_partitions=[CGD.TopicPartitions(topic_id=topic, topic_name=name,
                                                                partitions=sorted(parts))
                                            for name, topic, parts in sorted(rows, key=lambda r: r[0])])


@api("ConsumerGroupDescribe", 0, 0)
def handle_consumer_group_describe(ctx, request):
    log = ctx.broker.log
    names = {log.get_topic(name).topic_id: name for name in log.topics()}
    described = []
    for group_id in request.group_ids:
        error, message, group = ctx.broker.groups.for_group(group_id).consumer.describe(group_id)
        if not ctx.allowed(Operation.DESCRIBE, ResourceType.GROUP, group_id):
            error, message, group = ErrorCode.GROUP_AUTHORIZATION_FAILED, "Group authorization failed.", None
        if group is None:
            described.append(CGD.DescribedGroup(error_code=error, error_message=message, group_id=group_id,
                                                authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        members = [CGD.Member(member_id=m.member_id, instance_id=m.instance_id, rack_id=m.rack_id,
                              member_epoch=m.epoch, client_id=m.client_id, client_host=m.client_host,
                              subscribed_topic_names=list(m.subscribed_names),
                              subscribed_topic_regex=m.subscribed_regex,
                              assignment=_assignment(m.assigned, names),
                              target_assignment=_assignment(group.target.get(m.member_id, {}), names))
                   for m in group.members.values()]
        described.append(CGD.DescribedGroup(
            error_code=0, group_id=group_id, group_state=group.state.value, group_epoch=group.epoch,
            assignment_epoch=group.assignment_epoch, assignor_name=group.assignor, members=members,
            authorized_operations=authorized_operations(ctx, ResourceType.GROUP, group_id)
            if request.include_authorized_operations else NO_AUTHORIZED_OPERATIONS))
    return CGD(throttle_time_ms=0, groups=described)
