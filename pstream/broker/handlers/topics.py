"""CreateTopics, DeleteTopics, CreatePartitions and DeleteRecords.

One node: a replication factor other than 1 (or -1, the default) is refused with
INVALID_REPLICATION_FACTOR, and manual assignments may only name this node. In cluster mode
topics are created, grown and deleted in etcd (pstream/cluster/node.py), with a replication
factor up to the registered brokers and manual assignments of registered brokers; every broker
then creates, grows or deletes its own copy.

Every change to the disk (directories, files, fsyncs, renames, rmtree, the log start
checkpoint) runs on the Log's disk pool and is awaited: the event loop keeps serving other
requests meanwhile. The checks run on the loop first, in Kafka's order.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from pstream.broker.dispatch import api
from pstream.broker.handlers.common import find_partition, find_topic, internal_topic_error
from pstream.broker.topic_configs import TOPIC_CONFIG_NAMES, describe_topic_config, parse_topic_configs
from pstream.cluster.reassignment import check_target
from pstream.errors import ClusterUnavailableError, ConfigError, InvalidTopicError, PStreamError, UnknownTopicError
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.create_partitions import CreatePartitionsResponse
from pstream.protocol.messages.create_topics import CreateTopicsResponse
from pstream.protocol.messages.delete_records import DeleteRecordsResponse
from pstream.protocol.messages.delete_topics import DeleteTopicsResponse
from pstream.protocol.primitives import ZERO_UUID
from pstream.security.acls import Operation, ResourceType
from pstream.storage import layout
from pstream.storage.config import TopicConfig

MAX_PARTITIONS = 10_000   # per topic: each partition holds files and write buffers
DUPLICATE_NAME = "Duplicate topic name."   # Kafka's message, for a name given twice in one request


class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


def _replica_lists(broker, assignments, factor: int | None = None) -> list[tuple[int, ...]]:
    """Manual assignments as Kafka checks them (ReplicationControlManager): each list not empty,
    of registered brokers named once, all as long as the first (or as `factor`, the topic's)."""
    registered = broker.cluster.view.live() if broker.cluster is not None else {broker.node_id}
    lists = []
    for replicas in assignments:
        code, message = check_target(replicas, registered)
        if code:
            raise _Refused(code, message)
        if factor is not None and len(replicas) != factor:
            raise _Refused(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                           f"The manual partition assignment includes a partition with {len(replicas)} replica(s), "
                           f"but this is not consistent with previous partitions, which have {factor} replica(s).")
        factor = len(replicas)
        lists.append(tuple(replicas))
    return lists


def _check_replication(broker, replication_factor: int) -> int:
    """The replication factor in force: up to the registered brokers (one, without a cluster)."""
    if broker.cluster is not None:
        try:
            return broker.cluster.check_replication_factor(replication_factor)
        except ValueError as exc:
            raise _Refused(ErrorCode.INVALID_REPLICATION_FACTOR, str(exc)) from None
    if replication_factor not in (-1, 1):
        raise _Refused(ErrorCode.INVALID_REPLICATION_FACTOR,
                       f"Unable to replicate the partition {replication_factor} time(s): The target replication "
                       f"factor of {replication_factor} cannot be reached because only 1 broker(s) are registered.")
    return 1


def _check_partition_count(count: int) -> None:
    if count <= 0:
        raise _Refused(ErrorCode.INVALID_PARTITIONS, f"Number of partitions must be larger than 0, got {count}.")
    if count > MAX_PARTITIONS:
        raise _Refused(ErrorCode.INVALID_PARTITIONS, f"at most {MAX_PARTITIONS} partitions per topic, got {count}")


def _collision_key(name: str) -> str:
    """Kafka's metric-name collision rule: '.' and '_' are the same character."""
    return name.replace(".", "_")


def _check_collision(broker, name: str) -> None:
    if "." not in name and "_" not in name:
        return
    key = _collision_key(name)
    for existing in broker.log.topics():
        if existing != name and _collision_key(existing) == key:
            raise _Refused(ErrorCode.INVALID_TOPIC_EXCEPTION,
                           f"Topic '{name}' collides with existing topic: {existing}")


async def _create_one(broker, t, validate_only: bool, version: int):
    """Checks in Kafka's (KRaft's) order: the name, an existing topic, the configs, then the
    partition count and replication factor."""
    result = CreateTopicsResponse.CreatableTopicResult(name=t.name, topic_id=ZERO_UUID, error_code=0,
                                                       num_partitions=-1, replication_factor=-1, configs=None)
    try:
        try:
            layout.check_topic_name(t.name)
        except InvalidTopicError as exc:
            raise _Refused(ErrorCode.INVALID_TOPIC_EXCEPTION, exc.message) from None  # Kafka's words only
        if internal_topic_error(t.name):
            # The broker creates its internal topics with its own settings (a client's retention.ms
            # on __consumer_offsets once made committed offsets vanish).
            raise _Refused(ErrorCode.INVALID_TOPIC_EXCEPTION,
                           f"{t.name} is an internal topic: only the broker creates it, with its own settings")
        if t.name in broker.log or (broker.cluster is not None and t.name in broker.cluster.view.topics):
            raise _Refused(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{t.name}' already exists.")
        _check_collision(broker, t.name)
        try:
            settings = parse_topic_configs((c.name, c.value) for c in t.configs)
            TopicConfig.from_kwargs(broker.log.defaults, **settings)
        except ConfigError as exc:
            raise _Refused(ErrorCode.INVALID_CONFIG, str(exc)) from None
        if t.assignments:
            if t.num_partitions != -1 or t.replication_factor != -1:
                raise _Refused(ErrorCode.INVALID_REQUEST, "Both numPartitions or replicationFactor and "
                                                          "replicasAssignments were set. Both cannot be used "
                                                          "at the same time.")
            ordered = sorted(t.assignments, key=lambda a: a.partition_index)
            if [a.partition_index for a in ordered] != list(range(len(ordered))):
                raise _Refused(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                               "partitions should be a consecutive 0-based integer sequence")
            assignments = _replica_lists(broker, [a.broker_ids for a in ordered])
            count = len(t.assignments)
        else:
            if t.num_partitions == 0 or t.num_partitions < -1:
                raise _Refused(ErrorCode.INVALID_PARTITIONS,
                               "Number of partitions was set to an invalid non-positive value.")
            if t.replication_factor == 0 or t.replication_factor < -1:
                raise _Refused(ErrorCode.INVALID_REPLICATION_FACTOR,
                               "Replication factor must be larger than 0, or -1 to use the default value.")
            count = broker.config.default_partitions if t.num_partitions == -1 else t.num_partitions
            assignments = None
        _check_partition_count(count)
        factor = len(assignments[0]) if assignments else _check_replication(broker, t.replication_factor)
        topic = None
        if not validate_only:
            try:
                if broker.cluster is not None:
                    topic = await broker.cluster.create_topic(t.name, count, factor,
                                                              {c.name: c.value for c in t.configs}, assignments)
                else:
                    topic = await broker.log.create_topic_async(t.name, partitions=count, **settings)
            except ConfigError as exc:
                raise _Refused(ErrorCode.INVALID_CONFIG, str(exc)) from None
            except ClusterUnavailableError as exc:
                raise _Refused(exc.kafka_error, str(exc)) from None
            if topic is None:   # created meanwhile by another request
                raise _Refused(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{t.name}' already exists.")
        result.num_partitions, result.replication_factor = count, factor
        if topic is not None:
            result.topic_id = topic.topic_id
            result.configs = [_created_config(broker, topic, name) for name in TOPIC_CONFIG_NAMES]
    except _Refused as refused:
        result.error_code, result.error_message = refused.code, str(refused)
    return result


def _created_config(broker, topic, name):
    value, source, _ = describe_topic_config(name, topic, broker)
    return CreateTopicsResponse.CreatableTopicConfigs(name=name, value=value, read_only=False,
                                                      config_source=source, is_sensitive=False)


THROTTLED = "The throttling quota has been exceeded."


def _mutation(ctx, partitions: int, strict: bool) -> tuple[bool, int]:
    """KIP-599: may this many partitions be created or deleted now (controller_mutation_rate), and
    how long the client should back off."""
    conn = ctx.connection
    principal = conn.principal if conn is not None else "User:ANONYMOUS"
    return ctx.broker.quota_enforcer.mutation(principal, ctx.header.client_id or "", partitions, strict,
                                              time.monotonic())


@api("CreateTopics", 0, 7)
async def handle_create_topics(ctx, request):
    names = Counter(t.name for t in request.topics)
    results, answered = [], set()
    throttle = 0
    may_create = ctx.allowed_on_cluster(Operation.CREATE)   # else CREATE on each topic
    for t in request.topics:
        if names[t.name] > 1:
            # As Kafka: a name given twice is refused (once in the answer), and neither is created.
            if t.name not in answered:
                answered.add(t.name)
                results.append(CreateTopicsResponse.CreatableTopicResult(
                    name=t.name, error_code=ErrorCode.INVALID_REQUEST, num_partitions=-1, replication_factor=-1,
                    error_message=DUPLICATE_NAME, configs=None))
            continue
        if not (may_create or ctx.allowed(Operation.CREATE, ResourceType.TOPIC, t.name)):
            results.append(CreateTopicsResponse.CreatableTopicResult(
                name=t.name, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, num_partitions=-1, replication_factor=-1,
                error_message="Authorization failed.", configs=None))
            continue
        if not request.validate_only:
            count = len(t.assignments) if t.assignments else t.num_partitions
            allowed, wait = _mutation(ctx, count if count > 0 else ctx.broker.config.default_partitions,
                                      strict=ctx.version >= 6)
            throttle = max(throttle, wait)
            if not allowed:
                results.append(CreateTopicsResponse.CreatableTopicResult(
                    name=t.name, error_code=ErrorCode.THROTTLING_QUOTA_EXCEEDED, num_partitions=-1,
                    replication_factor=-1, error_message=THROTTLED, configs=None))
                continue
        result = await _create_one(ctx.broker, t, request.validate_only, ctx.version)
        if result.configs and not ctx.allowed(Operation.DESCRIBE_CONFIGS, ResourceType.TOPIC, t.name):
            result.configs, result.topic_config_error_code = None, ErrorCode.TOPIC_AUTHORIZATION_FAILED
        results.append(result)
    return CreateTopicsResponse(throttle_time_ms=throttle, topics=results)


def _deletion_targets(version: int, request) -> tuple[list, list]:
    """(targets [(name, topic id)], refusals [(name, topic id, message)]) with Kafka's checks
    (ControllerApis.deleteTopics): a row needs a name or an id but not both, and a topic may be
    named only once, by name or by id."""
    if version < 6:
        rows = [(name, None) for name in request.topic_names]
    else:
        rows = [(s.name, None if s.topic_id == ZERO_UUID else s.topic_id) for s in request.topics]
    refusals = []
    names = Counter(name for name, topic_id in rows if topic_id is None and name is not None)
    ids = Counter(topic_id for name, topic_id in rows if topic_id is not None and name is None)
    targets, seen = [], set()
    for name, topic_id in rows:
        if name is None and topic_id is None:
            refusals.append((None, ZERO_UUID, "Neither topic name nor id were specified."))
        elif name is not None and topic_id is not None:
            refusals.append((name, topic_id, "You may not specify both topic name and topic id."))
        elif name is not None and names[name] > 1:
            if ("name", name) not in seen:
                seen.add(("name", name))
                refusals.append((name, ZERO_UUID, DUPLICATE_NAME))
        elif topic_id is not None and ids[topic_id] > 1:
            if ("id", topic_id) not in seen:
                seen.add(("id", topic_id))
                refusals.append((None, topic_id, "Duplicate topic id."))
        else:
            targets.append((name, topic_id))
    return targets, refusals


@api("DeleteTopics", 0, 6)
async def handle_delete_topics(ctx, request):
    broker = ctx.broker
    targets, refusals = _deletion_targets(ctx.version, request)
    results = [DeleteTopicsResponse.DeletableTopicResult(name=name, topic_id=topic_id,
                                                         error_code=ErrorCode.INVALID_REQUEST, error_message=message)
               for name, topic_id, message in refusals]
    found = []
    for name, topic_id in targets:
        topic, error = find_topic(broker, name, topic_id)
        found.append((name, topic_id, topic, error))
    by_id = {topic.name for name, topic_id, topic, _ in found if topic is not None and topic_id is not None}
    throttle = 0
    for name, topic_id, topic, error in found:
        result = DeleteTopicsResponse.DeletableTopicResult(name=name, topic_id=topic_id or ZERO_UUID,
                                                           error_code=error)
        named = topic.name if topic is not None else name
        if named is not None and not ctx.allowed(Operation.DELETE, ResourceType.TOPIC, named):
            result.error_code, result.error_message = ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed."
            result.name = name
        elif topic is not None and topic_id is None and topic.name in by_id:
            result.error_code = ErrorCode.INVALID_REQUEST
            result.error_message = "The provided topic name maps to an ID that was already supplied."
        elif topic is not None and internal_topic_error(topic.name):
            result.error_code = ErrorCode.INVALID_TOPIC_EXCEPTION
            result.error_message = internal_topic_error(topic.name)
        elif topic is not None:
            allowed, wait = _mutation(ctx, topic.partitions, strict=ctx.version >= 5)
            throttle = max(throttle, wait)
            if not allowed:
                result.error_code, result.error_message = ErrorCode.THROTTLING_QUOTA_EXCEEDED, THROTTLED
                results.append(result)
                continue
            result.name, result.topic_id = topic.name, topic.topic_id
            try:
                if broker.cluster is not None:   # every broker deletes its copy as etcd tells it
                    await broker.cluster.delete_topic(topic.name)
                else:
                    await broker.log.delete_topic_async(topic.name)
            except UnknownTopicError:   # deleted meanwhile by another request
                result.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            except ClusterUnavailableError as exc:
                result.error_code, result.error_message = exc.kafka_error, str(exc)
            else:
                broker.forget_topic(topic.name)
        results.append(result)
    return DeleteTopicsResponse(throttle_time_ms=throttle, responses=results)


@api("CreatePartitions", 0, 3)
async def handle_create_partitions(ctx, request):
    broker = ctx.broker
    names = Counter(t.name for t in request.topics)
    results, answered = [], set()
    throttle = 0
    for t in request.topics:
        result = CreatePartitionsResponse.CreatePartitionsTopicResult(name=t.name, error_code=0)
        try:
            if names[t.name] > 1:
                if t.name in answered:
                    continue
                answered.add(t.name)
                raise _Refused(ErrorCode.INVALID_REQUEST, DUPLICATE_NAME)
            if not ctx.allowed(Operation.ALTER, ResourceType.TOPIC, t.name):
                raise _Refused(ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
            topic, error = find_topic(broker, t.name)
            if topic is None:
                raise _Refused(error, f"topic {t.name!r} does not exist")
            if internal_topic_error(t.name):
                raise _Refused(ErrorCode.INVALID_TOPIC_EXCEPTION, internal_topic_error(t.name))
            if t.count <= topic.partitions:
                raise _Refused(ErrorCode.INVALID_PARTITIONS, f"Topic currently has {topic.partitions} partitions, "
                                                             f"which is higher than the requested {t.count}.")
            _check_partition_count(t.count)
            assignments = None
            if t.assignments is not None:
                if len(t.assignments) != t.count - topic.partitions:
                    raise _Refused(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                   f"Attempted to add {t.count - topic.partitions} additional partition(s), but only "
                                   f"{len(t.assignments)} assignment(s) were specified.")
                assignments = _replica_lists(broker, [a.broker_ids for a in t.assignments],
                                             broker.cluster.replication_factor(t.name) if broker.cluster else 1)
            if not request.validate_only:
                allowed, wait = _mutation(ctx, t.count - topic.partitions, strict=ctx.version >= 3)
                throttle = max(throttle, wait)
                if not allowed:
                    raise _Refused(ErrorCode.THROTTLING_QUOTA_EXCEEDED, THROTTLED)
                try:
                    if broker.cluster is not None:   # every broker adds them as etcd tells it
                        await broker.cluster.create_partitions(t.name, t.count, assignments)
                    else:
                        await topic.add_partitions_async(t.count)
                except UnknownTopicError:   # deleted meanwhile
                    raise _Refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {t.name!r} does not exist") from None
                except ConfigError as exc:   # grown meanwhile past the count asked for
                    raise _Refused(ErrorCode.INVALID_PARTITIONS, str(exc)) from None
                except ClusterUnavailableError as exc:
                    raise _Refused(exc.kafka_error, str(exc)) from None
        except _Refused as refused:
            result.error_code, result.error_message = refused.code, str(refused)
        results.append(result)
    return CreatePartitionsResponse(throttle_time_ms=throttle, results=results)


@api("DeleteRecords", 0, 2)
async def handle_delete_records(ctx, request):
    topics, followed = [], []
    for t in request.topics:
        results = []
        for p in t.partitions:
            out = DeleteRecordsResponse.DeleteRecordsPartitionResult(partition_index=p.partition_index,
                                                                     low_watermark=-1)
            part, error = find_partition(ctx.broker, t.name, p.partition_index)
            if not ctx.allowed(Operation.DELETE, ResourceType.TOPIC, t.name):
                part, error = None, ErrorCode.TOPIC_AUTHORIZATION_FAILED
            if part is not None:
                hw = part.high_watermark
                offset = hw if p.offset == -1 else p.offset
                if not 0 <= offset <= hw:
                    error = ErrorCode.OFFSET_OUT_OF_RANGE
                else:
                    if offset > part.log_start_offset:
                        # The checkpoint's fsync and the segments' removal run on the disk pool.
                        out.low_watermark = await ctx.broker.log.run_blocking(part.delete_records, offset)
                    else:
                        out.low_watermark = part.log_start_offset
                    if ctx.broker.cluster is not None:
                        followed.append((out, t.name, p.partition_index))
            out.error_code = error
            results.append(out)
        topics.append(DeleteRecordsResponse.DeleteRecordsTopicResult(name=t.name, partitions=results))

    async def deleted_everywhere(out, name: str, index: int) -> None:
        """A cluster answers once the in-sync followers deleted them too (Kafka's DelayedDeleteRecords)."""
        try:
            await ctx.broker.cluster.replicas.wait_log_start(name, index, out.low_watermark, request.timeout_ms / 1000)
        except PStreamError as exc:
            out.error_code = exc.kafka_error
    await asyncio.gather(*(deleted_everywhere(*f) for f in followed))
    return DeleteRecordsResponse(throttle_time_ms=0, topics=topics)
