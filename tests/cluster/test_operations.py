"""What an operator sees of a cluster with a broker down, and after it is back: `pstream cluster
status`, the leader's Prometheus metrics (under-replicated partitions, ISR shrinks and
expansions, replica lag, brokers down) and Redpanda's health overview on the admin API; and
leaderships given back to preferred replicas, by ElectLeaders (here, where the automatic
rebalance is off) and by the controller (in the other modules' clusters, where it is on).
"""

from __future__ import annotations

import json
import signal
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from confluent_kafka import ElectionType, KafkaError, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from pstream.client.wire import codec_classes
from pstream.protocol.error_codes import ErrorCode
from pstream.testing import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:   # importlib mode: the helpers are this folder's module
    sys.path.insert(0, HERE)

from clients import (TIMEOUT, admin_call, by_partition, new_topic, produce, wait_replicas_equal)  # noqa: E402
from conftest import Cluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster(etcd, tmp_path_factory):
    """Three brokers that leave leaderships where failovers put them (no automatic rebalance)."""
    running = Cluster(etcd, tmp_path_factory.mktemp("cluster"), auto_leader_rebalance_enable=False).start()
    yield running
    running.stop()


def status(cluster) -> dict:
    out = subprocess.run([sys.executable, "-P", "-m", "pstream", "cluster", "status", "--brokers", cluster.bootstrap,
                          "--format", "json"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def get(broker, path: str) -> str:
    with urllib.request.urlopen(broker.admin_url + path, timeout=TIMEOUT) as answer:
        return answer.read().decode()


def samples(broker) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of the broker's /metrics, for the cluster's families."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(get(broker, "/metrics"))
            if family.name.startswith("pstream_cluster_") for s in family.samples}


def eventually(check, what: str):
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"waited {TIMEOUT} s for {what}"
        time.sleep(0.2)


def test_a_broker_down_shows_in_status_metrics_and_health(cluster):
    topic = new_topic(cluster, partitions=1)
    produce(cluster, topic, [b"x%d" % i for i in range(50)], partition=0)
    leader = cluster.partitions(topic)[0].leader
    victim = next(n for n in cluster.brokers if n != leader)
    healthy = status(cluster)
    assert healthy["brokers"] == [1, 2, 3] and healthy["brokers_down"] == []
    assert f"{topic}-0" not in healthy["under_replicated_partitions"]

    cluster.brokers[victim].kill()
    try:
        cluster.wait_until(topic, lambda ps: victim not in ps[0].isrs, f"broker {victim} out of the ISR")
        seen = eventually(lambda: (s := status(cluster))["brokers_down"] == [victim] and s, "the broker down")
        assert f"{topic}-0" in seen["under_replicated_partitions"]
        row = next(r for r in seen["attention"] if r["topic"] == topic)
        assert row["offline"] == str(victim) and str(victim) not in row["isr"].split(",")

        metrics = samples(cluster.brokers[leader])
        assert metrics[("pstream_cluster_brokers", (("state", "down"),))] == 1
        assert metrics[("pstream_cluster_under_replicated_partitions", ())] >= 1
        assert metrics[("pstream_cluster_isr_shrinks_total", ())] >= 1
        lag_key = ("pstream_cluster_replica_lag", (("partition", "0"), ("replica", str(victim)), ("topic", topic)))
        assert lag_key in metrics

        health = json.loads(get(cluster.brokers[leader], "/v1/cluster/health_overview"))
        assert not health["is_healthy"] and health["nodes_down"] == [victim]
        assert f"kafka/{topic}/0" in health["under_replicated_partitions"]
    finally:
        cluster.brokers[victim].start()
    cluster.wait_until(topic, lambda ps: victim in ps[0].isrs, f"broker {victim} back in the ISR")
    back = eventually(lambda: (s := status(cluster))["brokers_down"] == [] and s, "every broker back")
    assert f"{topic}-0" not in back["under_replicated_partitions"]
    assert samples(cluster.brokers[leader])[("pstream_cluster_isr_expands_total", ())] >= 1


def test_elect_leaders_gives_a_leadership_back_to_its_preferred_replica(cluster):
    topic = new_topic(cluster, partitions=1)
    preferred = cluster.partitions(topic)[0].replicas[0]
    assert cluster.partitions(topic)[0].leader == preferred
    admin = cluster.admin()
    wanted = [TopicPartition(topic, 0)]
    assert admin.elect_leaders(ElectionType.PREFERRED, wanted).result(TIMEOUT)[wanted[0]].code() == \
        KafkaError.ELECTION_NOT_NEEDED
    cluster.brokers[preferred].restart()   # SIGTERM: its leaderships move at once, and stay moved
    cluster.wait_until(topic, lambda ps: preferred in ps[0].isrs and ps[0].leader != preferred,
                       f"broker {preferred} back in the ISR, not leading")
    assert admin.elect_leaders(ElectionType.PREFERRED, wanted).result(TIMEOUT)[wanted[0]] is None
    cluster.wait_until(topic, lambda ps: ps[0].leader == preferred, f"broker {preferred} leading again")
    assert [v for _, _, v in produce(cluster, topic, [b"after"], partition=0)] == [b"after"]
    missing = [TopicPartition(topic, 7)]
    assert admin.elect_leaders(ElectionType.PREFERRED, missing).result(TIMEOUT)[missing[0]].code() == \
        KafkaError.UNKNOWN_TOPIC_OR_PART


def reassign(cluster, topic: str, replicas, via: int = 1) -> tuple[int, str | None]:
    """AlterPartitionReassignments of partition 0 (replicas None: cancel), asked of broker `via`:
    its (error, message)."""
    req = codec_classes("AlterPartitionReassignments")[0]
    answer = admin_call(cluster, "AlterPartitionReassignments", 0, via, timeout_ms=30000, topics=[
        req.ReassignableTopic(name=topic, partitions=[req.ReassignablePartition(partition_index=0,
                                                                                replicas=replicas)])])
    result = answer.responses[0].partitions[0]
    return result.error_code, result.error_message


def ongoing(cluster, via: int = 1) -> dict[tuple[str, int], tuple[list, list, list]]:
    answer = admin_call(cluster, "ListPartitionReassignments", 0, via, timeout_ms=30000, topics=None)
    return {(t.name, p.partition_index): (p.replicas, p.adding_replicas, p.removing_replicas)
            for t in answer.topics for p in t.partitions}


def test_a_partition_moves_to_another_broker_after_it_catches_up(cluster):
    topic = new_topic(cluster, partitions=1, replicas=2)
    old = cluster.partitions(topic)[0].replicas
    newcomer = ({1, 2, 3} - set(old)).pop()
    acked = produce(cluster, topic, [b"before-%d" % i for i in range(300)], partition=0)
    target = [newcomer, old[0]]   # old[1] leaves; the newcomer is the preferred leader
    assert reassign(cluster, topic, [newcomer, newcomer]) == (
        ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        f"The manual partition assignment includes the broker {newcomer} more than once.")
    assert reassign(cluster, topic, [9]) == (
        ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        "The manual partition assignment includes broker 9, but no such broker is registered.")
    assert reassign(cluster, topic, target) == (ErrorCode.NONE, None)
    cluster.wait_until(topic, lambda ps: ps[0].replicas == target and sorted(ps[0].isrs) == sorted(target),
                       f"replicas {target}, all in sync")
    assert ongoing(cluster).get((topic, 0)) is None
    acked += produce(cluster, topic, [b"after-%d" % i for i in range(100)], partition=0)
    wait_replicas_equal(cluster, topic, target, by_partition(acked))
    assert reassign(cluster, topic, None)[0] == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
    wait_replicas_equal(cluster, topic, [old[1]], {0: []})   # the broker that left deleted its copy
    assert reassign(cluster, topic, [*target, old[1]]) == (ErrorCode.NONE, None)   # and back: all of it again
    cluster.wait_until(topic, lambda ps: sorted(ps[0].isrs) == [1, 2, 3], "all three in sync")
    wait_replicas_equal(cluster, topic, [1, 2, 3], by_partition(acked))


def test_a_reassignment_waits_for_the_newcomer_and_can_be_cancelled(cluster):
    topic = new_topic(cluster, partitions=1, replicas=2)
    old = cluster.partitions(topic)[0].replicas
    newcomer = ({1, 2, 3} - set(old)).pop()
    produce(cluster, topic, [b"x"], partition=0)
    pid = cluster.brokers[newcomer].proc.pid
    os.kill(pid, signal.SIGSTOP)   # briefly: inside its lease, registered but fetching nothing
    try:
        via = old[0]   # not the paused broker
        assert reassign(cluster, topic, [newcomer], via) == (ErrorCode.NONE, None)
        time.sleep(0.5)
        # still adding: the newcomer is not in sync, so nothing moved (and nothing is asked of it)
        assert ongoing(cluster, via)[(topic, 0)] == ([newcomer, *old], [newcomer], list(old))
        assert reassign(cluster, topic, None, via) == (ErrorCode.NONE, None)
    finally:
        os.kill(pid, signal.SIGCONT)
    cluster.wait_until(topic, lambda ps: ps[0].replicas == old, f"replicas back to {old}")
    assert ongoing(cluster).get((topic, 0)) is None


def test_an_unreachable_etcd_is_a_one_line_refusal(tmp_path):
    port = free_port()   # nothing listens there
    out = subprocess.run([sys.executable, "-P", "-m", "pstream", "serve", "--listen", "127.0.0.1:0", "--admin-listen",
                          "off", "--data-dir", str(tmp_path / "data"), "--cluster", f"etcd://127.0.0.1:{port}",
                          "--node-id", "1"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert out.stderr.startswith(f"pstream serve: cannot reach etcd at 127.0.0.1:{port}: "), out.stderr
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr
