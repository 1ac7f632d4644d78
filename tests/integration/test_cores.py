"""`pstream serve --cores 2` with real clients: each core is a broker of its own (node 0 on the
port, node 1 on the port + 1) leading its share of the partitions; librdkafka routes produce
and fetch to the leaders; groups, transactions and admin requests reach core 0 from either
core, as the client's principal; core 0's admin API and /metrics show every core; a core
killed with SIGKILL, even under load, is restarted and loses nothing acknowledged; stopping
core 0 stops them all, and the data directory opens again with one core.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic
from prometheus_client.parser import text_string_to_metric_families

import pstream
from pstream.log import owner_core
from pstream.testing import BrokerProcess, stop_broker

import raw_kafka  # noqa: E402  (tests/integration is on sys.path: see conftest.py)

TIMEOUT = 30.0
PARTITIONS = 4
NOT_LEADER_OR_FOLLOWER = 6


@pytest.fixture(scope="module")
def two_cores(tmp_path_factory):
    broker = BrokerProcess(str(tmp_path_factory.mktemp("cores") / "data"), cores=2,
                           group_initial_rebalance_delay_ms=0).start()
    wait_for_cores(broker.bootstrap, 2)
    yield broker
    stop_broker(broker)


def wait_for_cores(bootstrap: str, count: int) -> dict:
    """{node id: port} once Metadata lists `count` brokers."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + TIMEOUT
    while True:
        brokers = {b.id: b.port for b in admin.list_topics(timeout=TIMEOUT).brokers.values()}
        if len(brokers) == count or time.monotonic() > deadline:
            return brokers
        time.sleep(0.1)


def new_topic(bootstrap: str, partitions: int = PARTITIONS) -> str:
    name = f"cores-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(TIMEOUT)
    return name


def produce(bootstrap: str, topic: str, values: list[bytes], **config) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 2, **config})
    failed = []
    for i, value in enumerate(values):
        producer.produce(topic, value, partition=i % PARTITIONS,
                         on_delivery=lambda err, _msg: failed.append(err) if err else None)
    assert producer.flush(TIMEOUT) == 0
    assert not failed, failed[:3]


def consume_all(bootstrap: str, topic: str, expected: int, **config) -> list[tuple[int, bytes]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, **config})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.append((msg.partition(), msg.value()))
    time.sleep(0.3)   # nothing more than expected arrives
    while (msg := consumer.poll(0.1)) is not None:
        if not msg.error():
            got.append((msg.partition(), msg.value()))
    consumer.close()
    return got


def test_each_core_is_a_broker_leading_its_partitions(two_cores):
    brokers = wait_for_cores(two_cores.bootstrap, 2)
    assert brokers == {0: two_cores.port, 1: two_cores.port + 1}
    topic = new_topic(two_cores.bootstrap)
    meta = AdminClient({"bootstrap.servers": two_cores.bootstrap}).list_topics(topic, timeout=TIMEOUT)
    assert meta.controller_id == 0
    leaders = {p.id: p.leader for p in meta.topics[topic].partitions.values()}
    assert leaders == {p: owner_core(topic, p, 2) for p in range(PARTITIONS)}
    assert set(leaders.values()) == {0, 1}
    admin = AdminClient({"bootstrap.servers": two_cores.bootstrap})
    described = admin.describe_topics(TopicCollection([topic]))[topic].result(TIMEOUT)
    assert {p.id: p.leader.id for p in described.partitions} == leaders
    cluster = admin.describe_cluster().result(TIMEOUT)
    assert sorted(node.id for node in cluster.nodes) == [0, 1] and cluster.controller.id == 0
    with raw_kafka.RawConnection(two_cores.bootstrap) as conn:   # Kafka 3.9's admin describes topics with it
        req_cls, _ = raw_kafka.codecs("DescribeTopicPartitions")
        answer = conn.call("DescribeTopicPartitions", 0, req_cls(
            topics=[req_cls.TopicRequest(name=topic)], response_partition_limit=100, cursor=None))
    assert {p.partition_index: p.leader_id for p in answer.topics[0].partitions} == leaders


def test_records_go_to_each_leader_and_come_back_in_order(two_cores):
    topic = new_topic(two_cores.bootstrap)
    values = [b"%d" % i for i in range(400)]
    produce(two_cores.bootstrap, topic, values)
    got = consume_all(two_cores.bootstrap, topic, len(values))
    for p in range(PARTITIONS):
        assert [v for part, v in got if part == p] == values[p::PARTITIONS]
    # each core wrote its own partitions' segments
    for p in range(PARTITIONS):
        assert os.path.getsize(os.path.join(two_cores.data_dir, topic, str(p), "0" * 20 + ".log")) > 0


def test_a_core_refuses_a_partition_it_does_not_lead(two_cores):
    """A client with a stale view gets NOT_LEADER_OR_FOLLOWER (librdkafka then asks Metadata again)."""
    topic = new_topic(two_cores.bootstrap)
    other = next(p for p in range(PARTITIONS) if owner_core(topic, p, 2) == 1)
    batch = pstream._core.encode_batch([(b"k", b"v", [], None)])
    with raw_kafka.RawConnection(two_cores.bootstrap) as conn:   # core 0's port
        produced = conn.call("Produce", 9, raw_kafka.produce_request(topic, other, batch))
        fetched = conn.call("Fetch", 12, raw_kafka.fetch_request(topic, other, 0))
        listed = conn.call("ListOffsets", 7, raw_kafka.list_offsets_request(topic, other, -1))
    assert produced.responses[0].partition_responses[0].error_code == NOT_LEADER_OR_FOLLOWER
    assert fetched.responses[0].partitions[0].error_code == NOT_LEADER_OR_FOLLOWER
    assert listed.topics[0].partitions[0].error_code == NOT_LEADER_OR_FOLLOWER


