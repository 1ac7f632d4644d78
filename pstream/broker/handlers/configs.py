"""DescribeConfigs, AlterConfigs, IncrementalAlterConfigs for topics and the broker.

Topic configs are stored in the topic's metadata, described with their source
(DYNAMIC_TOPIC_CONFIG when set for the topic, STATIC_BROKER_CONFIG when the broker's
setting differs from Kafka's default, else DEFAULT_CONFIG) and applied to the open
partitions at once. Broker configs: broker_configs.py (every Kafka broker config described;
the dynamic ones stored and applied without a restart).
"""

from __future__ import annotations

from collections import Counter

from pstream.broker.broker_configs import describe_broker
from pstream.broker.dispatch import api
from pstream.broker.handlers.common import find_topic, internal_topic_error
from pstream.broker.topic_configs import (
    TOPIC_CONFIG_NAMES,
    TOPIC_SETTINGS,
    apply_list_operation,
    check_together,
    describe_topic_config,
    format_value,
    parse_topic_configs,
    parse_value,
    topic_config_type,
)
from pstream.errors import ConfigError, PStreamError, UnknownTopicError
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.alter_configs import AlterConfigsResponse
from pstream.protocol.messages.describe_configs import DescribeConfigsResponse
from pstream.protocol.messages.incremental_alter_configs import IncrementalAlterConfigsResponse
from pstream.security.acls import Operation, ResourceType
from pstream.storage.config import TopicConfig
from pstream.storage.kafka_configs import (
    BROKER_CONFIG_DEFS,
    TOPIC_CONFIG_DEFS,
    check_value,
    merge_list,
    topic_config_def,
)

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
Entry = DescribeConfigsResponse.DescribeConfigsResourceResult
Synonym = DescribeConfigsResponse.DescribeConfigsSynonym


def _entry(name, value, source, synonyms, config_type, doc, include_synonyms, include_doc, read_only=False):
    return Entry(name=name, value=value, read_only=read_only, is_default=source == 5, config_source=source,
                 is_sensitive=False, config_type=config_type, documentation=doc if include_doc else None,
                 synonyms=[Synonym(name=n, value=v, source=s) for n, v, s in synonyms] if include_synonyms else [])


def _describe_topic(broker, topic, keys, include_synonyms, include_doc):
    return [_entry(name, *describe_topic_config(name, topic, broker), topic_config_type(name),
                   TOPIC_CONFIG_DEFS[name].doc, include_synonyms, include_doc)
            for name in TOPIC_CONFIG_NAMES if keys is None or name in keys]


def _describe_broker(broker, resource_name, keys, include_synonyms, include_doc):
    return [Entry(name=e.name, value=e.value, read_only=e.read_only, is_default=e.source == 5,
                  config_source=e.source, is_sensitive=e.sensitive, config_type=e.type,
                  documentation=e.doc if include_doc else None,
                  synonyms=[Synonym(name=n, value=v, source=src) for n, v, src in e.synonyms]
                  if include_synonyms else [])
            for e in describe_broker(broker, resource_name, keys)]


@api("DescribeConfigs", 0, 4)
def handle_describe_configs(ctx, request):
    broker = ctx.broker
    results = []
    denied = _unauthorized(ctx, request.resources, Operation.DESCRIBE_CONFIGS)
    for res in request.resources:
        keys = None if res.configuration_keys is None else set(res.configuration_keys)
        result = DescribeConfigsResponse.DescribeConfigsResult(error_code=0, resource_type=res.resource_type,
                                                               resource_name=res.resource_name, configs=[])
        if id(res) in denied:
            result.error_code, result.error_message = denied[id(res)]
        elif res.resource_type == TOPIC:
            topic, error = find_topic(broker, res.resource_name)
            if topic is None:
                result.error_code = error
                result.error_message = f"topic {res.resource_name!r} does not exist"
            else:
                result.configs = _describe_topic(broker, topic, keys, request.include_synonyms,
                                                 request.include_documentation)
        elif res.resource_type == BROKER and (res.resource_name == "" or res.resource_name in broker.core_map.node_names()):
            name = res.resource_name and str(broker.core_map.node_id)   # every core has core 0's settings
            result.configs = _describe_broker(broker, name, keys, request.include_synonyms,
                                              request.include_documentation)
        elif res.resource_type == BROKER:
            result.error_code = ErrorCode.INVALID_REQUEST
            result.error_message = f"Unexpected broker id, expected {broker.node_id} or empty string, but received " \
                                   f"{res.resource_name}"
        else:
            result.error_code = ErrorCode.INVALID_REQUEST
            result.error_message = f"cannot describe resource type {res.resource_type} {res.resource_name!r}"
        results.append(result)
    return DescribeConfigsResponse(throttle_time_ms=0, results=results)


