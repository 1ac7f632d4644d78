"""Kafka's topic config names, types and checks (pstream.broker.topic_configs), as Kafka 3.9.2
parses, refuses and prints them (each expected message was asked of Kafka itself)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pstream.broker.topic_configs import (
    TOPIC_SETTINGS,
    ConfigType,
    apply_list_operation,
    format_value,
    parse_topic_configs,
    parse_value,
)
from pstream.errors import ConfigError

POLICY = TOPIC_SETTINGS["cleanup.policy"]
RATIO = TOPIC_SETTINGS["min.cleanable.dirty.ratio"]


def test_compaction_configs_have_kafkas_types_and_broker_synonyms():
    assert {name: (TOPIC_SETTINGS[name].type, TOPIC_SETTINGS[name].broker_name) for name in (
        "cleanup.policy", "min.cleanable.dirty.ratio", "min.compaction.lag.ms", "max.compaction.lag.ms",
        "delete.retention.ms")} == {
        "cleanup.policy": (ConfigType.LIST, "log.cleanup.policy"),
        "min.cleanable.dirty.ratio": (ConfigType.DOUBLE, "log.cleaner.min.cleanable.ratio"),
        "min.compaction.lag.ms": (ConfigType.LONG, "log.cleaner.min.compaction.lag.ms"),
        "max.compaction.lag.ms": (ConfigType.LONG, "log.cleaner.max.compaction.lag.ms"),
        "delete.retention.ms": (ConfigType.LONG, "log.cleaner.delete.retention.ms")}


@pytest.mark.parametrize("text,value", [("compact", "compact"), ("delete, compact", "delete,compact"),
                                        ("compact,compact", "compact"), (" compact ,delete", "compact,delete")])
def test_cleanup_policy_is_a_list_kept_in_the_order_given(text, value):
    assert parse_value(POLICY, text) == value


@pytest.mark.parametrize("text,message", [
    ("bogus", "Invalid value bogus for configuration cleanup.policy: String must be one of: compact, delete"),
    ("compact,nope", "Invalid value nope for configuration cleanup.policy: String must be one of: compact, delete"),
    ("", "Invalid value  for configuration cleanup.policy: pstream needs at least one of compact, delete"),
])
def test_a_bad_cleanup_policy_is_refused_with_kafkas_message(text, message):
    with pytest.raises(ConfigError) as info:
        parse_value(POLICY, text)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("text,value,shown", [("0.5", 0.5, "0.5"), ("1", 1.0, "1.0"), ("1e-1", 0.1, "0.1"),
                                              (" 0.3 ", 0.3, "0.3"), ("0", 0.0, "0.0"), ("1e-5", 1e-5, "1.0E-5")])
def test_the_dirty_ratio_is_parsed_and_printed_as_java_does(text, value, shown):
    assert parse_value(RATIO, text) == value
    assert format_value(RATIO, value) == shown


@pytest.mark.parametrize("name,text,message", [
    ("min.cleanable.dirty.ratio", "1.5", "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: "
                                         "Value must be no more than 1"),
    ("min.cleanable.dirty.ratio", "-0.1", "Invalid value -0.1 for configuration min.cleanable.dirty.ratio: "
                                          "Value must be at least 0"),
    ("min.cleanable.dirty.ratio", "abc", "Invalid value abc for configuration min.cleanable.dirty.ratio: "
                                         "Not a number of type DOUBLE"),
    ("min.cleanable.dirty.ratio", "NaN", "Invalid value NaN for configuration min.cleanable.dirty.ratio"),
    ("min.compaction.lag.ms", "-1", "Invalid value -1 for configuration min.compaction.lag.ms: "
                                    "Value must be at least 0"),
    ("max.compaction.lag.ms", "0", "Invalid value 0 for configuration max.compaction.lag.ms: "
                                   "Value must be at least 1"),
    ("delete.retention.ms", "-5", "Invalid value -5 for configuration delete.retention.ms: "
                                  "Value must be at least 0"),
])
def test_out_of_range_compaction_values_get_kafkas_message(name, text, message):
    with pytest.raises(ConfigError) as info:
        parse_value(TOPIC_SETTINGS[name], text)
    assert str(info.value).startswith(message)


def test_min_lag_above_max_lag_is_refused_as_kafka_refuses_it():
    with pytest.raises(ConfigError, match=r"^conflict topic config setting min.compaction.lag.ms \(10\) > "
                                          r"max.compaction.lag.ms \(5\)$"):
        parse_topic_configs([("min.compaction.lag.ms", "10"), ("max.compaction.lag.ms", "5")])


def test_append_and_subtract_on_the_policy_list():
    assert apply_list_operation(POLICY, "delete", True, "compact") == "delete,compact"
    assert apply_list_operation(POLICY, "delete,compact", True, "compact, delete") == "delete,compact"
    assert apply_list_operation(POLICY, "delete,compact", False, "delete") == "compact"
    with pytest.raises(ConfigError, match="String must be one of"):
        apply_list_operation(POLICY, "delete", True, "bogus")
    with pytest.raises(ConfigError, match="at least one of"):
        apply_list_operation(POLICY, "compact", False, "compact")
    with pytest.raises(ConfigError, match=r"^Can't APPEND to key min.cleanable.dirty.ratio because its type is not "
                                          r"LIST.$"):
        apply_list_operation(RATIO, "0.5", True, "0.1")


@given(st.floats(0, 1))
def test_every_ratio_printed_parses_back_to_itself(ratio):
    assert parse_value(RATIO, format_value(RATIO, ratio)) == ratio