def test_group_and_commits_from_either_core(two_cores):
    topic = new_topic(two_cores.bootstrap)
    produce(two_cores.bootstrap, topic, [b"v%d" % i for i in range(40)])
    core1 = f"127.0.0.1:{two_cores.port + 1}"   # bootstrap through core 1: FindCoordinator is relayed
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = Consumer({"bootstrap.servers": core1, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + TIMEOUT
    while seen < 40 and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            seen += 1
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=TIMEOUT)
    consumer.close()
    assert seen == 40
    assert sum(tp.offset for tp in committed) == 40
    admin = AdminClient({"bootstrap.servers": core1})
    listed = admin.list_consumer_groups().result(TIMEOUT)
    assert [g.group_id for g in listed.valid].count(group) == 1   # listed by core 0 only, once


def test_core_0s_admin_api_and_metrics_answer_with_other_cores_partitions(two_cores):
    """Core 0's admin API shows every core's partitions, and the lag of a group on them;
    /metrics every core's samples, each labelled with its core."""
    topic = new_topic(two_cores.bootstrap)
    produce(two_cores.bootstrap, topic, [b"m%d" % i for i in range(8)])
    consume_all(two_cores.bootstrap, topic, 8)   # a group with commits on both cores' partitions
    consumer = Consumer({"bootstrap.servers": two_cores.bootstrap, "group.id": f"lag-{topic}"})
    consumer.commit(offsets=[TopicPartition(topic, p, 1) for p in range(PARTITIONS)], asynchronous=False)
    consumer.close()
    for path in ("/metrics", "/v1/groups", f"/v1/topics/{topic}", "/v1/brokers"):
        with urllib.request.urlopen(two_cores.admin_url + path, timeout=TIMEOUT) as answer:
            assert answer.status == 200, path
    with urllib.request.urlopen(f"{two_cores.admin_url}/v1/topics/{topic}", timeout=TIMEOUT) as answer:
        described = json.load(answer)
    assert [(p["partition"], p["high_watermark"]) for p in described["partitions"]] == \
        [(p, 2) for p in range(PARTITIONS)]
    assert described["records"] == 8
    with urllib.request.urlopen(f"{two_cores.admin_url}/v1/cluster/partitions/kafka/{topic}",
                                timeout=TIMEOUT) as answer:   # Redpanda's admin API
        redpanda = json.load(answer)
    assert [(p["partition_id"], p["leader_id"], p["replicas"][0]["node_id"]) for p in redpanda] == \
        [(p, owner_core(topic, p, 2), owner_core(topic, p, 2)) for p in range(PARTITIONS)]
    with urllib.request.urlopen(f"{two_cores.admin_url}/v1/topics", timeout=TIMEOUT) as answer:
        listed = {t["name"]: t for t in json.load(answer)}
    assert (listed[topic]["partitions"], listed[topic]["records"]) == (PARTITIONS, 8)
    with urllib.request.urlopen(f"{two_cores.admin_url}/metrics", timeout=TIMEOUT) as answer:
        families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
    watermarks = {(s.labels["partition"], s.labels["core"]): s.value
                  for s in families["pstream_partition_high_watermark"].samples if s.labels["topic"] == topic}
    assert watermarks == {(str(p), str(owner_core(topic, p, 2))): 2.0 for p in range(PARTITIONS)}
    assert {s.labels["core"] for s in families["pstream_requests"].samples} == {"0", "1"}
    lags = {s.labels["partition"]: s.value for s in families["pstream_group_lag"].samples
            if s.labels["group"] == f"lag-{topic}"}
    assert lags == {str(p): 1.0 for p in range(PARTITIONS)}   # on both cores' partitions
    with urllib.request.urlopen(f"{two_cores.admin_url}/v1/groups", timeout=TIMEOUT) as answer:
        groups = {g["group_id"]: g for g in json.load(answer)}
    offsets = {o["partition"]: o for o in groups[f"lag-{topic}"]["offsets"]}
    assert {p: (o["high_watermark"], o["lag"]) for p, o in offsets.items()} == {p: (2, 1) for p in range(PARTITIONS)}


def test_metrics_of_many_partitions_cross_the_control_socket(two_cores):
    """Core 1's exposition of 500 partitions (hundreds of kilobytes, one control message) reaches
    core 0's /metrics, and core 1 stays up."""
    topic = new_topic(two_cores.bootstrap, partitions=1000)
    with urllib.request.urlopen(f"{two_cores.admin_url}/metrics", timeout=TIMEOUT) as answer:
        families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
    cores = [s.labels["core"] for s in families["pstream_partition_high_watermark"].samples if s.labels["topic"] == topic]
    assert sorted(cores) == sorted(str(owner_core(topic, p, 2)) for p in range(1000))
    assert "exited with code" not in two_cores.output()
    admin = AdminClient({"bootstrap.servers": two_cores.bootstrap})
    admin.delete_topics([topic])[topic].result(TIMEOUT)


def test_transactions_span_cores(two_cores):
    topic = new_topic(two_cores.bootstrap)
    producer = Producer({"bootstrap.servers": two_cores.bootstrap, "transactional.id": f"tx-{topic}",
                         "linger.ms": 2})
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    for i in range(8):
        producer.produce(topic, b"committed-%d" % i, partition=i % PARTITIONS)
    producer.commit_transaction(TIMEOUT)
    producer.begin_transaction()
    for i in range(8):
        producer.produce(topic, b"aborted-%d" % i, partition=i % PARTITIONS)
    assert producer.flush(TIMEOUT) == 0   # written, then aborted (abort_transaction drops what is unsent)
    producer.abort_transaction(TIMEOUT)
    got = consume_all(two_cores.bootstrap, topic, 8, **{"isolation.level": "read_committed"})
    assert sorted(v for _, v in got) == sorted(b"committed-%d" % i for i in range(8))
    assert len(consume_all(two_cores.bootstrap, topic, 16, **{"isolation.level": "read_uncommitted"})) == 16


def test_topic_changes_reach_every_core_before_the_answer(two_cores):
    """Created, grown, reconfigured and deleted through core 1's port: each core serves the
    change as soon as the request is answered."""
    core1 = f"127.0.0.1:{two_cores.port + 1}"
    admin = AdminClient({"bootstrap.servers": core1})
    topic = new_topic(core1, partitions=2)
    admin.create_partitions([NewPartitions(topic, PARTITIONS)])[topic].result(TIMEOUT)
    produce(core1, topic, [b"a%d" % i for i in range(8)])   # partitions 2 and 3 too, on both cores
    resource = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "123456", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(TIMEOUT)
    described = admin.describe_configs([ConfigResource("topic", topic)])
    assert next(iter(described.values())).result(TIMEOUT)["retention.ms"].value == "123456"
    admin.delete_topics([topic])[topic].result(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while topic in admin.list_topics(timeout=TIMEOUT).topics and time.monotonic() < deadline:
        time.sleep(0.1)
    assert topic not in admin.list_topics(timeout=TIMEOUT).topics


def core_pids(broker: BrokerProcess) -> list[int]:
    """The processes of the cores other than core 0 (its children)."""
    with open(f"/proc/{broker.proc.pid}/task/{broker.proc.pid}/children") as f:
        return [int(pid) for pid in f.read().split()]


def test_a_killed_core_is_restarted_and_loses_nothing(tmp_path):
    broker = BrokerProcess(str(tmp_path / "data"), cores=2).start()
    try:
        assert wait_for_cores(broker.bootstrap, 2) == {0: broker.port, 1: broker.port + 1}
        topic = new_topic(broker.bootstrap)
        before = [b"before-%d" % i for i in range(200)]
        produce(broker.bootstrap, topic, before)
        [child] = core_pids(broker)
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while core_pids(broker) in ([child], []) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert wait_for_cores(broker.bootstrap, 2) == {0: broker.port, 1: broker.port + 1}
        after = [b"after-%d" % i for i in range(200)]
        produce(broker.bootstrap, topic, after)
        got = consume_all(broker.bootstrap, topic, 400)
        assert sorted(v for _, v in got) == sorted(before + after)   # every acknowledged record, once
        assert "exited with code -9 after" in broker.output()
        children = core_pids(broker)
    finally:
        assert broker.stop() == 0, broker.output()
    assert not any(_cmdline(pid) for pid in children), "a core outlived core 0's clean stop"
    # the same directory, one core: every partition's records are there
    single = BrokerProcess(broker.data_dir).start()
    try:
        assert len(consume_all(single.bootstrap, topic, 400)) == 400
    finally:
        stop_broker(single)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_cores_die_with_core_0(tmp_path):
    """kill -9 of core 0 takes the others down (PR_SET_PDEATHSIG): no orphan keeps the data."""
    broker = BrokerProcess(str(tmp_path / "data"), cores=2).start()
    wait_for_cores(broker.bootstrap, 2)
    [child] = core_pids(broker)
    broker.kill()
    deadline = time.monotonic() + TIMEOUT
    while os.path.exists(f"/proc/{child}") and _cmdline(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _cmdline(child), "core 1 outlived core 0"
    dead = broker.proc.pid
    assert glob.glob(os.path.join(tempfile.gettempdir(), f"pstream-cores-{dead}-*"))   # left behind
    broker.start()   # and the directory is free again for a new start
    try:
        assert wait_for_cores(broker.bootstrap, 2) == {0: broker.port, 1: broker.port + 1}
        assert not glob.glob(os.path.join(tempfile.gettempdir(), f"pstream-cores-{dead}-*"))   # removed
    finally:
        stop_broker(broker)


def test_a_taken_port_of_another_core_stops_the_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] - 1   # core 1's port is the taken one
        out = subprocess.run([sys.executable, "-P", "-m", "pstream", "serve", "--listen", f"127.0.0.1:{port}",
                              "--data-dir", str(tmp_path / "data"), "--cores", "2", "--admin-listen", "off"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port + 1} for core 1 (listener PLAINTEXT's port + 1)" in out.stderr


def test_relayed_requests_keep_the_clients_principal(tmp_path):
    """Under ACLs: a user made through core 0 can log in at core 1; what core 1 relays to core 0
    is authorized as that user (neither anonymous nor the relay's), and an ACL granted through
    core 0 is in force on core 1 before the grant is answered."""
    from pstream.client import KafkaClient
    from pstream.client.connection import KafkaError, Security
    from pstream.security.acls import Acl, Operation, PatternType, Permission, ResourceType

    broker = BrokerProcess(str(tmp_path / "data"), listeners="SASL_PLAINTEXT", cores=2, authorization="acls",
                           super_users="User:admin", bootstrap_user="admin:admin-pw").start()
    try:
        core1 = f"127.0.0.1:{broker.port + 1}"
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:   # core 1 starts after core 0 listens
            try:
                socket.create_connection(("127.0.0.1", broker.port + 1), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

        def client(address: str, user: str, password: str) -> KafkaClient:
            return KafkaClient(address, security=Security("SASL_PLAINTEXT", "SCRAM-SHA-512", user, password))

        with client(broker.bootstrap, "admin", "admin-pw") as admin:
            admin.alter_scram_user("alice", "SCRAM-SHA-512", "alice-pw")
            admin.create_acls([Acl(ResourceType.TOPIC, "alice-", PatternType.PREFIXED, "User:alice", "*", op,
                                   Permission.ALLOW) for op in (Operation.CREATE, Operation.WRITE, Operation.DESCRIBE)])
        with client(core1, "alice", "alice-pw") as alice:   # core 1 knows her password already
            alice.create_topic("alice-orders", PARTITIONS)    # relayed, and allowed as alice
            with pytest.raises(KafkaError, match="TOPIC_AUTHORIZATION_FAILED"):
                alice.create_topic("bob-orders", PARTITIONS)
        conf = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice",
                "sasl.password": "alice-pw"}
        produce(core1, "alice-orders", [b"%d" % i for i in range(8)], **conf)   # both cores check her WRITE
    finally:
        stop_broker(broker)


def test_an_idle_relay_closed_by_core_0_does_not_close_the_client(tmp_path):
    """Core 0 closes the relay of a busy client connection of core 1 once the relay idles past
    connections.max.idle.ms: the client connection goes on, and its next relayed request opens
    another relay."""
    broker = BrokerProcess(str(tmp_path / "data"), cores=2, connections_max_idle_ms=600).start()
    try:
        wait_for_cores(broker.bootstrap, 2)
        topic = new_topic(broker.bootstrap)
        mine = next(p for p in range(PARTITIONS) if owner_core(topic, p, 2) == 1)
        req_cls, _ = raw_kafka.codecs("FindCoordinator")
        find = req_cls(key="a-group", key_type=0, coordinator_keys=["a-group"])
        batch = pstream._core.encode_batch([(b"k", b"v", [], None)])
        with raw_kafka.RawConnection(f"127.0.0.1:{broker.port + 1}") as conn:
            assert conn.call("FindCoordinator", 4, find).coordinators[0].node_id == 0   # relayed
            deadline = time.monotonic() + 2.0   # the relay idles; the client connection does not
            while time.monotonic() < deadline:
                answer = conn.call("Produce", 9, raw_kafka.produce_request(topic, mine, batch))
                assert answer.responses[0].partition_responses[0].error_code == 0
                time.sleep(0.2)
            assert conn.call("FindCoordinator", 4, find).coordinators[0].node_id == 0
    finally:
        stop_broker(broker)


def test_kill_9_of_a_core_under_load_loses_no_acknowledged_record(tmp_path):
    """An idempotent producer (acks=all) writes to both cores while core 1 is killed with SIGKILL:
    it retries until core 1 is back, and every partition then holds each acknowledged record
    exactly once, in the order acknowledged."""
    broker = BrokerProcess(str(tmp_path / "data"), cores=2).start()
    try:
        wait_for_cores(broker.bootstrap, 2)
        topic = new_topic(broker.bootstrap)
        acked: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        failed = []

        def report(err, msg) -> None:
            if err is not None:
                failed.append(err)
            else:
                acked[msg.partition()].append(msg.value())

        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 1, "message.timeout.ms": 60000})
        total = 6000
        for i in range(total):
            producer.produce(topic, b"%06d" % i, partition=i % PARTITIONS, on_delivery=report)
            producer.poll(0)
            if i == total // 3:
                [child] = core_pids(broker)
                os.kill(child, signal.SIGKILL)
            if i % 100 == 0:
                time.sleep(0.01)   # spread over the kill and the restart
        assert producer.flush(TIMEOUT * 2) == 0
        assert not failed, failed[:3]
        assert sum(map(len, acked.values())) == total
        got = consume_all(broker.bootstrap, topic, total)
        for p in range(PARTITIONS):
            assert [v for part, v in got if part == p] == acked[p]
        assert "exited with code -9 after" in broker.output()
    finally:
        assert broker.stop() == 0, broker.output()
