"""InitProducerId and DescribeProducers.

As in Kafka, a producer without a transactional id gets a fresh producer id at epoch 0 on
every InitProducerId; ids are never reused, across restarts too. One with a transactional id
gets its id's producer id and the next epoch from the transaction coordinator.

Authorization is Kafka's: WRITE on the transactional id, or for an idempotent producer
IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679); DescribeProducers needs READ on
the topic.
"""

from __future__ import annotations

from pstream.broker.dispatch import api
from pstream.broker.handlers.common import find_partition
from pstream.broker.handlers.transactions import fenced_for
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.describe_producers import DescribeProducersResponse
from pstream.protocol.messages.init_producer_id import InitProducerIdResponse
from pstream.security.acls import WILDCARD, Operation, PatternType, Permission, ResourceType


def _may_write_some_topic(ctx) -> bool:
    """Kafka's Authorizer.authorizeByResourceType(WRITE, TOPIC): allowed when the principal (or
    User:*) from this host has an ALLOW of WRITE or ALL on some topic pattern that no DENY of its own
    covers (a DENY on the literal name or on a prefix of it; a DENY on every topic refuses outright).
    Super users and allow.everyone.if.no.acl.found pass through Kafka's check of a made-up topic."""
    if ctx.allowed(Operation.WRITE, ResourceType.TOPIC, "hardcode"):
        return True
    conn = ctx.connection
    deny_literal, deny_prefix, allow = set(), set(), []
    for acl in ctx.broker.acls.by_type.get(ResourceType.TOPIC, ()):
        if (acl.principal not in (conn.principal, "User:*")
                or acl.host not in (conn.host, WILDCARD) or acl.operation not in (Operation.WRITE, Operation.ALL)):
            continue
        if acl.permission == Permission.DENY:
            if acl.pattern_type == PatternType.LITERAL:
                if acl.resource_name == WILDCARD:
                    return False
                deny_literal.add(acl.resource_name)
            elif acl.pattern_type == PatternType.PREFIXED:
                deny_prefix.add(acl.resource_name)
        elif acl.permission == Permission.ALLOW:
            if acl.pattern_type == PatternType.LITERAL and acl.resource_name == WILDCARD:
                return True
            if acl.pattern_type in (PatternType.LITERAL, PatternType.PREFIXED):
                allow.append(acl)
    for acl in allow:
        name = acl.resource_name
        if acl.pattern_type == PatternType.LITERAL and name in deny_literal:
            continue
        if not any(name[:n] in deny_prefix for n in range(1, len(name) + 1)):
            return True
    return False


@api("InitProducerId", 0, 5)
def handle_init_producer_id(ctx, request):
    if request.transactional_id is not None:
        if not ctx.allowed(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id):
            return _refused(ctx, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        return _init_transactional(ctx, request)
    if not ctx.allowed_on_cluster(Operation.IDEMPOTENT_WRITE) and not _may_write_some_topic(ctx):
        return _refused(ctx, ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    # In a cluster, ids come from blocks reserved in etcd: never this broker's own counter.
    producer_id = ctx.broker.producer_ids.allocate_reserved() if ctx.broker.cluster is None else None
    if producer_id is None:   # one call in ID_BLOCK reserves the next block: its fsync on the disk pool
        return _allocate_on_disk_pool(ctx.broker)
    return InitProducerIdResponse(throttle_time_ms=0, error_code=0, producer_id=producer_id, producer_epoch=0)


def _refused(ctx, error: ErrorCode) -> InitProducerIdResponse:
    ctx.failed = True
    return InitProducerIdResponse(throttle_time_ms=0, error_code=error, producer_id=-1, producer_epoch=-1)


async def _init_transactional(ctx, request) -> InitProducerIdResponse:
    error, producer_id, epoch = await ctx.broker.transactions.for_txn(request.transactional_id).init_producer_id(
        request.transactional_id, request.transaction_timeout_ms,
        request.producer_id if ctx.version >= 3 else -1, request.producer_epoch if ctx.version >= 3 else -1)
    ctx.failed = bool(error)
    return InitProducerIdResponse(throttle_time_ms=0, error_code=fenced_for(ctx.version, 4, error),
                                  producer_id=producer_id, producer_epoch=epoch)


async def _allocate_on_disk_pool(broker) -> InitProducerIdResponse:
    producer_id = await broker.allocate_producer_id()
    return InitProducerIdResponse(throttle_time_ms=0, error_code=0, producer_id=producer_id, producer_epoch=0)


@api("DescribeProducers", 0, 0)
async def handle_describe_producers(ctx, request):
    topics = []
    for t in request.topics:
        partitions = []
        for index in t.partition_indexes:
            out = DescribeProducersResponse.PartitionResponse(partition_index=index, active_producers=[])
            if not ctx.allowed(Operation.READ, ResourceType.TOPIC, t.name):
                out.error_code, out.error_message = ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed."
                partitions.append(out)
                continue
            part, out.error_code = find_partition(ctx.broker, t.name, index)
            if part is not None:
                state = await part.load_producer_state()   # a replay runs on the Log's disk pool
                out.active_producers = [DescribeProducersResponse.ProducerState(**p) for p in state.producers()]
            partitions.append(out)
        topics.append(DescribeProducersResponse.TopicResponse(name=t.name, partitions=partitions))
    return DescribeProducersResponse(throttle_time_ms=0, topics=topics)
