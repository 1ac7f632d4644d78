"""pstream as Apache Kafka's own Java client (kafka-clients 4.1.1) sees it: the Admin client creating topics
the way Kafka Connect does and describing configs with synonyms and documentation, the consumer's fetch
sessions (KIP-227), and consumer groups with the classic protocol and with KIP-848's
(group.protocol=consumer).

The client is tests/java (a small Maven project, built once per session by the `java_client` fixture, or
beforehand by .ci/install-java-clients); each test runs one scenario of it in one JVM and asserts on the
JSON lines it prints (see tests/java/src/main/java/pstream/testclient/*.java for what each prints).
Without java or mvn the tests are skipped, unless PSTREAM_TEST_REQUIRE_JAVA=1: then they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass, field

import pytest

JAVA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "java")


def _load_build():
    spec = importlib.util.spec_from_file_location("pstream_java_build", os.path.join(JAVA_DIR, "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


java_build = _load_build()

# Kafka's order of a config's synonyms: the most specific source first (ConfigSource's order).
SOURCE_ORDER = ["DYNAMIC_TOPIC_CONFIG", "DYNAMIC_BROKER_LOGGER_CONFIG", "DYNAMIC_BROKER_CONFIG",
                "DYNAMIC_DEFAULT_BROKER_CONFIG", "DYNAMIC_CLIENT_METRICS_CONFIG", "DYNAMIC_GROUP_CONFIG",
                "STATIC_BROKER_CONFIG", "DEFAULT_CONFIG"]


@dataclass
class JavaRun:
    """What one run of the Java client printed."""
    command: str
    returncode: int
    events: list[dict]
    stderr: str
    by_name: dict = field(init=False)

    def __post_init__(self):
        self.by_name = {}
        for e in self.events:
            self.by_name.setdefault(e["event"], e)

    def describe_failure(self) -> str:
        error = self.by_name.get("error")
        last = "\n".join(json.dumps(e)[:600] for e in self.events[-4:])
        return (f"the Java client's {self.command} exited with {self.returncode}; "
                f"error: {json.dumps(error, indent=1) if error else None}\nlast events:\n{last}\n"
                f"stderr (tail):\n{self.stderr[-3000:]}")

    def check(self) -> JavaRun:
        assert self.returncode == 0, self.describe_failure()
        return self

    def __getitem__(self, event: str) -> dict:
        assert event in self.by_name, f"no {event!r} event\n" + self.describe_failure()
        return self.by_name[event]


class JavaClient:
    def __init__(self, classpath: str):
        self.classpath = classpath

    def run(self, subcommand: str, spec: dict, timeout: float = 60) -> JavaRun:
        # C1 only and the serial GC: these runs are short, the JVM's start-up is most of them
        cmd = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xss512k",
               "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", self.classpath, java_build.MAIN,
               subcommand, json.dumps(spec)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=JAVA_DIR)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"the Java client's {subcommand} ran over {timeout}s; "
                        f"stdout:\n{e.stdout}\nstderr:\n{e.stderr}")
        events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        return JavaRun(subcommand, done.returncode, events, done.stderr)

    def admin(self, broker, *ops: dict) -> list[dict]:
        """Runs the Admin operations in one JVM; returns each one's result; any operation's error fails."""
        run = self.run("admin", {"bootstrap": broker.bootstrap, "ops": list(ops)}).check()
        assert len(run.events) == len(ops), run.describe_failure()
        for op, event in zip(ops, run.events):
            assert "error" not in event, f"{op['op']} failed: {json.dumps(event['error'], indent=1)}"
        return [event["result"] for event in run.events]


@pytest.fixture(scope="session")
def java_client() -> JavaClient:
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        message = f"{' and '.join(missing)} not installed; .ci/install-java-clients installs them"
        if os.environ.get("PSTREAM_TEST_REQUIRE_JAVA") == "1":
            pytest.fail(message + " (PSTREAM_TEST_REQUIRE_JAVA=1)")
        pytest.skip(message)
    try:
        return JavaClient(java_build.ensure_built())
    except RuntimeError as e:
        pytest.fail(f"could not build the Java test client: {e}")


def fetch_session_metrics(broker) -> dict[str, float]:
    """The broker's pstream_fetch_sessions* metrics (as test_fetch_sessions.py checks), from its admin API."""
    text = urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=10).read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith("pstream_fetch_sessions")}


