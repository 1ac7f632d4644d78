"""Fetch sessions (KIP-227): a full fetch at epoch 0 opens a session, incremental fetches send
and receive only what changed, forgotten partitions leave it, epoch -1 closes it; a lost session
or a wrong epoch gets Kafka's error; kafka-python's consumer uses them (seen in the metrics), and
librdkafka, which does not implement KIP-227, fetches sessionless and opens none. (The Java
client's sessions: tests/integration/test_java_clients.py.)"""

from __future__ import annotations

import os
import sys
import urllib.request

import pytest

import pstream
from pstream.protocol.error_codes import ErrorCode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import raw_kafka  # noqa: E402

TOPIC = "sessions"


def fetch(conn, session_id, epoch, offsets=None, forgotten=(), version=12):
    """Fetch at `version`; offsets {partition: fetch offset} to send; forgotten partitions."""
    req_cls, _ = raw_kafka.codecs("Fetch")
    topics = [req_cls.FetchTopic(topic=TOPIC, partitions=[
        req_cls.FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=1 << 20)
        for p, o in sorted(offsets.items())])] if offsets else []
    forgotten_data = [req_cls.ForgottenTopic(topic=TOPIC, partitions=list(forgotten))] if forgotten else []
    return conn.call("Fetch", version, req_cls(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
                                               isolation_level=0, session_id=session_id, session_epoch=epoch,
                                               topics=topics, forgotten_topics_data=forgotten_data, rack_id=""))


def answered(response) -> dict:
    """{partition: (high watermark, records?)} of a fetch response."""
    return {p.partition_index: (p.high_watermark, bool(p.records))
            for t in response.responses for p in t.partitions}


def produce(conn, partition):
    batch = pstream._core.encode_batch([(None, b"v", [], None)])
    assert conn.call("Produce", 9, raw_kafka.produce_request(TOPIC, partition, batch)).responses[0] \
        .partition_responses[0].error_code == 0


@pytest.fixture
def conn(broker_factory):
    broker = broker_factory()
    connection = raw_kafka.RawConnection(broker.bootstrap)
    resp = connection.call("CreateTopics", 7, raw_kafka.create_topics_request({TOPIC: (3, -1, {})}))
    assert resp.topics[0].error_code == 0
    yield connection
    connection.close()


def test_a_session_sends_only_what_changed(conn):
    full = fetch(conn, 0, 0, {0: 0, 1: 0, 2: 0})
    session = full.session_id
    assert full.error_code == 0 and session != 0
    assert answered(full) == {0: (0, False), 1: (0, False), 2: (0, False)}
    assert answered(fetch(conn, session, 1)) == {}                  # nothing new anywhere
    produce(conn, 1)
    assert answered(fetch(conn, session, 2)) == {1: (1, True)}       # only the partition with a record
    assert answered(fetch(conn, session, 3, {1: 1})) == {}           # moved on past it: nothing new
    assert answered(fetch(conn, session, 4, forgotten=[2])) == {}
    produce(conn, 2)
    assert answered(fetch(conn, session, 5)) == {}                   # partition 2 left the session
    produce(conn, 0)
    assert answered(fetch(conn, session, 6)) == {0: (1, True)}


def test_a_lost_session_or_a_wrong_epoch_gets_kafkas_error_and_epoch_minus_one_closes_it(conn):
    session = fetch(conn, 0, 0, {0: 0}).session_id
    assert fetch(conn, session, 7).error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    assert fetch(conn, session + 1 if session < 0x7FFFFFFF else 1, 1).error_code == \
        ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    closed = fetch(conn, session, -1, {0: 0})
    assert (closed.error_code, closed.session_id, answered(closed)) == (0, 0, {0: (0, False)})
    assert fetch(conn, session, 1).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_sessionless_and_old_fetches_get_no_session(conn):
    assert fetch(conn, 0, -1, {0: 0}).session_id == 0
    assert fetch(conn, 0, 0, {0: 0}, version=6).session_id == 0


def session_metrics(broker) -> dict[str, float]:
    metrics = urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=10).read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
            if line.startswith("pstream_fetch_sessions")}


def test_librdkafka_fetches_sessionless_and_opens_no_session(broker_factory):
    from confluent_kafka import Consumer, Producer

    broker = broker_factory()
    broker.create_topic(TOPIC, partitions=3)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(30):
        producer.produce(TOPIC, value=b"%d" % i, partition=i % 3)
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "rdkafka-sessions",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50})
    consumer.subscribe([TOPIC])
    got = []
    for _ in range(200):
        m = consumer.poll(0.1)
        if m is not None and m.error() is None:
            got.append(int(m.value()))
        if len(got) == 30:
            break
    for _ in range(5):   # keep fetching once caught up: every one of them full, sessionless
        consumer.poll(0.1)
    consumer.close()
    assert sorted(got) == list(range(30))
    values = session_metrics(broker)
    assert values["pstream_fetch_sessions_created_total"] == 0
    assert values["pstream_fetch_sessions_incremental_fetches_total"] == 0


def test_kafka_python_consumes_through_incremental_fetch_sessions(broker_factory):
    from kafka import KafkaConsumer, KafkaProducer

    broker = broker_factory()
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        assert conn.call("CreateTopics", 7, raw_kafka.create_topics_request({TOPIC: (3, -1, {})})) \
            .topics[0].error_code == 0
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(30):
        producer.send(TOPIC, value=b"%d" % i, partition=i % 3)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(TOPIC, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, fetch_max_wait_ms=50)
    got = sorted(int(m.value) for m in consumer)
    consumer.close()
    assert got == list(range(30))
    values = session_metrics(broker)
    assert values["pstream_fetch_sessions_created_total"] >= 1
    assert values["pstream_fetch_sessions_incremental_fetches_total"] > 0
