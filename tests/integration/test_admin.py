"""Admin APIs against the real broker, through each client's admin API (confluent-kafka's
AdminClient, kafka-python's KafkaAdminClient, aiokafka's AIOKafkaAdminClient) and, where a
client hides the wire, through raw requests: topics created, listed, described, altered and
deleted; configs described with their sources, altered, APPLIED to the log, and kept across
a restart; errors as Kafka returns them; automatic topic creation.
"""

from __future__ import annotations

import glob
import os
import time
import uuid

import aiokafka.errors
import pytest
from aiokafka.admin import NewPartitions as AioNewPartitions
from aiokafka.admin import NewTopic as AioNewTopic
from aiokafka.admin.config_resource import ConfigResource as AioConfigResource
from aiokafka.admin.config_resource import ConfigResourceType as AioConfigResourceType
from aiokafka.admin.records_to_delete import RecordsToDelete as AioRecordsToDelete
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType as KpConfigResourceType
from kafka.admin import OffsetSpec as KpOffsetSpec

import pstream
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.primitives import ZERO_UUID


import raw_kafka  # noqa: E402  (tests/integration is on sys.path: see conftest.py)
from admin_client import (DEFAULT, DYNAMIC, STATIC_BROKER, confluent_admin, kp_admin,  # noqa: E402
                          run_aio, topic_configs, wait_until)

TOPIC_CONFIGS = {"cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes", "segment.ms",
                 "max.message.bytes", "message.timestamp.type", "index.interval.bytes"}
LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3

# (name, partitions, replication factor, configs) -> the error code Kafka answers.
BAD_TOPICS = [
    ("bad name!", 1, 1, {}, ErrorCode.INVALID_TOPIC_EXCEPTION),
    ("..", 1, 1, {}, ErrorCode.INVALID_TOPIC_EXCEPTION),
    ("x" * 250, 1, 1, {}, ErrorCode.INVALID_TOPIC_EXCEPTION),
    ("zero-partitions", 0, 1, {}, ErrorCode.INVALID_PARTITIONS),
    ("negative-partitions", -5, 1, {}, ErrorCode.INVALID_PARTITIONS),
    ("three-replicas", 1, 3, {}, ErrorCode.INVALID_REPLICATION_FACTOR),
    ("unknown-config", 1, 1, {"no.such.config": "1"}, ErrorCode.INVALID_CONFIG),
    ("bad-config-value", 1, 1, {"retention.ms": "soon"}, ErrorCode.INVALID_CONFIG),
    ("bad-config-range", 1, 1, {"segment.bytes": "-5"}, ErrorCode.INVALID_CONFIG),
]


# --- helpers ------------------------------------------------------------------------------

def confluent_error(future):
    """The KafkaError code a confluent admin future failed with (0 when it succeeded)."""
    try:
        future.result(timeout=15)
    except KafkaException as exc:
        return exc.args[0].code()
    return 0


def raw(broker) -> raw_kafka.RawConnection:
    return raw_kafka.RawConnection(broker.bootstrap)


def raw_create(conn, name, partitions=1, configs=None):
    resp = conn.call("CreateTopics", 7, raw_kafka.create_topics_request({name: (partitions, -1, configs or {})}))
    assert resp.topics[0].error_code == 0, resp.topics[0]
    return resp.topics[0]


def raw_describe_configs(conn, topic: str) -> dict:
    """{config name: (value, source)} of a topic, by DescribeConfigs v4."""
    req_cls, _ = raw_kafka.codecs("DescribeConfigs")
    resource = req_cls.DescribeConfigsResource(resource_type=2, resource_name=topic)
    resource.configuration_keys = None   # all (the constructor would make None an empty list)
    resp = conn.call("DescribeConfigs", 4, req_cls(resources=[resource], include_synonyms=True))
    result = resp.results[0]
    assert result.error_code == 0, result
    return {c.name: (c.value, c.config_source) for c in result.configs}


def raw_metadata(conn, topics=None, version=12, allow_auto_topic_creation=True):
    return conn.call("Metadata", version, raw_kafka.metadata_request(topics, version, allow_auto_topic_creation))


def raw_list_offset(conn, topic, partition, timestamp):
    part = conn.call("ListOffsets", 9, raw_kafka.list_offsets_request(topic, partition, timestamp)).topics[0] \
        .partitions[0]
    assert part.error_code == 0, part
    return part.offset


def raw_produce(conn, topic, partition, batch, acks=-1, version=11):
    resp = conn.call("Produce", version, raw_kafka.produce_request(topic, partition, batch, acks))
    return resp.responses[0].partition_responses[0]


def batch_of(count: int, value_bytes: int, timestamp_ms=None) -> bytes:
    return pstream._core.encode_batch([(None, bytes([65 + i % 26]) * value_bytes, [], timestamp_ms)
                                       for i in range(count)])


def segment_files(broker, topic: str, partition: int = 0) -> list[str]:
    return sorted(glob.glob(os.path.join(broker.data_dir, topic, str(partition), "*.log")))


# --- confluent-kafka AdminClient -----------------------------------------------------------

def test_confluent_creates_lists_and_describes_topics(broker):
    admin = confluent_admin(broker)
    futures = admin.create_topics([NewTopic("orders", 3, 1, config={"retention.ms": "3600000"}),
                                   NewTopic("events", 1, 1)], operation_timeout=10)
    assert {name: confluent_error(f) for name, f in futures.items()} == {"orders": 0, "events": 0}

    listed = admin.list_topics(timeout=10)
    assert {"orders", "events"} <= set(listed.topics)
    orders = listed.topics["orders"]
    assert sorted(orders.partitions) == [0, 1, 2]
    assert all(p.leader == 0 and p.replicas == [0] and p.isrs == [0] for p in orders.partitions.values())
    assert [b.id for b in listed.brokers.values()] == [0]

    described = admin.describe_topics(TopicCollection(["orders"]))["orders"].result(timeout=10)
    assert described.name == "orders" and not described.is_internal
    assert str(described.topic_id) != "AAAAAAAAAAAAAAAAAAAAAA"   # a real id, not the zero uuid
    assert [(p.id, p.leader.id, [r.id for r in p.replicas]) for p in described.partitions] == \
        [(0, 0, [0]), (1, 0, [0]), (2, 0, [0])]


