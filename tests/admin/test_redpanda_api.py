"""Redpanda's admin API as rpk calls it (github.com/redpanda-data/common-go/rpadmin): the
paths and query strings rpk sends, each answer decoded into the field names of the Go struct rpk
decodes it into, and the values checked against the broker's own."""

from __future__ import annotations

import asyncio
import json
import os

import kafka_wire
import pytest
from admin_http import get_json, request

import pstream
from pstream.log import shard_for

NODE_ID = 3
SHARDS = 2


@pytest.fixture
def rp(broker_factory):
    broker = broker_factory("--shards", str(SHARDS), "--node-id", str(NODE_ID), "--retention-bytes", "5000000")
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("orders", partitions=3)
    return broker


def fields(obj: dict, *names: str) -> dict:
    """What a Go struct with these JSON tags decodes `obj` into: every tag present or its zero value."""
    return {n: obj.get(n) for n in names}


def test_health_overview_is_healthy_with_this_node_as_controller(rp):
    # rpk cluster health: GetHealthOverview -> ClusterHealthOverview
    h = get_json(rp.admin_url + "/v1/cluster/health_overview")
    assert h == {"is_healthy": True, "unhealthy_reasons": [], "controller_id": NODE_ID, "all_nodes": [NODE_ID],
                 "nodes_down": [], "nodes_in_recovery_mode": [], "leaderless_partitions": [],
                 "leaderless_count": 0, "under_replicated_partitions": [], "under_replicated_count": 0}


def test_brokers_answer_as_rpadmin_broker_and_keep_pstream_fields(rp):
    # rpk redpanda admin brokers list: Brokers -> []Broker
    [b] = get_json(rp.admin_url + "/v1/brokers")
    go = fields(b, "node_id", "num_cores", "membership_status", "is_alive", "version", "maintenance_status",
                "disk_space")
    assert go["node_id"] == NODE_ID and go["num_cores"] == SHARDS
    assert go["membership_status"] == "active" and go["is_alive"] is True
    assert go["version"] == pstream.__version__
    assert go["maintenance_status"]["draining"] is False
    [disk] = go["disk_space"]
    assert disk["path"] == os.path.abspath(rp.data_dir) and 0 < disk["free"] <= disk["total"]
    assert b["shards"] == SHARDS and b["port"] == rp.port   # pstream's own fields stay
    # Broker(ctx, id): /v1/brokers/ID
    one = get_json(rp.admin_url + f"/v1/brokers/{NODE_ID}")
    assert one["node_id"] == NODE_ID and one["num_cores"] == SHARDS
    assert request(rp.admin_url + f"/v1/brokers/{NODE_ID + 1}").status == 404


def test_cluster_config_uses_redpanda_names_and_the_broker_values(rp):
    # rpk cluster config export / get: Config(ctx, true) -> map, ClusterConfigSchema
    cfg = get_json(rp.admin_url + "/v1/cluster_config?include_defaults=true")
    assert cfg["retention_bytes"] == 5000000
    assert cfg["log_retention_ms"] == 604800000
    assert cfg["auto_create_topics_enabled"] is True
    assert cfg["default_topic_partitions"] == 1
    assert cfg["log_segment_size"] == 1 << 30
    assert len(cfg["cluster_id"]) == 22
    assert "node_id" not in cfg and "data_dir" not in cfg   # node settings: /v1/node_config
    changed = get_json(rp.admin_url + "/v1/cluster_config?include_defaults=false")
    assert changed["retention_bytes"] == 5000000 and "log_segment_size" not in changed
    # SingleKeyConfig: ?key= by Redpanda's name or an alias
    assert get_json(rp.admin_url + "/v1/cluster_config?key=log_segment_size") == {"log_segment_size": 1 << 30}
    assert get_json(rp.admin_url + "/v1/cluster_config?key=segment_bytes") == {"log_segment_size": 1 << 30}
    assert request(rp.admin_url + "/v1/cluster_config?key=no_such_property").status == 400


