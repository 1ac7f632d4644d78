"""Dynamic broker configs: IncrementalAlterConfigs and AlterConfigs on the broker resource set the
configs Kafka marks dynamic, on this broker ("0") or as the cluster default (""), persist them,
and apply them without a restart; everything else is refused as Kafka refuses it."""

from __future__ import annotations

import glob
import os
import sys

import pytest

import pstream
from pstream.protocol.error_codes import ErrorCode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import raw_kafka  # noqa: E402

SET, DELETE, APPEND = 0, 1, 2
DYNAMIC_BROKER, DYNAMIC_DEFAULT, STATIC, DEFAULT = 2, 3, 4, 5


def describe(conn, resource_type: int, name: str, keys=None) -> dict:
    req_cls, _ = raw_kafka.codecs("DescribeConfigs")
    resource = req_cls.DescribeConfigsResource(resource_type=resource_type, resource_name=name)
    resource.configuration_keys = keys
    result = conn.call("DescribeConfigs", 4, req_cls(resources=[resource], include_synonyms=True)).results[0]
    assert result.error_code == 0, result
    return {c.name: (c.value, c.config_source, [(s.name, s.value, s.source) for s in c.synonyms])
            for c in result.configs}


def alter(conn, name: str, *ops, validate_only=False) -> tuple[int, str | None]:
    req_cls, _ = raw_kafka.codecs("IncrementalAlterConfigs")
    resource = req_cls.AlterConfigsResource(resource_type=4, resource_name=name, configs=[
        req_cls.AlterableConfig(name=n, config_operation=op, value=v) for n, op, v in ops])
    result = conn.call("IncrementalAlterConfigs", 1, req_cls(resources=[resource], validate_only=validate_only)) \
        .responses[0]
    return result.error_code, result.error_message or None


def alter_legacy(conn, name: str, configs: dict, validate_only=False) -> tuple[int, str | None]:
    req_cls, _ = raw_kafka.codecs("AlterConfigs")
    resource = req_cls.AlterConfigsResource(resource_type=4, resource_name=name, configs=[
        req_cls.AlterableConfig(name=n, value=v) for n, v in configs.items()])
    result = conn.call("AlterConfigs", 2, req_cls(resources=[resource], validate_only=validate_only)).responses[0]
    return result.error_code, result.error_message or None


def create(conn, name: str, configs=None) -> None:
    resp = conn.call("CreateTopics", 7, raw_kafka.create_topics_request({name: (1, -1, configs or {})}))
    assert resp.topics[0].error_code == 0, resp.topics[0]


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


@pytest.fixture
def conn(broker):
    connection = raw_kafka.RawConnection(broker.bootstrap)
    yield connection
    connection.close()


def test_a_broker_config_and_a_cluster_default_apply_at_once_to_topics_without_their_own(conn):
    create(conn, "plain")
    create(conn, "own", {"retention.ms": "1000"})
    assert alter(conn, "", ("log.retention.ms", SET, "7200000"), ("message.max.bytes", SET, "2000000")) == (0, None)
    assert alter(conn, "0", ("log.retention.ms", SET, "3600000")) == (0, None)
    broker_view = describe(conn, 4, "0", ["log.retention.ms", "message.max.bytes"])
    assert broker_view["log.retention.ms"] == ("3600000", DYNAMIC_BROKER, [
        ("log.retention.ms", "3600000", DYNAMIC_BROKER), ("log.retention.ms", "7200000", DYNAMIC_DEFAULT),
        ("log.retention.hours", "168", DEFAULT)])   # Kafka's: the group's default, after what is set
    assert broker_view["message.max.bytes"][:2] == ("2000000", DYNAMIC_DEFAULT)
    assert describe(conn, 4, "")["log.retention.ms"][:2] == ("7200000", DYNAMIC_DEFAULT)
    plain = describe(conn, 2, "plain", ["retention.ms", "max.message.bytes"])
    assert plain["retention.ms"][:2] == ("3600000", DYNAMIC_BROKER)
    assert plain["max.message.bytes"][:2] == ("2000000", DYNAMIC_DEFAULT)
    assert describe(conn, 2, "own", ["retention.ms"])["retention.ms"][:2] == ("1000", 1)
    # message.max.bytes is in force: a batch of 1.5 MB, refused by the static default, is taken.
    big = pstream._core.encode_batch([(None, b"x" * 1_500_000, [], None)])
    produced = conn.call("Produce", 9, raw_kafka.produce_request("plain", 0, big)).responses[0].partition_responses[0]
    assert produced.error_code == 0, produced
    # DELETE on the broker falls back to the cluster default.
    assert alter(conn, "0", ("log.retention.ms", DELETE, None)) == (0, None)
    assert describe(conn, 2, "plain", ["retention.ms"])["retention.ms"][:2] == ("7200000", DYNAMIC_DEFAULT)


