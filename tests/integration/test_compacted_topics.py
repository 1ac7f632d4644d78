"""Compacted topics as Kafka clients and the tools built on them see them, against the real broker.

Topics created the way Schema Registry (`_schemas`), Kafka Connect (config, offset and status
topics) and Kafka Streams (changelogs) create them, with the configs they set, through
confluent-kafka's AdminClient, kafka-python and aiokafka; DescribeConfigs with the sources
those tools check; keys that round-trip; a consumer from the beginning that sees every key's
latest value and no deleted key once the cleaner ran; keyless records refused as Kafka 3.9
refuses them; a topic altered to compact and back.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiokafka.errors
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from kafka import KafkaProducer
from kafka.admin import NewTopic as KpNewTopic
from kafka.errors import InvalidRecordError

import pstream
from pstream.protocol.error_codes import ErrorCode

import kafka_wire  # noqa: E402  (tests/integration is on sys.path: see conftest.py)
from admin_client import (DEFAULT, DYNAMIC, STATIC_BROKER, confluent_admin, kp_admin,  # noqa: E402
                          run_aio, topic_configs, wait_until)

COMPACTION_CONFIGS = ("cleanup.policy", "min.cleanable.dirty.ratio", "min.compaction.lag.ms",
                      "max.compaction.lag.ms", "delete.retention.ms")
KEYLESS = "Compacted topic cannot accept message without key in topic partition {}"


def read_all(broker, topic: str, partitions: int = 1) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Every record of the topic from the beginning: [(partition, offset, key, value)]."""
    out = []
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        for p in range(partitions):
            for _header, records in wire.fetch_all(topic, p):
                out.extend((p, r.offset, r.key, r.value) for r in records)
    return out


def latest(records) -> dict:
    """The table a compacted topic stands for: each key's latest value, deleted keys absent."""
    table = {}
    for _p, _offset, key, value in records:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


# --- configs ------------------------------------------------------------------------------------


def test_a_schema_registry_style_topic_is_created_and_described_as_the_registry_checks_it(broker):
    """Schema Registry creates `_schemas` with one partition and cleanup.policy=compact, then
    refuses to start unless DescribeConfigs says exactly "compact"."""
    admin = confluent_admin(broker)
    admin.create_topics([NewTopic("_schemas", 1, 1, config={"cleanup.policy": "compact"})])["_schemas"] \
        .result(timeout=15)
    configs = topic_configs(admin, "_schemas")
    assert configs["cleanup.policy"] == ("compact", DYNAMIC)
    assert configs["min.cleanable.dirty.ratio"] == ("0.5", DEFAULT)
    assert configs["min.compaction.lag.ms"] == ("0", DEFAULT)
    assert configs["max.compaction.lag.ms"] == (str(2**63 - 1), DEFAULT)
    assert configs["delete.retention.ms"] == ("86400000", DEFAULT)


def test_describe_configs_types_synonyms_and_a_broker_default(broker_factory):
    broker = broker_factory("--min-cleanable-dirty-ratio", "0.25", "--cleanup-policy", "compact,delete")
    DescribeReq, _ = kafka_wire.codec_classes("DescribeConfigs")
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("typed", configs={"delete.retention.ms": "1000"})
        resp = wire.request("DescribeConfigs", 4, DescribeReq(resources=[DescribeReq.DescribeConfigsResource(
            resource_type=2, resource_name="typed", configuration_keys=list(COMPACTION_CONFIGS))],
            include_synonyms=True, include_documentation=True))
        configs = {c.name: c for c in resp.results[0].configs}
        assert {n: (c.value, c.config_source, c.config_type) for n, c in configs.items()} == {
            "cleanup.policy": ("compact,delete", STATIC_BROKER, 7),   # LIST
            "min.cleanable.dirty.ratio": ("0.25", STATIC_BROKER, 6),  # DOUBLE
            "min.compaction.lag.ms": ("0", DEFAULT, 5),               # LONG
            "max.compaction.lag.ms": (str(2**63 - 1), DEFAULT, 5),
            "delete.retention.ms": ("1000", DYNAMIC, 5)}
        assert [(s.name, s.value, s.source) for s in configs["delete.retention.ms"].synonyms] == [
            ("delete.retention.ms", "1000", DYNAMIC), ("log.cleaner.delete.retention.ms", "86400000", DEFAULT)]
        assert [(s.name, s.value, s.source) for s in configs["min.cleanable.dirty.ratio"].synonyms] == [
            ("log.cleaner.min.cleanable.ratio", "0.25", STATIC_BROKER),   # then Kafka's default, as Kafka lists it
            ("log.cleaner.min.cleanable.ratio", "0.5", DEFAULT)]

        brokers = wire.request("DescribeConfigs", 4, DescribeReq(resources=[DescribeReq.DescribeConfigsResource(
            resource_type=4, resource_name="0", configuration_keys=[
                "log.cleanup.policy", "log.cleaner.enable", "log.cleaner.threads", "log.cleaner.dedupe.buffer.size",
                "log.cleaner.backoff.ms", "log.cleaner.min.cleanable.ratio"])], include_synonyms=False))
        assert {c.name: (c.value, c.config_source, c.config_type) for c in brokers.results[0].configs} == {
            "log.cleanup.policy": ("compact,delete", STATIC_BROKER, 7),
            "log.cleaner.enable": ("true", DEFAULT, 1),
            "log.cleaner.threads": ("1", DEFAULT, 3),
            "log.cleaner.dedupe.buffer.size": (str(32 << 20), DEFAULT, 5),
            "log.cleaner.backoff.ms": ("15000", DEFAULT, 5),
            "log.cleaner.min.cleanable.ratio": ("0.25", STATIC_BROKER, 6)}


