"""What the cluster tests do as clients: create a replicated topic, produce acks=all and idempotent,
send one raw request to a broker, and read what each broker's data directory holds."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

import pstream
from pstream.client.connection import BrokerConnection
from pstream.client.wire import codec_classes
from pstream.errors import UnknownTopicError

PARTITIONS = 3
TIMEOUT = 30.0


def new_topic(cluster, partitions: int = PARTITIONS, replicas: int = 3, **configs) -> str:
    name = f"rep-{uuid.uuid4().hex[:8]}"
    admin = cluster.admin()   # kept: a collected client cancels its futures
    admin.create_topics([NewTopic(name, partitions, replicas, config=configs)])[name].result(TIMEOUT)
    cluster.wait_until(name, lambda ps: len(ps) == partitions and all(p.leader > 0 for p in ps.values()),
                       "leaders")
    return name


def produce(cluster, topic: str, values, partition: int | None = None, **config) -> list[tuple[int, int, bytes]]:
    """Sends every value (acks=all, idempotent); returns (partition, offset, value) of the acknowledged."""
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 2, "message.timeout.ms": int(TIMEOUT * 1000), **config})
    acked, failed = [], []

    def done(err, msg):
        if err:
            failed.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.value()))
    for i, value in enumerate(values):
        producer.produce(topic, value, partition=i % PARTITIONS if partition is None else partition,
                         on_delivery=done)
        producer.poll(0)
    producer.flush(TIMEOUT)
    assert not failed, failed[:3]
    return acked


def replica_contents(broker, topic: str) -> dict[int, list[tuple[int, bytes]]]:
    """What one broker's data directory holds, read while it runs (a read-only Log)."""
    log = pstream.Log(broker.data_dir, readonly=True)
    try:
        return {p.number: [(r.offset, r.value) for r in p.read(p.log_start_offset)] for p in log.get_topic(topic)}
    except UnknownTopicError:   # not created there yet
        return {}
    finally:
        log.close()


def wait_replicas_equal(cluster, topic: str, nodes, expected: dict) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        contents = {n: replica_contents(cluster.brokers[n], topic) for n in nodes}
        if all(c == expected for c in contents.values()):
            return
        assert time.monotonic() < deadline, {n: {p: len(v) for p, v in c.items()} for n, c in contents.items()}
        time.sleep(0.2)


def by_partition(acked) -> dict[int, list[tuple[int, bytes]]]:
    out: dict[int, list] = {}
    for partition, offset, value in sorted(acked):
        out.setdefault(partition, []).append((offset, value))
    return out


def admin_call(cluster, api: str, version: int, via: int = 1, **fields):
    """One request (its codec's fields) to broker `via`, on a connection of its own: the answer."""
    conn = BrokerConnection("127.0.0.1", cluster.brokers[via].port)
    try:
        return conn.call(api, version, codec_classes(api)[0](**fields))
    finally:
        conn.close()
