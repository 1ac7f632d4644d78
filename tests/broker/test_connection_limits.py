"""A connection cannot make the broker hold memory it has not budgeted: bare length prefixes
allocate nothing, slow requests are closed at the receive deadline, a client that never reads
its responses is muted, and every byte charged to the budget comes back when connections
close abruptly (real broker, raw sockets, /metrics)."""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

import kafka_wire  # noqa: E402
from broker_process import broker_factory  # noqa: E402, F401

from pstream import _core  # noqa: E402
from pstream.broker.config import load_config  # noqa: E402
from pstream.errors import ConfigError  # noqa: E402
from pstream.client.wire import api_key, codec_classes, encode_request  # noqa: E402

BUDGET = 32 << 20
FLAGS = ("--queued-max-request-bytes", str(BUDGET), "--socket-request-max-bytes", str(8 << 20),
         "--request-receive-timeout-ms", "1000")


def scrape(broker) -> dict:
    with urllib.request.urlopen(broker.admin_url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric(broker, name: str, **labels) -> float:
    return scrape(broker).get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def connect(broker) -> socket.socket:
    host, port = broker.bootstrap.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(1 << 16):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def reset(sock: socket.socket) -> None:
    """Closes with a RST (abrupt, as a crashed client)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def fetch_frame(topic: str, correlation_id: int, max_bytes: int) -> bytes:
    req_cls, _ = codec_classes("Fetch")
    req = req_cls(replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=max_bytes, topics=[
        req_cls.FetchTopic(topic=topic, partitions=[
            req_cls.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=max_bytes)])])
    return encode_request(api_key("Fetch"), 12, correlation_id, req, "unread")


def fill(broker, topic: str, megabytes: int) -> None:
    batch = _core.encode_batch([(None, os.urandom(1000), [], None)] * 1000)
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic(topic)
        for _ in range(megabytes):
            assert wire.produce(topic, 0, batch, acks=1).error_code == 0


def test_bare_length_prefix_allocates_nothing_and_is_closed_at_the_receive_deadline(broker_factory):
    broker = broker_factory(*FLAGS)
    socks = [connect(broker) for _ in range(8)]
    for s in socks:
        s.sendall(struct.pack(">i", 8 << 20))   # the largest frame allowed, then silence
    time.sleep(0.3)
    assert metric(broker, "pstream_memory_budget_used_bytes") == 0
    assert all(closed_by_peer(s, 10) for s in socks)
    assert metric(broker, "pstream_connections_closed_total", reason="receive_timeout") == 8
    for s in socks:
        s.close()


def test_a_request_sent_one_byte_at_a_time_is_closed_at_the_receive_deadline(broker_factory):
    broker = broker_factory(*FLAGS)
    req_cls, _ = codec_classes("Metadata")
    frame = encode_request(api_key("Metadata"), 9, 1, req_cls(topics=None), "slow")
    sock = connect(broker)
    start = time.monotonic()
    closed = False
    for i in range(len(frame) - 1):   # never whole: each byte keeps the connection active
        try:
            sock.sendall(frame[i:i + 1])
        except OSError:
            closed = True
            break
        if closed_by_peer(sock, 0.2):
            closed = True
            break
    assert closed, f"still open after {time.monotonic() - start:.1f} s of one byte every 0.2 s"
    assert metric(broker, "pstream_connections_closed_total", reason="receive_timeout") == 1
    sock.close()


def test_large_frame_arriving_whole_is_still_served(broker_factory):
    """The buffer grows as the bytes come (from the scratch, then doubling), and the request is answered."""
    broker = broker_factory(*FLAGS)
    big = _core.encode_batch([(None, os.urandom(1000), [], None)] * 6000)   # ~6 MB: three growths
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("big", configs={"max.message.bytes": str(8 << 20)})
        assert wire.produce("big", 0, big).error_code == 0
        assert wire.produce("big", 0, big).base_offset == 6000
        assert sum(len(r) for _, r in wire.fetch_all("big", 0)) == 12000
    assert wait_for(lambda: metric(broker, "pstream_memory_budget_used_bytes") == 0)


def test_a_client_that_never_reads_is_muted_and_holds_at_most_the_budget(broker_factory):
    broker = broker_factory(*FLAGS)
    fill(broker, "unread", 24)
    socks = []
    for _ in range(4):
        s = connect(broker)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"".join(fetch_frame("unread", i + 1, 16 << 20) for i in range(10)))
        socks.append(s)
    assert wait_for(lambda: metric(broker, "pstream_connections_muted") >= 1)
    samples = scrape(broker)
    assert samples[("pstream_memory_budget_used_bytes", ())] <= BUDGET + (2 << 20)
    assert samples[("pstream_connection_mutes_total", ())] >= 1
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:   # others are still served
        assert wire.produce("unread", 0, _core.encode_batch([(b"k", b"v", [], None)])).error_code == 0
    for s in socks:
        reset(s)
    assert wait_for(lambda: metric(broker, "pstream_memory_budget_used_bytes") == 0)


def test_budget_returns_to_zero_after_abrupt_closes(broker_factory):
    broker = broker_factory(*FLAGS)
    fill(broker, "abrupt", 8)
    socks = []
    for kind in range(3):
        for _ in range(5):
            s = connect(broker)
            if kind == 0:     # half of a large frame
                s.sendall(struct.pack(">i", 6 << 20) + os.urandom(3 << 20))
            elif kind == 1:   # fetches whose responses are never read
                s.sendall(b"".join(fetch_frame("abrupt", i + 1, 4 << 20) for i in range(4)))
            else:             # pipelined small requests, then a partial one
                s.sendall(b"".join(fetch_frame("abrupt", i + 1, 1024) for i in range(20)) + b"\x00\x00")
            socks.append(s)
    assert wait_for(lambda: metric(broker, "pstream_memory_budget_used_bytes") > 0)
    for s in socks:
        reset(s)
    assert wait_for(lambda: metric(broker, "pstream_memory_budget_used_bytes") == 0), scrape(broker)
    assert wait_for(lambda: metric(broker, "pstream_connections") == 0)


def test_budget_smaller_than_the_largest_request_is_refused():
    with pytest.raises(ConfigError, match="queued_max_request_bytes"):
        load_config({"queued.max.request.bytes": 1 << 20}, env={})
    assert load_config({"queued.max.request.bytes": 1 << 20, "socket.request.max.bytes": 1 << 20},
                       env={}).queued_max_request_bytes == 1 << 20


def test_pipelined_large_frames_sent_in_one_write_are_each_answered(broker_factory):
    """A growing frame buffer never takes bytes of the frame behind it."""
    broker = broker_factory(*FLAGS)
    batch = _core.encode_batch([(None, os.urandom(1000), [], None)] * 600)   # ~600 KB: a 1 MiB buffer
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("pipelined")
        req_cls, _ = codec_classes("Produce")
        request = req_cls(transactional_id=None, acks=-1, timeout_ms=30000, topic_data=[req_cls.TopicProduceData(
            name="pipelined", partition_data=[req_cls.PartitionProduceData(index=0, records=batch)])])
        frames = [encode_request(api_key("Produce"), 9, 100 + i, request, "pipelined") for i in range(3)]
        for i in range(3):
            wire._sent[100 + i] = (api_key("Produce"), 9)
        wire.send_frame(b"".join(frames))
        offsets = [wire.receive(100 + i).responses[0].partition_responses[0].base_offset for i in range(3)]
    assert offsets == [0, 600, 1200]
