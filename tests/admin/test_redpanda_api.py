"""Redpanda's admin API as rpk calls it (github.com/redpanda-data/common-go/rpadmin): the
paths and query strings rpk sends, each answer decoded into the field names of the Go struct rpk
decodes it into, and the values checked against the broker's own."""

from __future__ import annotations

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
