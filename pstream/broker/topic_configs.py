"""Kafka's topic config names <-> pstream's TopicConfig, with the broker settings behind them.

One table: each Kafka topic config, the TopicConfig field that holds it, the broker-level
synonym and BrokerConfig field (if the broker has one), and its Kafka config type. Used by
CreateTopics, DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pstream.broker.config import BrokerConfig
from pstream.errors import ConfigError


class ConfigSource(enum.IntEnum):
    DYNAMIC_TOPIC_CONFIG = 1
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class ConfigType(enum.IntEnum):
    STRING = 2
    INT = 3
    LONG = 5
    LIST = 7


@dataclass(frozen=True)
class TopicSetting:
    kafka_name: str
    field: str                 # TopicConfig field
    broker_name: str | None    # Kafka's broker-level synonym
    broker_field: str | None   # BrokerConfig field behind it
    type: ConfigType
    unlimited: bool = False    # -1 means None (no limit)
    doc: str = ""


TOPIC_SETTINGS = {s.kafka_name: s for s in (
    TopicSetting("cleanup.policy", "cleanup_policy", "log.cleanup.policy", None, ConfigType.LIST,
                 doc="delete: old segments are removed by retention"),
    TopicSetting("retention.ms", "retention_ms", "log.retention.ms", "retention_ms", ConfigType.LONG, True,
                 "how long a segment is kept after its newest record (-1: forever)"),
    TopicSetting("retention.bytes", "retention_bytes", "log.retention.bytes", "retention_bytes", ConfigType.LONG,
                 True, "the size a partition is trimmed to by deleting old segments (-1: no limit)"),
    TopicSetting("segment.bytes", "segment_bytes", "log.segment.bytes", "segment_bytes", ConfigType.INT,
                 doc="size at which a segment is rolled"),
    TopicSetting("segment.ms", "segment_ms", "log.roll.ms", "segment_ms", ConfigType.LONG, True,
                 "age at which a segment is rolled"),
    TopicSetting("max.message.bytes", "max_message_bytes", "message.max.bytes", "message_max_bytes",
                 ConfigType.INT, doc="the largest record batch accepted"),
    TopicSetting("message.timestamp.type", "message_timestamp_type", "log.message.timestamp.type", None,
                 ConfigType.STRING, doc="CreateTime (the producer's) or LogAppendTime (the broker's clock)"),
    TopicSetting("message.timestamp.before.max.ms", "message_timestamp_before_max_ms",
                 "log.message.timestamp.before.max.ms", None, ConfigType.LONG,
                 doc="how far before the broker's clock a CreateTime timestamp may be"),
    TopicSetting("message.timestamp.after.max.ms", "message_timestamp_after_max_ms",
                 "log.message.timestamp.after.max.ms", None, ConfigType.LONG,
                 doc="how far after the broker's clock a CreateTime timestamp may be"),
    TopicSetting("index.interval.bytes", "index_interval_bytes", "log.index.interval.bytes", None, ConfigType.INT,
                 doc="bytes between offset index entries"),
)}
_BY_FIELD = {s.field: s for s in TOPIC_SETTINGS.values()}


def parse_topic_configs(pairs) -> dict:
    """[(kafka name, string value)] -> TopicConfig keyword settings; ConfigError names the bad one."""
    settings = {}
    for name, value in pairs:
        setting = TOPIC_SETTINGS.get(name)
        if setting is None:
            raise ConfigError(f"unknown topic config {name!r}; pstream knows {', '.join(sorted(TOPIC_SETTINGS))}")
        settings[setting.field] = parse_value(setting, value)
    return settings


def parse_value(setting: TopicSetting, value: str | None):
    if value is None:
        raise ConfigError(f"topic config {setting.kafka_name} needs a value")
    if setting.type in (ConfigType.INT, ConfigType.LONG):
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"topic config {setting.kafka_name} must be an integer, got {value!r}") from None
        bits = 31 if setting.type == ConfigType.INT else 63   # Kafka's INT is an int32, LONG an int64
        if not -(1 << bits) <= number < (1 << bits):
            raise ConfigError(f"topic config {setting.kafka_name} must fit a signed {bits + 1}-bit integer, "
                              f"got {value!r}")
        return None if setting.unlimited and number == -1 else number
    return value


def format_value(setting: TopicSetting, value) -> str:
    return "-1" if value is None else str(value)


def describe_topic_setting(setting: TopicSetting, topic, broker_config: BrokerConfig):
    """(value, source, synonyms [(name, value, source)]) of one setting of a topic."""
    value = format_value(setting, getattr(topic.config, setting.field))
    synonyms = []
    if setting.field in topic.overrides:
        synonyms.append((setting.kafka_name, value, ConfigSource.DYNAMIC_TOPIC_CONFIG))
    if setting.broker_name:
        broker_value, broker_source = describe_broker_setting(setting, broker_config)
        synonyms.append((setting.broker_name, broker_value, broker_source))
    source = synonyms[0][2] if synonyms else ConfigSource.DEFAULT_CONFIG
    return value, source, synonyms


def describe_broker_setting(setting: TopicSetting, broker_config: BrokerConfig):
    """(value, source) of the broker-level default behind a topic setting."""
    from pstream.storage.config import TopicConfig

    if setting.broker_field is None:
        return format_value(setting, getattr(TopicConfig(), setting.field)), ConfigSource.DEFAULT_CONFIG
    value = getattr(broker_config, setting.broker_field)
    default = getattr(BrokerConfig(), setting.broker_field)
    source = ConfigSource.DEFAULT_CONFIG if value == default else ConfigSource.STATIC_BROKER_CONFIG
    return format_value(setting, value), source


def setting_for_field(field: str) -> TopicSetting | None:
    return _BY_FIELD.get(field)
