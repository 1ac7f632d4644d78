"""Writes pstream/storage/kafka_configs.json from what Apache Kafka 3.9 itself says about its configs.

Run tools/kafka-configs/run.sh first (it dumps Kafka's ConfigDefs from the 3.9.2 jars and asks a
real 3.9.2 broker for DescribeConfigs), then:

    python tools/gen_kafka_configs.py /tmp/kafka-configs

The output keeps what pstream needs to accept, validate and describe every topic and broker
config as Kafka does: name, type, default (as DescribeConfigs shows it), validator, importance,
documentation, the broker synonyms of a topic config (in Kafka's order, with its unit
conversion), and for a broker config how Kafka lets it change (read-only, per-broker or
cluster-wide). Kafka's internal configs are left out, as DescribeConfigs leaves them out.
"""

from __future__ import annotations

import json
import os
import re
import sys

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pstream", "storage",
                   "kafka_configs.json")


def validator(config: dict) -> dict | None:
    """Kafka's validator as data: {"kind", ...} with the bounds or the allowed values."""
    v = config.get("validator_structured")
    if not v:
        return None
    kind, text, cls = v.get("kind"), v.get("string"), v.get("class", "")
    if kind == "Range":
        return {"kind": "range", "min": v.get("min"), "max": v.get("max"), "text": text}
    if kind in ("ValidList", "ValidString", "CaseInsensitiveValidString"):
        return {"kind": {"ValidList": "list_in", "ValidString": "string_in",
                         "CaseInsensitiveValidString": "string_in_ci"}[kind], "allowed": v["allowed"], "text": text}
    if kind == "NonEmptyString":
        return {"kind": "non_empty", "text": text}
    if kind == "NonNullValidator":
        return {"kind": "non_null", "text": text}
    if cls.endswith("MetadataVersionValidator"):
        return {"kind": "version_in", "allowed": re.findall(r"[0-9][0-9.]*(?:-IV[0-9]+)?", text), "text": text}
    if cls.endswith("ThrottledReplicaListValidator"):
        return {"kind": "replica_list", "text": text}
    if cls.startswith("org.apache.kafka.common.record.CompressionType"):
        low, high, other = re.fullmatch(r"\[(-?\d+),\.\.\.,(-?\d+)\] or (-?\d+)", text).groups()
        return {"kind": "range_or", "min": int(low), "max": int(high), "or": int(other), "text": text}
    return {"kind": "text", "text": text}   # described, not enforced


def topic_entry(config: dict) -> dict:
    return {"name": config["name"], "type": config["type"], "default": config["describe_configs"]["value"],
            "validator": validator(config), "importance": config["importance"], "doc": config["documentation"],
            "synonyms": [[s["name"], s["converter"]] for s in config["synonyms_all_topic_config_synonyms"]]}


def broker_entry(config: dict) -> dict:
    default = config["default"]
    if config["type"] == "LIST" and default is not None:
        default = default.replace(", ", ",").strip("[]") if default.startswith("[") else default
    return {"name": config["name"], "type": config["type"], "default": default, "validator": validator(config),
            "importance": config["importance"], "doc": config["documentation"], "dynamic": config["dynamic"],
            "sensitive": config["sensitive"] or config["type"] == "PASSWORD"}


def main(source: str) -> None:
    with open(os.path.join(source, "topic.json")) as f:
        topic = json.load(f)
    with open(os.path.join(source, "broker.json")) as f:
        broker = json.load(f)
    out = {"kafka_version": topic["kafka_version"],
           "topic": [topic_entry(c) for c in sorted(topic["configs"], key=lambda c: c["name"])],
           "broker": [broker_entry(c) for c in sorted(broker["configs"], key=lambda c: c["name"])
                      if not c["internal"]]}
    with open(OUT, "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
        f.write("\n")
    print(f"{OUT}: {len(out['topic'])} topic configs, {len(out['broker'])} broker configs")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("TMPDIR", "/tmp"), "kafka-configs"))
