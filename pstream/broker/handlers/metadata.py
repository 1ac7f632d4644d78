"""Metadata: this node is every partition's leader and only replica (in cluster mode: every
registered broker, and each partition's leader, replicas and ISR from etcd); topics have real ids.

A name that does not exist is created when auto-creation is on (broker setting and, from
v4, the request's allow_auto_topic_creation), as Kafka does, with the default partitions.
Internal topics (`__consumer_offsets`) are listed with is_internal, as Kafka lists them.
"""

from __future__ import annotations

from pstream.broker.dispatch import api
from pstream.broker.handlers.common import (
    NO_AUTHORIZED_OPERATIONS,
    live_brokers,
    authorized_operations,
    find_topic,
)
from pstream.coordinator import INTERNAL_TOPICS, OFFSETS_TOPIC
from pstream.errors import PStreamError
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.metadata import MetadataResponse
from pstream.protocol.primitives import ZERO_UUID
from pstream.security.acls import CLUSTER_NAME, Operation, ResourceType

Topic = MetadataResponse.MetadataResponseTopic
PartitionInfo = MetadataResponse.MetadataResponsePartition


async def auto_create(broker, name: str):
    """Creates `name` with the broker's defaults, on the Log's disk pool; (topic or None, error code)."""
    if broker.cluster is not None and name in INTERNAL_TOPICS:   # with its coordinators' settings and size
        (broker.groups if name == OFFSETS_TOPIC else broker.transactions).ensure_topic()
        return None, ErrorCode.LEADER_NOT_AVAILABLE
    try:
        if broker.cluster is not None:
            topic = await broker.cluster.create_topic(name, broker.config.default_partitions, -1, {})
            if topic is None:   # created meanwhile, through another broker perhaps
                topic = await broker.cluster.local_topic(name)
        else:
            topic = await broker.log.create_topic_async(name, partitions=broker.config.default_partitions)
        if topic is None:   # created meanwhile by another request
            topic = broker.log.get_topic(name)
    except PStreamError as exc:
        return None, exc.kafka_error
    except ValueError:   # cluster mode: fewer brokers registered than the default replication factor
        return None, ErrorCode.INVALID_REPLICATION_FACTOR
    return topic, ErrorCode.NONE


def describe_topic(broker, topic, operations: int = NO_AUTHORIZED_OPERATIONS) -> Topic:
    partitions = [PartitionInfo(partition_index=number, **broker.core_map.leadership(topic, number))
                  for number in range(topic.partitions)]
    return Topic(error_code=0, name=topic.name, topic_id=topic.topic_id, is_internal=topic.name in INTERNAL_TOPICS,
                 topic_authorized_operations=operations, partitions=partitions)


@api("Metadata", 0, 12)
async def handle_metadata(ctx, request):
    """Topics the principal may not describe are left out of a listing of all and answered
    TOPIC_AUTHORIZATION_FAILED when named; auto-creation needs CREATE on the cluster or the topic."""
    broker = ctx.broker
    log = broker.log
    with_ops = ctx.version >= 8 and request.include_topic_authorized_operations

    def described(topic) -> Topic:
        ops = authorized_operations(ctx, ResourceType.TOPIC, topic.name) if with_ops else NO_AUTHORIZED_OPERATIONS
        return describe_topic(broker, topic, ops)

    if request.topics is None or (ctx.version == 0 and not request.topics):
        topics = [described(log.get_topic(name)) for name in log.topics()
                  if ctx.allowed(Operation.DESCRIBE, ResourceType.TOPIC, name)]
    else:
        allow_create = broker.config.auto_create_topics and (ctx.version < 4 or request.allow_auto_topic_creation)
        topics = []
        for wanted in request.topics:
            topic, error = find_topic(broker, wanted.name, wanted.topic_id)
            name = topic.name if topic is not None else wanted.name
            if name and not ctx.allowed(Operation.DESCRIBE, ResourceType.TOPIC, name):
                topic, error = None, ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif topic is None and error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION and allow_create:
                if ctx.allowed_on_cluster(Operation.CREATE) or ctx.allowed(Operation.CREATE, ResourceType.TOPIC, name):
                    topic, error = await auto_create(broker, wanted.name)
                else:
                    error = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            if topic is None:
                topics.append(Topic(error_code=error, name=wanted.name, topic_id=wanted.topic_id or ZERO_UUID,
                                    topic_authorized_operations=NO_AUTHORIZED_OPERATIONS))
            else:
                topics.append(described(topic))
    cluster_ops = NO_AUTHORIZED_OPERATIONS
    if 8 <= ctx.version <= 10 and request.include_cluster_authorized_operations:
        cluster_ops = authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)
    return MetadataResponse(
        throttle_time_ms=0,
        brokers=[MetadataResponse.MetadataResponseBroker(node_id=node, host=host, port=port, rack=None)
                 for node, host, port in live_brokers(ctx)],
        cluster_id=broker.cluster_id, controller_id=broker.core_map.controller, topics=topics,
        cluster_authorized_operations=cluster_ops)
