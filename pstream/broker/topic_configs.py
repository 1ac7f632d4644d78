"""Kafka's topic config names <-> pstream's TopicConfig, with the broker settings behind them.

One table: each Kafka topic config, the TopicConfig field that holds it, the broker-level
synonym and BrokerConfig field (if the broker has one), and its Kafka config type. Used by
CreateTopics, DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.

Values are parsed and checked as Kafka 3.9's ConfigDef does (a refusal is Kafka's "Invalid
value V for configuration NAME: ..." where Kafka has a range or a list of choices), and
described as Kafka formats them (a DOUBLE as Java's Double.toString, a LIST as given).
Where pstream is stricter than Kafka 3.9 it says so: an empty cleanup.policy (Kafka 3.9 takes
it to mean "never clean up") and a NaN dirty ratio are refused.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from pstream.errors import ConfigError
from pstream.storage.kafka_configs import (TOPIC_CONFIG_DEFS, check_value, java_double,
                                           merge_list, topic_config_def)


class ConfigSource(enum.IntEnum):
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class ConfigType(enum.IntEnum):
    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


LONG_MAX = (1 << 63) - 1
CLEANUP_POLICY_VALUES = ("compact", "delete")   # Kafka's ValidList.in(compact, delete)


@dataclass(frozen=True)
class TopicSetting:
    """A Kafka topic config pstream keeps a TopicConfig field for. Its type, range, documentation
    and broker synonym are Kafka's (storage/kafka_configs.json)."""
    kafka_name: str
    field: str                          # TopicConfig field
    broker_field: str | None = None     # BrokerConfig field behind its broker synonym
    unlimited: bool = False             # -1 means None (no limit)

    @property
    def type(self) -> ConfigType:
        return ConfigType[TOPIC_CONFIG_DEFS[self.kafka_name].type]

    @property
    def broker_name(self) -> str | None:
        synonyms = TOPIC_CONFIG_DEFS[self.kafka_name].synonyms
        return synonyms[0][0] if synonyms else None

    @property
    def low(self):
        validator = TOPIC_CONFIG_DEFS[self.kafka_name].validator or {}
        return validator.get("min") if validator.get("kind") == "range" else None

    @property
    def high(self):
        validator = TOPIC_CONFIG_DEFS[self.kafka_name].validator or {}
        return validator.get("max") if validator.get("kind") == "range" else None


TOPIC_SETTINGS = {s.kafka_name: s for s in (
    TopicSetting("cleanup.policy", "cleanup_policy", "cleanup_policy"),
    TopicSetting("min.cleanable.dirty.ratio", "min_cleanable_dirty_ratio", "min_cleanable_dirty_ratio"),
    TopicSetting("min.compaction.lag.ms", "min_compaction_lag_ms", "min_compaction_lag_ms"),
    TopicSetting("max.compaction.lag.ms", "max_compaction_lag_ms", "max_compaction_lag_ms"),
    TopicSetting("delete.retention.ms", "delete_retention_ms", "delete_retention_ms"),
    TopicSetting("retention.ms", "retention_ms", "retention_ms", unlimited=True),
    TopicSetting("retention.bytes", "retention_bytes", "retention_bytes", unlimited=True),
    TopicSetting("segment.bytes", "segment_bytes", "segment_bytes"),
    TopicSetting("segment.ms", "segment_ms", "segment_ms", unlimited=True),
    TopicSetting("max.message.bytes", "max_message_bytes", "message_max_bytes"),
    TopicSetting("message.timestamp.type", "message_timestamp_type"),
    TopicSetting("message.timestamp.before.max.ms", "message_timestamp_before_max_ms"),
    TopicSetting("message.timestamp.after.max.ms", "message_timestamp_after_max_ms"),
    TopicSetting("index.interval.bytes", "index_interval_bytes"),
)}
_BY_FIELD = {s.field: s for s in TOPIC_SETTINGS.values()}


def parse_topic_configs(pairs) -> dict:
    """[(kafka name, string value)] -> TopicConfig keyword settings; ConfigError names the bad one.
    A config pstream keeps a setting for goes to its field; any other Kafka topic config is
    checked as Kafka checks it and kept in `kafka_configs`; an unknown name is refused."""
    settings = {}
    for name, value in pairs:
        setting = TOPIC_SETTINGS.get(name)
        if setting is not None:
            settings[setting.field] = parse_value(setting, value)
        else:
            settings.setdefault("kafka_configs", {})[name] = check_value(topic_config_def(name), value)
    check_together(settings)
    return settings


def format_topic_configs(overrides: dict) -> dict[str, str]:
    """parse_topic_configs undone: a topic's overrides as {Kafka name: string value} (what a
    cluster keeps in etcd)."""
    configs = dict(overrides.get("kafka_configs", {}))
    for name, value in overrides.items():
        if name != "kafka_configs":
            configs[_BY_FIELD[name].kafka_name] = format_value(_BY_FIELD[name], value)
    return configs


def _invalid(setting: TopicSetting, value, why: str) -> ConfigError:
    return ConfigError(f"Invalid value {value} for configuration {setting.kafka_name}: {why}")


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
        if setting.unlimited and number == -1:
            return None
        _check_range(setting, number, value)
        return number
    if setting.type == ConfigType.DOUBLE:
        try:
            number = float(value.strip())   # Java's Double.parseDouble: "1", "0.5", "1e-1", " 0.3 "
        except ValueError:
            raise _invalid(setting, value, "Not a number of type DOUBLE") from None
        if math.isnan(number):   # Kafka 3.9 takes NaN (its range check never fails on it); no cleaner could
            raise _invalid(setting, value, f"Value must be a number between {java_double(setting.low)} and "
                                           f"{java_double(setting.high)}")
        _check_range(setting, number, value)
        return number
    if setting.type == ConfigType.LIST:
        return parse_list(setting, value)
    return value


