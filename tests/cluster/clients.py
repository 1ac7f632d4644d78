"""What the cluster tests do as clients: create a replicated topic, produce acks=all and idempotent."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

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