# -- 1. topics as Kafka Connect, Debezium and Schema Registry create them --------------------------------

# Kafka Connect's three internal topics, as its KafkaConfigBackingStore / KafkaOffsetBackingStore /
# KafkaStatusBackingStore define them with TopicAdmin: compacted, 1 / 25 / 5 partitions, the worker's
# replication factor, plus the worker's config.storage.* / offset.storage.* / status.storage.* topic settings.
CONNECT_TOPICS = [
    {"name": "connect-configs", "partitions": 1, "replicationFactor": 1,
     "configs": {"cleanup.policy": "compact", "min.insync.replicas": "1", "retention.ms": "-1",
                 "compression.type": "zstd"}},
    {"name": "connect-offsets", "partitions": 25, "replicationFactor": 1,
     "configs": {"cleanup.policy": "compact", "min.insync.replicas": "1", "compression.type": "lz4",
                 "segment.bytes": "52428800", "min.compaction.lag.ms": "0",
                 "delete.retention.ms": "86400000"}},
    {"name": "connect-status", "partitions": 5, "replicationFactor": 1,
     "configs": {"cleanup.policy": "compact", "min.insync.replicas": "1", "retention.ms": "604800000",
                 "unclean.leader.election.enable": "false", "compression.type": "producer"}},
]
# A Debezium change-data topic (topic.creation.default.*), its schema history topic (partitions and
# replication factor left to the broker, as Debezium's -1 does) and Schema Registry's _schemas.
OTHER_TOPICS = [
    {"name": "dbserver1.inventory.customers", "partitions": 3, "replicationFactor": 1,
     "configs": {"cleanup.policy": "compact,delete", "compression.type": "lz4", "retention.ms": "1209600000",
                 "retention.bytes": "1073741824", "min.compaction.lag.ms": "60000",
                 "max.message.bytes": "2097152",
                 "message.timestamp.type": "LogAppendTime", "segment.ms": "3600000"}},
    {"name": "schema-changes.inventory", "partitions": None, "replicationFactor": None,
     "configs": {"cleanup.policy": "delete", "retention.ms": "9223372036854775807", "retention.bytes": "-1"}},
    {"name": "_schemas", "partitions": 1, "replicationFactor": 1, "configs": {"cleanup.policy": "compact"}},
]


def test_kafka_connect_style_topics_are_created_found_and_described_with_their_configs(java_client,
                                                                                       shared_broker):
    connect_names = [t["name"] for t in CONNECT_TOPICS]
    all_topics = CONNECT_TOPICS + OTHER_TOPICS
    names = [t["name"] for t in all_topics]
    first, created, again, *policies, described, topics = java_client.admin(
        shared_broker,
        {"op": "connectCreateOrFind", "topics": CONNECT_TOPICS},
        {"op": "createTopics", "topics": OTHER_TOPICS},
        {"op": "connectCreateOrFind", "topics": CONNECT_TOPICS},        # a worker restarting finds them
        *({"op": "connectCleanupPolicy", "topic": name} for name in connect_names),
        {"op": "describeConfigs", "resources": [{"type": "TOPIC", "name": n} for n in names]},
        {"op": "describeTopics", "topics": names})

    assert sorted(first["created"]) == sorted(connect_names) and first["existing"] == []
    assert again["created"] == [] and sorted(again["existing"]) == sorted(connect_names)
    assert policies == [["compact"]] * 3      # what Connect's verifyTopicCleanupPolicyOnlyCompact requires

    # CreateTopics' answer (v5+) carries the partitions, replication factor and configs the topic got
    for topic in OTHER_TOPICS:
        got = created[topic["name"]]
        assert "error" not in got, got
        assert got["numPartitions"] == (topic["partitions"] or 1)       # num.partitions: 1
        assert got["replicationFactor"] == 1
        for name, value in topic["configs"].items():
            assert got["configs"][name] == value, (topic["name"], name)

    for topic in all_topics:
        configs = described[f"TOPIC:{topic['name']}"]
        assert "error" not in configs, configs
        for name, value in topic["configs"].items():
            assert (configs[name]["value"], configs[name]["source"]) == (value, "DYNAMIC_TOPIC_CONFIG"), \
                (topic["name"], name)
        for name, entry in configs.items():
            if name not in topic["configs"]:
                assert entry["source"] == "DEFAULT_CONFIG", (topic["name"], name, entry)
        partitions = topics[topic["name"]]
        assert [p["partition"] for p in partitions] == list(range(topic["partitions"] or 1))
        assert all(p["leader"] == 0 and p["replicas"] == [0] and p["isr"] == [0] for p in partitions), \
            partitions