# (configs) -> the error message Kafka 3.9.2 answers (asked of Kafka itself, run from ../shared/kafka-reference)
BAD_CONFIGS = [
    ({"cleanup.policy": "bogus"}, "Invalid value bogus for configuration cleanup.policy: String must be one of: "
                                  "compact, delete"),
    ({"min.cleanable.dirty.ratio": "1.5"}, "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: "
                                           "Value must be no more than 1"),
    ({"min.cleanable.dirty.ratio": "abc"}, "Invalid value abc for configuration min.cleanable.dirty.ratio: "
                                           "Not a number of type DOUBLE"),
    ({"min.compaction.lag.ms": "-1"}, "Invalid value -1 for configuration min.compaction.lag.ms: "
                                      "Value must be at least 0"),
    ({"max.compaction.lag.ms": "0"}, "Invalid value 0 for configuration max.compaction.lag.ms: "
                                     "Value must be at least 1"),
    ({"delete.retention.ms": "-5"}, "Invalid value -5 for configuration delete.retention.ms: "
                                    "Value must be at least 0"),
    ({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"},
     "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"),
]


@pytest.mark.parametrize("configs,message", BAD_CONFIGS, ids=[str(c) for c, _ in BAD_CONFIGS])
def test_bad_compaction_configs_get_kafkas_error_and_message(broker, configs, message):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        with pytest.raises(kafka_wire.WireError, match=f"error {ErrorCode.INVALID_CONFIG} "):
            wire.create_topic("refused", configs=configs)
        CreateReq, _ = kafka_wire.codec_classes("CreateTopics")
        resp = wire.request("CreateTopics", 7, CreateReq(timeout_ms=10000, topics=[CreateReq.CreatableTopic(
            name="refused", num_partitions=1, replication_factor=1,
            configs=[CreateReq.CreatableTopicConfig(name=k, value=v) for k, v in configs.items()])]))
        assert (resp.topics[0].error_code, resp.topics[0].error_message) == (ErrorCode.INVALID_CONFIG, message)


def test_the_dirty_ratio_is_a_double_as_kafka_parses_and_prints_it(broker):
    admin = confluent_admin(broker)
    given = {"one": "1", "tenth": "1e-1", "spaced": " 0.3 "}
    futures = admin.create_topics([NewTopic(name, 1, 1, config={"min.cleanable.dirty.ratio": value})
                                   for name, value in given.items()])
    for future in futures.values():
        future.result(timeout=15)
    assert {name: topic_configs(admin, name)["min.cleanable.dirty.ratio"][0] for name in given} == \
        {"one": "1.0", "tenth": "0.1", "spaced": "0.3"}


def test_alter_configs_to_compact_and_back_with_each_client(broker):
    admin = confluent_admin(broker)
    admin.create_topics([NewTopic("flip", 1, 1)])["flip"].result(timeout=15)
    assert topic_configs(admin, "flip")["cleanup.policy"] == ("delete", DEFAULT)

    def incremental(op, value):
        resource = ConfigResource("topic", "flip", incremental_configs=[
            ConfigEntry("cleanup.policy", value, incremental_operation=op)])
        admin.incremental_alter_configs([resource])[resource].result(timeout=15)
        return topic_configs(admin, "flip")["cleanup.policy"]

    # Kafka 3.9 answers these the same way (asked of Kafka itself): APPEND adds at the end.
    assert incremental(AlterConfigOpType.APPEND, "compact") == ("delete,compact", DYNAMIC)
    assert incremental(AlterConfigOpType.SUBTRACT, "delete") == ("compact", DYNAMIC)
    with pytest.raises(KafkaException) as refused:   # Kafka 3.9 would leave an empty policy
        incremental(AlterConfigOpType.SUBTRACT, "compact")
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert incremental(AlterConfigOpType.DELETE, None) == ("delete", DEFAULT)

    kp = kp_admin(broker)
    try:
        from kafka.admin import ConfigResource as KpConfigResource
        from kafka.admin import ConfigResourceType as KpConfigResourceType

        kp.alter_configs([KpConfigResource(KpConfigResourceType.TOPIC, "flip",
                                           configs={"cleanup.policy": "compact", "delete.retention.ms": "100"})])
        assert topic_configs(admin, "flip")["cleanup.policy"] == ("compact", DYNAMIC)
        with kafka_wire.KafkaWire(broker.bootstrap) as wire:   # the log applies it at once
            part = wire.produce("flip", 0, pstream._core.encode_batch([(None, b"v", [], None)]))
            assert part.error_code == ErrorCode.INVALID_RECORD
    finally:
        kp.close()

    async def back(aio: AIOKafkaAdminClient):
        from aiokafka.admin.config_resource import ConfigResource as AioConfigResource
        from aiokafka.admin.config_resource import ConfigResourceType as AioConfigResourceType

        await aio.alter_configs([AioConfigResource(AioConfigResourceType.TOPIC, "flip",
                                                   configs={"cleanup.policy": "delete"})])

    run_aio(broker, back)
    assert topic_configs(admin, "flip")["cleanup.policy"] == ("delete", DYNAMIC)
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        assert wire.produce("flip", 0, pstream._core.encode_batch([(None, b"v", [], None)])).error_code == 0


def test_kafka_streams_changelogs_are_created_as_streams_creates_them(broker):
    """Kafka Streams' internal topics, with the configs its InternalTopicManager sets: a KTable
    changelog (compact), a windowed store's changelog (compact,delete with the window's
    retention) and a repartition topic (delete, no time limit), created through aiokafka."""
    topics = {
        "app-store-changelog": {"cleanup.policy": "compact", "message.timestamp.type": "CreateTime"},
        "app-window-changelog": {"cleanup.policy": "compact,delete", "retention.ms": str(86400000 + 3600000),
                                 "message.timestamp.type": "CreateTime"},
        "app-repartition": {"cleanup.policy": "delete", "segment.bytes": "52428800", "retention.ms": "-1",
                            "message.timestamp.type": "CreateTime"},
    }

    async def create(aio: AIOKafkaAdminClient):
        from aiokafka.admin import NewTopic as AioNewTopic

        await aio.create_topics([AioNewTopic(name, 3, 1, topic_configs=configs) for name, configs in topics.items()])

    run_aio(broker, create)
    admin = confluent_admin(broker)
    for name, configs in topics.items():
        described = topic_configs(admin, name)
        assert {k: described[k] for k in configs} == {k: (v, DYNAMIC) for k, v in configs.items()}
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        keyless = pstream._core.encode_batch([(None, b"v", [], None)])
        assert wire.produce("app-window-changelog", 1, keyless).error_code == ErrorCode.INVALID_RECORD
        assert wire.produce("app-repartition", 1, keyless).error_code == 0
        keyed = pstream._core.encode_batch([(b"window@0", b"v", [], None)])
        assert wire.produce("app-window-changelog", 1, keyed).error_code == 0


# --- keyless records ----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["none", "gzip", "lz4", "zstd"])
def test_keyless_records_are_refused_as_kafka_39_refuses_them(broker, codec):
    """Answers as Kafka 3.9.2 gives them: INVALID_RECORD, every keyless record in record_errors,
    the log start offset, and nothing stored (the keyed record of the batch neither)."""
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("keyed", configs={"cleanup.policy": "compact"})
        batch = pstream._core.encode_batch([(b"k", b"v", [], None)] + [(None, b"x", [], None)] * 4,
                                           compression=codec)
        part = wire.produce("keyed", 0, batch, version=9)
        why = KEYLESS.format("keyed-0")
        shown = ", ".join(f"RecordError(batchIndex={i}, message='{why}')" for i in (1, 2, 3))
        assert (part.error_code, part.base_offset, part.log_start_offset) == (ErrorCode.INVALID_RECORD, -1, 0)
        assert part.error_message == ("One or more records have been rejected due to 4 record errors in total, "
                                      f"and only showing the first three errors at most: [{shown}]")
        assert [(e.batch_index, e.batch_index_error_message) for e in part.record_errors] == \
            [(i, why) for i in (1, 2, 3, 4)]
        assert wire.produce("keyed", 0, batch, version=7).error_code == ErrorCode.INVALID_RECORD   # no record_errors
        # a tombstone has a key: accepted
        assert wire.produce("keyed", 0, pstream._core.encode_batch([(b"k", None, [], None)])).error_code == 0
        assert wire.list_offset("keyed", 0) == 1


def test_each_client_sees_the_keyless_refusal(broker):
    admin = confluent_admin(broker)
    admin.create_topics([NewTopic("strict", 1, 1, config={"cleanup.policy": "compact,delete"})])["strict"] \
        .result(timeout=15)

    reports = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "log_level": 0, "retries": 0,
                         "enable.idempotence": False})
    producer.produce("strict", value=b"no key", on_delivery=lambda err, msg: reports.append(err))
    producer.flush(15)   # its own batch: a batch with one keyless record is refused whole, as in Kafka
    producer.produce("strict", key=b"k", value=b"keyed", on_delivery=lambda err, msg: reports.append(err))
    producer.flush(15)
    assert reports[0] is not None and reports[0].code() == KafkaError.INVALID_RECORD
    assert reports[1] is None

    # acks=all: consumers see a record once it is durable, so read_all below finds every one
    # (kafka-python and aiokafka default to acks=1, which answers before that).
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, retries=0, acks="all")
    try:
        with pytest.raises(InvalidRecordError):
            kp.send("strict", value=b"no key").get(timeout=15)
        kp.send("strict", key=b"k2", value=b"keyed").get(timeout=15)
    finally:
        kp.close()

    async def aio():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await p.start()
        try:
            # aiokafka 0.12 knows no class for error 87: it raises UnknownError, as against Kafka
            with pytest.raises(aiokafka.errors.UnknownError):
                await p.send_and_wait("strict", value=b"no key")
            await p.send_and_wait("strict", key=b"k3", value=b"keyed")
        finally:
            await p.stop()

    asyncio.run(aio())
    assert [(k, v) for _p, _o, k, v in read_all(broker, "strict")] == \
        [(b"k", b"keyed"), (b"k2", b"keyed"), (b"k3", b"keyed")]