def test_confluent_describe_configs_reports_dynamic_and_default_sources(broker):
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("cfg", 2, 1, config={
        "retention.ms": "3600000", "max.message.bytes": "50000"})])["cfg"]) == 0
    [future] = admin.describe_configs([ConfigResource("topic", "cfg")]).values()
    configs = future.result(timeout=10)
    assert TOPIC_CONFIGS <= set(configs)
    assert (configs["retention.ms"].value, configs["retention.ms"].source) == \
        ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert (configs["max.message.bytes"].value, configs["max.message.bytes"].source) == \
        ("50000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert not configs["retention.ms"].is_default
    for name in TOPIC_CONFIGS - {"retention.ms", "max.message.bytes"}:
        assert configs[name].source == ConfigSource.DEFAULT_CONFIG.value, name
        assert configs[name].is_default, name
    assert configs["segment.bytes"].value == str(1 << 30)
    assert configs["retention.bytes"].value == "-1"
    assert configs["cleanup.policy"].value == "delete"
    assert configs["message.timestamp.type"].value == "CreateTime"


def test_confluent_describe_configs_of_unknown_topic_is_unknown_topic_or_partition(broker):
    admin = confluent_admin(broker)
    [future] = admin.describe_configs([ConfigResource("topic", "nowhere")]).values()
    assert confluent_error(future) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_confluent_alter_configs_replaces_every_override(broker):
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("alter", 1, 1, config={"retention.ms": "3600000"})])
                           ["alter"]) == 0
    with pytest.warns(DeprecationWarning):
        futures = admin.alter_configs([ConfigResource("topic", "alter", set_config={"segment.bytes": "1000000"})])
    assert confluent_error(futures[ConfigResource("topic", "alter")]) == 0
    configs = topic_configs(admin, "alter")
    assert configs["segment.bytes"] == ("1000000", DYNAMIC)
    # AlterConfigs is a full replacement: the override not named again returns to its default.
    assert configs["retention.ms"] == ("604800000", DEFAULT)


def test_confluent_incremental_alter_configs_sets_and_deletes_one_key_at_a_time(broker):
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("incr", 1, 1, config={"retention.ms": "3600000"})])
                           ["incr"]) == 0
    resource = ConfigResource("topic", "incr", incremental_configs=[
        ConfigEntry("max.message.bytes", "5000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.bytes", "1000000", incremental_operation=AlterConfigOpType.SET)])
    assert confluent_error(admin.incremental_alter_configs([resource])[resource]) == 0
    configs = topic_configs(admin, "incr")
    assert {n: configs[n] for n in ("max.message.bytes", "retention.bytes", "retention.ms")} == {
        "max.message.bytes": ("5000", DYNAMIC), "retention.bytes": ("1000000", DYNAMIC),
        "retention.ms": ("3600000", DYNAMIC)}   # untouched: incremental keeps the other overrides

    resource = ConfigResource("topic", "incr", incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    assert confluent_error(admin.incremental_alter_configs([resource])[resource]) == 0
    configs = topic_configs(admin, "incr")
    assert configs["retention.ms"] == ("604800000", DEFAULT)
    assert configs["max.message.bytes"][0] == "5000"


@pytest.mark.parametrize("entry", [
    ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
    ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET),
    ConfigEntry("cleanup.policy", "bogus", incremental_operation=AlterConfigOpType.SET),
    ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.APPEND),
], ids=["unknown-key", "not-a-number", "unsupported-value", "append-to-non-list"])
def test_confluent_incremental_alter_configs_refuses_bad_configs_with_invalid_config(broker, entry):
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("refuse", 1, 1)])["refuse"]) == 0
    resource = ConfigResource("topic", "refuse", incremental_configs=[entry])
    assert confluent_error(admin.incremental_alter_configs([resource])[resource]) == ErrorCode.INVALID_CONFIG
    configs = topic_configs(admin, "refuse")
    assert all(source == DEFAULT for name, (_value, source) in configs.items() if name in TOPIC_CONFIGS)


def test_confluent_create_partitions_grows_a_topic_and_refuses_to_shrink_it(broker):
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("grow", 2, 1)])["grow"]) == 0
    assert confluent_error(admin.create_partitions([NewPartitions("grow", 5)])["grow"]) == 0
    assert sorted(admin.list_topics("grow", timeout=10).topics["grow"].partitions) == [0, 1, 2, 3, 4]
    assert confluent_error(admin.create_partitions([NewPartitions("grow", 3)])["grow"]) == ErrorCode.INVALID_PARTITIONS
    assert confluent_error(admin.create_partitions([NewPartitions("grow", 5)])["grow"]) == ErrorCode.INVALID_PARTITIONS
    assert confluent_error(admin.create_partitions([NewPartitions("absent", 5)])["absent"]) == \
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    with raw(broker) as conn:   # a new partition takes records
        assert raw_produce(conn, "grow", 4, batch_of(3, 10)).error_code == 0
        assert raw_list_offset(conn, "grow", 4, LATEST) == 3


def test_confluent_delete_records_and_list_offsets_move_the_log_start(broker):
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("trim", 1, 1)])["trim"]) == 0
    base_ms = int(time.time() * 1000) - 60_000
    with raw(broker) as conn:
        for b in range(4):   # distinct timestamps, increasing with the offset
            batch = pstream._core.encode_batch([(None, b"v" * 20, [], base_ms + b * 5 + i) for i in range(5)])
            assert raw_produce(conn, "trim", 0, batch).error_code == 0
    tp = CkTopicPartition("trim", 0)
    offsets = {name: admin.list_offsets({tp: spec})[tp].result(timeout=10).offset
               for name, spec in (("earliest", OffsetSpec.earliest()), ("latest", OffsetSpec.latest()))}
    assert offsets == {"earliest": 0, "latest": 20}
    newest = admin.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result(timeout=10)
    assert (newest.offset, newest.timestamp) == (19, base_ms + 19)

    deleted = admin.delete_records([CkTopicPartition("trim", 0, 7)])[tp].result(timeout=10)
    assert deleted.low_watermark == 7
    assert admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(timeout=10).offset == 7
    with raw(broker) as conn:
        fetched = conn.call("Fetch", 12, raw_kafka.fetch_request("trim", 0, 3)).responses[0].partitions[0]
        assert fetched.error_code == ErrorCode.OFFSET_OUT_OF_RANGE and fetched.log_start_offset == 7
    # Past the high watermark: OFFSET_OUT_OF_RANGE, and the log start stays.
    future = admin.delete_records([CkTopicPartition("trim", 0, 21)])[tp]
    assert confluent_error(future) == ErrorCode.OFFSET_OUT_OF_RANGE
    assert admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(timeout=10).offset == 7