# -- 2. DescribeConfigs with synonyms and documentation; dynamic broker configs -------------------------

def check_kafkas_rules(resource: str, configs: dict) -> None:
    """What Kafka's answer holds for every entry: documented; a sensitive config is a PASSWORD with no value;
    the first synonym is the entry itself (its value and source); synonyms go from the most specific source to
    the default; without synonyms an entry is a default."""
    for name, entry in configs.items():
        where = f"{resource} {name}: {entry}"
        assert entry["documentation"], where
        if entry["sensitive"]:
            assert entry["value"] is None and entry["type"] == "PASSWORD", where
        synonyms = entry["synonyms"]
        if synonyms:
            assert synonyms[0][1:] == [entry["value"], entry["source"]], where
            ranks = [SOURCE_ORDER.index(source) for _, _, source in synonyms]
            assert ranks == sorted(ranks), where
        else:
            assert entry["source"] == "DEFAULT_CONFIG", where


def fields(entry: dict) -> tuple:
    return entry["value"], entry["source"], entry["readOnly"], entry["sensitive"], entry["type"]


def test_describe_configs_with_synonyms_and_documentation_and_dynamic_broker_configs(java_client,
                                                                                     broker_factory):
    broker = broker_factory()       # its own: the test changes broker configs
    everything = {"op": "describeConfigs", "synonyms": True, "documentation": True}
    before, _, _, after, cluster_default, plain = java_client.admin(
        broker,
        {"op": "createTopics", "topics": [
            {"name": "syn", "partitions": 1, "replicationFactor": 1,
             "configs": {"retention.ms": "3600000", "cleanup.policy": "compact", "compression.type": "lz4"}},
            {"name": "plain", "partitions": 1, "replicationFactor": 1}]},
        {**everything, "resources": [{"type": "TOPIC", "name": "syn"}, {"type": "BROKER", "name": "0"}]},
        {"op": "incrementalAlterConfigs", "resource": {"type": "BROKER", "name": ""},
         "ops": [{"name": "log.retention.ms", "op": "SET", "value": "7200000"},
                 {"name": "log.retention.bytes", "op": "SET", "value": "1000000000"}]},
        {"op": "incrementalAlterConfigs", "resource": {"type": "BROKER", "name": "0"},
         "ops": [{"name": "log.retention.ms", "op": "SET", "value": "5400000"}]},
        {**everything, "resources": [{"type": "TOPIC", "name": "syn"}, {"type": "TOPIC", "name": "plain"},
                                     {"type": "BROKER", "name": "0"}]},
        {**everything, "resources": [{"type": "BROKER", "name": ""}]},
        {"op": "describeConfigs",
         "resources": [{"type": "TOPIC", "name": "plain"}, {"type": "BROKER", "name": "0"}]},
    )[1:]
    for described in (before, after, cluster_default):
        for resource, configs in described.items():
            assert "error" not in configs, configs
            check_kafkas_rules(resource, configs)

    # before: the topic's overrides, then the broker's (default) synonym
    syn = before["TOPIC:syn"]
    assert fields(syn["retention.ms"]) == ("3600000", "DYNAMIC_TOPIC_CONFIG", False, False, "LONG")
    # Kafka lists no broker synonym: nothing sets log.retention.ms, and ConfigHelper drops the
    # group's default (log.retention.hours) that comes before it
    assert syn["retention.ms"]["synonyms"] == [["retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG"]]
    assert syn["segment.ms"]["synonyms"] == []
    assert fields(before["BROKER:0"]["log.retention.ms"]) == (None, "DEFAULT_CONFIG", False, False, "LONG")
    assert before["BROKER:0"]["log.retention.ms"]["synonyms"] == []
    assert before["BROKER:0"]["log.retention.hours"]["synonyms"] == [["log.retention.hours", "168", "DEFAULT_CONFIG"]]
    assert fields(syn["cleanup.policy"]) == ("compact", "DYNAMIC_TOPIC_CONFIG", False, False, "LIST")
    assert syn["cleanup.policy"]["synonyms"] == [["cleanup.policy", "compact", "DYNAMIC_TOPIC_CONFIG"],
                                                 ["log.cleanup.policy", "delete", "DEFAULT_CONFIG"]]
    assert syn["compression.type"]["synonyms"] == [["compression.type", "lz4", "DYNAMIC_TOPIC_CONFIG"],
                                                   ["compression.type", "producer", "DEFAULT_CONFIG"]]
    assert fields(syn["max.message.bytes"]) == ("1048588", "DEFAULT_CONFIG", False, False, "INT")
    assert syn["max.message.bytes"]["synonyms"] == [["message.max.bytes", "1048588", "DEFAULT_CONFIG"]]
    node = before["BROKER:0"]
    assert fields(node["log.retention.bytes"]) == ("-1", "DEFAULT_CONFIG", False, False, "LONG")
    assert fields(node["broker.id"]) == ("0", "STATIC_BROKER_CONFIG", True, False, "INT")
    assert node["broker.id"]["synonyms"] == [["broker.id", "0", "STATIC_BROKER_CONFIG"],
                                             ["broker.id", "-1", "DEFAULT_CONFIG"]]
    assert fields(node["node.id"]) == ("0", "STATIC_BROKER_CONFIG", True, False, "INT")
    assert node["node.id"]["synonyms"] == [["node.id", "0", "STATIC_BROKER_CONFIG"], ["node.id", "-1", "DEFAULT_CONFIG"]]
    assert fields(node["log.dirs"]) == (broker.data_dir, "STATIC_BROKER_CONFIG", True, False, "STRING")
    assert fields(node["ssl.key.password"]) == (None, "DEFAULT_CONFIG", False, True, "PASSWORD")
    assert fields(node["sasl.jaas.config"]) == (None, "DEFAULT_CONFIG", False, True, "PASSWORD")
    assert fields(node["auto.create.topics.enable"]) == ("true", "DEFAULT_CONFIG", True, False, "BOOLEAN")
    assert fields(node["num.network.threads"]) == ("3", "DEFAULT_CONFIG", False, False, "INT")

    # after: the broker's own value, then the cluster default, then the group's default (Kafka's
    # log.retention.hours=168); a topic's override still comes first.
    dynamic = [["log.retention.ms", "5400000", "DYNAMIC_BROKER_CONFIG"],
               ["log.retention.ms", "7200000", "DYNAMIC_DEFAULT_BROKER_CONFIG"],
               ["log.retention.hours", "168", "DEFAULT_CONFIG"]]
    override = [["retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG"]]
    for resource, name, first in [("TOPIC:syn", "retention.ms", override),
                                  ("TOPIC:plain", "retention.ms", []), ("BROKER:0", "log.retention.ms", [])]:
        assert after[resource][name]["synonyms"] == first + dynamic, resource
    assert fields(after["TOPIC:syn"]["retention.ms"])[:2] == ("3600000", "DYNAMIC_TOPIC_CONFIG")
    broker_value = ("5400000", "DYNAMIC_BROKER_CONFIG", False, False, "LONG")
    assert fields(after["TOPIC:plain"]["retention.ms"]) == broker_value
    assert fields(after["BROKER:0"]["log.retention.ms"]) == broker_value
    bytes_synonyms = [["log.retention.bytes", "1000000000", "DYNAMIC_DEFAULT_BROKER_CONFIG"],
                      ["log.retention.bytes", "-1", "DEFAULT_CONFIG"]]
    assert fields(after["TOPIC:plain"]["retention.bytes"])[:2] == \
        ("1000000000", "DYNAMIC_DEFAULT_BROKER_CONFIG")
    assert after["TOPIC:plain"]["retention.bytes"]["synonyms"] == bytes_synonyms
    assert after["BROKER:0"]["log.retention.bytes"]["synonyms"] == bytes_synonyms
    # the cluster default resource lists only what was set there
    assert {name: fields(e)[:2] for name, e in cluster_default["BROKER:"].items()} == {
        "log.retention.ms": ("7200000", "DYNAMIC_DEFAULT_BROKER_CONFIG"),
        "log.retention.bytes": ("1000000000", "DYNAMIC_DEFAULT_BROKER_CONFIG")}
    # without the options: no synonyms, no documentation
    for resource, configs in plain.items():
        assert all(e["synonyms"] == [] and e["documentation"] is None for e in configs.values()), resource
    assert plain["BROKER:0"]["log.retention.ms"]["value"] == "5400000"


