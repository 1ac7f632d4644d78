"""Lookups every handler shares: topics by name or id, partitions, with Kafka's error codes."""

from __future__ import annotations

import uuid

from pstream.coordinator import INTERNAL_TOPICS
from pstream.errors import InvalidTopicError
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.primitives import ZERO_UUID
from pstream.storage import layout

NO_AUTHORIZED_OPERATIONS = -2147483648   # Kafka's "not requested / not computed" marker


def authorized_operations(ctx, resource_type, name: str) -> int:
    """KIP-430's bit field of what the connection's principal may do on the resource (every
    operation the resource type has when authorization is off, as Kafka answers)."""
    conn = ctx.connection
    principal, host = (conn.principal, conn.host) if conn is not None else ("User:ANONYMOUS", "127.0.0.1")
    return ctx.broker.authorizer.authorized_operations(principal, host, resource_type, name)


def advertised(ctx) -> tuple[str, int]:
    """(host, port) clients are told for this node: the address of the listener the request came in
    on (Kafka advertises each client the listener it connected through)."""
    if ctx.connection is None:   # a request made in process: the first listener's
        return ctx.broker.host, ctx.broker.port
    return ctx.connection.listener.advertised


def live_brokers(ctx) -> list[tuple[int, str, int]]:
    """(node id, host, port) of every broker of this node a client may reach: this one, or with
    `--cores N` each live core, at the listener the request came through."""
    cores = ctx.broker.core_map   # with --cluster: the ClusterNode, every registered broker
    if cores.count == 1 and ctx.broker.cluster is None:
        return [(ctx.broker.node_id, *advertised(ctx))]
    listener = ctx.connection.listener.name if ctx.connection is not None else ctx.broker.listeners[0].name
    return cores.brokers(listener)


def find_topic(broker, name: str | None, topic_id: uuid.UUID | None = None):
    """(topic or None, error code). By id when an id is given (Fetch v13+, Metadata v10+)."""
    log = broker.log
    if topic_id is not None and topic_id != ZERO_UUID and not name:
        for candidate in log.topics():
            topic = log.get_topic(candidate)
            if topic.topic_id == topic_id:
                return topic, ErrorCode.NONE
        return None, ErrorCode.UNKNOWN_TOPIC_ID
    if name is None:
        return None, ErrorCode.INVALID_TOPIC_EXCEPTION
    if name in log:
        return log.get_topic(name), ErrorCode.NONE
    try:
        layout.check_topic_name(name)
    except InvalidTopicError as exc:
        return None, exc.kafka_error
    return None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def find_partition(broker, name: str | None, index: int, topic_id: uuid.UUID | None = None):
    """(partition or None, error code)."""
    topic, error = find_topic(broker, name, topic_id)
    if topic is None:
        return None, error
    if not 0 <= index < topic.partitions:
        return None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if not topic.owns(index):   # another core leads it (pstream serve --cores)
        return None, ErrorCode.NOT_LEADER_OR_FOLLOWER
    if broker.cluster is not None and not broker.cluster.replicas.is_leader(topic.name, index):
        return None, ErrorCode.NOT_LEADER_OR_FOLLOWER   # another broker of the cluster leads it
    return topic.partition(index), ErrorCode.NONE


def partition_exists(broker, name: str, index: int) -> bool:
    """Whether the topic has that partition, on whichever core (what coordinators check)."""
    topic, _ = find_topic(broker, name)
    return topic is not None and 0 <= index < topic.partitions


def leader_epoch_error(part, current_leader_epoch: int) -> ErrorCode:
    """Kafka's fencing check on a client's view of the leader epoch (-1: no check)."""
    if current_leader_epoch < 0 or current_leader_epoch == part.leader_epoch:
        return ErrorCode.NONE
    return ErrorCode.FENCED_LEADER_EPOCH if current_leader_epoch < part.leader_epoch else ErrorCode.UNKNOWN_LEADER_EPOCH


def internal_topic_error(name: str | None) -> str | None:
    """Why clients may not write, delete or reshape an internal topic (None if `name` is not one)."""
    if name in INTERNAL_TOPICS:
        return f"{name} is an internal topic: only the broker writes, deletes or changes it"
    return None