def test_confluent_describe_cluster_names_this_node_as_controller(broker):
    admin = confluent_admin(broker)
    cluster = admin.describe_cluster().result(timeout=10)
    assert cluster.controller.id == 0
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(0, "127.0.0.1", broker.port)]
    assert len(cluster.cluster_id) == 22
    with raw(broker) as conn:
        assert raw_metadata(conn).cluster_id == cluster.cluster_id


def test_confluent_delete_topics_removes_them_and_unknown_is_unknown_topic_or_partition(broker):
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("doomed", 2, 1)])["doomed"]) == 0
    with raw(broker) as conn:
        assert raw_produce(conn, "doomed", 1, batch_of(2, 10)).error_code == 0
        [old] = raw_metadata(conn, ["doomed"]).topics
    futures = admin.delete_topics(["doomed", "never-was"], operation_timeout=10)
    assert confluent_error(futures["doomed"]) == 0
    assert confluent_error(futures["never-was"]) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert "doomed" not in admin.list_topics(timeout=10).topics
    assert not os.path.exists(os.path.join(broker.data_dir, "doomed"))
    # The name can be used again, for a new topic with a new id and no old records.
    with raw(broker) as conn:
        created = raw_create(conn, "doomed")
        assert raw_list_offset(conn, "doomed", 0, LATEST) == 0
        assert created.topic_id not in (old.topic_id, ZERO_UUID)


def test_confluent_create_topics_errors_are_kafkas(broker):
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("taken", 1, 1)])["taken"]) == 0
    # librdkafka refuses a negative partition count itself, before sending.
    bad = [t for t in BAD_TOPICS if t[1] >= 0]
    topics = [NewTopic("taken", 1, 1)] + [NewTopic(n, p, r, config=c) for n, p, r, c, _ in bad]
    futures = admin.create_topics(topics)
    got = {name: confluent_error(f) for name, f in futures.items()}
    assert got == {"taken": ErrorCode.TOPIC_ALREADY_EXISTS, **{n: code for n, _, _, _, code in bad}}
    assert set(admin.list_topics(timeout=10).topics) == {"taken"}


def test_confluent_validate_only_creates_nothing(broker):
    admin = confluent_admin(broker)
    futures = admin.create_topics([NewTopic("dry", 4, 1, config={"retention.ms": "1000"}),
                                   NewTopic("dry-bad", 1, 1, config={"retention.ms": "x"})], validate_only=True)
    assert confluent_error(futures["dry"]) == 0
    assert confluent_error(futures["dry-bad"]) == ErrorCode.INVALID_CONFIG
    assert "dry" not in admin.list_topics(timeout=10).topics


# --- kafka-python KafkaAdminClient ----------------------------------------------------------

def test_kafka_python_creates_lists_describes_and_deletes_topics(broker):
    admin = kp_admin(broker)
    try:
        created = admin.create_topics({"kp": {"num_partitions": 2, "configs": {"retention.bytes": "123456"}}})
        [result] = created["topics"]
        assert (result["name"], result["error_code"], result["num_partitions"], result["replication_factor"]) == \
            ("kp", 0, 2, 1)
        assert result["configs"]["retention.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert result["configs"]["retention.ms"]["config_source"] == "DEFAULT_CONFIG"
        assert "kp" in admin.list_topics()
        [described] = admin.describe_topics(["kp"])
        assert described["error_code"] == 0 and described["topic_id"] == result["topic_id"]
        assert [(p["partition_index"], p["leader_id"], p["replica_nodes"], p["isr_nodes"])
                for p in described["partitions"]] == [(0, 0, [0], [0]), (1, 0, [0], [0])]
        deleted = admin.delete_topics(["kp"])
        assert [(t["name"], t["error_code"]) for t in deleted["topics"]] == [("kp", 0)]
        assert "kp" not in admin.list_topics()
        with pytest.raises(Exception) as info:
            admin.delete_topics(["kp"])
        assert getattr(info.value, "errno", None) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    finally:
        admin.close()


def test_kafka_python_create_topics_errors_are_kafkas(broker):
    admin = kp_admin(broker)
    try:
        admin.create_topics({"taken": {"num_partitions": 1}})
        request = {"taken": {"num_partitions": 1}}
        request.update({n: {"num_partitions": p, "replication_factor": r, "configs": c} for n, p, r, c, _ in BAD_TOPICS})
        response = admin.create_topics(request, raise_errors=False)
        got = {t["name"]: t["error_code"] for t in response["topics"]}
        assert got == {"taken": ErrorCode.TOPIC_ALREADY_EXISTS, **{n: code for n, _, _, _, code in BAD_TOPICS}}
        assert all(t["error_message"] for t in response["topics"])
    finally:
        admin.close()


def test_kafka_python_describe_and_alter_configs(broker):
    admin = kp_admin(broker)
    try:
        admin.create_topics({"kpc": {"num_partitions": 1, "configs": {"segment.ms": "100000"}}})
        described = admin.describe_configs([KpConfigResource(KpConfigResourceType.TOPIC, "kpc")], config_filter="all")
        configs = described["topic"]["kpc"]
        assert TOPIC_CONFIGS <= set(configs)
        assert (configs["segment.ms"]["value"], configs["segment.ms"]["config_source"]) == \
            ("100000", "DYNAMIC_TOPIC_CONFIG")
        assert configs["segment.bytes"]["config_source"] == "DEFAULT_CONFIG"

        # IncrementalAlterConfigs (the default against a broker that has it): the other override stays.
        result = admin.alter_configs([KpConfigResource(KpConfigResourceType.TOPIC, "kpc",
                                                       configs={"retention.ms": "5000"})])
        assert result == {"topic": {"kpc": "OK"}}
        configs = admin.describe_configs([KpConfigResource(KpConfigResourceType.TOPIC, "kpc")],
                                         config_filter="all")["topic"]["kpc"]
        assert configs["retention.ms"]["value"] == "5000" and configs["segment.ms"]["value"] == "100000"

        # AlterConfigs (kafka-python re-sends the other dynamic overrides with it, as AlterConfigs
        # replaces them all; the replacement itself is checked through confluent-kafka).
        result = admin.alter_configs([KpConfigResource(KpConfigResourceType.TOPIC, "kpc",
                                                       configs={"retention.ms": "7000"})], incremental=False)
        assert result == {"topic": {"kpc": "OK"}}
        configs = admin.describe_configs([KpConfigResource(KpConfigResourceType.TOPIC, "kpc")],
                                         config_filter="all")["topic"]["kpc"]
        assert (configs["retention.ms"]["value"], configs["retention.ms"]["config_source"]) == \
            ("7000", "DYNAMIC_TOPIC_CONFIG")
        assert configs["segment.ms"]["value"] == "100000"

        admin.reset_configs([KpConfigResource(KpConfigResourceType.TOPIC, "kpc", configs=["retention.ms"])])
        configs = admin.describe_configs([KpConfigResource(KpConfigResourceType.TOPIC, "kpc")],
                                         config_filter="all")["topic"]["kpc"]
        assert (configs["retention.ms"]["value"], configs["retention.ms"]["config_source"]) == \
            ("604800000", "DEFAULT_CONFIG")
    finally:
        admin.close()


def test_kafka_python_create_partitions_delete_records_and_list_offsets(broker):
    admin = kp_admin(broker)
    try:
        admin.create_topics({"kpp": {"num_partitions": 1}})
        response = admin.create_partitions({"kpp": 3})
        assert [(r.name, r.error_code) for r in response.results] == [("kpp", 0)]
        assert len(admin.describe_topics(["kpp"])[0]["partitions"]) == 3
        with pytest.raises(Exception) as info:
            admin.create_partitions({"kpp": 2})
        assert getattr(info.value, "errno", None) == ErrorCode.INVALID_PARTITIONS

        with raw(broker) as conn:
            assert raw_produce(conn, "kpp", 2, batch_of(10, 10)).error_code == 0
        tp = KpTopicPartition("kpp", 2)
        latest = admin.list_partition_offsets({tp: KpOffsetSpec.LATEST})[tp]
        assert latest.offset == 10
        assert admin.list_partition_offsets({tp: KpOffsetSpec.EARLIEST})[tp].offset == 0
        deleted = admin.delete_records({tp: 6})
        assert deleted[tp]["low_watermark"] == 6 and deleted[tp]["error_code"] == 0
        assert admin.list_partition_offsets({tp: KpOffsetSpec.EARLIEST})[tp].offset == 6
    finally:
        admin.close()


def test_kafka_python_describe_cluster_and_log_dirs(broker):
    admin = kp_admin(broker)
    try:
        admin.create_topics({"kpl": {"num_partitions": 2}})
        with raw(broker) as conn:
            assert raw_produce(conn, "kpl", 1, batch_of(10, 100)).error_code == 0
        cluster = admin.describe_cluster()
        assert cluster["controller_id"] == 0
        assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] == [(0, "127.0.0.1", broker.port)]

        [per_broker] = admin.describe_log_dirs()
        [log_dir] = per_broker["log_dirs"]
        assert log_dir["error_code"] == 0
        assert os.path.samefile(log_dir["log_dir"], broker.data_dir)
        assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
        sizes = {(t["name"], p["partition_index"]): p["partition_size"]
                 for t in log_dir["topics"] for p in t["partitions"]}
        assert sizes[("kpl", 0)] == 0
        assert sizes[("kpl", 1)] >= 1000   # ten 100-byte values

        [per_broker] = admin.describe_log_dirs({"kpl": [1]})
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]])
                for t in per_broker["log_dirs"][0]["topics"]] == [("kpl", [1])]
    finally:
        admin.close()


