"""Kafka 3.9's topic configs in storage: the definitions table (pstream/storage/kafka_configs.json,
from Kafka's own ConfigDefs), values checked and normalised as Kafka does, and the embedded API
taking Kafka's names, keeping them across a reopen and honouring the flush ones."""

from __future__ import annotations

import pytest

from pstream.errors import ConfigError
from pstream.storage.config import TopicConfig
from pstream.storage.kafka_configs import BROKER_CONFIG_DEFS, TOPIC_CONFIG_DEFS, check_value


def test_the_table_holds_every_kafka_39_topic_config_and_the_public_broker_ones():
    assert len(TOPIC_CONFIG_DEFS) == 36 and len(BROKER_CONFIG_DEFS) == 315
    assert TOPIC_CONFIG_DEFS["retention.ms"].synonyms == (
        ("log.retention.ms", "identity"), ("log.retention.minutes", "MINUTES_TO_MILLISECONDS"),
        ("log.retention.hours", "HOURS_TO_MILLISECONDS"))
    assert (TOPIC_CONFIG_DEFS["min.insync.replicas"].type, TOPIC_CONFIG_DEFS["min.insync.replicas"].default) == \
        ("INT", "1")
    assert BROKER_CONFIG_DEFS["advertised.listeners"].dynamic == "per-broker"
    assert BROKER_CONFIG_DEFS["log.retention.ms"].dynamic == "cluster-wide"
    assert BROKER_CONFIG_DEFS["log.dirs"].dynamic == "read-only"


@pytest.mark.parametrize("name,given,described", [
    ("follower.replication.throttled.replicas", " 0:1 , 1:1", "0:1,1:1"),
    ("min.cleanable.dirty.ratio", "0.50", "0.5"),
    ("min.cleanable.dirty.ratio", "1e-5", "1.0E-5"),
    ("preallocate", "TRUE", "true"),
    ("preallocate", True, "true"),
    ("flush.messages", " 10 ", "10"),
    ("message.format.version", "3.0", "3.0"),
    ("compression.gzip.level", "-1", "-1"),
])
def test_values_are_described_as_kafka_normalises_them(name, given, described):
    assert check_value(TOPIC_CONFIG_DEFS[name], given) == described


@pytest.mark.parametrize("name,given,message", [
    ("flush.messages", "0", "Value must be at least 1"),
    ("min.insync.replicas", "2147483648", "Not a number of type INT"),
    ("compression.zstd.level", "23", "Value must be no more than 22"),
    ("message.format.version", "0.7", "Version `0.7` is not a valid version"),
    ("leader.replication.throttled.replicas", "a:b", "must be the literal '*'"),
])
def test_bad_values_get_kafkas_messages(name, given, message):
    with pytest.raises(ConfigError, match=f"^Invalid value {given} for configuration {name}: .*"
                                          f"{message.replace('*', '[*]')}"):
        check_value(TOPIC_CONFIG_DEFS[name], given)


def test_a_name_kafka_does_not_know_is_refused():
    with pytest.raises(ConfigError, match="unknown topic setting 'retention.hours'"):
        TopicConfig.from_kwargs(**{"retention.hours": 1})
    with pytest.raises(ConfigError, match="Unknown topic config name: no.such"):
        TopicConfig.from_kwargs(kafka_configs={"no.such": "1"})


def test_kafka_flush_configs_choose_the_flush_policy():
    assert TopicConfig().flush_policy() == ("always", 10)
    assert TopicConfig.from_kwargs(kafka_configs={"flush.ms": "250"}).flush_policy() == ("interval", 250)
    assert TopicConfig.from_kwargs(flush="interval", kafka_configs={"flush.messages": "1"}).flush_policy()[0] == \
        "always"
    assert TopicConfig.from_kwargs(flush="bytes", kafka_configs={"flush.messages": "5"}).flush_policy()[0] == "bytes"


def test_the_embedded_api_takes_kafka_names_keeps_them_and_honours_flush_ms(open_log, data_dir):
    log = open_log()
    topic = log.topic("t", **{"min.insync.replicas": 2, "unclean.leader.election.enable": False},
                      kafka_configs={"flush.ms": "60000"})
    part = topic.partition(0)
    part.append(b"x")
    # flush.ms=60000: the append returns once in the log, the fdatasync comes with the interval
    assert part.durable_offset < part.log_end_offset
    assert topic.config.kafka_configs == {"min.insync.replicas": "2", "unclean.leader.election.enable": "false",
                                          "flush.ms": "60000"}
    log.close()
    again = open_log(data_dir).topic("t")
    assert again.config.kafka_configs["flush.ms"] == "60000" and again.config.min_insync_replicas == 2
    again.reset_config("min.insync.replicas")
    assert again.config.min_insync_replicas == 1