def test_cluster_config_schema_describes_every_setting_served(rp):
    schema = get_json(rp.admin_url + "/v1/cluster_config/schema")["properties"]
    cfg = get_json(rp.admin_url + "/v1/cluster_config")
    assert set(schema) == set(cfg)
    for name, prop in schema.items():   # ConfigPropertyMetadata
        meta = fields(prop, "type", "description", "nullable", "needs_restart", "is_secret", "visibility")
        assert meta["type"] in ("boolean", "integer", "number", "string"), name
        assert meta["description"] and meta["visibility"] == "user" and meta["is_secret"] is False
    assert schema["log_segment_size"]["units"] == "bytes" and schema["log_retention_ms"]["units"] == "ms"
    assert schema["log_retention_ms"]["needs_restart"] is False        # Kafka's AlterConfigs changes it
    assert schema["kafka_request_max_bytes"]["needs_restart"] is True
    assert "segment_bytes" in schema["log_segment_size"]["aliases"]
    assert schema["auto_create_topics_enabled"]["type"] == "boolean"
    status = get_json(rp.admin_url + "/v1/cluster_config/status")
    assert status == [{"node_id": NODE_ID, "restart": False, "config_version": 0, "invalid": [], "unknown": []}]


def test_node_config_names_this_node_and_its_listeners(rp):
    nc = get_json(rp.admin_url + "/v1/node_config")
    assert nc["node_id"] == NODE_ID
    assert nc["data_directory"] == os.path.abspath(rp.data_dir)
    assert nc["kafka_api"] == [{"address": "127.0.0.1", "port": rp.port}]
    assert nc["advertised_kafka_api"] == [{"address": "127.0.0.1", "port": rp.port}]
    port = int(rp.admin_url.rsplit(":", 1)[1])
    assert nc["admin"] == [{"address": "127.0.0.1", "port": port}]


def expected_replicas(topic: str, partition: int) -> list[dict]:
    return [{"node_id": NODE_ID, "core": shard_for(topic, partition, SHARDS)}]


def test_cluster_partitions_list_every_partition_with_its_shard(rp):
    # rpk cluster partitions list --all: AllClusterPartitions(ctx, true, false)
    parts = get_json(rp.admin_url + "/v1/cluster/partitions?with_internal=true")
    orders = [p for p in parts if p["topic"] == "orders"]
    assert [fields(p, "ns", "topic", "partition_id", "leader_id", "replicas", "disabled") for p in orders] == [
        {"ns": "kafka", "topic": "orders", "partition_id": n, "leader_id": NODE_ID,
         "replicas": expected_replicas("orders", n), "disabled": False} for n in range(3)]
    assert {p["replicas"][0]["core"] for p in orders} == {0, 1}   # spread over both shards
    assert get_json(rp.admin_url + "/v1/cluster/partitions?with_internal=true&disabled=true") == []
    # rpk cluster partitions list orders: TopicClusterPartitions(ctx, "kafka", "orders", false)
    assert get_json(rp.admin_url + "/v1/cluster/partitions/kafka/orders") == orders
    assert request(rp.admin_url + "/v1/cluster/partitions/kafka/nope").status == 404
    assert request(rp.admin_url + "/v1/cluster/partitions/redpanda/orders").status == 404


def test_partitions_answer_as_rpadmin_partition(rp):
    # GetTopic / GetPartition: rpk's fallback for clusters without /v1/cluster/partitions
    topic = get_json(rp.admin_url + "/v1/partitions/kafka/orders")
    assert [fields(p, "ns", "topic", "partition_id", "status", "leader_id", "replicas") for p in topic] == [
        {"ns": "kafka", "topic": "orders", "partition_id": n, "status": "done", "leader_id": NODE_ID,
         "replicas": expected_replicas("orders", n)} for n in range(3)]
    assert get_json(rp.admin_url + "/v1/partitions/kafka/orders/2") == topic[2]
    assert request(rp.admin_url + "/v1/partitions/kafka/orders/3").status == 404
    mine = [p for p in get_json(rp.admin_url + "/v1/partitions") if p["topic"] == "orders"]
    assert [(p["partition_id"], p["core"], p["leader"]) for p in mine] == [
        (n, shard_for("orders", n, SHARDS), NODE_ID) for n in range(3)]


