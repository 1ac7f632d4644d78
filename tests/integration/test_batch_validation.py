"""The broker validates record batches as Kafka's LogValidator does, before storing anything.

Batches with a valid CRC whose records lie (a header claiming 1,000 records over 1, 50 bytes
of 0xFF, offset deltas out of order, a producer-set LogAppendTime) are refused with Kafka's
error code, per-record errors where the Produce version has them (v8+), and nothing of them
is stored: the next good batch takes offset 0 and real consumers read only good records.
"""

from __future__ import annotations


import kafka
import pytest

import pstream
from pstream.protocol.error_codes import ErrorCode
from pstream.record import compression, reference

import raw_kafka  # noqa: E402  (tests/integration is on sys.path: see conftest.py)


varint = reference.varint   # zigzag varlong


def record(offset_delta: int, value: bytes = b"bad") -> bytes:
    body = b"\x00" + varint(0) + varint(offset_delta) + varint(-1) + varint(len(value)) + value + varint(0)
    return varint(len(body)) + body


def lying_batch(section: bytes, count: int, *, codec: int = 0, attributes: int = 0, producer_id: int = -1,
                sequence: int = -1, timestamp: int = 1000) -> bytes:
    """A batch with a valid CRC around whatever records section it is given."""
    if codec:
        section = compression.compress(codec, section)
    return reference.frame_section(section, count, attributes=attributes | codec, base_timestamp=timestamp,
                                   producer_id=producer_id, base_sequence=sequence)


def good_batch(count: int = 2, **options) -> bytes:
    return pstream._core.encode_batch([(None, b"good%d" % i, [], None) for i in range(count)], **options)


def create_topic(conn, name, configs=None):
    resp = conn.call("CreateTopics", 7, raw_kafka.create_topics_request({name: (1, -1, configs or {})}))
    assert resp.topics[0].error_code == 0, resp.topics[0]


def produce(conn, topic, records, version=11):
    return conn.call("Produce", version, raw_kafka.produce_request(topic, 0, records)) \
        .responses[0].partition_responses[0]


BAD_BATCHES = {
    # name: (batch, error code, record at fault or None)
    "header-claims-1000-records-over-1": (lying_batch(record(0), 1000), ErrorCode.INVALID_RECORD, None),
    "50-bytes-of-0xff": (lying_batch(b"\xff" * 50, 1), ErrorCode.INVALID_RECORD, 0),
    "offset-deltas-0-1-1": (lying_batch(record(0) + record(1) + record(1), 3), ErrorCode.INVALID_RECORD, 2),
    "lz4-claims-1000-records-over-1": (lying_batch(record(0), 1000, codec=compression.LZ4),
                                       ErrorCode.INVALID_RECORD, None),
    "zstd-bytes-after-the-records": (lying_batch(record(0) + record(1), 1, codec=compression.ZSTD),
                                     ErrorCode.INVALID_RECORD, None),
    # Kafka: a CreateTime record without a timestamp in a batch that claims LogAppendTime
    "producer-set-log-append-time": (lying_batch(record(0), 1, attributes=0x08, timestamp=-1),
                                     ErrorCode.INVALID_TIMESTAMP, 0),
    "codec-id-5": (lying_batch(record(0), 1, attributes=5), ErrorCode.INVALID_RECORD, None),
}


@pytest.mark.parametrize("name", BAD_BATCHES)
def test_invalid_batches_are_refused_and_nothing_is_stored(broker, name):
    bad, code, record_index = BAD_BATCHES[name]
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "checked")
        part = produce(conn, "checked", bad)
        assert (part.error_code, part.base_offset) == (code, -1), part
        assert part.error_message
        expected = [] if record_index is None else [record_index]
        assert [e.batch_index for e in part.record_errors] == expected
        assert produce(conn, "checked", good_batch(2)).base_offset == 0   # nothing of the bad batch was stored
    consumer = kafka.KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                                   consumer_timeout_ms=3000)
    try:
        tp = kafka.TopicPartition("checked", 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got = [(r.offset, r.value) for r in consumer]
    finally:
        consumer.close()
    assert got == [(0, b"good0"), (1, b"good1")]


def test_before_produce_v8_the_error_code_comes_without_record_errors(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "old-produce")
        part = produce(conn, "old-produce", lying_batch(b"\xff" * 50, 1), version=7)
        assert (part.error_code, part.base_offset) == (ErrorCode.INVALID_RECORD, -1)
        assert produce(conn, "old-produce", good_batch(1), version=7).base_offset == 0


def test_a_refused_idempotent_batch_leaves_the_producer_sequence_where_it_was(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "idem")
        init = conn.call("InitProducerId", 4, raw_kafka.codecs("InitProducerId")[0](
            transactional_id=None, transaction_timeout_ms=-1, producer_id=-1, producer_epoch=-1))
        pid = init.producer_id
        bad = lying_batch(record(0) + record(0), 2, producer_id=pid, sequence=0)
        assert produce(conn, "idem", bad).error_code == ErrorCode.INVALID_RECORD
        good = pstream._core.encode_batch([(None, b"a", [], None), (None, b"b", [], None)], producer_id=pid,
                                          producer_epoch=init.producer_epoch, base_sequence=0)
        part = produce(conn, "idem", good)
        assert (part.error_code, part.base_offset) == (0, 0)


def test_timestamps_outside_the_topic_limits_are_invalid_timestamp(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "recent", {"message.timestamp.before.max.ms": "3600000",
                                      "message.timestamp.after.max.ms": "3600000"})
        old = pstream._core.encode_batch([(None, b"now", [], None), (None, b"old", [], 1000)])
        part = produce(conn, "recent", old)
        assert (part.error_code, [e.batch_index for e in part.record_errors]) == (ErrorCode.INVALID_TIMESTAMP, [1])
        assert produce(conn, "recent", good_batch(1)).base_offset == 0
        create_topic(conn, "anytime")   # Kafka's defaults: no limit
        assert produce(conn, "anytime", old).error_code == 0