def test_a_dynamic_segment_size_rolls_segments_without_a_restart(conn, broker):
    create(conn, "rolls")
    assert alter(conn, "0", ("log.segment.bytes", SET, "100000")) == (0, None)
    batch = pstream._core.encode_batch([(None, b"v" * 20_000, [], None)])
    for _ in range(20):
        assert conn.call("Produce", 9, raw_kafka.produce_request("rolls", 0, batch)).responses[0] \
            .partition_responses[0].error_code == 0
    assert len(glob.glob(os.path.join(broker.data_dir, "rolls", "0", "*.log"))) >= 4


def test_dynamic_configs_survive_a_restart(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        assert alter(conn, "0", ("log.cleaner.threads", SET, "2"), ("log.roll.ms", SET, "600000")) == (0, None)
        assert alter(conn, "", ("log.cleaner.backoff.ms", SET, "5000")) == (0, None)
    broker.restart()
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        view = describe(conn, 4, "0", ["log.cleaner.threads", "log.roll.ms", "log.cleaner.backoff.ms"])
    assert {name: entry[:2] for name, entry in view.items()} == {
        "log.cleaner.threads": ("2", DYNAMIC_BROKER), "log.roll.ms": ("600000", DYNAMIC_BROKER),
        "log.cleaner.backoff.ms": ("5000", DYNAMIC_DEFAULT)}


# (resource, operations) -> what Kafka 3.9.2 answers (asked of Kafka itself: tools/kafka-configs)
REFUSED = [
    ("0", [("log.dirs", SET, "/elsewhere"), ("num.partitions", SET, "0")],
     (ErrorCode.INVALID_REQUEST, "Cannot update these configs dynamically: Set(log.dirs, num.partitions)")),
    ("", [("advertised.listeners", SET, "PLAINTEXT://127.0.0.1:1")],
     (ErrorCode.INVALID_REQUEST, "Cannot update these configs at default cluster level, broker id must be "
                                 "specified: Set(advertised.listeners)")),
    ("0", [("log.retention.ms", SET, "soon")],
     (ErrorCode.INVALID_REQUEST, "Invalid value soon for configuration log.retention.ms: Not a number of type LONG")),
    ("0", [("log.cleaner.threads", SET, "-1")],
     (ErrorCode.INVALID_REQUEST, "Invalid value -1 for configuration log.cleaner.threads: Value must be at least 0")),
    ("0", [("log.segment.bytes", SET, "5000000000")],
     (ErrorCode.INVALID_REQUEST, "Invalid value 5000000000 for configuration log.segment.bytes: Not a number of "
                                 "type INT")),
    ("7", [("log.retention.ms", SET, "1")],
     (ErrorCode.INVALID_REQUEST, "Unexpected broker id, expected 0, but received 7")),
    ("abc", [("log.retention.ms", SET, "1")],
     (ErrorCode.INVALID_REQUEST, "Node id must be an integer, but it is: abc")),
    ("0", [("log.retention.ms", APPEND, "1")],
     (ErrorCode.INVALID_CONFIG, "Config value append is not allowed for config key: log.retention.ms")),
]


@pytest.mark.parametrize("resource,ops,error", REFUSED)
def test_what_kafka_refuses_is_refused_and_nothing_changes(conn, resource, ops, error):
    assert alter(conn, resource, *ops) == error
    assert describe(conn, 4, "") == {}


def test_validate_only_and_legacy_alter_configs(conn):
    assert alter(conn, "0", ("log.retention.ms", SET, "3600000"), validate_only=True) == (0, None)
    assert describe(conn, 4, "0", ["log.retention.ms"])["log.retention.ms"] == (None, DEFAULT, [])   # as Kafka
    assert alter(conn, "0", ("log.retention.ms", SET, "3600000"), ("log.retention.bytes", SET, "1000000")) == (0, None)
    # AlterConfigs replaces the resource's dynamic configs with the ones given.
    assert alter_legacy(conn, "0", {"log.retention.bytes": "2000000"}) == (0, None)
    view = describe(conn, 4, "0", ["log.retention.ms", "log.retention.bytes"])
    assert (view["log.retention.ms"][:2], view["log.retention.bytes"][:2]) == \
        ((None, DEFAULT), ("2000000", DYNAMIC_BROKER))


def test_a_name_kafka_does_not_know_is_kept_as_kafka_keeps_it_and_delete_always_succeeds(conn):
    assert alter(conn, "", ("custom.plugin.setting", SET, "x")) == (0, None)
    assert describe(conn, 4, "")["custom.plugin.setting"] == (None, DYNAMIC_DEFAULT,
                                                              [("custom.plugin.setting", None, DYNAMIC_DEFAULT)])
    assert alter(conn, "0", ("log.dirs", DELETE, None), ("no.such", DELETE, None)) == (0, None)
    assert alter(conn, "", ("custom.plugin.setting", DELETE, None)) == (0, None)
    assert describe(conn, 4, "") == {}