def _check_range(setting: TopicSetting, number, text) -> None:
    """Kafka's ConfigDef.Range messages: bounds shown as written in LogConfig (0, 1)."""
    if setting.low is not None and number < setting.low:
        raise _invalid(setting, text, f"Value must be at least {setting.low}")
    if setting.high is not None and number > setting.high:
        raise _invalid(setting, text, f"Value must be no more than {setting.high}")


def parse_list(setting: TopicSetting, value: str) -> str:
    """A LIST config as Kafka parses it (split on commas, each item trimmed), checked against
    the values Kafka allows, a repeated item dropped; returned joined by "," in the order given."""
    items = [item.strip() for item in value.split(",")] if value.strip() else []
    out: list[str] = []
    for item in items:
        if setting.kafka_name == "cleanup.policy" and item not in CLEANUP_POLICY_VALUES:
            raise _invalid(setting, item, f"String must be one of: {', '.join(CLEANUP_POLICY_VALUES)}")
        if item not in out:
            out.append(item)
    if setting.kafka_name == "cleanup.policy" and not out:
        raise _invalid(setting, value, f"pstream needs at least one of {', '.join(CLEANUP_POLICY_VALUES)} (Kafka "
                                       f"3.9 reads an empty policy as \"never clean up\"; set retention.ms=-1 with "
                                       f"delete for that)")
    return ",".join(out)


def apply_list_operation(setting: TopicSetting, current: str, append: bool, value: str | None) -> str:
    """IncrementalAlterConfigs APPEND / SUBTRACT on a LIST config (KRaft's
    ConfigurationControlManager): the items given are added at the end where missing, or
    removed; `current` is the topic's value. ConfigError if the type is not LIST or an item
    is not allowed."""
    if setting.type != ConfigType.LIST:
        raise ConfigError(f"Can't {'APPEND' if append else 'SUBTRACT'} to key {setting.kafka_name} because its type "
                          f"is not LIST.")
    return parse_list(setting, merge_list(current, value, append))   # refuses an item Kafka does not allow


def check_together(settings: dict) -> None:
    """Kafka's LogConfig.validate rule across two settings (given in the same request)."""
    low, high = settings.get("min_compaction_lag_ms"), settings.get("max_compaction_lag_ms")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"conflict topic config setting min.compaction.lag.ms ({low}) > max.compaction.lag.ms "
                          f"({high})")


def format_value(setting: TopicSetting, value) -> str:
    if value is None:
        return "-1"
    if setting.type == ConfigType.DOUBLE:
        return java_double(value)
    return str(value)


def describe_topic_setting(setting: TopicSetting, topic, broker):
    """(value, source, synonyms [(name, value, source)]) of one setting of a topic."""
    value = format_value(setting, getattr(topic.config, setting.field))
    if setting.type == ConfigType.LIST and setting.field in topic.overrides:
        value = str(topic.overrides[setting.field])   # as given: "delete,compact" stays in that order
    synonyms = []
    if setting.field in topic.overrides:
        synonyms.append((setting.kafka_name, value, ConfigSource.DYNAMIC_TOPIC_CONFIG))
    synonyms += broker_synonyms(setting.kafka_name, broker)
    source = synonyms[0][2] if synonyms else ConfigSource.DEFAULT_CONFIG
    return value, source, synonyms


def broker_synonyms(topic_config: str, broker) -> list:
    """[(name, value, source)] of the broker configs behind a topic config, as Kafka's
    ConfigHelper lists them (broker_configs.synonyms_of its first broker synonym). The broker
    settings pstream has count for its own topic settings; the others' defaults are Kafka's, as
    their topic values are."""
    from pstream.broker.broker_configs import _pstream_settings, synonyms_of

    group = TOPIC_CONFIG_DEFS[topic_config].synonyms
    if not group:
        return []
    return synonyms_of(broker, group[0][0], _pstream_settings(broker) if topic_config in TOPIC_SETTINGS else {})


# Every Kafka topic config, in the order DescribeConfigs and CreateTopics list them.
TOPIC_CONFIG_NAMES = tuple(sorted(TOPIC_CONFIG_DEFS))

def describe_topic_config(name: str, topic, broker):
    """(value, source, synonyms [(name, value, source)]) of any Kafka topic config of a topic."""
    setting = TOPIC_SETTINGS.get(name)
    if setting is not None:
        return describe_topic_setting(setting, topic, broker)
    d = TOPIC_CONFIG_DEFS[name]
    synonyms = []
    value = topic.config.kafka_configs.get(name, d.default)
    if name in topic.overrides.get("kafka_configs", {}) or name.replace(".", "_") in topic.overrides:
        synonyms.append((name, value, ConfigSource.DYNAMIC_TOPIC_CONFIG))
    synonyms += broker_synonyms(name, broker)
    source = ConfigSource.DYNAMIC_TOPIC_CONFIG if synonyms and synonyms[0][2] == ConfigSource.DYNAMIC_TOPIC_CONFIG \
        else ConfigSource.DEFAULT_CONFIG
    return value, source, synonyms


def topic_config_type(name: str) -> ConfigType:
    return ConfigType[TOPIC_CONFIG_DEFS[name].type]


def setting_for_field(field: str) -> TopicSetting | None:
    return _BY_FIELD.get(field)
