"""DescribeCluster, DescribeLogDirs and OffsetForLeaderEpoch: this node, its data directory,
and leader epochs (a single node's partitions stay at their epoch, so every offset in the
log belongs to it).

Authorization is Kafka's: DescribeCluster is open to every client and tells the cluster's authorized
operations only to a principal that may DESCRIBE the cluster (0 to others); DescribeLogDirs needs
DESCRIBE on the cluster; OffsetForLeaderEpoch CLUSTER_ACTION (a replica) or DESCRIBE on each topic."""

from __future__ import annotations

import os
import shutil

from pstream.broker.dispatch import api
from pstream.broker.handlers.common import (
    NO_AUTHORIZED_OPERATIONS,
    live_brokers,
    authorized_operations,
    find_partition,
    leader_epoch_error,
)
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.describe_cluster import DescribeClusterResponse
from pstream.protocol.messages.describe_log_dirs import DescribeLogDirsResponse
from pstream.protocol.messages.offset_for_leader_epoch import OffsetForLeaderEpochResponse
from pstream.security.acls import CLUSTER_NAME, Operation, ResourceType

BROKERS_ENDPOINT, CONTROLLERS_ENDPOINT = 1, 2
# Kafka's codes for DescribeCluster v1 (KIP-919); not yet in pstream.protocol.error_codes.
MISMATCHED_ENDPOINT_TYPE, UNSUPPORTED_ENDPOINT_TYPE = 114, 115


@api("DescribeCluster", 0, 1)
def handle_describe_cluster(ctx, request):
    broker = ctx.broker
    if request.endpoint_type != BROKERS_ENDPOINT:
        # As Kafka's brokers answer (AuthHelper.computeDescribeClusterResponse): the controllers
        # endpoint type is asked of the controller quorum; any other type is unknown.
        if request.endpoint_type == CONTROLLERS_ENDPOINT:
            code, message = MISMATCHED_ENDPOINT_TYPE, ("The request was sent to an endpoint of type BROKER, "
                                                       "but we wanted an endpoint of type CONTROLLER")
        else:
            code, message = UNSUPPORTED_ENDPOINT_TYPE, f"Unsupported endpoint type {request.endpoint_type}"
        return DescribeClusterResponse(error_code=code, error_message=message, endpoint_type=BROKERS_ENDPOINT,
                                       cluster_id="", controller_id=-1,
                                       cluster_authorized_operations=NO_AUTHORIZED_OPERATIONS)
    operations = NO_AUTHORIZED_OPERATIONS
    if request.include_cluster_authorized_operations:   # Kafka's AuthHelper: 0 without DESCRIBE on the cluster
        operations = authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME) \
            if ctx.allowed_on_cluster(Operation.DESCRIBE) else 0
    return DescribeClusterResponse(
        throttle_time_ms=0, error_code=0, endpoint_type=BROKERS_ENDPOINT, cluster_id=broker.cluster_id,
        controller_id=broker.core_map.controller, cluster_authorized_operations=operations,
        brokers=[DescribeClusterResponse.DescribeClusterBroker(broker_id=node, host=host, port=port, rack=None)
                 for node, host, port in live_brokers(ctx)])


@api("DescribeLogDirs", 0, 4)
def handle_describe_log_dirs(ctx, request):
    if not ctx.allowed_on_cluster(Operation.DESCRIBE):   # v0-2 have no error code: just no directory
        return DescribeLogDirsResponse(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                                       results=[])
    log = ctx.broker.log
    wanted = None if request.topics is None else {t.topic: set(t.partitions) for t in request.topics}
    topics = []
    for name in log.topics():
        if wanted is not None and name not in wanted:
            continue
        topic = log.get_topic(name)
        parts = [DescribeLogDirsResponse.DescribeLogDirsPartition(
                    partition_index=p.number, partition_size=p.size_bytes(), offset_lag=0, is_future_key=False)
                 for p in topic if wanted is None or p.number in wanted[name]]
        topics.append(DescribeLogDirsResponse.DescribeLogDirsTopic(name=name, partitions=parts))
    usage = shutil.disk_usage(log.path)
    result = DescribeLogDirsResponse.DescribeLogDirsResult(error_code=0, log_dir=os.path.abspath(log.path),
                                                           topics=topics, total_bytes=usage.total,
                                                           usable_bytes=usage.free)
    return DescribeLogDirsResponse(throttle_time_ms=0, error_code=0, results=[result])


@api("OffsetForLeaderEpoch", 0, 4)
def handle_offset_for_leader_epoch(ctx, request):
    """Kafka answers the topics it may describe first, then the others (TOPIC_AUTHORIZATION_FAILED)."""
    topics, refused = [], []
    replica = ctx.allowed_on_cluster(Operation.CLUSTER_ACTION)
    for t in request.topics:
        if not replica and not ctx.allowed(Operation.DESCRIBE, ResourceType.TOPIC, t.topic):
            refused.append(OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(topic=t.topic, partitions=[
                OffsetForLeaderEpochResponse.EpochEndOffset(partition=p.partition, leader_epoch=-1, end_offset=-1,
                                                            error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                for p in t.partitions]))
            continue
        results = []
        for p in t.partitions:
            out = OffsetForLeaderEpochResponse.EpochEndOffset(partition=p.partition, leader_epoch=-1, end_offset=-1)
            part, error = find_partition(ctx.broker, t.topic, p.partition)
            if part is not None:
                error = leader_epoch_error(part, p.current_leader_epoch)
            if part is not None and not error and ctx.broker.cluster is not None:
                # The partition's epoch cache: where the asked epoch (or the last one before it) ended.
                out.leader_epoch, out.end_offset, error = ctx.broker.cluster.replicas.epoch_end(
                    t.topic, p.partition, p.leader_epoch)
            elif part is not None and not error and p.leader_epoch <= part.leader_epoch:
                # Every record is in the current epoch: an older epoch ends where the log starts.
                out.leader_epoch = p.leader_epoch if p.leader_epoch == part.leader_epoch else part.leader_epoch
                out.end_offset = part.high_watermark if p.leader_epoch == part.leader_epoch else part.log_start_offset
            out.error_code = error
            results.append(out)
        topics.append(OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(topic=t.topic, partitions=results))
    return OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=topics + refused)
