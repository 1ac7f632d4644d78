"""A secured cluster: brokers replicate over a SASL_SSL inter-broker listener, logged in as a
super user, with ACLs enforced; users, ACLs, topic configs and cluster-wide broker configs
changed through one broker hold on every broker, including one that was down meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import trustme
from confluent_kafka import Producer

from pstream.client.client import KafkaClient
from pstream.client.connection import KafkaError, Security
from pstream.protocol.error_codes import ErrorCode
from pstream.security.acls import Acl, AclFilter, Operation, PatternType, Permission, ResourceType

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:   # importlib mode: the helpers are this folder's module
    sys.path.insert(0, HERE)

from clients import TIMEOUT, wait_replicas_equal  # noqa: E402
from conftest import Cluster, etcd_binary  # noqa: E402

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
REAUTH_MS = 3000   # KIP-368 sessions: brokers reconnect to each other before theirs end


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    return {"ca": str(d / "ca.pem"), "server": str(d / "server.pem")}


@pytest.fixture(scope="module")
def cluster(etcd, tmp_path_factory, pki):
    running = Cluster(etcd, tmp_path_factory.mktemp("secure-cluster"), listeners="PLAINTEXT,SASL_SSL",
                      inter_broker_listener_name="SASL_SSL", ssl_certfile=pki["server"], ssl_cafile=pki["ca"],
                      authorization="acls", super_users=f"User:{ADMIN}", connections_max_reauth_ms=REAUTH_MS,
                      bootstrap_user=f"{ADMIN}:{ADMIN_PASSWORD}").start()
    yield running
    running.stop()


def client(cluster, pki, node: int, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> KafkaClient:
    """A client of broker `node` alone, logged in on its SASL_SSL listener."""
    return KafkaClient(cluster.brokers[node].address("SASL_SSL"), timeout=TIMEOUT, security=Security(
        "SASL_SSL", "SCRAM-SHA-512", user, password, cafile=pki["ca"]))


def eventually(check, what: str):
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            outcome = check()
            if outcome:
                return outcome
        except KafkaError as exc:
            outcome = exc
        assert time.monotonic() < deadline, f"waited {TIMEOUT} s for {what}: {outcome}"
        time.sleep(0.1)


def topic_configs(cluster, pki, node: int, topic: str) -> dict[str, tuple[str, str]]:
    with client(cluster, pki, node) as c:
        return {e.name: (e.value, e.source) for e in c.describe_configs(topic)}


def test_brokers_replicate_through_a_sasl_ssl_listener_under_acls(cluster, pki):
    with client(cluster, pki, 1) as admin:
        admin.create_topic("secured", partitions=3, replication_factor=3)
    producer = Producer({"bootstrap.servers": cluster.brokers[1].address("SASL_SSL"), "security.protocol": "SASL_SSL",
                         "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": ADMIN, "sasl.password": ADMIN_PASSWORD,
                         "ssl.ca.location": pki["ca"], "acks": "all", "enable.idempotence": True})
    acked = []
    for i in range(60):
        producer.produce("secured", b"v%d" % i, partition=i % 3,
                         on_delivery=lambda err, msg: acked.append((msg.partition(), msg.offset(), msg.value()))
                         if err is None else pytest.fail(str(err)))
    assert producer.flush(TIMEOUT) == 0
    expected: dict[int, list] = {}
    for partition, offset, value in sorted(acked):
        expected.setdefault(partition, []).append((offset, value))
    assert sum(len(v) for v in expected.values()) == 60
    wait_replicas_equal(cluster, "secured", [1, 2, 3], expected)   # acks=all needed every replica: fetched over SASL_SSL
    time.sleep(REAUTH_MS / 1000 + 1)   # past a session's lifetime: the brokers' connections were renewed in time
    assert not [line for b in cluster.brokers.values() for line in b.output().splitlines()
                if "authentication expired" in line]


def test_users_and_acls_made_through_one_broker_hold_on_every_broker(cluster, pki):
    with client(cluster, pki, 1) as admin:
        admin.create_topic("alices", partitions=1, replication_factor=3)
        admin.alter_scram_user("alice", "SCRAM-SHA-512", "alice-secret")
    grant = Acl(ResourceType.TOPIC, "alices", PatternType.LITERAL, "User:alice", "*", Operation.DESCRIBE,
                Permission.ALLOW)
    with client(cluster, pki, 2) as admin:
        admin.create_acls([grant])
    for node in (1, 2, 3):   # she logs in everywhere, and sees the topic everywhere
        def sees_it(node=node):
            with client(cluster, pki, node, "alice", "alice-secret") as alice:
                return alice.metadata(["alices"]).topics["alices"].error_code == ErrorCode.NONE
        eventually(sees_it, f"alice to see her topic on broker {node}")
    with client(cluster, pki, 3) as admin:
        assert admin.delete_acls(AclFilter(principal="User:alice")) == 1
    for node in (1, 2, 3):
        def refused(node=node):
            with client(cluster, pki, node, "alice", "alice-secret") as alice:
                return alice.metadata(["alices"]).topics["alices"].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        eventually(refused, f"alice refused her topic on broker {node} once the ACL is gone")


def test_topic_configs_altered_through_one_broker_apply_on_every_broker(cluster, pki):
    with client(cluster, pki, 1) as admin:
        admin.create_topic("tuned", partitions=1, replication_factor=3, configs={"retention.ms": "3600000"})
    with client(cluster, pki, 2) as admin:
        admin.alter_configs("tuned", {"retention.ms": "7200000", "min.insync.replicas": "2",
                                      "cleanup.policy": "compact, delete"})
    for node in (1, 2, 3):
        eventually(lambda node=node: topic_configs(cluster, pki, node, "tuned")["retention.ms"][0] == "7200000",
                   f"broker {node} to take retention.ms")
        configs = topic_configs(cluster, pki, node, "tuned")
        assert configs["min.insync.replicas"] == ("2", "dynamic topic")
        assert configs["cleanup.policy"] == ("compact,delete", "dynamic topic")
    with client(cluster, pki, 3) as admin:   # a DELETE goes back to the default everywhere
        admin.alter_configs("tuned", delete=["min.insync.replicas"])
    for node in (1, 2, 3):
        eventually(lambda node=node: topic_configs(cluster, pki, node, "tuned")["min.insync.replicas"][1]
                   != "dynamic topic", f"broker {node} to drop min.insync.replicas")
    with client(cluster, pki, 1) as admin, pytest.raises(KafkaError, match="retention.ms"):
        admin.alter_configs("tuned", {"retention.ms": "soon"})
    assert topic_configs(cluster, pki, 2, "tuned")["retention.ms"][0] == "7200000"


def test_changes_made_while_a_broker_was_down_reach_it_when_it_returns(cluster, pki):
    with client(cluster, pki, 1) as admin:
        admin.create_topic("while-down", partitions=1, replication_factor=3)
    cluster.brokers[3].stop()
    try:
        with client(cluster, pki, 1) as admin:
            admin.alter_scram_user("bob", "SCRAM-SHA-512", "bob-secret")
            admin.create_acls([Acl(ResourceType.TOPIC, "while-down", PatternType.LITERAL, "User:bob", "*",
                                   Operation.DESCRIBE, Permission.ALLOW)])
            admin.alter_configs("while-down", {"retention.bytes": "1048576"})
            admin.alter_configs("", {"message.max.bytes": "2000000"}, resource_type=4)
    finally:
        cluster.brokers[3].start()
    with client(cluster, pki, 3, "bob", "bob-secret") as bob:   # logged in on the broker that was down
        assert bob.metadata(["while-down"]).topics["while-down"].error_code == ErrorCode.NONE
    eventually(lambda: topic_configs(cluster, pki, 3, "while-down")["retention.bytes"] == ("1048576", "dynamic topic"),
               "the returning broker to take the topic's new config")
    for node in (1, 2, 3):   # the cluster-wide default, not one broker's own
        with client(cluster, pki, node) as admin:
            entries = {e.name: e for e in admin.describe_configs(str(node), resource_type=4)}
        assert (entries["message.max.bytes"].value, entries["message.max.bytes"].source) == \
            ("2000000", "dynamic default broker")


def etcdctl(etcd: str, *args: str) -> None:
    subprocess.run([etcd_binary() + "ctl", "--endpoints", f"http://{etcd}", *args], check=True, capture_output=True,
                   timeout=TIMEOUT)


def test_a_change_the_cluster_cannot_take_now_is_refused_with_the_reason(cluster, pki, etcd):
    """The cluster's lock held elsewhere (here by a key the test wrote) past the wait: each ACL
    and user of the request is answered REQUEST_TIMED_OUT with the reason (before, the broker
    closed the connection); once the lock is free the same changes go through. A client per
    change: the wait outlasts this cluster's short SASL sessions, which our client does not renew."""
    lock = f"/{cluster.url.rsplit('/', 1)[1]}/locks/shared"
    grant = Acl(ResourceType.TOPIC, "held", PatternType.LITERAL, "User:bob", "*", Operation.READ, Permission.ALLOW)
    changes = (lambda admin: admin.create_acls([grant]),
               lambda admin: admin.alter_scram_user("bob", "SCRAM-SHA-512", "bob-secret"))
    etcdctl(etcd, "put", lock, '{"node_id": 99}')
    try:
        for change in changes:
            with client(cluster, pki, 2) as admin:
                with pytest.raises(KafkaError) as info:
                    change(admin)
                assert info.value.code == ErrorCode.REQUEST_TIMED_OUT
                assert 'lock is held ({"node_id": 99})' in str(info.value)   # answered, not closed
    finally:
        etcdctl(etcd, "del", lock)
    with client(cluster, pki, 2) as admin:
        for change in changes:
            change(admin)
        assert admin.describe_acls(AclFilter(principal="User:bob"))