# --- aiokafka AIOKafkaAdminClient -----------------------------------------------------------

def test_aiokafka_admin_tour_of_topics_configs_partitions_and_records(broker):
    async def body(admin):
        created = await admin.create_topics([AioNewTopic("aio", 2, 1, topic_configs={"segment.ms": "100000"})])
        assert [(t[0], t[1]) for t in created.topic_errors] == [("aio", 0)]
        assert "aio" in await admin.list_topics()
        [described] = await admin.describe_topics(["aio"])
        assert [(p["partition"], p["leader"], p["replicas"]) for p in described["partitions"]] == \
            [(0, 0, [0]), (1, 0, [0])]

        [configs] = await admin.describe_configs([AioConfigResource(AioConfigResourceType.TOPIC, "aio")])
        entries = {e[0]: (e[1], e[3]) for e in configs.resources[0][4]}
        assert entries["segment.ms"] == ("100000", DYNAMIC) and entries["retention.ms"] == ("604800000", DEFAULT)

        [altered] = await admin.alter_configs([AioConfigResource(AioConfigResourceType.TOPIC, "aio",
                                                                 configs={"retention.ms": "5000"})])
        assert altered.resources[0][0] == 0
        [configs] = await admin.describe_configs([AioConfigResource(AioConfigResourceType.TOPIC, "aio")])
        entries = {e[0]: (e[1], e[3]) for e in configs.resources[0][4]}
        assert entries["retention.ms"] == ("5000", DYNAMIC) and entries["segment.ms"] == ("604800000", DEFAULT)

        grown = await admin.create_partitions({"aio": AioNewPartitions(4)})
        assert [(t[0], t[1]) for t in grown.topic_errors] == [("aio", 0)]
        with pytest.raises(aiokafka.errors.InvalidPartitionsError):
            await admin.create_partitions({"aio": AioNewPartitions(1)})

        cluster = await admin.describe_cluster()
        assert cluster["controller_id"] == 0 and [b["node_id"] for b in cluster["brokers"]] == [0]

        with raw(broker) as conn:
            assert raw_produce(conn, "aio", 3, batch_of(8, 10)).error_code == 0
        low = await admin.delete_records({AioTopicPartition("aio", 3): AioRecordsToDelete(5)})
        assert low == {AioTopicPartition("aio", 3): 5}
        with raw(broker) as conn:
            assert raw_list_offset(conn, "aio", 3, EARLIEST) == 5

        deleted = await admin.delete_topics(["aio", "never-was"])
        assert sorted((t[0], t[1]) for t in deleted.topic_error_codes) == \
            [("aio", 0), ("never-was", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]
        assert "aio" not in await admin.list_topics()

    run_aio(broker, body)


def test_aiokafka_create_topics_errors_are_kafkas(broker):
    async def body(admin):
        await admin.create_topics([AioNewTopic("taken", 1, 1)])
        topics = [AioNewTopic("taken", 1, 1)] + [AioNewTopic(n, p, r, topic_configs=c) for n, p, r, c, _ in BAD_TOPICS]
        response = await admin.create_topics(topics)
        return {t[0]: t[1] for t in response.topic_errors}

    assert run_aio(broker, body) == {"taken": ErrorCode.TOPIC_ALREADY_EXISTS,
                                     **{n: code for n, _, _, _, code in BAD_TOPICS}}


# --- configs are applied ---------------------------------------------------------------------

def test_segment_bytes_rolls_segments_and_retention_bytes_deletes_the_oldest(broker_factory):
    broker = broker_factory("--retention-check-ms", "100")
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("roll", 1, 1, config={"segment.bytes": "4096"})])
                           ["roll"]) == 0
    with raw(broker) as conn:
        for _ in range(24):   # ~1.1 KB batches: three or so per 4 KiB segment
            assert raw_produce(conn, "roll", 0, batch_of(1, 1000)).error_code == 0
        before = segment_files(broker, "roll")
        assert len(before) >= 6, before
        assert raw_list_offset(conn, "roll", 0, EARLIEST) == 0

        resource = ConfigResource("topic", "roll", incremental_configs=[
            ConfigEntry("retention.bytes", "5000", incremental_operation=AlterConfigOpType.SET)])
        assert confluent_error(admin.incremental_alter_configs([resource])[resource]) == 0
        start = wait_until(lambda: raw_list_offset(conn, "roll", 0, EARLIEST), what="retention moving the log start")
        # The log start moves first; the segment files are removed right after, off the request path.
        def fewer_files():
            files = segment_files(broker, "roll")
            return files if len(files) < len(before) else None

        after = wait_until(fewer_files, what="retention removing segment files")
        assert len(after) < len(before)
        # The log starts at the first remaining segment, named by its base offset.
        wait_until(lambda: int(os.path.basename(segment_files(broker, "roll")[0])[:20]) ==
                   raw_list_offset(conn, "roll", 0, EARLIEST), what="log start == first segment's base offset")
        assert 0 < start < 24
        assert raw_list_offset(conn, "roll", 0, LATEST) == 24
        fetched = conn.call("Fetch", 12, raw_kafka.fetch_request("roll", 0, 0)).responses[0].partitions[0]
        assert fetched.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    kp = kp_admin(broker)
    try:
        [per_broker] = kp.describe_log_dirs({"roll": [0]})
        [size] = [p["partition_size"] for t in per_broker["log_dirs"][0]["topics"] for p in t["partitions"]]
        assert size <= 5000 + 4096
    finally:
        kp.close()


