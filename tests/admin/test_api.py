"""The admin HTTP API of a real broker, over real HTTP: readiness, broker info, topics, groups
with lag, the effective configuration, JSON errors for bad paths and methods, and bytes that
are not HTTP answered with 400 while the broker keeps serving."""

from __future__ import annotations

import http.client
import json
import os
import re
import time

import kafka_wire
import pytest
import raw_kafka
from admin_http import get_json, raw_exchange, request
from confluent_kafka import Consumer, TopicPartition
from test_dynamic_broker_configs import DYNAMIC_DEFAULT, describe

import pstream
from pstream import _core


def batch(n: int, size: int = 100) -> bytes:
    return _core.encode_batch([(None, b"y" * size, [], None) for _ in range(n)])


def test_ready_answers_200_while_serving(broker):
    reply = request(broker.admin_url + "/v1/status/ready")
    assert reply.status == 200
    assert reply.json() == {"status": "ready"}
    head = request(broker.admin_url + "/v1/status/ready", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(reply.body))


def test_brokers_describe_this_node(broker_factory):
    broker = broker_factory("--shards", "2", "--node-id", "7")
    before = time.time()
    time.sleep(0.2)
    [node] = get_json(broker.admin_url + "/v1/brokers")
    assert node["node_id"] == 7
    assert node["host"] == "127.0.0.1" and node["port"] == broker.port
    assert node["admin_url"] == broker.admin_url
    assert node["version"] == pstream.__version__
    assert len(node["cluster_id"]) == 22
    assert node["shards"] == 2
    assert node["data_dir"] == os.path.abspath(broker.data_dir)
    assert 0.2 <= node["uptime_seconds"] < 60
    assert node["started_at_ms"] <= before * 1000
    assert node["disk"]["data_bytes"] > 0
    assert 0 < node["disk"]["free_bytes"] <= node["disk"]["total_bytes"]
    assert node["state"] == "serving"


def test_topics_list_partitions_offsets_and_sizes(broker):
    sent = [batch(4), batch(6)]
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("orders", partitions=3, configs={"retention.ms": "3600000"})
        wire.create_topic("empty", partitions=1)
        for b in sent:
            assert wire.produce("orders", 1, b).error_code == 0
    topics = {t["name"]: t for t in get_json(broker.admin_url + "/v1/topics")}
    assert topics["orders"] == {"name": "orders", "internal": False, "partitions": 3, "records": 10,
                                "size_bytes": sum(map(len, sent)), "segments": 3}
    assert topics["empty"]["records"] == 0 and topics["empty"]["size_bytes"] == 0

    detail = get_json(broker.admin_url + "/v1/topics/orders")
    assert detail["name"] == "orders" and detail["records"] == 10
    assert [p["partition"] for p in detail["partitions"]] == [0, 1, 2]
    p1 = detail["partitions"][1]
    assert p1 == {"partition": 1, "log_start_offset": 0, "high_watermark": 10, "log_end_offset": 10,
                  "records": 10, "size_bytes": sum(map(len, sent)), "segments": 1}
    assert detail["partitions"][0]["high_watermark"] == 0
    assert detail["configs"]["retention.ms"] == {"value": "3600000", "source": "DYNAMIC_TOPIC_CONFIG"}
    assert detail["configs"]["segment.bytes"]["source"] == "DEFAULT_CONFIG"


def test_unknown_topic_is_a_404_with_a_json_error(broker):
    reply = request(broker.admin_url + "/v1/topics/no-such-topic")
    assert reply.status == 404
    assert reply.json() == {"error": "no such topic: no-such-topic", "code": 404}


def test_groups_show_committed_offsets_and_lag(broker):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("events", partitions=2)
        assert wire.produce("events", 0, batch(10)).error_code == 0
        assert wire.produce("events", 1, batch(5)).error_code == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "auditors",
                         "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition("events", 0, 3), TopicPartition("events", 1, 5)],
                        asynchronous=False)
    finally:
        consumer.close()
    groups = {g["group_id"]: g for g in get_json(broker.admin_url + "/v1/groups")}
    group = groups["auditors"]
    assert group["state"] == "Empty" and group["members"] == []
    assert group["offsets"] == [
        {"topic": "events", "partition": 0, "committed_offset": 3, "high_watermark": 10, "lag": 7},
        {"topic": "events", "partition": 1, "committed_offset": 5, "high_watermark": 5, "lag": 0},
    ]
    assert group["lag"] == 7


