"""Topic names and reserved topics, on the wire: Kafka's name rule on every path that creates a
topic (CreateTopics, Metadata auto-creation, Produce), with INVALID_TOPIC_EXCEPTION and Kafka's
message; and the internal `__consumer_offsets`, which only the broker creates, with its own
settings, whatever a client asked first."""

from __future__ import annotations

import json
import os

import pytest

from pstream import _core
from pstream.protocol.error_codes import ErrorCode

import raw_kafka  # noqa: E402  (tests/integration is on sys.path: see conftest.py)

codecs = raw_kafka.codecs
ILLEGAL = ["abc\n", "a b", "caf\u00e9", ".", "..", "x" * 250, "a/b", ""]


def _topic_dirs(broker) -> list[str]:
    return sorted(n for n in os.listdir(broker.data_dir) if "@" not in n)


@pytest.mark.parametrize("name", ILLEGAL, ids=repr)
def test_illegal_topic_names_are_refused_everywhere_and_create_nothing(broker, name):
    before = _topic_dirs(broker)
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        created = conn.call("CreateTopics", 5, raw_kafka.create_topics_request({name: (1, 1, {})}))
        result = created.topics[0]
        assert result.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION, result
        assert result.error_message.startswith("Topic name"), result.error_message
        if name:
            meta = conn.call("Metadata", 12, raw_kafka.metadata_request([name], allow_auto_topic_creation=True))
            assert meta.topics[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
            batch = _core.encode_batch([(None, b"v", [], None)])
            produced = conn.call("Produce", 9, raw_kafka.produce_request(name, 0, batch))
            assert produced.responses[0].partition_responses[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert _topic_dirs(broker) == before


def test_kafkas_message_for_a_name_with_a_newline(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        result = conn.call("CreateTopics", 5, raw_kafka.create_topics_request({"abc\n": (1, 1, {})})).topics[0]
    assert result.error_message == ('Topic name "abc\n" is illegal, it contains a character other than ASCII '
                                    "alphanumerics, '.', '_' and '-'")


def _commit(conn, group: str, topic: str, offset: int) -> None:
    cls, _ = codecs("OffsetCommit")
    resp = conn.call("OffsetCommit", 2, cls(group_id=group, generation_id_or_member_epoch=-1, member_id="",
                                            retention_time_ms=-1, topics=[cls.OffsetCommitRequestTopic(
        name=topic, partitions=[cls.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset,
                                                                 committed_metadata="")])]))
    assert resp.topics[0].partitions[0].error_code == 0


def _committed(conn, group: str, topic: str) -> int:
    cls, _ = codecs("OffsetFetch")
    resp = conn.call("OffsetFetch", 5, cls(group_id=group, topics=[cls.OffsetFetchRequestTopic(
        name=topic, partition_indexes=[0])]))
    return resp.topics[0].partitions[0].committed_offset


def test_clients_cannot_create_the_offsets_topic_with_their_own_settings(broker_factory):
    broker = broker_factory()
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        conn.call("CreateTopics", 5, raw_kafka.create_topics_request({"data": (1, 1, {})}))
        refused = conn.call("CreateTopics", 5, raw_kafka.create_topics_request(
            {"__consumer_offsets": (1, 1, {"retention.ms": "2000", "segment.bytes": "16384"})})).topics[0]
        assert refused.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION, refused
        _commit(conn, "g", "data", 42)
    meta = json.load(open(os.path.join(broker.data_dir, "__consumer_offsets", "topic.json")))
    assert meta["config"]["retention_ms"] is None
    broker.restart()
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        assert _committed(conn, "g", "data") == 42


def test_an_auto_created_offsets_topic_gets_the_brokers_settings_at_start(broker_factory):
    broker = broker_factory()
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        meta = conn.call("Metadata", 12, raw_kafka.metadata_request(["__consumer_offsets"]))
        assert meta.topics[0].error_code == 0   # auto-created with the broker's defaults for topics
    broker.stop()
    path = os.path.join(broker.data_dir, "__consumer_offsets", "topic.json")
    meta = json.load(open(path))
    meta["overrides"] = {"retention_ms": 2000}   # as an older version or a client's settings left it
    meta["config"]["retention_ms"] = 2000
    json.dump(meta, open(path, "w"))
    broker.start()
    assert json.load(open(path))["config"]["retention_ms"] is None
    assert "replacing settings" in broker.output()