def test_retention_ms_deletes_segments_of_old_records(broker_factory):
    broker = broker_factory("--retention-check-ms", "100")
    hour_ago = int(time.time() * 1000) - 3600_000
    with raw(broker) as conn:
        raw_create(conn, "aged", configs={"segment.bytes": "4096"})
        for _ in range(12):
            assert raw_produce(conn, "aged", 0, batch_of(1, 1000, timestamp_ms=hour_ago)).error_code == 0
        assert raw_list_offset(conn, "aged", 0, EARLIEST) == 0
        time.sleep(0.3)   # a few retention rounds with the default (7 days): nothing goes
        assert raw_list_offset(conn, "aged", 0, EARLIEST) == 0
        req_cls, _ = raw_kafka.codecs("IncrementalAlterConfigs")
        resp = conn.call("IncrementalAlterConfigs", 1, req_cls(resources=[req_cls.AlterConfigsResource(
            resource_type=2, resource_name="aged", configs=[req_cls.AlterableConfig(
                name="retention.ms", config_operation=0, value="60000")])]))
        assert resp.responses[0].error_code == 0
        wait_until(lambda: raw_list_offset(conn, "aged", 0, EARLIEST) >= 9, what="retention.ms deleting old segments")


def test_max_message_bytes_altered_is_enforced_on_produce(broker):
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("small", 1, 1)])["small"]) == 0
    big = batch_of(1, 3000)
    with raw(broker) as conn:
        assert raw_produce(conn, "small", 0, big).error_code == 0
        resource = ConfigResource("topic", "small", incremental_configs=[
            ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)])
        assert confluent_error(admin.incremental_alter_configs([resource])[resource]) == 0
        refused = raw_produce(conn, "small", 0, big)
        assert refused.error_code == ErrorCode.MESSAGE_TOO_LARGE and refused.base_offset == -1
        assert raw_produce(conn, "small", 0, batch_of(1, 1000)).error_code == 0
        assert raw_list_offset(conn, "small", 0, LATEST) == 2


def test_message_timestamp_type_log_append_time_is_applied(broker):
    with raw(broker) as conn:
        raw_create(conn, "stamped", configs={"message.timestamp.type": "LogAppendTime"})
        before = int(time.time() * 1000)
        produced = raw_produce(conn, "stamped", 0, batch_of(2, 10, timestamp_ms=1000))
        assert produced.error_code == 0 and produced.log_append_time_ms >= before
        fetched = conn.call("Fetch", 12, raw_kafka.fetch_request("stamped", 0, 0)).responses[0].partitions[0]
        header, _records = pstream._core.decode_batch(bytes(fetched.records))
        assert header.timestamp_type == 1 and header.max_timestamp >= before


def test_topic_configs_partitions_and_ids_persist_across_a_restart(broker):
    admin = confluent_admin(broker)
    assert confluent_error(admin.create_topics([NewTopic("kept", 2, 1, config={"retention.ms": "3600000"})])
                           ["kept"]) == 0
    resource = ConfigResource("topic", "kept", incremental_configs=[
        ConfigEntry("max.message.bytes", "5000", incremental_operation=AlterConfigOpType.SET)])
    assert confluent_error(admin.incremental_alter_configs([resource])[resource]) == 0
    assert confluent_error(admin.create_partitions([NewPartitions("kept", 3)])["kept"]) == 0
    with raw(broker) as conn:
        configs_before = raw_describe_configs(conn, "kept")
        ids_before = {t.name: t.topic_id for t in raw_metadata(conn).topics}
        cluster_before = raw_metadata(conn).cluster_id
    assert configs_before["retention.ms"] == ("3600000", DYNAMIC)
    assert configs_before["max.message.bytes"] == ("5000", DYNAMIC)

    broker.restart()
    with raw(broker) as conn:
        assert raw_describe_configs(conn, "kept") == configs_before
        metadata = raw_metadata(conn)
        assert {t.name: t.topic_id for t in metadata.topics} == ids_before
        assert metadata.cluster_id == cluster_before
        [kept] = [t for t in metadata.topics if t.name == "kept"]
        assert len(kept.partitions) == 3
        # ...and the persisted max.message.bytes is still enforced.
        assert raw_produce(conn, "kept", 0, batch_of(1, 6000)).error_code == ErrorCode.MESSAGE_TOO_LARGE


def test_topics_without_overrides_follow_changed_broker_defaults_after_restart(broker_factory):
    broker = broker_factory()
    with raw(broker) as conn:
        raw_create(conn, "follows")
    broker.extra = ["--retention-ms", "3600000"]
    broker.restart()
    with raw(broker) as conn:
        configs = raw_describe_configs(conn, "follows")
    assert configs["retention.ms"] == ("3600000", STATIC_BROKER)


