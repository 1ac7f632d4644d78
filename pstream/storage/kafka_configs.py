"""Kafka 3.9's config definitions, and values checked as Kafka's ConfigDef checks them.

`kafka_configs.json` (written by tools/gen_kafka_configs.py from Kafka 3.9.2's own ConfigDefs)
holds every topic config (Kafka's LogConfig) and every broker config (KafkaConfig, internal
ones left out): type, default as DescribeConfigs shows it, validator, documentation, the broker
synonyms of a topic config, and how a broker config may change at run time.

`check_value` parses a string as ConfigDef.parseType does and applies the validator, with
Kafka's messages ("Invalid value V for configuration NAME: ..."); it returns the value as Kafka
describes it afterwards (a LIST joined by ",", a DOUBLE as Java prints it, a BOOLEAN lower case).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from decimal import Decimal

from pstream.errors import ConfigError

LONG_MAX = (1 << 63) - 1
_BITS = {"SHORT": 15, "INT": 31, "LONG": 63}
_REPLICA = re.compile(r"\d+:\d+")


@dataclass(frozen=True)
class KafkaConfigDef:
    name: str
    type: str                   # Kafka's ConfigDef.Type: BOOLEAN, STRING, INT, SHORT, LONG, DOUBLE, LIST, ...
    default: str | None         # as DescribeConfigs shows it when nothing sets it
    validator: dict | None      # {"kind": "range", "min", "max"} and the like (see check_value)
    importance: str
    doc: str
    synonyms: tuple = ()        # topic config: ((broker config, unit conversion), ...) in Kafka's order
    dynamic: str = "read-only"  # broker config: read-only, per-broker or cluster-wide
    sensitive: bool = False


def _load() -> tuple[dict, dict]:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "kafka_configs.json")) as f:
        data = json.load(f)
    topic = {c["name"]: KafkaConfigDef(c["name"], c["type"], c["default"], c["validator"], c["importance"], c["doc"],
                                       tuple(tuple(s) for s in c["synonyms"])) for c in data["topic"]}
    broker = {c["name"]: KafkaConfigDef(c["name"], c["type"], c["default"], c["validator"], c["importance"], c["doc"],
                                        dynamic=c["dynamic"], sensitive=c["sensitive"]) for c in data["broker"]}
    return topic, broker


TOPIC_CONFIG_DEFS, BROKER_CONFIG_DEFS = _load()

# Broker configs that name one setting in several units, in Kafka's order of precedence
# (log.retention.ms, .minutes, .hours): each member -> ((name, unit conversion), ...) of its group.
BROKER_SYNONYM_GROUPS = {name: d.synonyms for d in TOPIC_CONFIG_DEFS.values() for name, _ in d.synonyms}
UNIT_MS = {"identity": 1, "MINUTES_TO_MILLISECONDS": 60_000, "HOURS_TO_MILLISECONDS": 3_600_000}


def java_double(value) -> str:
    """A double as Java's Double.toString writes it: 0.5, 1.0, 1.0E-5, 2.5E7."""
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e7 or not math.isfinite(value):
        return repr(value)
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()   # the shortest digits, as Java's
    text = "".join(map(str, digits))
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{exponent + len(text) - 1}"


def invalid(name: str, value, why: str) -> ConfigError:
    """Kafka's ConfigException message."""
    return ConfigError(f"Invalid value {value} for configuration {name}: {why}")


def check_value(d: KafkaConfigDef, value) -> str:
    """value (a string, or a Python bool/int/float) checked as Kafka checks d; returned as
    DescribeConfigs shows it. ConfigError with Kafka's message otherwise."""
    if value is None:
        raise ConfigError(f"Null value not supported for : {d.name}")
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value).strip()
    kind = d.type
    if kind == "BOOLEAN":
        if text.lower() not in ("true", "false"):
            raise invalid(d.name, value, "Expected value to be either true or false")
        out, number = text.lower(), None
    elif kind in _BITS:
        try:
            number = int(text)
        except ValueError:
            raise invalid(d.name, value, f"Not a number of type {kind}") from None
        if not -(1 << _BITS[kind]) <= number < (1 << _BITS[kind]):
            raise invalid(d.name, value, f"Not a number of type {kind}")
        out = str(number)
    elif kind == "DOUBLE":
        try:
            number = float(text)
        except ValueError:
            raise invalid(d.name, value, "Not a number of type DOUBLE") from None
        out = java_double(number)
    elif kind == "LIST":
        items = [item.strip() for item in text.split(",")] if text else []
        out, number = ",".join(items), None
    else:
        out, number = text, None
    _validate(d, value, out, number)
    return out


def _validate(d: KafkaConfigDef, given, out: str, number) -> None:
    v = d.validator
    if not v:
        return
    kind = v["kind"]
    if kind == "range":
        low, high = v["min"], v["max"]
        if low is not None and number < low:
            raise invalid(d.name, given, f"Value must be at least {low}")
        if high is not None and number > high:
            raise invalid(d.name, given, f"Value must be no more than {high}")
    elif kind == "range_or":
        if number != v["or"] and not v["min"] <= number <= v["max"]:
            raise invalid(d.name, given, f"Value must be between {v['min']} and {v['max']} or equal to {v['or']}")
    elif kind == "list_in":
        for item in out.split(",") if out else []:
            if item not in v["allowed"]:
                raise invalid(d.name, item, f"String must be one of: {', '.join(v['allowed'])}")
    elif kind == "string_in":
        if out not in v["allowed"]:
            raise invalid(d.name, given, f"String must be one of: {', '.join(v['allowed'])}")
    elif kind == "string_in_ci":
        if out.upper() not in (a.upper() for a in v["allowed"]):
            raise invalid(d.name, given, f"String must be one of (case insensitive): {', '.join(v['allowed'])}")
    elif kind == "non_empty":
        if not out:
            raise invalid(d.name, given, "String must be non-empty")
    elif kind == "version_in":
        if out not in v["allowed"] and not any(a.startswith(out + "-IV") for a in v["allowed"]):
            raise invalid(d.name, given, f"Version `{out}` is not a valid version")
    elif kind == "replica_list":
        if out != "*" and not all(_REPLICA.fullmatch(item) for item in out.split(",") if out):
            raise invalid(d.name, given, "must be the literal '*' or a list of replicas in the following format: "
                                         "[partitionId]:[brokerId],[partitionId]:[brokerId],...")


def merge_list(current: str, given: str | None, append: bool) -> str:
    """IncrementalAlterConfigs APPEND or SUBTRACT on a LIST value (KRaft's
    ConfigurationControlManager): the items given are added at the end where missing, or removed."""
    items = [item for item in current.split(",") if item]
    wanted = [item.strip() for item in (given or "").split(",") if item.strip()]
    items = items + [item for item in wanted if item not in items] if append else \
        [item for item in items if item not in wanted]
    return ",".join(items)


def topic_config_def(name: str) -> KafkaConfigDef:
    """The definition of a Kafka topic config; ConfigError (INVALID_CONFIG) with Kafka's message
    for a name Kafka does not know."""
    d = TOPIC_CONFIG_DEFS.get(name)
    if d is None:
        raise ConfigError(f"Unknown topic config name: {name}")
    return d
