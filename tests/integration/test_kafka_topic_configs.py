"""Every Kafka 3.9 topic config, against the real broker: accepted with Kafka's types and checks,
described as Kafka 3.9.2 describes it (tests/broker/data holds what Kafka itself answered, see
tools/kafka-configs), and, where it means something on one node, honoured."""

from __future__ import annotations

import json
import os
import sys

import pytest
from confluent_kafka.admin import ConfigResource, NewTopic

import pstream
from pstream.broker.topic_configs import TOPIC_SETTINGS
from pstream.protocol.error_codes import ErrorCode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import raw_kafka  # noqa: E402
from admin_client import confluent_admin  # noqa: E402

KAFKA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "broker", "data",
                     "kafka-3.9-describe-topic.json")


def kafka_answer(topic: str) -> dict:
    """{name: entry} of what Kafka 3.9.2 answered to DescribeConfigs v4 (synonyms, documentation)."""
    with open(KAFKA) as f:
        return {c["name"]: c for c in json.load(f)[topic]["configs"]}


def describe(conn, topic: str) -> dict:
    req_cls, _ = raw_kafka.codecs("DescribeConfigs")
    resource = req_cls.DescribeConfigsResource(resource_type=2, resource_name=topic)
    resource.configuration_keys = None
    resp = conn.call("DescribeConfigs", 4, req_cls(resources=[resource], include_synonyms=True,
                                                   include_documentation=True))
    result = resp.results[0]
    assert result.error_code == 0, result
    return {c.name: c for c in result.configs}


def create(conn, name: str, configs: dict) -> tuple[int, str | None]:
    resp = conn.call("CreateTopics", 7, raw_kafka.create_topics_request({name: (1, -1, configs)}))
    return resp.topics[0].error_code, resp.topics[0].error_message or None


@pytest.fixture
def conn(shared_broker):
    connection = raw_kafka.RawConnection(shared_broker.bootstrap)
    yield connection
    connection.close()


@pytest.mark.parametrize("kafka_topic,configs", [("cfg-default", {}),
                                                 ("cfg-custom", {"retention.ms": "1000", "cleanup.policy": "compact"})])
def test_a_topic_is_described_as_kafka_39_describes_it(conn, kafka_topic, configs):
    expected = kafka_answer(kafka_topic)
    assert create(conn, kafka_topic, configs) == (0, None)
    got = describe(conn, kafka_topic)
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        entry = got[name]
        assert (entry.value, entry.config_source, entry.config_type, entry.read_only, entry.is_sensitive,
                entry.documentation) == (want["value"], want["source"], want["config_type"], want["read_only"],
                                         want["is_sensitive"], want["documentation"]), name
        if name not in TOPIC_SETTINGS:   # pstream's own settings name pstream's broker setting as synonym
            assert [[s.name, s.value, s.source] for s in entry.synonyms] == want["synonyms"], name


def test_kafka_connect_and_schema_registry_style_topics_are_created_with_their_configs(shared_broker):
    """The configs such tools set when they create their topics, through confluent-kafka's admin."""
    admin = confluent_admin(shared_broker)
    connect = {"cleanup.policy": "compact", "min.insync.replicas": "1", "unclean.leader.election.enable": "false",
               "compression.type": "producer", "segment.bytes": "104857600", "retention.ms": "-1",
               "message.timestamp.type": "CreateTime", "min.compaction.lag.ms": "0", "delete.retention.ms": "86400000",
               "max.compaction.lag.ms": "9223372036854775807", "file.delete.delay.ms": "60000",
               "follower.replication.throttled.replicas": "", "message.downconversion.enable": "true",
               "segment.jitter.ms": "0", "index.interval.bytes": "4096", "preallocate": "false"}
    futures = admin.create_topics([NewTopic("connect-configs", 1, 1, config=connect),
                                   NewTopic("_schemas", 1, 1, config={"cleanup.policy": "compact"})])
    for future in futures.values():
        future.result(timeout=15)
    resource = ConfigResource("topic", "connect-configs")
    described = admin.describe_configs([resource])[resource].result(timeout=15)
    for name, value in connect.items():
        assert described[name].value == value, name
        assert described[name].source == 1, name   # DYNAMIC_TOPIC_CONFIG