def test_groups_list_live_members_and_their_assignment(broker_factory):
    broker = broker_factory("--group-initial-rebalance-delay-ms", "0")
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("live", partitions=2)
        assert wire.produce("live", 0, batch(3)).error_code == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watchers", "client.id": "watcher-1",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe(["live"])
        got, deadline = 0, time.monotonic() + 30
        while got < 3 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got += 1
        assert got == 3
        consumer.commit(asynchronous=False)
        group = {g["group_id"]: g for g in get_json(broker.admin_url + "/v1/groups")}["watchers"]
        assert group["state"] == "Stable" and group["protocol_type"] == "consumer"
        [member] = group["members"]
        assert member["client_id"] == "watcher-1"
        assert member["assignment"] == {"live": [0, 1]}
        assert {(o["partition"], o["lag"]) for o in group["offsets"]} >= {(0, 0)}
    finally:
        consumer.close()


def test_config_is_the_effective_configuration(broker_factory):
    broker = broker_factory("--default-partitions", "3", "--flush", "interval", "--flush-ms", "25")
    body = get_json(broker.admin_url + "/v1/config")
    settings, effective = body["settings"], body["effective"]
    assert settings["default_partitions"] == 3
    assert settings["flush"] == "interval" and settings["flush_ms"] == 25
    assert settings["listen"] == broker.bootstrap
    assert settings["admin_listen"] == f"127.0.0.1:{broker.admin_port}"
    assert settings["retention_bytes"] == -1   # unlimited, as a TOML file says it
    assert effective["advertise"] == broker.bootstrap
    assert effective["shards"] >= 1 and len(effective["cluster_id"]) == 22


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/nope", "/v1/topics/a/b", "/metrics/x"])
def test_unknown_paths_are_404_with_a_json_error(broker, path):
    reply = request(broker.admin_url + path)
    assert reply.status == 404
    assert reply.json()["code"] == 404 and path.rstrip("/") in reply.json()["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_wrong_methods_are_405_with_allow(broker, method):
    reply = request(broker.admin_url + "/v1/topics", method=method, data=b"{}" if method != "DELETE" else None)
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"
    assert reply.json() == {"error": f"{method} is not allowed on /v1/topics", "code": 405}


def test_keep_alive_serves_several_requests_on_one_connection(broker):
    conn = http.client.HTTPConnection("127.0.0.1", broker.admin_port, timeout=10)
    try:
        for path in ("/v1/status/ready", "/v1/topics", "/metrics", "/v1/nope", "/v1/status/ready"):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status in (200, 404)
            assert resp.getheader("Connection") == "keep-alive"
        sock = conn.sock
        conn.request("GET", "/v1/brokers")
        assert conn.getresponse().status == 200 and conn.sock is sock   # the same connection all along
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(broker):
    out = raw_exchange(broker.admin_port, b"GET /v1/status/ready HTTP/1.1\r\nHost: x\r\n\r\n"
                                          b"GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n"
                                          b"GET /v1/status/ready HTTP/1.1\r\nConnection: close\r\n\r\n")
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
    assert statuses == [b"200", b"404", b"200"]


@pytest.mark.parametrize("garbage", [
    b"\x00\x00\x00\x14\x00\x12\x00\x03\x00\x00\x00\x01\x00\x04test\x00",   # a Kafka ApiVersions frame
    b"hello there\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",                          # a TLS ClientHello
])
def test_bytes_that_are_not_http_get_400_and_the_broker_keeps_serving(broker, garbage):
    started = time.monotonic()
    out = raw_exchange(broker.admin_port, garbage)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert time.monotonic() - started < 5   # answered at once, not after a timeout
    body = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert body["code"] == 400
    assert request(broker.admin_url + "/v1/status/ready").status == 200
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("after-garbage")
        assert wire.produce("after-garbage", 0, batch(1)).error_code == 0
    assert broker.alive()


def test_an_oversized_request_head_gets_431(broker):
    out = raw_exchange(broker.admin_port, b"GET /v1/status/ready HTTP/1.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    assert request(broker.admin_url + "/v1/status/ready").status == 200


def test_debug_memory_reports_buffers_and_traces_allocations_on_demand(broker):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("buffered", partitions=2)
        assert wire.produce("buffered", 0, batch(10)).error_code == 0
    url = broker.admin_url + "/v1/debug/memory"
    off = get_json(url)
    assert off["rss_bytes"] > 10 << 20
    assert off["tracemalloc"]["tracing"] is False
    assert sum(s["partitions"] for s in off["shards"]) >= 2
    assert off["write_buffer_bytes"] == sum(s["write_buffer_bytes"] for s in off["shards"]) >= 0
    # the buffers come from the shards' write pools (given back once the partition has idled)
    assert off["memory_bytes"]["write_pool"] == sum(p["in_use_bytes"] for p in off["write_pool"]) >= 0
    assert sum(p["peak_bytes"] for p in off["write_pool"]) > 0 and all(p["capacity_bytes"] > 0 for p in off["write_pool"])
    assert 0 < off["open_files"] and off["max_open_files"] == 600
    # A request above the 64 KiB scratch buffer was received into a pooled buffer, kept for reuse.
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        big = _core.encode_batch([(None, b"v" * 100_000, [], None)])
        assert wire.produce("buffered", 1, big).error_code == 0
    pool = get_json(url)["frame_pool"]
    assert pool["pooled_buffers"] >= 1 and pool["pooled_bytes"] >= 128 << 10
    assert pool["by_class"].get(str(128 << 10), 0) >= 1

    refused = request(url + "?start=1")   # a GET never changes state
    assert refused.status == 405 and refused.headers.get("allow") == "POST" and "POST" in refused.json()["error"]
    assert get_json(url)["tracemalloc"]["tracing"] is False
    on = request(url + "?start=1", method="POST", data=b"")
    assert on.status == 200 and on.json()["tracemalloc"]["tracing"] is True
    for _ in range(3):   # something to trace
        get_json(broker.admin_url + "/v1/topics")
    top = get_json(url + "?top=3")["tracemalloc"]
    assert top["tracing"] is True and 0 < len(top["top"]) <= 3
    site = top["top"][0]
    assert site["size_bytes"] > 0 and site["count"] > 0 and site["file"] and site["line"] >= 0
    assert top["traced_bytes"] > 0
    assert len(get_json(url)["tracemalloc"]["top"]) <= 20

    assert request(url + "?stop=1", method="POST", data=b"").json()["tracemalloc"]["tracing"] is False
    assert get_json(url)["tracemalloc"]["tracing"] is False
    bad = request(url + "?top=lots")
    assert bad.status == 400 and bad.json()["code"] == 400


def test_put_cluster_config_changes_a_dynamic_broker_config_as_kafka_clients_see_it(broker):
    """rpk cluster config set: PUT /v1/cluster_config, then the Kafka API describes the new cluster default."""
    url = broker.admin_url + "/v1/cluster_config"
    reply = request(url, method="PUT", data=json.dumps({"upsert": {"log_retention_ms": "3600000"},
                                                        "remove": []}).encode())
    assert reply.status == 200 and reply.json()["config_version"] >= 1
    assert get_json(url)["log_retention_ms"] == 3600000
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        described = describe(conn, 4, "0", ["log.retention.ms"])
    assert described["log.retention.ms"][:2] == ("3600000", DYNAMIC_DEFAULT)
    refused = request(url, method="PUT", data=json.dumps({"upsert": {"log_segment_bytes": "10"}}).encode())
    assert refused.status == 400 and "log_segment_bytes" in refused.json()
    reset = request(url, method="PUT", data=json.dumps({"upsert": {}, "remove": ["log_retention_ms"]}).encode())
    assert reset.status == 200 and get_json(url)["log_retention_ms"] == 604800000


def test_a_request_body_over_the_limit_gets_413_and_the_broker_keeps_serving(broker):
    out = raw_exchange(broker.admin_port, b"PUT /v1/cluster_config HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n{")
    assert out.startswith(b"HTTP/1.1 413 ")
    assert request(broker.admin_url + "/v1/status/ready").status == 200
