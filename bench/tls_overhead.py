"""What TLS and SASL cost: produce and consume throughput and produce latency over a PLAINTEXT,
an SSL and a SASL_SSL (SCRAM-SHA-512) listener of one broker, the listeners taken in turn each
round so that the machine's drift hits them alike.

    python bench/tls_overhead.py [--rounds 3] [--mb 256] [--rate 2000] [--seconds 8]

Throughput: 1 KiB messages, acks=all, linger.ms=5, one partition. Latency: --rate messages/s of
1 KiB with linger.ms=0, acks=all, from produce() to the delivery report (p50, p99, p99.9).
Needs trustme and confluent-kafka (the test extras).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import trustme
from confluent_kafka import Consumer, Producer, TopicPartition

from pstream.client import KafkaClient
from pstream.testing import BrokerProcess

LISTENERS = ("PLAINTEXT", "SSL", "SASL_SSL")


def client_conf(broker, listener: str, ca: str) -> dict:
    conf = {"bootstrap.servers": broker.address(listener), "security.protocol": listener}
    if listener != "PLAINTEXT":
        conf["ssl.ca.location"] = ca
    if listener == "SASL_SSL":
        conf.update({"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "bench", "sasl.password": "bench-pw"})
    return conf


def throughput(conf: dict, topic: str, mb: int) -> tuple[float, float]:
    n = mb * 1024
    value = b"x" * 1024
    producer = Producer({**conf, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20,
                         "queue.buffering.max.kbytes": 1 << 20, "enable.idempotence": False})
    started = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(120)
    produce_mb_s = mb / (time.perf_counter() - started)
    consumer = Consumer({**conf, "group.id": f"bench-{topic}", "enable.auto.commit": False,
                         "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
    consumer.assign([TopicPartition(topic, 0, 0)])   # no group join in the timing
    got, started = 0, time.perf_counter()
    while got < n and time.perf_counter() - started < 120:
        for m in consumer.consume(10000, 1.0):
            got += m.error() is None
    consume_mb_s = got / 1024 / (time.perf_counter() - started)
    consumer.close()
    return produce_mb_s, consume_mb_s


def latency(conf: dict, topic: str, rate: int, seconds: float) -> list[float]:
    producer = Producer({**conf, "acks": "all", "linger.ms": 0, "enable.idempotence": False})
    waits: list[float] = []
    value = b"y" * 1024
    interval = 1 / rate
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i * interval
        while time.perf_counter() < due:
            producer.poll(0)
        sent = time.perf_counter()
        producer.produce(topic, value, on_delivery=lambda err, msg, sent=sent: waits.append(time.perf_counter() - sent))
        producer.poll(0)
    producer.flush(30)
    return sorted(waits)


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(f"{tmp}/ca.pem")
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(f"{tmp}/server.pem")
        broker = BrokerProcess(f"{tmp}/data", listeners=",".join(LISTENERS), ssl_certfile=f"{tmp}/server.pem",
                               bootstrap_user="bench:bench-pw").start()
        results: dict[str, list] = {name: [] for name in LISTENERS}
        try:
            with KafkaClient(broker.bootstrap) as admin:
                for r in range(args.rounds):
                    for name in LISTENERS:
                        topic = f"bench-{name.lower()}-{r}"
                        admin.create_topic(topic, 1)
                        admin.create_topic(topic + "-lat", 1)
                        conf = client_conf(broker, name, f"{tmp}/ca.pem")
                        produced, consumed = throughput(conf, topic, args.mb)
                        waits = latency(conf, topic + "-lat", args.rate, args.seconds)
                        results[name].append((produced, consumed, pct(waits, 0.5), pct(waits, 0.99),
                                              pct(waits, 0.999)))
                        print(f"round {r} {name}: produce {produced:.0f} MB/s, consume {consumed:.0f} MB/s, "
                              f"latency p50 {pct(waits, 0.5):.2f} p99 {pct(waits, 0.99):.2f} "
                              f"p99.9 {pct(waits, 0.999):.2f} ms", flush=True)
        finally:
            broker.stop()
    print("\nmedians over rounds:")
    print("listener     produce MB/s  consume MB/s  p50 ms  p99 ms  p99.9 ms")
    for name, rows in results.items():
        med = [statistics.median(col) for col in zip(*rows)]
        print(f"{name:<12} {med[0]:>12.0f}  {med[1]:>12.0f}  {med[2]:>6.2f}  {med[3]:>6.2f}  {med[4]:>8.2f}")


if __name__ == "__main__":
    main()