def test_broker_settings_show_as_static_broker_config(broker_factory):
    broker = broker_factory("--retention-ms", "3600000", "--segment-bytes", "10000000")
    with raw(broker) as conn:
        raw_create(conn, "inherits", configs={"segment.bytes": "2000000"})
        configs = raw_describe_configs(conn, "inherits")
    assert configs["retention.ms"] == ("3600000", STATIC_BROKER)
    assert configs["segment.bytes"] == ("2000000", DYNAMIC)
    assert configs["retention.bytes"] == ("-1", DEFAULT)


# --- automatic topic creation ----------------------------------------------------------------

def test_metadata_for_an_unknown_topic_creates_it_with_one_partition(broker):
    with raw(broker) as conn:
        [topic] = raw_metadata(conn, ["auto"]).topics
        assert topic.error_code == 0 and topic.name == "auto" and len(topic.partitions) == 1
        # v4+ clients may ask not to create it.
        [topic] = raw_metadata(conn, ["not-auto"], allow_auto_topic_creation=False).topics
        assert topic.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert {t.name for t in raw_metadata(conn).topics} == {"auto"}
        assert raw_describe_configs(conn, "auto")["retention.ms"] == ("604800000", DEFAULT)


def test_producing_to_an_unknown_topic_with_a_client_creates_it(broker):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 10000})
    delivered = []
    producer.produce("made-by-producing", b"v", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(15) == 0 and delivered == [None]
    with raw(broker) as conn:
        [topic] = raw_metadata(conn, ["made-by-producing"], allow_auto_topic_creation=False).topics
        assert topic.error_code == 0 and len(topic.partitions) == 1
        assert raw_list_offset(conn, "made-by-producing", 0, LATEST) == 1


def test_no_auto_create_topics_answers_unknown_topic_or_partition(broker_factory):
    broker = broker_factory("--no-auto-create-topics")
    with raw(broker) as conn:
        for version in (1, 4, 12):
            [topic] = raw_metadata(conn, ["ghost"], version=version).topics
            assert topic.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, version
        produced = raw_produce(conn, "ghost", 0, batch_of(1, 10))
        assert produced.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert raw_metadata(conn).topics == []
        raw_create(conn, "explicit")   # explicit creation still works
        assert [t.name for t in raw_metadata(conn).topics] == ["explicit"]


def test_default_partitions_applies_to_auto_and_unspecified_creation(broker_factory):
    broker = broker_factory("--default-partitions", "3")
    with raw(broker) as conn:
        [topic] = raw_metadata(conn, ["auto3"]).topics
        assert len(topic.partitions) == 3
    admin = kp_admin(broker)
    try:   # kafka-python sends num_partitions -1 when none is given: the broker's default
        [result] = admin.create_topics({"unspecified": {}})["topics"]
        assert result["error_code"] == 0 and result["num_partitions"] == 3
        assert len(admin.describe_topics(["unspecified"])[0]["partitions"]) == 3
    finally:
        admin.close()


# --- Kafka's request checks (raw, where clients would refuse to send it) -----------------------------

def test_a_name_given_twice_in_create_topics_is_refused_once_and_not_created(broker):
    req_cls, _ = raw_kafka.codecs("CreateTopics")
    request = raw_kafka.create_topics_request({"twice": (1, -1, {}), "once": (1, -1, {})})
    request.topics.append(req_cls.CreatableTopic(name="twice", num_partitions=2, replication_factor=-1))
    with raw(broker) as conn:
        response = conn.call("CreateTopics", 7, request)
        assert sorted((t.name, t.error_code, t.error_message) for t in response.topics) == [
            ("once", 0, ""), ("twice", ErrorCode.INVALID_REQUEST, "Duplicate topic name.")]
        assert {t.name for t in raw_metadata(conn).topics} == {"once"}


def test_topic_names_colliding_on_dot_and_underscore_are_invalid_topic(broker):
    with raw(broker) as conn:
        raw_create(conn, "metrics.clicks")
        response = conn.call("CreateTopics", 7, raw_kafka.create_topics_request({
            "metrics_clicks": (1, -1, {}), "metrics.clicks": (1, -1, {}), "metrics-clicks": (1, -1, {})}))
        got = {t.name: (t.error_code, t.error_message) for t in response.topics}
        assert got["metrics_clicks"] == (ErrorCode.INVALID_TOPIC_EXCEPTION,
                                         "Topic 'metrics_clicks' collides with existing topic: metrics.clicks")
        assert got["metrics.clicks"][0] == ErrorCode.TOPIC_ALREADY_EXISTS
        assert got["metrics-clicks"] == (0, "")


def test_create_topics_with_replica_assignments_takes_only_this_node(broker):
    req_cls, _ = raw_kafka.codecs("CreateTopics")

    def topic(name, replicas, partitions=-1, rf=-1):
        return req_cls.CreatableTopic(name=name, num_partitions=partitions, replication_factor=rf, assignments=[
            req_cls.CreatableReplicaAssignment(partition_index=i, broker_ids=r) for i, r in enumerate(replicas)])

    with raw(broker) as conn:
        response = conn.call("CreateTopics", 7, req_cls(topics=[
            topic("assigned", [[0], [0], [0]]), topic("elsewhere", [[1]]), topic("two-copies", [[0, 0]]),
            topic("both", [[0]], partitions=1)], timeout_ms=1000))
        got = {t.name: t.error_code for t in response.topics}
        assert got == {"assigned": 0, "elsewhere": ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                       "two-copies": ErrorCode.INVALID_REPLICA_ASSIGNMENT, "both": ErrorCode.INVALID_REQUEST}
        [assigned] = raw_metadata(conn, ["assigned"]).topics
        assert [p.replica_nodes for p in assigned.partitions] == [[0], [0], [0]]


def test_delete_topics_by_id_with_kafkas_request_checks(broker):
    req_cls, _ = raw_kafka.codecs("DeleteTopics")
    State = req_cls.DeleteTopicState
    with raw(broker) as conn:
        ids = {name: raw_create(conn, name).topic_id for name in ("by-id", "by-name", "twice", "both", "id-twice")}
        stranger = uuid.uuid4()
        response = conn.call("DeleteTopics", 6, req_cls(topics=[
            State(name=None, topic_id=ids["by-id"]), State(name="by-name"), State(name="twice"), State(name="twice"),
            State(name="both", topic_id=ids["both"]), State(name=None, topic_id=ZERO_UUID),
            State(name=None, topic_id=stranger), State(name=None, topic_id=ids["id-twice"]),
            State(name=None, topic_id=ids["id-twice"])], timeout_ms=1000))
        got = sorted(((r.name or "", str(r.topic_id)), r.error_code) for r in response.responses)
        assert got == sorted([
            (("by-id", str(ids["by-id"])), 0),
            (("by-name", str(ids["by-name"])), 0),
            (("twice", str(ZERO_UUID)), ErrorCode.INVALID_REQUEST),
            (("both", str(ids["both"])), ErrorCode.INVALID_REQUEST),
            (("", str(ZERO_UUID)), ErrorCode.INVALID_REQUEST),
            (("", str(stranger)), ErrorCode.UNKNOWN_TOPIC_ID),
            (("", str(ids["id-twice"])), ErrorCode.INVALID_REQUEST),
        ])
        assert {t.name for t in raw_metadata(conn).topics} == {"twice", "both", "id-twice"}


def test_create_partitions_checks_assignments_and_duplicates(broker):
    req_cls, _ = raw_kafka.codecs("CreatePartitions")
    Topic, Assignment = req_cls.CreatePartitionsTopic, req_cls.CreatePartitionsAssignment
    with raw(broker) as conn:
        for name in ("fine", "elsewhere", "miscounted", "twice"):
            raw_create(conn, name)
        response = conn.call("CreatePartitions", 3, req_cls(topics=[
            Topic(name="fine", count=3, assignments=[Assignment(broker_ids=[0]), Assignment(broker_ids=[0])]),
            Topic(name="elsewhere", count=2, assignments=[Assignment(broker_ids=[7])]),
            Topic(name="miscounted", count=4, assignments=[Assignment(broker_ids=[0])]),
            Topic(name="twice", count=2, assignments=None), Topic(name="twice", count=3, assignments=None),
        ], timeout_ms=1000))
        got = sorted((r.name, r.error_code) for r in response.results)
        assert got == [("elsewhere", ErrorCode.INVALID_REPLICA_ASSIGNMENT), ("fine", 0),
                       ("miscounted", ErrorCode.INVALID_REPLICA_ASSIGNMENT), ("twice", ErrorCode.INVALID_REQUEST)]
        messages = {r.name: r.error_message for r in response.results}
        assert messages["elsewhere"] == "The manual partition assignment includes broker 7, but no such broker " \
                                        "is registered."
        assert messages["miscounted"] == "Attempted to add 3 additional partition(s), but only 1 assignment(s) " \
                                         "were specified."
        counts = {t.name: len(t.partitions) for t in raw_metadata(conn).topics}
        assert counts == {"fine": 3, "elsewhere": 1, "miscounted": 1, "twice": 1}


def test_alter_configs_refuses_duplicates_and_null_values_with_invalid_request(broker):
    alter_cls, _ = raw_kafka.codecs("AlterConfigs")
    incr_cls, _ = raw_kafka.codecs("IncrementalAlterConfigs")
    with raw(broker) as conn:
        raw_create(conn, "shape")
        raw_create(conn, "other")
        # The same resource twice: both refused.
        twice = conn.call("AlterConfigs", 2, alter_cls(resources=[
            alter_cls.AlterConfigsResource(resource_type=2, resource_name="shape", configs=[
                alter_cls.AlterableConfig(name="retention.ms", value="1000")]),
            alter_cls.AlterConfigsResource(resource_type=2, resource_name="shape", configs=[]),
            alter_cls.AlterConfigsResource(resource_type=2, resource_name="other", configs=[
                alter_cls.AlterableConfig(name="retention.ms", value="2000")])]))
        assert [(r.resource_name, r.error_code) for r in twice.responses] == [
            ("shape", ErrorCode.INVALID_REQUEST), ("shape", ErrorCode.INVALID_REQUEST), ("other", 0)]
        # One key twice, and a null value other than DELETE's.
        dup = conn.call("IncrementalAlterConfigs", 1, incr_cls(resources=[incr_cls.AlterConfigsResource(
            resource_type=2, resource_name="shape", configs=[
                incr_cls.AlterableConfig(name="retention.ms", config_operation=0, value="1"),
                incr_cls.AlterableConfig(name="retention.ms", config_operation=1, value=None)])]))
        assert (dup.responses[0].error_code, dup.responses[0].error_message) == \
            (ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
        null = conn.call("IncrementalAlterConfigs", 1, incr_cls(resources=[incr_cls.AlterConfigsResource(
            resource_type=2, resource_name="shape", configs=[
                incr_cls.AlterableConfig(name="retention.ms", config_operation=0, value=None),
                incr_cls.AlterableConfig(name="segment.ms", config_operation=1, value=None)])]))
        assert (null.responses[0].error_code, null.responses[0].error_message) == \
            (ErrorCode.INVALID_REQUEST, "Null value not supported for : retention.ms")
        assert raw_describe_configs(conn, "shape")["retention.ms"] == ("604800000", DEFAULT)
        assert raw_describe_configs(conn, "other")["retention.ms"] == ("2000", DYNAMIC)


def test_validate_only_alter_configs_changes_nothing(broker):
    incr_cls, _ = raw_kafka.codecs("IncrementalAlterConfigs")
    alter_cls, _ = raw_kafka.codecs("AlterConfigs")
    with raw(broker) as conn:
        raw_create(conn, "dry")
        ok = conn.call("IncrementalAlterConfigs", 1, incr_cls(validate_only=True, resources=[
            incr_cls.AlterConfigsResource(resource_type=2, resource_name="dry", configs=[
                incr_cls.AlterableConfig(name="retention.ms", config_operation=0, value="1000")])]))
        bad = conn.call("AlterConfigs", 2, alter_cls(validate_only=True, resources=[
            alter_cls.AlterConfigsResource(resource_type=2, resource_name="dry", configs=[
                alter_cls.AlterableConfig(name="retention.ms", value="-7")])]))
        assert ok.responses[0].error_code == 0
        assert bad.responses[0].error_code == ErrorCode.INVALID_CONFIG
        assert raw_describe_configs(conn, "dry")["retention.ms"] == ("604800000", DEFAULT)


OUT_OF_RANGE = [("segment.bytes", str(2**31)), ("max.message.bytes", str(-2**31 - 1)), ("retention.ms", str(2**63)),
                ("segment.ms", "0"), ("retention.bytes", "-2"), ("message.timestamp.type", "WallClock"),
                ("cleanup.policy", "bogus"), ("min.cleanable.dirty.ratio", "1.5")]


def test_out_of_range_config_values_are_invalid_config(broker):
    with raw(broker) as conn:
        response = conn.call("CreateTopics", 7, raw_kafka.create_topics_request(
            {f"ranged-{i}": (1, -1, {name: value}) for i, (name, value) in enumerate(OUT_OF_RANGE)}))
        assert [(t.name, t.error_code) for t in response.topics] == \
            [(f"ranged-{i}", ErrorCode.INVALID_CONFIG) for i in range(len(OUT_OF_RANGE))]
        assert raw_metadata(conn).topics == []


def test_describe_configs_synonyms_name_the_broker_setting_behind_each_topic_config(broker_factory):
    broker = broker_factory("--segment-bytes", "50000000")
    req_cls, _ = raw_kafka.codecs("DescribeConfigs")
    with raw(broker) as conn:
        raw_create(conn, "syn", configs={"retention.ms": "1000"})
        resp = conn.call("DescribeConfigs", 4, req_cls(resources=[req_cls.DescribeConfigsResource(
            resource_type=2, resource_name="syn", configuration_keys=["retention.ms", "segment.bytes"])],
            include_synonyms=True, include_documentation=True))
    configs = {c.name: c for c in resp.results[0].configs}
    # As Kafka: nothing sets log.retention.ms, so its group's default (log.retention.hours) is not listed.
    assert [(s.name, s.value, s.source) for s in configs["retention.ms"].synonyms] == [
        ("retention.ms", "1000", DYNAMIC)]
    assert [(s.name, s.value, s.source) for s in configs["segment.bytes"].synonyms] == [
        ("log.segment.bytes", "50000000", STATIC_BROKER), ("log.segment.bytes", "1073741824", DEFAULT)]
    assert configs["segment.bytes"].config_source == STATIC_BROKER and configs["segment.bytes"].value == "50000000"
    assert configs["retention.ms"].documentation


def test_describe_configs_of_the_broker_lists_its_static_settings(broker_factory):
    broker = broker_factory("--default-partitions", "2")
    admin = confluent_admin(broker)
    resource = ConfigResource("broker", "0")
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert len(configs) == 315   # every broker config of Kafka 3.9 that is not internal
    assert configs["num.partitions"].value == "2" and configs["num.partitions"].is_read_only
    assert configs["log.retention.ms"].value is None   # as Kafka: unset, log.retention.hours' 168 holds
    assert configs["log.retention.hours"].value == "168"
    assert configs["auto.create.topics.enable"].value == "true"
    assert configs["advertised.listeners"].value == f"PLAINTEXT://{broker.bootstrap}"
    assert configs["log.dirs"].value == os.path.abspath(broker.data_dir)
    assert configs["ssl.keystore.password"].is_sensitive and configs["ssl.keystore.password"].value is None
    req_cls, _ = raw_kafka.codecs("DescribeConfigs")
    with raw(broker) as conn:   # librdkafka would route this to the (absent) node 7 itself
        [result] = conn.call("DescribeConfigs", 4, req_cls(resources=[req_cls.DescribeConfigsResource(
            resource_type=4, resource_name="7", configuration_keys=None)])).results
    assert result.error_code == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize("endpoint_type, code", [(2, 114), (3, 115)])   # MISMATCHED / UNSUPPORTED_ENDPOINT_TYPE
def test_describe_cluster_of_another_endpoint_type_is_refused_as_kafka_does(broker, endpoint_type, code):
    req_cls, _ = raw_kafka.codecs("DescribeCluster")
    with raw(broker) as conn:
        response = conn.call("DescribeCluster", 1, req_cls(endpoint_type=endpoint_type))
        assert response.error_code == code and response.error_message
        assert conn.call("DescribeCluster", 1, req_cls(endpoint_type=1)).error_code == 0


@pytest.mark.parametrize("batches, offset", [([[5000, 9000, 7000]], 1), ([[1000] * 5], 0),
                                            ([[1000, 2000], [2000, 2000]], 1), ([[3000], [1000, 4000, 4000]], 2)],
                         ids=["max-in-the-middle", "all-equal", "tie-across-batches", "max-in-a-later-batch"])
def test_list_offsets_max_timestamp_is_the_first_record_with_it(broker, batches, offset):
    """Kafka 3.8+ (KAFKA-16310): the offset of the first record carrying the greatest timestamp."""
    with raw(broker) as conn:
        raw_create(conn, "maxts")
        for timestamps in batches:
            batch = pstream._core.encode_batch([(None, b"v", [], ts) for ts in timestamps])
            assert raw_produce(conn, "maxts", 0, batch).error_code == 0
        part = conn.call("ListOffsets", 9, raw_kafka.list_offsets_request("maxts", 0, MAX_TIMESTAMP)) \
            .topics[0].partitions[0]
        assert (part.timestamp, part.offset) == (max(max(b) for b in batches), offset)


@pytest.mark.parametrize("how", ["create-topics", "metadata-auto-create"])
@pytest.mark.parametrize("name", ["broker.json", "producer_ids.json", ".lock"])
def test_topic_named_like_a_broker_file_is_created_or_refused_cleanly(broker, name, how):
    init_cls, _ = raw_kafka.codecs("InitProducerId")
    with raw(broker) as conn:
        if how == "create-topics":
            response = conn.call("CreateTopics", 7, raw_kafka.create_topics_request({name: (1, -1, {})}))
            assert response.topics[0].error_code in (0, ErrorCode.INVALID_TOPIC_EXCEPTION)
        else:
            assert raw_metadata(conn, [name]).topics[0].error_code in (0, ErrorCode.INVALID_TOPIC_EXCEPTION)
        assert conn.call("InitProducerId", 4, init_cls(transactional_id=None,
                                                       transaction_timeout_ms=1000)).error_code == 0
    broker.stop()
    again = type(broker)(broker.data_dir)   # a new process on the same data directory
    try:
        again.start()
        with raw(again) as conn:
            assert conn.call("InitProducerId", 4, init_cls(transactional_id=None,
                                                           transaction_timeout_ms=1000)).error_code == 0
    finally:
        again.stop()


def test_a_topic_with_a_249_character_name_can_be_deleted(broker):
    name = "n" * 249
    req_cls, _ = raw_kafka.codecs("DeleteTopics")
    with raw(broker) as conn:
        raw_create(conn, name)
        response = conn.call("DeleteTopics", 6, req_cls(topics=[req_cls.DeleteTopicState(name=name)]))
        assert response.responses[0].error_code == 0
    broker.restart()
    with raw(broker) as conn:
        assert raw_metadata(conn).topics == []
