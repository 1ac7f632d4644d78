"""100 hostile connections of each kind the broker must survive (Fetch requests whose
responses are never read, a bare 4-byte length prefix of a huge frame, a request sent one
byte a second) keep the broker's RSS under its memory budget (queued_max_request_bytes) plus
a fixed overhead, while a well-behaved producer on another connection keeps getting acks.

The fixed overhead, OVERHEAD_BYTES = 160 MiB, is the broker at rest (~55 MiB here) plus each
connection's 64 KiB scratch buffer (300 connections: ~19 MiB) plus the allocator's slack.
RSS is read from /proc/PID/status (VmHWM, the peak, after resetting it once the topic is
filled). The default run is short; the slow one uses the default settings and topic sizes
of the issue (a 200 MB topic, 100 MB prefixes, 50 MB fetches).
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest


import kafka_wire  # noqa: E402

from pstream import _core  # noqa: E402
from pstream.client.wire import api_key, codec_classes, encode_request  # noqa: E402

OVERHEAD_BYTES = 160 << 20
HOSTILE_PER_KIND = 100
TOPIC = "hostile"


def status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def fill(bootstrap: str, megabytes: int) -> None:
    batch = _core.encode_batch([(None, os.urandom(1000), [], None)] * 1000)
    with kafka_wire.KafkaWire(bootstrap) as wire:
        wire.create_topic(TOPIC)
        for _ in range(megabytes):
            assert wire.produce(TOPIC, 0, batch, acks=1).error_code == 0


def fetch_frames(requests: int, max_bytes: int) -> bytes:
    req_cls, _ = codec_classes("Fetch")
    req = req_cls(replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=max_bytes, topics=[
        req_cls.FetchTopic(topic=TOPIC, partitions=[
            req_cls.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=max_bytes)])])
    return b"".join(encode_request(api_key("Fetch"), 12, i + 1, req, "unread") for i in range(requests))


def closed_by_broker(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1 << 16) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class GoodProducer(threading.Thread):
    """One small batch at a time, acks=all; the time of each ack."""

    def __init__(self, bootstrap: str):
        super().__init__(daemon=True)
        self.bootstrap, self.acks, self.errors = bootstrap, [], []
        self.stop = threading.Event()

    def run(self) -> None:
        batch = _core.encode_batch([(b"k", b"v" * 100, [], None)])
        try:
            with kafka_wire.KafkaWire(self.bootstrap, timeout=60) as wire:
                while not self.stop.is_set():
                    part = wire.produce("good", 0, batch)
                    if part.error_code:
                        self.errors.append(part.error_code)
                    else:
                        self.acks.append(time.monotonic())
                    time.sleep(0.02)
        except Exception as exc:   # noqa: BLE001 - asserted on below
            self.errors.append(repr(exc))


def run_hostiles(broker, *, seconds: float, fetch_bytes: int, prefix_bytes: int, budget: int) -> None:
    pid = broker.proc.pid
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("good")
    with open(f"/proc/{pid}/clear_refs", "w") as f:   # VmHWM from here on
        f.write("5")
    host, port = broker.bootstrap.rsplit(":", 1)
    producer = GoodProducer(broker.bootstrap)
    producer.start()
    fetches = fetch_frames(10, fetch_bytes)
    slow_frame = encode_request(api_key("Metadata"), 9, 1, codec_classes("Metadata")[0](topics=None),
                                "slow" * 50)   # 200+ bytes: never whole within the run
    unread, prefixes, slow = [], [], []
    for _ in range(HOSTILE_PER_KIND):
        for group in (unread, prefixes, slow):
            s = socket.create_connection((host, int(port)))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            group.append(s)
    start = time.monotonic()
    try:
        for s in unread:
            s.sendall(fetches)
        for s in prefixes:
            s.sendall(prefix_bytes.to_bytes(4, "big"))
        second = 0
        while time.monotonic() - start < seconds:
            for s in slow:
                try:
                    s.send(slow_frame[second:second + 1])
                except OSError:
                    pass   # closed by the broker
            second += 1
            time.sleep(max(0.0, start + second - time.monotonic()))
        end = time.monotonic()
        assert broker.alive(), broker.output()
        peak = status_bytes(pid, "VmHWM")
        assert all(closed_by_broker(s) for s in prefixes + slow), "a slow-loris connection outlived the deadline"
    finally:
        producer.stop.set()
        producer.join(30)
        for s in unread + prefixes + slow:
            s.close()
    assert peak < budget + OVERHEAD_BYTES, f"peak RSS {peak >> 20} MiB, budget {budget >> 20} MiB"
    assert not producer.errors, producer.errors
    thirds = [start + (end - start) * i / 3 for i in range(4)]
    for lo, hi in zip(thirds, thirds[1:]):
        assert any(lo <= t < hi for t in producer.acks), f"no ack between {lo - start:.1f} s and {hi - start:.1f} s"


def test_hostile_connections_keep_rss_under_the_budget(broker_factory):
    budget = 64 << 20
    broker = broker_factory("--queued-max-request-bytes", str(budget), "--socket-request-max-bytes",
                            str(16 << 20), "--request-receive-timeout-ms", "2000")
    fill(broker.bootstrap, 40)
    run_hostiles(broker, seconds=7, fetch_bytes=16 << 20, prefix_bytes=16 << 20, budget=budget)


@pytest.mark.slow
def test_hostile_connections_with_default_settings(broker_factory):
    broker = broker_factory()
    fill(broker.bootstrap, 200)
    run_hostiles(broker, seconds=36, fetch_bytes=50 << 20, prefix_bytes=100 << 20, budget=256 << 20)