# --- compaction seen by consumers -------------------------------------------------------------------

# Added to the tools' own configs in the tests below so that a few records close segments and the
# cleaner takes them at once: small segments, no dirty-ratio wait, tombstones dropped on the next pass.
FAST_CLEANING = {"segment.bytes": "2048", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"}


def fast_cleaning_broker(broker_factory):
    return broker_factory("--cleaner-backoff-ms", "50")


def wait_for_compaction(broker, topic: str, expected: dict, gone: set, partitions: int = 1,
                        filler: tuple[bytes, bytes | None] | None = None) -> list:
    """Polls the topic from its start until no record of a deleted key is left and every other
    key but the filler's appears once; every poll must already read as `expected` (cleaning
    never shows a reader an inconsistent log). Returns the records of the last poll.

    filler (key, value): appended to partition 0 at each poll, as the tools keep writing (the
    registry's NOOPs, Connect's commits): a tombstone goes in a pass after its delete horizon,
    which needs later records to make the log dirty again."""
    def settled():
        records = read_all(broker, topic, partitions)
        assert latest(records) == expected
        keys = [(p, k) for p, _o, k, _v in records if filler is None or k != filler[0]]
        if len(keys) == len(set(keys)) and not {k for _p, k in keys} & gone:
            return records
        if filler is not None:
            with kafka_wire.KafkaWire(broker.bootstrap) as wire:
                assert wire.produce(topic, 0, pstream._core.encode_batch([(*filler, [], None)])).error_code == 0
        return None
    return wait_until(settled, timeout=30, interval=0.1, what=f"{topic} compacted")


def test_a_schema_registry_topic_is_compacted_and_read_back_whole(broker_factory):
    broker = fast_cleaning_broker(broker_factory)
    admin = confluent_admin(broker)
    admin.create_topics([NewTopic("_schemas", 1, 1, config={"cleanup.policy": "compact", **FAST_CLEANING})])[
        "_schemas"].result(timeout=15)

    def key(keytype, subject=None, version=None):
        k = {"keytype": keytype, "subject": subject, "version": version, "magic": 1 if keytype == "SCHEMA" else 0}
        return json.dumps({n: v for n, v in k.items() if v is not None}, separators=(",", ":")).encode()

    producer = Producer({"bootstrap.servers": broker.bootstrap, "log_level": 0, "linger.ms": 0})
    expected = {}
    for round_ in range(30):
        for subject in ("orders-value", "users-value", "gone-value"):
            k = key("SCHEMA", subject, round_ % 3 + 1)
            v = json.dumps({"subject": subject, "version": round_ % 3 + 1, "id": round_,
                            "schema": '"string"' + " " * 200, "deleted": False}).encode()
            producer.produce("_schemas", key=k, value=v)
            expected[k] = v
        producer.produce("_schemas", key=key("CONFIG"), value=json.dumps({"compatibilityLevel": "BACKWARD",
                                                                          "round": round_}).encode())
        expected[key("CONFIG")] = json.dumps({"compatibilityLevel": "BACKWARD", "round": round_}).encode()
        producer.produce("_schemas", key=key("NOOP"), value=None)   # the registry's read barrier
        producer.flush(15)
    gone = {key("SCHEMA", "gone-value", v) for v in (1, 2, 3)}
    for k in gone:   # a hard delete: tombstones
        producer.produce("_schemas", key=k, value=None)
        del expected[k]
    for _ in range(100):   # the registry keeps writing NOOPs: the tombstones' segments close
        producer.produce("_schemas", key=key("NOOP"), value=None)
        producer.flush(15)
    records = wait_for_compaction(broker, "_schemas", expected, gone, filler=(key("NOOP"), None))
    assert {k for _p, _o, k, _v in records} <= set(expected) | {key("NOOP")}

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "registry-reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 0})
    try:
        consumer.subscribe(["_schemas"])
        seen = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(seen) < len(records):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                seen[msg.offset()] = (msg.key(), msg.value())
        assert latest((0, o, k, v) for o, (k, v) in sorted(seen.items())) == expected
    finally:
        consumer.close()


def test_kafka_connect_topics_are_created_as_connect_creates_them_and_compacted(broker_factory):
    """Connect's distributed worker creates its config (1 partition), offset (25) and status (5)
    topics with cleanup.policy=compact, and refuses to start unless each describes as compact only."""
    broker = fast_cleaning_broker(broker_factory)
    kp = kp_admin(broker)
    try:
        kp.create_topics([KpNewTopic("connect-configs", 1, 1, topic_configs={"cleanup.policy": "compact",
                                                                             **FAST_CLEANING}),
                          KpNewTopic("connect-offsets", 25, 1, topic_configs={"cleanup.policy": "compact",
                                                                              **FAST_CLEANING}),
                          KpNewTopic("connect-status", 5, 1, topic_configs={"cleanup.policy": "compact",
                                                                            **FAST_CLEANING})])
    finally:
        kp.close()
    admin = confluent_admin(broker)
    for topic in ("connect-configs", "connect-offsets", "connect-status"):
        assert set(topic_configs(admin, topic)["cleanup.policy"][0].split(",")) == {"compact"}

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    expected = {}
    try:
        for round_ in range(40):
            for connector in ("jdbc-source", "s3-sink", "removed"):
                k = f"connector-{connector}".encode()
                v = json.dumps({"properties": {"name": connector, "round": round_, "pad": "p" * 100}}).encode()
                producer.send("connect-configs", key=k, value=v)
                expected[k] = v
            producer.send("connect-configs", key=b"commit-jdbc-source", value=json.dumps({"tasks": round_}).encode())
            expected[b"commit-jdbc-source"] = json.dumps({"tasks": round_}).encode()
            producer.flush()
        for k in (b"connector-removed", b"target-state-removed"):   # Connect deletes a connector so
            producer.send("connect-configs", key=k, value=None)
            expected.pop(k, None)
        for _ in range(40):
            producer.send("connect-configs", key=b"commit-jdbc-source", value=b'{"tasks": 0}' + b" " * 100)
            producer.flush()
        expected[b"commit-jdbc-source"] = b'{"tasks": 0}' + b" " * 100
    finally:
        producer.close()
    wait_for_compaction(broker, "connect-configs", expected, {b"connector-removed", b"target-state-removed"},
                        filler=(b"commit-jdbc-source", expected[b"commit-jdbc-source"]))

    async def offsets_round_trip():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        await p.start()
        table = {}
        try:
            for round_ in range(30):
                for source in range(10):
                    k = json.dumps(["jdbc-source", {"table": f"t{source}"}]).encode()
                    v = json.dumps({"position": round_, "pad": "q" * 80}).encode()
                    meta = await p.send_and_wait("connect-offsets", key=k, value=v)
                    table[(meta.partition, k)] = v
        finally:
            await p.stop()
        return table

    table = asyncio.run(offsets_round_trip())
    expected_all = {k: v for (_p, k), v in table.items()}

    def shrunk():   # the latest offsets read back at every poll; most of the 300 records cleaned away
        records = read_all(broker, "connect-offsets", 25)
        assert latest(records) == expected_all
        return len(records) < 150
    wait_until(shrunk, timeout=30, interval=0.1, what="connect-offsets compacted")

    async def read_back():
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
        await c.start()
        try:
            tps = [aiokafka.TopicPartition("connect-offsets", p) for p in range(25)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            ends = await c.end_offsets(tps)
            seen = {}
            async def behind():
                return [tp for tp in tps if await c.position(tp) < ends[tp]]
            while await behind():
                for tp, messages in (await c.getmany(timeout_ms=500)).items():
                    for m in messages:
                        seen[(tp.partition, m.key)] = m.value
            return seen
        finally:
            await c.stop()

    assert asyncio.run(read_back()) == table


# --- __consumer_offsets --------------------------------------------------------------------------


def test_consumer_offsets_is_compacted_and_an_older_pstreams_offsets_are_found(broker_factory, tmp_path):
    """A data directory of an older pstream (JSON offset records, the log start moved past a
    snapshot): the broker finds the committed offsets, and the topic describes as compacted."""
    data = str(tmp_path / "old")

    def legacy(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    with pstream.Log(data, shards=1, retention_check_ms=None, cleaner=False) as log:
        log.topic("events", partitions=2)
        part = log.topic("__consumer_offsets", partitions=1, retention_ms=None).partition(0)
        part.append_many([(legacy(["offset", "readers", "events", 0]), legacy({"offset": 1}))])
        part.delete_records(1)
        part.append_many([(legacy(["offset", "readers", "events", 0]), legacy({"offset": 7, "metadata": "m"})),
                          (legacy(["offset", "readers", "events", 1]), legacy({"offset": 3}))])
    broker = broker_factory(data_dir=data)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "readers", "log_level": 0})
    try:
        from confluent_kafka import TopicPartition as CkTopicPartition

        committed = consumer.committed([CkTopicPartition("events", 0), CkTopicPartition("events", 1)], timeout=15)
        assert [(tp.partition, tp.offset) for tp in committed] == [(0, 7), (1, 3)]
    finally:
        consumer.close()
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KpTopicPartition

    kp = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="readers", enable_auto_commit=False)
    try:
        found = kp.committed(KpTopicPartition("events", 0), metadata=True)
        assert (found.offset, found.metadata) == (7, "m")
    finally:
        kp.close()
    configs = topic_configs(confluent_admin(broker), "__consumer_offsets")
    assert configs["cleanup.policy"] == ("compact", DYNAMIC)
    broker.restart()   # migrated once: found again, now from records in Kafka's format
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "readers", "log_level": 0})
    try:
        from confluent_kafka import TopicPartition as CkTopicPartition

        committed = consumer.committed([CkTopicPartition("events", 0)], timeout=15)
        assert committed[0].offset == 7
    finally:
        consumer.close()