# -- 3. fetch sessions (KIP-227) ------------------------------------------------------------------------

def test_the_java_consumer_fetches_through_incremental_fetch_sessions(java_client, broker_factory):
    broker = broker_factory()       # its own: the session counters are this consumer's alone
    topic = broker.create_topic("sessions", partitions=6)
    assert fetch_session_metrics(broker)["pstream_fetch_sessions_created_total"] == 0
    run = java_client.run("fetch-sessions", {"bootstrap": broker.bootstrap, "topic": topic, "partitions": 6,
                                             "records": 60, "lingerMs": 2000, "late": 5}).check()
    caught_up, lingered = run["caughtUp"], run["lingered"]
    assert sorted(caught_up["values"]) == list(range(60))
    assert caught_up["perPartition"] == {str(p): 10 for p in range(6)}
    assert lingered["late"] == [60, 61, 62, 63, 64]      # written to one partition while the session was open
    metrics = fetch_session_metrics(broker)
    assert metrics["pstream_fetch_sessions_created_total"] >= 1
    assert metrics["pstream_fetch_sessions_not_found_total"] == 0
    assert metrics["pstream_fetch_sessions_evicted_total"] == 0
    # every fetch after the first continued the session: the consumer counted its own fetches
    assert lingered["fetchesDuringLinger"] >= 5
    assert metrics["pstream_fetch_sessions_incremental_fetches_total"] >= lingered["fetchesDuringLinger"], \
        (metrics, lingered)
    assert metrics["pstream_fetch_sessions"] == 0        # the consumer's close ended its session (epoch -1)


