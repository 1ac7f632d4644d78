"""The broker's memory under hostile connections: starts a broker, runs the chosen kinds of
hostile client on 127.0.0.1, and reports its RSS (baseline, peak from VmHWM, at the end),
how many hostile connections the broker closed, and the acks a well-behaved producer got
meanwhile.

    python bench/hostile_rss.py fetch-unread --conns 5 --requests 10   # fills a 200 MB topic first
    python bench/hostile_rss.py prefix --conns 8                      # 4-byte length prefix of 100 MB only
    python bench/hostile_rss.py slow --conns 100 --seconds 40         # one byte a second
    python bench/hostile_rss.py all --conns 100                       # 100 of each kind at once
    ... -- --queued-max-request-bytes 268435456                      # flags after -- go to `pstream serve`

Kinds: fetch-unread (Fetch requests of max_bytes --fetch-mb from offset 0, responses never
read), prefix (a length prefix of --size bytes, then silence), slow (a valid Metadata request
sent one byte a second). Everything runs against loopback only and stops after --seconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import kafka_wire  # noqa: E402
from broker_process import BrokerProcess  # noqa: E402

import pstream._core  # noqa: E402
from pstream.client.wire import api_key, codec_classes, encode_request  # noqa: E402

TOPIC = "hostile-rss"


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def fill_topic(bootstrap: str, megabytes: int) -> None:
    value = os.urandom(1000)
    batch = pstream._core.encode_batch([(None, value, [], None)] * 1000)   # ~1 MB
    with kafka_wire.KafkaWire(bootstrap) as wire:
        wire.create_topic(TOPIC)
        for _ in range(megabytes):
            part = wire.produce(TOPIC, 0, batch, acks=1)
            assert part.error_code == 0, part


def fetch_frame(correlation_id: int, max_bytes: int) -> bytes:
    req_cls, _ = codec_classes("Fetch")
    req = req_cls(replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=max_bytes, topics=[
        req_cls.FetchTopic(topic=TOPIC, partitions=[
            req_cls.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=max_bytes)])])
    return encode_request(api_key("Fetch"), 12, correlation_id, req, "hostile")


def metadata_frame() -> bytes:
    req_cls, _ = codec_classes("Metadata")
    return encode_request(api_key("Metadata"), 9, 1, req_cls(topics=None), "slow" * 50)   # 200+ s at 1 B/s


class Hostiles:
    """Hostile sockets of one kind; `closed()` counts those the broker has closed."""

    def __init__(self, kind: str, bootstrap: str, conns: int, args):
        host, port = bootstrap.rsplit(":", 1)
        self.kind = kind
        self.socks = []
        for _ in range(conns):
            s = socket.create_connection((host, int(port)))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.socks.append(s)
        self.slow_frame = metadata_frame()
        self.args = args

    def start(self) -> None:
        for s in self.socks:
            try:
                if self.kind == "fetch-unread":
                    s.sendall(b"".join(fetch_frame(i + 1, self.args.fetch_mb << 20) for i in range(self.args.requests)))
                elif self.kind == "prefix":
                    s.sendall(self.args.size.to_bytes(4, "big"))
            except OSError:
                pass

    def tick(self, second: int) -> None:
        if self.kind != "slow" or second >= len(self.slow_frame):
            return
        for s in self.socks:
            try:
                s.send(self.slow_frame[second:second + 1])
            except OSError:
                pass

    def closed(self) -> int:
        n = 0
        for s in self.socks:
            s.setblocking(False)
            try:
                while True:   # unread responses are not a close: drain them to find an EOF
                    data = s.recv(1 << 20, socket.MSG_PEEK)
                    if not data:
                        n += 1
                        break
                    if self.kind != "fetch-unread":
                        s.recv(len(data))
                        continue
                    break
            except BlockingIOError:
                pass
            except OSError:
                n += 1
        return n

    def close(self) -> None:
        for s in self.socks:
            s.close()


class GoodProducer(threading.Thread):
    """Produces one small batch at a time (acks=all) and records each ack's time."""

    def __init__(self, bootstrap: str):
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.acks: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        batch = pstream._core.encode_batch([(b"k", b"v" * 100, [], None)])
        try:
            with kafka_wire.KafkaWire(self.bootstrap, timeout=60) as wire:
                wire.create_topic("good")
                while not self.stop.is_set():
                    part = wire.produce("good", 0, batch)
                    if part.error_code:
                        self.errors.append(f"error {part.error_code}")
                    else:
                        self.acks.append(time.monotonic())
                    time.sleep(0.05)
        except Exception as exc:   # noqa: BLE001 - reported below
            self.errors.append(repr(exc))

    def longest_gap(self, start: float, end: float) -> float:
        times = [start, *self.acks, end]
        return max(b - a for a, b in zip(times, times[1:]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("fetch-unread", "prefix", "slow", "all"))
    p.add_argument("--conns", type=int, default=5, help="hostile connections of each kind")
    p.add_argument("--requests", type=int, default=10, help="fetch-unread: Fetch requests per connection")
    p.add_argument("--fetch-mb", type=int, default=50, help="fetch-unread: max_bytes of each Fetch, MiB")
    p.add_argument("--topic-mb", type=int, default=200, help="fetch-unread: MB to fill the topic with")
    p.add_argument("--size", type=int, default=100 << 20, help="prefix: the frame size announced")
    p.add_argument("--seconds", type=float, default=10, help="how long the hostile clients stay")
    argv = sys.argv[1:] if argv is None else argv
    serve_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:len(argv) - len(serve_flags) - bool(serve_flags or "--" in argv)])
    args.serve_flags = serve_flags

    kinds = ("fetch-unread", "prefix", "slow") if args.kind == "all" else (args.kind,)
    with tempfile.TemporaryDirectory(prefix="hostile-rss-") as tmp:
        broker = BrokerProcess(os.path.join(tmp, "data"), *args.serve_flags).start()
        try:
            pid = broker.proc.pid
            if "fetch-unread" in kinds:
                fill_topic(broker.bootstrap, args.topic_mb)
            baseline = status_kb(pid, "VmRSS")
            with open(f"/proc/{pid}/clear_refs", "w") as f:   # resets VmHWM to the current RSS
                f.write("5")
            producer = GoodProducer(broker.bootstrap)
            producer.start()
            groups = [Hostiles(kind, broker.bootstrap, args.conns, args) for kind in kinds]
            start = time.monotonic()
            for g in groups:
                g.start()
            second = 0
            while time.monotonic() - start < args.seconds and broker.alive():
                for g in groups:
                    g.tick(second)
                second += 1
                time.sleep(max(0.0, start + second - time.monotonic()))
            end = time.monotonic()
            alive = broker.alive()
            peak = status_kb(pid, "VmHWM") if alive else -1
            now = status_kb(pid, "VmRSS") if alive else -1
            closed = {g.kind: g.closed() for g in groups}
            producer.stop.set()
            producer.join(5)
            for g in groups:
                g.close()
            print(f"kinds={','.join(kinds)} conns={args.conns} seconds={args.seconds:g} "
                  f"serve_flags={' '.join(args.serve_flags) or '-'}")
            print(f"broker alive: {alive}; RSS baseline {baseline / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB, "
                  f"at end {now / 1024:.0f} MiB")
            print("closed by the broker: " + ", ".join(f"{k} {n}/{args.conns}" for k, n in closed.items()))
            gap = producer.longest_gap(start, end)
            print(f"good producer: {len(producer.acks)} acks, longest gap without an ack {gap:.2f} s, "
                  f"errors {producer.errors[:3]}")
        finally:
            broker.stop(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