def test_public_metrics_is_the_prometheus_exposition(rp):
    reply = request(rp.admin_url + "/public_metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == request(rp.admin_url + "/metrics").headers["content-type"]
    assert b"pstream_partition_high_watermark" in reply.body


def test_controller_partition_names_this_node_as_leader(rp):
    # rpadmin's GetLeaderID (sendToLeader with several admin hosts): /v1/partitions/redpanda/controller/0
    c = get_json(rp.admin_url + "/v1/partitions/redpanda/controller/0")
    assert fields(c, "ns", "topic", "partition_id", "leader_id") == {
        "ns": "redpanda", "topic": "controller", "partition_id": 0, "leader_id": NODE_ID}
    assert request(rp.admin_url + "/v1/partitions/redpanda/controller/1").status == 404


# --- PUT /v1/cluster_config (rpk cluster config set / import / edit) ---------------------------
# The handler, on pstream's real settings and dynamic broker configs, behind a node that alters
# them as IncrementalAlterConfigs on the cluster-default broker resource does (check_changes,
# then the dynamic configs laid over the static settings).

class ConfigNode:
    node_id, cluster_id, state, log_readable = NODE_ID, "c" * 22, "serving", True

    def __init__(self, tmp_path, **static):
        from pstream.broker.broker_configs import DynamicBrokerConfigs
        from pstream.broker.config import BrokerConfig
        self.static = BrokerConfig(**static)
        self.dynamic = DynamicBrokerConfigs(str(tmp_path), NODE_ID)
        self.calls = []

    def settings(self):
        from pstream.broker.config import settings_of
        return settings_of(self.dynamic.apply_to(self.static))

    def settings_schema(self):
        from pstream.broker.config import settings_schema
        return settings_schema()

    async def alter_cluster_configs(self, changes, validate_only=False):
        from pstream.broker.broker_configs import check_changes
        self.calls.append((changes, validate_only))
        checked = check_changes(self.dynamic, "", changes)   # ConfigError (a ValueError) names the config
        if not validate_only:
            for name, value in checked:
                if value is None:
                    self.dynamic.cluster.pop(name, None)
                else:
                    self.dynamic.cluster[name] = value


class Put:
    def __init__(self, body):
        self.method, self.path, self.query, self.headers = "PUT", "/v1/cluster_config", {}, {}
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.fixture
def cfg(tmp_path):
    from pstream.admin.redpanda import RedpandaApi
    node = ConfigNode(tmp_path, retention_bytes=5000000)
    return node, RedpandaApi(node)


def put(api, body) -> tuple[int, dict]:
    from pstream.admin.http import HttpError
    try:
        response = asyncio.run(api.patch_cluster_config(Put(body)))
    except HttpError as exc:   # what the server answers with
        response = exc.response()
    return response.status, json.loads(response.body)


def current(api) -> dict:
    return json.loads(api.cluster_config(Put({})).body)


def test_put_cluster_config_sets_dynamic_configs_as_rpk_set_sends_them(cfg):
    node, api = cfg
    # rpk cluster config set log_retention_ms 3600000: the value goes as a string
    assert put(api, {"upsert": {"log_retention_ms": "3600000"}, "remove": []}) == (200, {"config_version": 1})
    assert node.dynamic.cluster == {"log.retention.ms": "3600000"}
    assert current(api)["log_retention_ms"] == 3600000
    # rpk cluster config import: values as YAML read them; aliases are pstream's and Kafka's names
    status, result = put(api, {"upsert": {"log_cleanup_policy": "compact", "min_cleanable_dirty_ratio": 0.25,
                                          "cleaner_threads": 2, "segment_bytes": 1 << 20}, "remove": None})
    assert (status, result) == (200, {"config_version": 2})
    cfg_now = current(api)
    assert cfg_now["log_cleanup_policy"] == "compact" and cfg_now["min_cleanable_dirty_ratio"] == 0.25
    assert cfg_now["log_segment_size"] == 1 << 20
    status = json.loads(api.cluster_config_status(Put({})).body)
    assert status == [{"node_id": NODE_ID, "restart": False, "config_version": 2,
                       "invalid": [], "unknown": []}]
    # rpk cluster config set retention_bytes "": remove -> back to the static setting, not the default
    node.dynamic.cluster["log.retention.bytes"] = "1"
    reset = put(api, {"upsert": {}, "remove": ["retention_bytes", "log_retention_ms"]})
    assert reset == (200, {"config_version": 3})
    assert current(api)["retention_bytes"] == 5000000 and current(api)["log_retention_ms"] == 604800000
    # null on an unlimited setting: -1
    assert put(api, {"upsert": {"retention_bytes": None}})[0] == 200
    assert node.dynamic.cluster["log.retention.bytes"] == "-1"


def test_put_cluster_config_takes_long_max_back_from_a_float64_round_trip(cfg):
    # export writes max_compaction_lag_ms (2**63 - 1) as a float64 reader has it, 2**63; import sends that
    node, api = cfg
    assert put(api, {"upsert": {"max_compaction_lag_ms": 1 << 63}})[0] == 200
    assert node.dynamic.cluster["log.cleaner.max.compaction.lag.ms"] == str((1 << 63) - 1)


def test_put_cluster_config_refuses_as_rpk_prints_validation_errors(cfg):
    node, api = cfg
    before = dict(node.dynamic.cluster)
    status, errors = put(api, {"upsert": {"no_such_property": 1, "kafka_request_max_bytes": "1000",
                                          "cluster_id": "x", "log_segment_size": "big",
                                          "cleaner_enable": "maybe", "log_retention_ms": True},
                               "remove": ["flush"]})
    assert status == 400
    # a flat {property: reason}: what rpk's formatValidationError decodes (map[string]string)
    assert all(isinstance(v, str) for v in errors.values())
    assert set(errors) == {"no_such_property", "kafka_request_max_bytes", "cluster_id", "log_segment_size",
                           "cleaner_enable", "log_retention_ms", "flush"}
    assert errors["no_such_property"] == "Unknown property"
    assert "restart" in errors["kafka_request_max_bytes"] and "--kafka-request-max-bytes" not in errors[
        "kafka_request_max_bytes"]   # named by pstream's setting, socket_request_max_bytes
    assert "--socket-request-max-bytes" in errors["kafka_request_max_bytes"]
    assert "integer" in errors["log_segment_size"] and "integer" in errors["log_retention_ms"]
    assert "restart" in errors["cleaner_enable"] and "restart" in errors["flush"]
    assert node.calls == [] and node.dynamic.cluster == before and api.config_version == 0
    # a value the broker's own checks refuse: Kafka's message, on the property at fault
    status, errors = put(api, {"upsert": {"log_retention_ms": "60000", "log_segment_size": "10"}})
    assert status == 400 and set(errors) == {"log_segment_size"}, errors
    assert "log.segment.bytes" in errors["log_segment_size"]
    assert node.dynamic.cluster == before and api.config_version == 0
    assert put(api, b"not json")[0] == 400 and put(api, ["upsert"])[0] == 400
    assert put(api, {"upsert": [1]})[0] == 400


def test_put_cluster_config_is_routed(tmp_path):
    from pstream.admin.http import Router
    from pstream.admin.redpanda import RedpandaApi

    r = Router()
    RedpandaApi(ConfigNode(tmp_path)).add_routes(r)
    handler, _ = r.resolve("PUT", "/v1/cluster_config")
    assert handler.__name__ == "patch_cluster_config"
    r.resolve("GET", "/v1/cluster_config")