@pytest.mark.parametrize("name,value,message", [
    ("min.insync.replicas", "0", "Invalid value 0 for configuration min.insync.replicas: Value must be at least 1"),
    ("compression.type", "brotli", "Invalid value brotli for configuration compression.type: String must be one "
                                   "of: uncompressed, zstd, lz4, snappy, gzip, producer"),
    ("compression.lz4.level", "18", "Invalid value 18 for configuration compression.lz4.level: Value must be no "
                                    "more than 17"),
    ("preallocate", "yes", "Invalid value yes for configuration preallocate: Expected value to be either true or "
                           "false"),
    ("flush.messages", "many", "Invalid value many for configuration flush.messages: Not a number of type LONG"),
    ("segment.index.bytes", "3", "Invalid value 3 for configuration segment.index.bytes: Value must be at least 4"),
    ("no.such.config", "1", "Unknown topic config name: no.such.config"),
    ("remote.storage.enable", "true", "Tiered Storage functionality is disabled in the broker. Topic cannot be "
                                      "configured with remote log storage."),
])
def test_a_bad_value_of_any_topic_config_gets_invalid_config_with_kafkas_message(conn, name, value, message):
    assert create(conn, "bad-config", {name: value}) == (ErrorCode.INVALID_CONFIG, message)


def test_incremental_alter_configs_sets_appends_and_deletes_any_kafka_topic_config(conn):
    assert create(conn, "throttled", {}) == (0, None)
    req_cls, _ = raw_kafka.codecs("IncrementalAlterConfigs")

    def alter(*ops):
        resource = req_cls.AlterConfigsResource(resource_type=2, resource_name="throttled", configs=[
            req_cls.AlterableConfig(name=n, config_operation=op, value=v) for n, op, v in ops])
        result = conn.call("IncrementalAlterConfigs", 1, req_cls(resources=[resource], validate_only=False)).responses[0]
        return result.error_code, result.error_message or None

    replicas = "follower.replication.throttled.replicas"
    assert alter((replicas, 0, "0:0"), ("min.insync.replicas", 0, "1")) == (0, None)
    assert alter((replicas, 2, "1:0,0:0")) == (0, None)          # APPEND: only what is missing
    assert describe(conn, "throttled")[replicas].value == "0:0,1:0"
    assert alter((replicas, 3, "0:0")) == (0, None)               # SUBTRACT
    assert describe(conn, "throttled")[replicas].value == "1:0"
    assert alter(("min.insync.replicas", 2, "2")) == \
        (ErrorCode.INVALID_CONFIG, "Can't APPEND to key min.insync.replicas because its type is not LIST.")
    assert alter((replicas, 1, None), ("min.insync.replicas", 1, None)) == (0, None)   # DELETE
    after = describe(conn, "throttled")
    assert (after[replicas].value, after[replicas].config_source) == ("", 5)
    assert (after["min.insync.replicas"].value, after["min.insync.replicas"].config_source) == ("1", 5)


def test_min_insync_replicas_above_the_one_replica_refuses_acks_all_and_takes_acks_1(conn):
    assert create(conn, "min-isr", {"min.insync.replicas": "2"}) == (0, None)
    batch = pstream._core.encode_batch([(None, b"v", [], None)])
    refused = conn.call("Produce", 9, raw_kafka.produce_request("min-isr", 0, batch, acks=-1)) \
        .responses[0].partition_responses[0]
    assert refused.error_code == ErrorCode.NOT_ENOUGH_REPLICAS
    assert "min.isr requirement of 2" in refused.error_message
    taken = conn.call("Produce", 9, raw_kafka.produce_request("min-isr", 0, batch, acks=1)) \
        .responses[0].partition_responses[0]
    assert (taken.error_code, taken.base_offset) == (0, 0)