async def _alter_broker(broker, name, changes, replace_all: bool, validate_only: bool):
    """(error code, message) of dynamic broker config changes [(config name, value or None to
    delete)] on resource `name` (this node's id, or "" for the cluster default); replace_all:
    AlterConfigs, whose configs become the only ones of that resource."""
    try:
        await broker.alter_dynamic_configs(name, changes, replace_all, validate_only)
    except ConfigError as exc:
        return ErrorCode.INVALID_REQUEST, str(exc)
    return ErrorCode.NONE, None


async def _alter(broker, resource_type, name, new_overrides, validate_only):
    """(error code, message) of giving a topic new_overrides(topic) -> its new overrides
    (validated; ConfigError names what is wrong). Alone, on the Log's disk pool unless
    validate_only, since persisting topic.json fsyncs; in a cluster, written to etcd, from
    where every broker applies them."""
    if resource_type != TOPIC:
        return ErrorCode.INVALID_REQUEST, f"cannot alter resource type {resource_type} {name!r}"
    topic, error = find_topic(broker, name)
    if topic is None:
        return error, f"topic {name!r} does not exist"
    if internal_topic_error(name):
        return ErrorCode.INVALID_TOPIC_EXCEPTION, internal_topic_error(name)
    try:
        if validate_only:
            new_overrides(topic)
        elif broker.cluster is not None:
            await broker.cluster.alter_topic_configs(name, new_overrides)
        else:
            await broker.log.run_blocking(lambda: topic.replace_config(**new_overrides(topic)))
    except ConfigError as exc:
        return exc.kafka_error, str(exc)
    except UnknownTopicError:   # deleted while the change waited its turn
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} does not exist"
    except PStreamError as exc:   # a cluster's etcd unreachable or too busy: Kafka's controller timeout
        return ErrorCode.REQUEST_TIMED_OUT, str(exc)
    return ErrorCode.NONE, None


