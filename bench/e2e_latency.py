"""End-to-end latency at a fixed rate through librdkafka (a stop-gap until the load tool).

    python bench/e2e_latency.py --bootstrap 127.0.0.1:9092 --rate 5000 --seconds 20

Produces `rate` messages of `size` bytes per second (acks=all, librdkafka's default
linger) and consumes them with librdkafka's default consumer settings; each value starts
with its send time (time.perf_counter_ns, same host), so latency = receive - send.
Prints p50/p90/p99/p99.9/max in milliseconds. Every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import struct
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("-X", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="a librdkafka setting for both clients (repeatable)")
    args = ap.parse_args()
    extra = dict(item.split("=", 1) for item in args.extra)
    topic = f"latency-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", **extra})
    producer.produce(topic, b"warm")   # auto-creates the topic
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "latency", "enable.auto.commit": False,
                         **extra})
    consumer.assign([TopicPartition(topic, 0, 1)])
    latencies: list[int] = []
    total = int(args.rate * args.seconds)
    done = threading.Event()

    def consume() -> None:
        deadline = time.monotonic() + args.seconds + 30
        got = 0
        while got < total and time.monotonic() < deadline:
            m = consumer.poll(0.1)   # poll, not consume(n): consume waits for n messages or the timeout
            if m is not None and not m.error():
                now = time.perf_counter_ns()
                sent, = struct.unpack_from(">q", m.value())
                latencies.append(now - sent)
                got += 1
        done.set()

    reader = threading.Thread(target=consume)
    reader.start()
    pad = b"x" * (args.size - 8)
    start = time.perf_counter()
    for i in range(total):
        target = start + i / args.rate
        while (delay := target - time.perf_counter()) > 0:
            if delay > 0.001:
                time.sleep(delay / 2)
            producer.poll(0)
        producer.produce(topic, struct.pack(">q", time.perf_counter_ns()) + pad)
        producer.poll(0)
    producer.flush(30)
    done.wait(args.seconds + 30)
    reader.join()
    consumer.close()
    skip = int(args.rate * args.warmup)
    samples = sorted(latencies[skip:])
    if not samples:
        raise SystemExit("no messages consumed")

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(len(samples) * p))] / 1e6

    print(f"{len(latencies)} of {total} consumed at {args.rate} msg/s x {args.size} B; after {args.warmup}s warm-up: "
          f"p50 {pct(0.5):.2f} ms  p90 {pct(0.9):.2f} ms  p99 {pct(0.99):.2f} ms  p99.9 {pct(0.999):.2f} ms  "
          f"max {samples[-1] / 1e6:.2f} ms")


if __name__ == "__main__":
    main()
