"""Three brokers, each in a network namespace of its own with its own address, and etcd, under a
steady load of acks=all idempotent producers, through the faults a cluster meets: a leader
killed with SIGKILL, a leader stopped (SIGSTOP) past its lease, a leader's link cut past its
lease, a leader back on an empty disk. After each the cluster heals (every partition led, every
replica in sync); at the end every acknowledged record is present exactly once, where its
acknowledgement said, in the order produced. The short test runs the two faults only this
file shows (a pause and a cut link); the slow one (-m slow) runs all four, some twice.

The test makes its namespaces and bridge, sends traffic only to them, and removes them; it
skips where namespaces cannot be made (not root).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:   # importlib mode: the helpers are this folder's modules
    sys.path.insert(0, HERE)

import netns  # noqa: E402
from conftest import LEASE_MS, Cluster, start_etcd, stop_etcd  # noqa: E402

TIMEOUT = 60.0
PARTITIONS = 3
PAST_LEASE_S = LEASE_MS / 1000 + 2.0


@pytest.fixture(scope="module")
def network():
    why = netns.unavailable()
    if why:
        pytest.skip(why)
    try:
        net = netns.Network(3)
    except OSError as exc:
        pytest.skip(f"cannot make network namespaces here: {exc}")
    yield net
    net.close()


@pytest.fixture(scope="module")
def spread_cluster(network, tmp_path_factory):
    base = tmp_path_factory.mktemp("netns")
    etcd_dir = base / "etcd"
    etcd_dir.mkdir()
    proc, address = start_etcd(etcd_dir, host=network.gateway)
    cluster = Cluster(address, base, where=network.placement)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        stop_etcd(proc)


class Load:
    """A producer thread sending numbered records round-robin over the partitions; it records
    what was acknowledged, with its offset."""

    def __init__(self, cluster, topic: str):
        self.producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                                  "linger.ms": 5, "message.timeout.ms": 120_000})
        self.topic = topic
        self.acked: list[tuple[int, int, bytes]] = []
        self.failed: list = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _done(self, err, msg) -> None:
        if err:
            self.failed.append(err)
        else:
            self.acked.append((msg.partition(), msg.offset(), msg.value()))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.producer.produce(self.topic, b"n%08d" % self.sent, partition=self.sent % PARTITIONS,
                                      on_delivery=self._done)
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(0.002)

    def progress(self, since: int, what: str) -> None:
        """Waits until acknowledgements move on past `since`."""
        deadline = time.monotonic() + TIMEOUT
        while len(self.acked) < since + 200:
            assert time.monotonic() < deadline, f"the load made no progress after {what}"
            time.sleep(0.05)

    def finish(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        assert self.producer.flush(TIMEOUT * 2) == 0


def healed(cluster, topic: str) -> None:
    cluster.wait_until(topic, lambda ps: all(p.leader > 0 and len(p.isrs) == 3 for p in ps.values()),
                       "every partition led, with every replica in sync")


def read_all(cluster, topic: str, ends: dict[int, int]) -> dict[int, list[tuple[int, bytes]]]:
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    deadline = time.monotonic() + TIMEOUT
    while any((got[p][-1][0] + 1 if got[p] else 0) < ends[p] for p in ends):
        assert time.monotonic() < deadline, {p: len(v) for p, v in got.items()}
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got[msg.partition()].append((msg.offset(), msg.value()))
    consumer.close()
    return got


def kill_leader(cluster, network, topic, load, partition: int) -> None:
    """The partition's leader killed with SIGKILL, then back."""
    victim = cluster.partitions(topic)[partition].leader
    cluster.brokers[victim].kill()
    cluster.wait_until(topic, lambda ps: ps[partition].leader not in (-1, victim), "a new leader after SIGKILL")
    load.progress(len(load.acked), "SIGKILL")
    cluster.brokers[victim].start()


def pause_leader(cluster, network, topic, load, partition: int) -> None:
    """The partition's leader stopped past its lease: it loses its leaderships, then resumes."""
    victim = cluster.partitions(topic)[partition].leader
    pid = cluster.brokers[victim].proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(PAST_LEASE_S)
        cluster.wait_until(topic, lambda ps: ps[partition].leader not in (-1, victim), "a new leader after SIGSTOP")
        load.progress(len(load.acked), "SIGSTOP")
    finally:
        os.kill(pid, signal.SIGCONT)


def cut_leader(cluster, network, topic, load, partition: int) -> None:
    """The partition's leader cut off (clients, peers and etcd) past its lease, then reconnected."""
    victim = cluster.partitions(topic)[partition].leader
    network.cut(victim)
    try:
        time.sleep(PAST_LEASE_S)
        cluster.wait_until(topic, lambda ps: ps[partition].leader not in (-1, victim), "a new leader after a cut")
        load.progress(len(load.acked), "a cut link")
    finally:
        network.heal(victim)


def wipe_leader(cluster, network, topic, load, partition: int) -> None:
    """The partition's leader back on an empty disk: it fetches everything again before it counts."""
    victim = cluster.partitions(topic)[partition].leader
    cluster.brokers[victim].kill()
    shutil.rmtree(cluster.brokers[victim].data_dir)
    cluster.brokers[victim].start()
    load.progress(len(load.acked), "an empty disk")


def run_faults(cluster, network, faults) -> None:
    topic = f"faults-{uuid.uuid4().hex[:6]}"
    admin = cluster.admin()
    admin.create_topics([NewTopic(topic, PARTITIONS, 3)])[topic].result(TIMEOUT)
    healed(cluster, topic)
    load = Load(cluster, topic)
    load.progress(0, "the start")
    for i, fault in enumerate(faults):
        fault(cluster, network, topic, load, i % PARTITIONS)
        healed(cluster, topic)
    load.finish()
    assert len(load.acked) > 500
    acked: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    for partition, offset, value in load.acked:
        acked[partition].append((offset, value))
    ends = {p: max((o for o, _ in acked[p]), default=-1) + 1 for p in acked}
    log = read_all(cluster, topic, ends)
    for p in range(PARTITIONS):
        values = [v for _, v in log[p]]
        # exactly once: no acknowledged record missing or doubled, and each where its ack said
        assert len(values) == len(set(values)), f"partition {p} holds a record twice"
        stored = dict(log[p])
        assert all(stored.get(offset) == value for offset, value in acked[p]), f"partition {p} lost a record"
        # in order: what was produced later sits at a higher offset
        numbers = [int(v[1:]) for v in values]
        assert numbers == sorted(numbers), f"partition {p} out of order"


def test_acknowledged_records_survive_a_pause_and_a_cut_link(network, spread_cluster):
    run_faults(spread_cluster, network, [pause_leader, cut_leader])


@pytest.mark.slow
def test_acknowledged_records_survive_every_fault_in_turn(network, spread_cluster):
    run_faults(spread_cluster, network, [kill_leader, pause_leader, cut_leader, wipe_leader, cut_leader,
                                         pause_leader, kill_leader])