def _unauthorized(ctx, resources, operation: Operation) -> dict:
    """{id(resource): (error, message)} for the resources the principal may not `operation`:
    a topic needs it on the topic, the broker (and the cluster default) on the cluster."""
    out = {}
    for res in resources:
        if res.resource_type == TOPIC and not ctx.allowed(operation, ResourceType.TOPIC, res.resource_name):
            out[id(res)] = (ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
        elif res.resource_type in (BROKER, BROKER_LOGGER) and not ctx.allowed_on_cluster(operation):
            out[id(res)] = (ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.")
    return out


def _shape_errors(resources, incremental: bool) -> dict:
    """{id(resource): (error code, message)} for what Kafka refuses before looking at any
    value (ConfigAdminManager.preprocess): a resource named twice (both refused), a key given
    twice in one resource, a null value where one is needed (incremental: any but DELETE)."""
    errors = {}
    count = Counter((res.resource_type, res.resource_name) for res in resources)
    for res in resources:
        if count[(res.resource_type, res.resource_name)] > 1:
            errors[id(res)] = (ErrorCode.INVALID_REQUEST, "Each resource must appear at most once.")
            continue
        keys = Counter(c.name for c in res.configs)
        if any(n > 1 for n in keys.values()):
            errors[id(res)] = (ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
            continue
        nulls = [c.name for c in res.configs
                 if c.value is None and not (incremental and c.config_operation == DELETE)]
        if nulls:
            errors[id(res)] = (ErrorCode.INVALID_REQUEST, f"Null value not supported for : {', '.join(nulls)}")
    return errors


@api("AlterConfigs", 0, 2)
async def handle_alter_configs(ctx, request):
    refused = _shape_errors(request.resources, incremental=False)
    refused.update(_unauthorized(ctx, request.resources, Operation.ALTER_CONFIGS))
    responses = []
    for res in request.resources:
        def replace(topic, res=res):
            settings = parse_topic_configs((c.name, c.value) for c in res.configs)
            TopicConfig.from_kwargs(ctx.broker.log.defaults, **settings)   # validates them
            return settings
        if id(res) in refused:
            code, message = refused[id(res)]
        elif res.resource_type == BROKER:
            code, message = await _alter_broker(ctx.broker, res.resource_name, [(c.name, c.value) for c in res.configs],
                                                True, request.validate_only)
        else:
            code, message = await _alter(ctx.broker, res.resource_type, res.resource_name, replace,
                                         request.validate_only)
        responses.append(AlterConfigsResponse.AlterConfigsResourceResponse(
            error_code=code, error_message=message, resource_type=res.resource_type, resource_name=res.resource_name))
    return AlterConfigsResponse(throttle_time_ms=0, responses=responses)


def _incremental_kafka(kafka: dict, topic, c) -> None:
    """One IncrementalAlterConfigs operation on a Kafka topic config kept in kafka_configs."""
    d = topic_config_def(c.name)
    if c.config_operation == SET:
        kafka[c.name] = check_value(d, c.value)
    elif c.config_operation == DELETE:
        kafka.pop(c.name, None)
    elif c.config_operation in (APPEND, SUBTRACT):
        if d.type != "LIST":
            raise ConfigError(f"Can't {'APPEND' if c.config_operation == APPEND else 'SUBTRACT'} to key {c.name} "
                              f"because its type is not LIST.")
        current = kafka.get(c.name, topic.config.kafka_configs.get(c.name, d.default or ""))
        kafka[c.name] = check_value(d, merge_list(current, c.value, c.config_operation == APPEND))
    else:
        raise ConfigError(f"unknown config operation {c.config_operation} for {c.name}")


def _incremental(defaults, topic, configs) -> dict:
    """The topic's overrides after IncrementalAlterConfigs' operations, validated."""
    overrides = dict(topic.overrides)
    kafka = dict(overrides.get("kafka_configs", {}))
    for c in configs:
        setting = TOPIC_SETTINGS.get(c.name)
        if setting is None:
            _incremental_kafka(kafka, topic, c)
            continue
        if c.config_operation == SET:
            overrides[setting.field] = parse_value(setting, c.value)
        elif c.config_operation == DELETE:
            overrides.pop(setting.field, None)
        elif c.config_operation in (APPEND, SUBTRACT):
            current = overrides[setting.field] if setting.field in overrides else \
                format_value(setting, getattr(topic.config, setting.field))
            overrides[setting.field] = apply_list_operation(setting, str(current), c.config_operation == APPEND,
                                                            c.value)
        else:
            raise ConfigError(f"unknown config operation {c.config_operation} for {c.name}")
    overrides["kafka_configs"] = kafka
    if not kafka:
        del overrides["kafka_configs"]
    check_together(overrides)
    TopicConfig.from_kwargs(defaults, **overrides)   # validates the result
    return overrides


async def _alter_broker_incremental(broker, res, validate_only: bool):
    """IncrementalAlterConfigs on the broker: SET and DELETE; APPEND and SUBTRACT on LIST configs."""
    changes = []
    scope = broker.dynamic_configs.scope(res.resource_name)
    for c in res.configs:
        d = BROKER_CONFIG_DEFS.get(c.name)
        if c.config_operation in (APPEND, SUBTRACT) and d is not None:
            if d.type != "LIST":
                return ErrorCode.INVALID_CONFIG, f"Config value {'append' if c.config_operation == APPEND else 'subtract'} " \
                                                 f"is not allowed for config key: {c.name}"
            changes.append((c.name, merge_list(scope.get(c.name, d.default or ""), c.value,
                                               c.config_operation == APPEND)))
        elif c.config_operation in (SET, DELETE, APPEND, SUBTRACT):
            changes.append((c.name, c.value if c.config_operation == SET else None))
        else:
            return ErrorCode.INVALID_REQUEST, f"unknown config operation {c.config_operation} for {c.name}"
    return await _alter_broker(broker, res.resource_name, changes, False, validate_only)


@api("IncrementalAlterConfigs", 0, 1)
async def handle_incremental_alter_configs(ctx, request):
    refused = _shape_errors(request.resources, incremental=True)
    refused.update(_unauthorized(ctx, request.resources, Operation.ALTER_CONFIGS))
    responses = []
    for res in request.resources:
        def change(topic, res=res):
            return _incremental(ctx.broker.log.defaults, topic, res.configs)
        if id(res) in refused:
            code, message = refused[id(res)]
        elif res.resource_type == BROKER:
            code, message = await _alter_broker_incremental(ctx.broker, res, request.validate_only)
        else:
            code, message = await _alter(ctx.broker, res.resource_type, res.resource_name, change,
                                         request.validate_only)
        responses.append(IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
            error_code=code, error_message=message, resource_type=res.resource_type, resource_name=res.resource_name))
    return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=responses)
