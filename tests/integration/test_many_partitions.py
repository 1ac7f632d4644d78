"""Many partitions on a real broker with real clients: descriptors stay within
--max-open-files, and every message produced comes back to a consumer."""

from __future__ import annotations

import os
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 200
TIMEOUT = 60


def segment_descriptors(pid: int, data_dir: str) -> int:
    """Descriptors of the broker process open on files under its data directory (segments, indexes)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(data_dir + "/") and not target.endswith("@lock"):
            count += 1
    return count


def test_many_partitions_stay_within_the_descriptor_budget(broker_factory):
    broker = broker_factory("--shards", "2", "--max-open-files", "60")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic("many", PARTITIONS, 1)]).values():
        future.result(TIMEOUT)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    most = 0
    for round_ in range(2):
        for p in range(PARTITIONS):
            producer.produce("many", value=b"r%d-p%d" % (round_, p), partition=p)
            if p % 20 == 19:
                assert producer.flush(TIMEOUT) == 0
                most = max(most, segment_descriptors(broker.proc.pid, broker.data_dir))
    assert producer.flush(TIMEOUT) == 0
    # 60 descriptors for segments kept open between appends (three per partition appended to
    # lately); reads and rolls open a few more for a moment.
    assert most <= 60 + 10, most

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "many", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition("many", p, 0) for p in range(PARTITIONS)])
        got: dict[int, list[bytes]] = {}
        deadline = time.monotonic() + TIMEOUT
        while sum(map(len, got.values())) < 2 * PARTITIONS and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                assert not m.error(), m.error()
                got.setdefault(m.partition(), []).append(m.value())
    finally:
        consumer.close()
    assert got == {p: [b"r0-p%d" % p, b"r1-p%d" % p] for p in range(PARTITIONS)}
    assert segment_descriptors(broker.proc.pid, broker.data_dir) <= 60 + 10
