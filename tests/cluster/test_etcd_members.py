"""A cluster whose metadata lives in an etcd of three members, given to the brokers as three
endpoints: the member named first dies, and the brokers keep their leases, create topics,
replicate and let a broker rejoin, through the two members left (a quorum).
"""

from __future__ import annotations

import os
import sys
import time

from pstream.testing import stop_broker

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:   # importlib mode: the helpers are this folder's module
    sys.path.insert(0, HERE)

from clients import by_partition, new_topic, produce, wait_replicas_equal  # noqa: E402
from conftest import LEASE_MS, Cluster, start_etcd_members, stop_etcd  # noqa: E402


def test_the_cluster_goes_on_when_the_first_etcd_member_dies(tmp_path_factory):
    members = start_etcd_members(tmp_path_factory.mktemp("etcd3"), 3)
    cluster = None
    try:
        cluster = Cluster(",".join(address for _, address in members), tmp_path_factory.mktemp("on-etcd3")).start()
        before = new_topic(cluster, partitions=3)
        acked = produce(cluster, before, [b"before-%d" % i for i in range(90)])
        members[0][0].kill()   # the endpoint every broker names first
        members[0][0].wait()
        time.sleep(3 * LEASE_MS / 1000)   # leases renewed elsewhere, or lost by now
        cluster.wait_for_brokers({1, 2, 3})
        after = new_topic(cluster, partitions=3)   # topic records written, watched and taken
        acked_after = produce(cluster, after, [b"after-%d" % i for i in range(90)])
        cluster.brokers[2].restart()   # joins through the members left
        cluster.wait_for_brokers({1, 2, 3})
        acked += produce(cluster, before, [b"again-%d" % i for i in range(30)])
        wait_replicas_equal(cluster, before, (1, 2, 3), by_partition(acked))
        wait_replicas_equal(cluster, after, (1, 2, 3), by_partition(acked_after))
    finally:
        if cluster is not None:
            for broker in cluster.brokers.values():
                if broker.proc is not None:
                    stop_broker(broker)
        for proc, _ in members:
            stop_etcd(proc)