def stored_batches(conn, topic: str) -> list:
    fetched = conn.call("Fetch", 12, raw_kafka.fetch_request(topic, 0, 0)).responses[0].partitions[0]
    assert fetched.error_code == 0, fetched
    data, out, position = memoryview(fetched.records), [], 0
    while position < len(data):
        header = pstream._core.peek_batch(data, position)
        out.append((header, bytes(data[position:position + header.size])))
        position += header.size
    return out


@pytest.mark.parametrize("topic_codec,codec_id", [("zstd", 4), ("gzip", 1), ("lz4", 3), ("snappy", 2),
                                                  ("uncompressed", 0)])
def test_compression_type_stores_batches_in_the_topics_codec(conn, topic_codec, codec_id):
    name = f"codec-{topic_codec}"
    assert create(conn, name, {"compression.type": topic_codec, "compression.zstd.level": "9"}) == (0, None)
    records = [(b"k%d" % i, b"value %d " % i * 20, [("h", b"x")], 1_700_000_000_000 + i) for i in range(50)]
    sent = [pstream._core.encode_batch(records, compression=source, producer_id=7, producer_epoch=0, base_sequence=0)
            for source in ("none",)] + [pstream._core.encode_batch(records, compression="gzip")]
    for batch in sent:
        response = conn.call("Produce", 9, raw_kafka.produce_request(name, 0, batch, acks=-1)) \
            .responses[0].partition_responses[0]
        assert response.error_code == 0, response
    stored = stored_batches(conn, name)
    assert [h.compression for h, _ in stored] == [codec_id, codec_id]
    (first, first_bytes), _ = stored
    assert (first.producer_id, first.producer_epoch, first.base_sequence, first.record_count) == (7, 0, 0, 50)
    for _, batch in stored:
        pstream._core.check_batch(batch)   # the CRC was computed afresh
        _, decoded = pstream._core.decode_batch(batch)
        assert [(r.key, r.value, r.timestamp_ms, r.headers) for r in decoded] == \
            [(k, v, ts, [("h", b"x")]) for k, v, _, ts in records]


def test_a_corrupt_batch_is_refused_not_recompressed_into_a_valid_one(conn):
    assert create(conn, "codec-corrupt", {"compression.type": "zstd"}) == (0, None)
    batch = bytearray(pstream._core.encode_batch([(None, b"x" * 100, [], None)]))
    batch[-1] ^= 0xFF   # a record byte: the CRC no longer matches
    response = conn.call("Produce", 9, raw_kafka.produce_request("codec-corrupt", 0, bytes(batch), acks=-1)) \
        .responses[0].partition_responses[0]
    assert response.error_code == ErrorCode.CORRUPT_MESSAGE
    assert stored_batches(conn, "codec-corrupt") == []


def test_a_confluent_producer_and_consumer_round_trip_through_a_recompressing_topic(shared_broker, conn):
    from confluent_kafka import Consumer, Producer

    assert create(conn, "codec-clients", {"compression.type": "lz4"}) == (0, None)
    producer = Producer({"bootstrap.servers": shared_broker.bootstrap, "compression.type": "snappy",
                         "enable.idempotence": True, "linger.ms": 5})
    for i in range(200):
        producer.produce("codec-clients", key=b"%d" % i, value=b"v%d" % i)
    assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": shared_broker.bootstrap, "group.id": "codec-clients",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["codec-clients"])
    got = []
    try:
        while len(got) < 200:
            message = consumer.poll(10)
            assert message is not None and message.error() is None, message and message.error()
            got.append((message.key(), message.value()))
    finally:
        consumer.close()
    assert got == [(b"%d" % i, b"v%d" % i) for i in range(200)]
    assert {h.compression for h, _ in stored_batches(conn, "codec-clients")} == {3}
