"""The broker resource of DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.

Every Kafka 3.9 broker config (storage/kafka_configs.json) is described as Kafka describes its
broker: where pstream has a setting, its value (STATIC_BROKER_CONFIG when set at start to other
than pstream's default; the listeners, log.dirs, the ids and roles always), otherwise Kafka's
default; a sensitive config shows no value.

The configs Kafka lets change at run time (per-broker, or cluster-wide) can be set on this broker
(resource name "<node id>") or as the cluster default (""). They are kept in
<data>/@node/dynamic-configs.json, a broker setting over a cluster default over the static
setting, and applied at once: topic defaults (retention, segments, message.max.bytes, the
cleaner's topic settings) to every topic that does not set its own, the cleaner's threads and
memory by restarting its threads, max.connections at the next accept. Dynamic configs pstream
has no setting for are kept and described.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from pstream.broker.config import FIELD_OF_KAFKA_NAME, BrokerConfig, parse_kafka_value
from pstream.broker.topic_configs import ConfigSource, ConfigType
from pstream.errors import ConfigError
from pstream.storage import layout
from pstream.storage.kafka_configs import BROKER_CONFIG_DEFS, BROKER_SYNONYM_GROUPS, UNIT_MS, check_value, java_double

DYNAMIC_FILE = "dynamic-configs.json"


@dataclass
class BrokerEntry:
    name: str
    value: str | None
    source: ConfigSource
    synonyms: list   # [(name, value, source)]
    type: ConfigType
    doc: str
    read_only: bool
    sensitive: bool


class DynamicBrokerConfigs:
    """The dynamic broker configs set through the Kafka API: this broker's and the cluster
    default, by Kafka name, as described (kafka_configs.check_value)."""

    def __init__(self, node_dir: str, node_id: int):
        self.path = os.path.join(node_dir, DYNAMIC_FILE)
        self.node = str(node_id)
        self.broker: dict[str, str] = {}
        self.cluster: dict[str, str] = {}

    def load(self) -> "DynamicBrokerConfigs":
        if os.path.exists(self.path):
            data = layout.read_json(self.path)
            self.broker, self.cluster = dict(data.get("broker", {})), dict(data.get("cluster", {}))
        return self

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        layout.write_json_atomic(self.path, {"broker": self.broker, "cluster": self.cluster})

    def scope(self, resource_name: str) -> dict:
        return self.broker if resource_name == self.node else self.cluster

    def apply_to(self, static: BrokerConfig) -> BrokerConfig:
        """The static settings with the dynamic ones pstream has a setting for laid over them."""
        changes = {}
        for name in {**self.cluster, **self.broker}:
            if name in FIELD_OF_KAFKA_NAME:
                changes[FIELD_OF_KAFKA_NAME[name]] = parse_kafka_value(name, self.broker.get(name, self.cluster.get(name)))
        return replace(static, **changes)


def check_changes(dynamic: DynamicBrokerConfigs, resource_name: str, changes) -> list:
    """[(name, value as described, or None to delete)] of SETs and DELETEs [(name, value or
    None)] on resource `resource_name`, checked in Kafka's order (ConfigAdminManager): the
    resource, then the names (all of them), then the values. A name Kafka does not know is kept,
    as Kafka keeps it; a DELETE is always taken. ConfigError (Kafka answers INVALID_REQUEST)."""
    if resource_name and not re.fullmatch(r"-?[0-9]+", resource_name):
        raise ConfigError(f"Node id must be an integer, but it is: {resource_name}")
    if resource_name not in ("", dynamic.node):
        raise ConfigError(f"Unexpected broker id, expected {dynamic.node}, but received {resource_name}")
    sets = [name for name, value in changes if value is not None and name in BROKER_CONFIG_DEFS]
    static = [name for name in sets if BROKER_CONFIG_DEFS[name].dynamic == "read-only"]
    if static:
        raise ConfigError(f"Cannot update these configs dynamically: Set({', '.join(static)})")
    per_broker = [name for name in sets if BROKER_CONFIG_DEFS[name].dynamic == "per-broker"]
    if per_broker and not resource_name:
        raise ConfigError(f"Cannot update these configs at default cluster level, broker id must be specified: "
                          f"Set({', '.join(per_broker)})")
    checked = []
    for name, value in changes:
        if value is not None and name in BROKER_CONFIG_DEFS:
            value = check_value(BROKER_CONFIG_DEFS[name], value)
            if name in FIELD_OF_KAFKA_NAME:
                parse_kafka_value(name, value)   # pstream's own bounds (a segment below 4 GiB, say)
        checked.append((name, value))
    return checked


def _text(value) -> str:
    if value is None:
        return "-1"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return java_double(value)
    return str(value)


def _pstream_settings(broker) -> dict[str, tuple[str | None, str | None]]:
    """(value, pstream's default) of each Kafka broker config pstream has a setting for, as Kafka
    prints them. A default of None: the value is what it is (the listeners, the data directory,
    the ids), always described as set."""
    cfg, defaults = broker.static_config, BrokerConfig()
    listen_port = broker.bound_address[1] if getattr(broker, "bound_address", None) else cfg.listen_port
    flush_always = BROKER_CONFIG_DEFS["log.flush.interval.messages"].default if cfg.flush != "always" else "1"
    out = {name: (_text(getattr(cfg, field)), _text(getattr(defaults, field)))
           for name, field in FIELD_OF_KAFKA_NAME.items() if name in BROKER_CONFIG_DEFS}
    out.update({"listeners": (f"PLAINTEXT://{cfg.listen_host}:{listen_port}", None),
                "advertised.listeners": (f"PLAINTEXT://{broker.host}:{broker.port}", None),
                "log.dirs": (os.path.abspath(cfg.data_dir), None), "broker.id": (str(cfg.node_id), None),
                "node.id": (str(cfg.node_id), None),
                "process.roles": ("broker,controller", None),
                "log.flush.interval.messages": (flush_always, "1"),   # flush="always": every batch
                "log.flush.interval.ms": (str(cfg.flush_ms) if cfg.flush == "interval" else None,
                                          BROKER_CONFIG_DEFS["log.flush.interval.ms"].default)})
    return out


def _static_and_default(name: str, ours: dict) -> tuple[str | None, str | None]:
    """(value set at start or None, default) of a broker config, as Kafka would describe them:
    pstream's value counts as set only where it differs from pstream's default, and pstream's
    default is described as Kafka's where the two mean the same (log.retention.ms: none, since
    log.retention.hours' 168 says it)."""
    d = BROKER_CONFIG_DEFS[name]
    static, default = ours.get(name, (None, d.default))
    if static is not None and static == default:
        static = None    # pstream's default: described as not set
    if default is None and name in ours:
        default = d.default
    group = BROKER_SYNONYM_GROUPS.get(name, ())
    if name in ours and d.default is None and default is not None and (name, "identity") in group:
        kafka_ms = next((int(BROKER_CONFIG_DEFS[n].default) * UNIT_MS[unit] for n, unit in group
                         if BROKER_CONFIG_DEFS[n].default is not None), None)
        if kafka_ms is not None and str(kafka_ms) == default:
            default = None
    return static, default


def synonyms_of(broker, name: str, ours: dict) -> list:
    """[(name, value, source)]: Kafka's ConfigHelper.configSynonyms for broker config `name`:
    every member of its synonym group set dynamically for this broker, then as the cluster
    default, then statically, then by default, dropping what comes before `name` itself (so
    log.retention.ms set nowhere has no synonyms, not log.retention.hours' default)."""
    group = [n for n, _ in BROKER_SYNONYM_GROUPS.get(name, ((name, "identity"),))]
    dynamic = broker.dynamic_configs
    entries = []
    for scope, source in ((dynamic.broker, ConfigSource.DYNAMIC_BROKER_CONFIG),
                          (dynamic.cluster, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)):
        entries += [(n, scope[n], source) for n in group if n in scope]
    values = {n: _static_and_default(n, ours) for n in group}
    entries += [(n, values[n][0], ConfigSource.STATIC_BROKER_CONFIG) for n in group if values[n][0] is not None]
    entries += [(n, values[n][1], ConfigSource.DEFAULT_CONFIG) for n in group if values[n][1] is not None]
    while entries and entries[0][0] != name:
        entries.pop(0)
    return entries


def describe_broker(broker, resource_name: str, keys) -> list[BrokerEntry]:
    """The entries of DescribeConfigs of the broker resource ("": the cluster defaults set)."""
    dynamic: DynamicBrokerConfigs = broker.dynamic_configs
    ours = _pstream_settings(broker) if resource_name else {}
    names = sorted(BROKER_CONFIG_DEFS) if resource_name else sorted(dynamic.cluster)
    out = []
    for name in names:
        if keys is not None and name not in keys:
            continue
        d = BROKER_CONFIG_DEFS.get(name)
        if d is None:   # a name Kafka does not know, kept as Kafka keeps it: described as Kafka does
            out.append(BrokerEntry(name, None, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
                                   [(name, None, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)], ConfigType.UNKNOWN, "",
                                   read_only=True, sensitive=True))
            continue
        if not resource_name:
            value = dynamic.cluster[name]
            out.append(BrokerEntry(name, None if d.sensitive else value, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
                                   [(name, None if d.sensitive else value, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)],
                                   ConfigType[d.type], d.doc, read_only=False, sensitive=d.sensitive))
            continue
        synonyms = synonyms_of(broker, name, ours)
        value, source = (synonyms[0][1], synonyms[0][2]) if synonyms else (None, ConfigSource.DEFAULT_CONFIG)
        if d.sensitive:
            value, synonyms = None, [(n, None, s) for n, _, s in synonyms if s != ConfigSource.DEFAULT_CONFIG]
        out.append(BrokerEntry(name, value, source, synonyms, ConfigType[d.type], d.doc,
                               read_only=d.dynamic == "read-only", sensitive=d.sensitive))
    return out