# -- 4. consumer groups: the classic protocol and KIP-848's ---------------------------------------------

@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_a_consumer_group_shares_partitions_between_members_that_join_and_leave(
        java_client, shared_broker, kafka_topic_factory, kafka_group_id, protocol):
    """group.protocol=consumer is KIP-848 (ConsumerGroupHeartbeat): the broker assigns the partitions."""
    partitions, records, more = 4, 40, 20
    topic = kafka_topic_factory(partitions)
    run = java_client.run("group", {"bootstrap": shared_broker.bootstrap, "topic": topic,
                                    "group": kafka_group_id, "protocol": protocol, "partitions": partitions,
                                    "records": records, "more": more, "timeoutMs": 20000},
                          timeout=120).check()
    everything = set(range(partitions))
    assert run["consumed"]["values"] == list(range(records))
    assert run["committed"]["offsets"] == \
        {str(p): len(range(p, records, partitions)) for p in range(partitions)}
    split = run["split"]
    assert split["a"] and split["b"] and not set(split["a"]) & set(split["b"]), split
    assert set(split["a"]) | set(split["b"]) == everything, split
    after = run["consumedAfterSplit"]
    for member in ("a", "b"):      # each member got the new records of its own partitions only
        assert {int(p) for p in after[member]} <= set(after[f"assignment{member.upper()}"]), after
        for p, values in after[member].items():
            assert values == [i for i in range(records, records + more) if i % partitions == int(p)], \
                (member, p)
    assert sorted(v for member in ("a", "b") for vs in after[member].values() for v in vs) == \
        list(range(records, records + more))
    assert set(run["afterLeave"]["a"]) == everything and run["afterLeave"]["bClosed"]
    described = run["described"]
    assert (described["state"], described["type"].lower()) == ("Stable", protocol), described
    assert described["members"] == [{"clientId": "member-a", "assignment": sorted(everything)}], described
