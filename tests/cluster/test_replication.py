"""Three `pstream serve --cluster` brokers and etcd, driven by librdkafka: topics with three
replicas, acks=all answered once the in-sync replicas hold a batch, every replica's log equal to
its leader's, min.insync.replicas refusing writes while a replica is gone, and a leader killed
with SIGKILL under load: another replica leads, nothing acknowledged is lost or doubled, and
the killed broker comes back, cuts what it alone had and catches up.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from pstream import _core
from pstream.client.client import KafkaClient
from pstream.client.connection import BrokerConnection
from pstream.client.wire import codec_classes
from pstream.protocol.error_codes import ErrorCode

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:   # importlib mode: the helpers are this folder's module
    sys.path.insert(0, HERE)

from clients import (PARTITIONS, TIMEOUT, admin_call, by_partition, new_topic, produce,  # noqa: E402
                     replica_contents, wait_replicas_equal)


def consume(cluster, topic: str, expected: int) -> dict[int, list[tuple[int, bytes]]]:
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got: dict[int, list] = {}
    deadline = time.monotonic() + TIMEOUT
    count = 0
    while count < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.setdefault(msg.partition(), []).append((msg.offset(), msg.value()))
            count += 1
    consumer.close()
    return got


def test_every_broker_holds_every_replica_of_a_topic(cluster):
    topic = new_topic(cluster)
    parts = cluster.partitions(topic)
    assert {p.id: sorted(p.replicas) for p in parts.values()} == {p: [1, 2, 3] for p in range(PARTITIONS)}
    assert {p.id: sorted(p.isrs) for p in parts.values()} == {p: [1, 2, 3] for p in range(PARTITIONS)}
    assert sorted(p.leader for p in parts.values()) == [1, 2, 3]   # the preferred leaders spread
    acked = produce(cluster, topic, [b"v%d" % i for i in range(600)])
    assert len(acked) == 600
    expected = by_partition(acked)
    assert consume(cluster, topic, 600) == expected
    wait_replicas_equal(cluster, topic, (1, 2, 3), {p: expected.get(p, []) for p in range(PARTITIONS)})


def test_metadata_names_every_broker_and_the_controller(cluster):
    meta = cluster.admin().list_topics(timeout=TIMEOUT)
    assert sorted(meta.brokers) == [1, 2, 3]
    assert meta.controller_id in (1, 2, 3)
    assert {b.port for b in meta.brokers.values()} == {b.port for b in cluster.brokers.values()}


def test_a_replication_factor_above_the_brokers_is_refused(cluster):
    name = f"rep-{uuid.uuid4().hex[:8]}"
    admin = cluster.admin()
    with pytest.raises(Exception) as info:
        admin.create_topics([NewTopic(name, 1, 4)])[name].result(TIMEOUT)
    assert info.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert "only 3 broker(s) are registered" in info.value.args[0].str()


def produce_error(broker, topic: str, partition: int) -> int:
    """The error code of one Produce (acks=all) sent to this broker, whoever leads the partition."""
    conn = BrokerConnection("127.0.0.1", broker.port)
    try:
        req_cls, _ = codec_classes("Produce")
        batch = _core.encode_batch([(None, b"direct", None, None)])
        request = req_cls(transactional_id=None, acks=-1, timeout_ms=int(TIMEOUT * 1000), topic_data=[
            req_cls.TopicProduceData(name=topic, partition_data=[
                req_cls.PartitionProduceData(index=partition, records=batch)])])
        return conn.call("Produce", 9, request).responses[0].partition_responses[0].error_code
    finally:
        conn.close()


def test_a_produce_to_a_follower_is_told_the_leader_moved(cluster):
    topic = new_topic(cluster, partitions=1)
    leader = cluster.partitions(topic)[0].leader
    follower = next(n for n in cluster.brokers if n != leader)
    assert produce_error(cluster.brokers[follower], topic, 0) == 6   # NOT_LEADER_OR_FOLLOWER
    assert produce_error(cluster.brokers[leader], topic, 0) == 0


def test_min_insync_replicas_refuses_writes_while_a_replica_is_gone(cluster):
    topic = new_topic(cluster, partitions=1, **{"min.insync.replicas": "3"})
    produce(cluster, topic, [b"before"], partition=0)
    leader = cluster.partitions(topic)[0].leader
    victim = next(n for n in cluster.brokers if n != leader)
    cluster.brokers[victim].kill()
    cluster.wait_until(topic, lambda ps: victim not in ps[0].isrs, f"broker {victim} out of the ISR")
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "message.timeout.ms": 3000,
                         "retries": 0})
    errors = []
    producer.produce(topic, b"refused", partition=0, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(TIMEOUT)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, errors
    cluster.brokers[victim].start()
    cluster.wait_until(topic, lambda ps: victim in ps[0].isrs, f"broker {victim} back in the ISR")
    acked = produce(cluster, topic, [b"after"], partition=0)
    assert [v for _, _, v in acked] == [b"after"]
    expected = {0: [(0, b"before"), (1, b"after")]}
    wait_replicas_equal(cluster, topic, (1, 2, 3), expected)


def test_a_leader_killed_under_load_loses_nothing_acknowledged(cluster):
    topic = new_topic(cluster, partitions=1)
    leader = cluster.partitions(topic)[0].leader
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 1, "message.timeout.ms": int(TIMEOUT * 1000)})
    acked, failed = [], []

    def done(err, msg):
        (failed if err else acked).append(err or (msg.offset(), msg.value()))
    killed_at = None
    for i in range(1500):
        producer.produce(topic, b"m%d" % i, partition=0, on_delivery=done)
        producer.poll(0.001)
        if i == 500:
            cluster.brokers[leader].kill()
            killed_at = time.monotonic()
    producer.flush(TIMEOUT)
    assert not failed, failed[:3]
    assert len(acked) == 1500
    parts = cluster.wait_until(topic, lambda ps: ps[0].leader not in (-1, leader), "a new leader")
    assert leader not in parts[0].isrs
    assert time.monotonic() - killed_at < TIMEOUT
    # Every acknowledged record is there once, in the order acknowledged (offsets increase).
    offsets = [o for o, _ in acked]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    got = consume(cluster, topic, 1500)[0]
    assert [v for _, v in got] == [b"m%d" % i for i in range(1500)]
    cluster.brokers[leader].start()   # back as a follower: cuts what only it had, then catches up
    cluster.wait_until(topic, lambda ps: leader in ps[0].isrs, f"broker {leader} back in the ISR")
    wait_replicas_equal(cluster, topic, (1, 2, 3), {0: got})


def test_a_former_leader_cuts_what_no_other_replica_took(cluster):
    """acks=1 records the leader alone held (its followers paused) vanish when it dies; back as a
    follower it asks the new leader where its epoch ended and cuts its log there (KIP-101)."""
    topic = new_topic(cluster, partitions=1)
    acked = produce(cluster, topic, [b"replicated"], partition=0)
    leader = cluster.partitions(topic)[0].leader
    followers = [n for n in cluster.brokers if n != leader]
    wait_replicas_equal(cluster, topic, (1, 2, 3), by_partition(acked))
    for n in followers:   # briefly: well inside the lease, so they stay registered
        os.kill(cluster.brokers[n].proc.pid, signal.SIGSTOP)
    try:
        time.sleep(0.7)   # their fetches waiting at the leader are answered (empty) and none follows
        producer = Producer({"bootstrap.servers": cluster.brokers[leader].bootstrap, "acks": "1"})
        for i in range(5):
            producer.produce(topic, b"leader-only-%d" % i, partition=0)
        assert producer.flush(TIMEOUT) == 0
        deadline = time.monotonic() + TIMEOUT   # acks=1 answers at the append: a reader sees it once durable
        while len(replica_contents(cluster.brokers[leader], topic)[0]) < 6:
            assert time.monotonic() < deadline, replica_contents(cluster.brokers[leader], topic)
            time.sleep(0.01)
        cluster.brokers[leader].kill()
    finally:
        for n in followers:
            os.kill(cluster.brokers[n].proc.pid, signal.SIGCONT)
    cluster.wait_until(topic, lambda ps: ps[0].leader in followers, "a follower to lead")
    after = produce(cluster, topic, [b"new-leader"], partition=0)
    cluster.brokers[leader].start()
    cluster.wait_until(topic, lambda ps: leader in ps[0].isrs, f"broker {leader} back in the ISR")
    expected = {0: [(0, b"replicated"), (1, b"new-leader")]}
    assert after == [(0, 1, b"new-leader")], (after, {n: replica_contents(cluster.brokers[n], topic)
                                                      for n in followers})
    wait_replicas_equal(cluster, topic, (1, 2, 3), expected)
    assert "went further than its leader" in cluster.brokers[leader].output()


def test_adding_partitions_grows_the_topic_on_every_broker(cluster):
    from confluent_kafka.admin import NewPartitions
    topic = new_topic(cluster, partitions=1)
    admin = cluster.admin()
    admin.create_partitions([NewPartitions(topic, 3)])[topic].result(TIMEOUT)
    parts = cluster.wait_until(topic, lambda ps: len(ps) == 3 and all(p.leader > 0 for p in ps.values()), "3 leaders")
    assert all(sorted(p.replicas) == [1, 2, 3] and sorted(p.isrs) == [1, 2, 3] for p in parts.values())
    req = codec_classes("CreatePartitions")[0]
    manual = req.CreatePartitionsTopic(name=topic, count=4, assignments=[req.CreatePartitionsAssignment(
        broker_ids=[3, 1, 2])])
    answer = admin_call(cluster, "CreatePartitions", 3, via=2, timeout_ms=30000, validate_only=False, topics=[manual])
    assert (answer.results[0].error_code, answer.results[0].error_message) == (0, None)
    parts = cluster.wait_until(topic, lambda ps: len(ps) == 4 and ps[3].leader == 3, "partition 3 led by broker 3")
    assert parts[3].replicas == [3, 1, 2]
    acked = [a for p in range(4) for a in produce(cluster, topic, [b"p%d" % p] * 20, partition=p)]
    expected = {p: [(i, b"p%d" % p) for i in range(20)] for p in range(4)}
    assert by_partition(acked) == expected
    wait_replicas_equal(cluster, topic, (1, 2, 3), expected)

    refusals = {
        "fewer": req.CreatePartitionsTopic(name=topic, count=2, assignments=None),
        "unregistered": req.CreatePartitionsTopic(name=topic, count=5, assignments=[
            req.CreatePartitionsAssignment(broker_ids=[1, 2, 9])]),
        "two replicas": req.CreatePartitionsTopic(name=topic, count=5, assignments=[
            req.CreatePartitionsAssignment(broker_ids=[1, 2])]),
        "miscounted": req.CreatePartitionsTopic(name=topic, count=6, assignments=[
            req.CreatePartitionsAssignment(broker_ids=[1, 2, 3])]),
    }
    got = {}
    for why, wanted in refusals.items():
        result = admin_call(cluster, "CreatePartitions", 3, timeout_ms=30000, validate_only=False,
                          topics=[wanted]).results[0]
        got[why] = (result.error_code, result.error_message)
    assert got == {
        "fewer": (ErrorCode.INVALID_PARTITIONS, "Topic currently has 4 partitions, which is higher than the "
                                                "requested 2."),
        "unregistered": (ErrorCode.INVALID_REPLICA_ASSIGNMENT, "The manual partition assignment includes broker 9, "
                                                               "but no such broker is registered."),
        "two replicas": (ErrorCode.INVALID_REPLICA_ASSIGNMENT, "The manual partition assignment includes a partition "
                                                               "with 2 replica(s), but this is not consistent with "
                                                               "previous partitions, which have 3 replica(s)."),
        "miscounted": (ErrorCode.INVALID_REPLICA_ASSIGNMENT, "Attempted to add 2 additional partition(s), but only 1 "
                                                             "assignment(s) were specified."),
    }
    assert len(cluster.partitions(topic)) == 4


def test_a_topic_created_with_replica_assignments_keeps_them(cluster):
    req = codec_classes("CreateTopics")[0]

    def topic(name, lists, indexes=None):
        return req.CreatableTopic(name=name, num_partitions=-1, replication_factor=-1, configs=[], assignments=[
            req.CreatableReplicaAssignment(partition_index=i, broker_ids=r)
            for i, r in zip(indexes or range(len(lists)), lists)])

    name = f"assigned-{uuid.uuid4().hex[:8]}"
    answer = admin_call(cluster, "CreateTopics", 7, timeout_ms=30000, validate_only=False, topics=[
        topic(name, [[2, 3], [3, 1], [1, 2]]), topic("uneven", [[1, 2], [3]]),
        topic("gap", [[1], [2]], indexes=[0, 2])])
    got = {t.name: (t.error_code, t.error_message) for t in answer.topics}
    assert got == {
        name: (0, ""),
        "uneven": (ErrorCode.INVALID_REPLICA_ASSIGNMENT, "The manual partition assignment includes a partition with "
                                                         "1 replica(s), but this is not consistent with previous "
                                                         "partitions, which have 2 replica(s)."),
        "gap": (ErrorCode.INVALID_REPLICA_ASSIGNMENT, "partitions should be a consecutive 0-based integer sequence"),
    }
    parts = cluster.wait_until(name, lambda ps: len(ps) == 3 and all(p.leader > 0 for p in ps.values()), "leaders")
    assert [(parts[p].replicas, parts[p].leader) for p in range(3)] == [([2, 3], 2), ([3, 1], 3), ([1, 2], 1)]


def test_a_follower_fetch_carries_its_replica_state_and_names_topics_by_id(cluster):
    """Fetch v15 as followers send it (KIP-903's ReplicaState, topics by id): the leader serves
    its data to a replica, answers an unknown topic id UNKNOWN_TOPIC_ID, and still serves a v12
    follower fetch (replica id in the body, topics by name)."""
    topic = new_topic(cluster, partitions=1)
    produce(cluster, topic, [b"replicated"], partition=0)
    leader = cluster.partitions(topic)[0].leader
    follower = next(n for n in cluster.brokers if n != leader)
    metadata = codec_classes("Metadata")[0]
    topic_id = admin_call(cluster, "Metadata", 12, via=leader, topics=[metadata.MetadataRequestTopic(name=topic)],
                          allow_auto_topic_creation=False, include_topic_authorized_operations=False).topics[0].topic_id
    req = codec_classes("Fetch")[0]

    def fetch(version: int, **fields):
        part = req.FetchPartition(partition=0, current_leader_epoch=-1, fetch_offset=0, last_fetched_epoch=-1,
                                  log_start_offset=0, partition_max_bytes=1 << 20)
        topics = [req.FetchTopic(topic=fields.pop("name", ""), topic_id=fields.pop("topic_id", uuid.UUID(int=0)),
                                 partitions=[part])]
        answer = admin_call(cluster, "Fetch", version, via=leader, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20,
                            isolation_level=0, session_id=0, session_epoch=-1, topics=topics, **fields)
        data = answer.responses[0].partitions[0]
        values = [r.value for r in _core.decode_batch(data.records)[1]] if data.records else []
        return data.error_code, values

    state = req.ReplicaState(replica_id=follower, replica_epoch=-1)
    assert fetch(15, replica_state=state, topic_id=topic_id) == (ErrorCode.NONE, [b"replicated"])
    assert fetch(15, replica_state=state, topic_id=uuid.uuid4()) == (ErrorCode.UNKNOWN_TOPIC_ID, [])
    assert fetch(12, replica_id=follower, name=topic) == (ErrorCode.NONE, [b"replicated"])


def test_a_topic_with_more_partitions_than_an_etcd_transaction_takes(cluster):
    """etcd refuses transactions of more than 128 operations (--max-txn-ops): the partition
    records go in chunks, the topic's last."""
    topic = new_topic(cluster, partitions=200)
    assert sorted(cluster.partitions(topic)) == list(range(200))
    admin = cluster.admin()   # kept: a collected client cancels its futures
    admin.delete_topics([topic])[topic].result(TIMEOUT)


def test_a_follower_back_on_an_empty_disk_catches_up_before_it_counts(cluster):
    topic = new_topic(cluster, partitions=1)
    acked = produce(cluster, topic, [b"a%d" % i for i in range(200)], partition=0)
    leader = cluster.partitions(topic)[0].leader
    victim = next(n for n in cluster.brokers if n != leader)
    cluster.brokers[victim].kill()
    shutil.rmtree(cluster.brokers[victim].data_dir)   # a new, empty disk
    cluster.brokers[victim].start()
    wait_replicas_equal(cluster, topic, (1, 2, 3), by_partition(acked))   # it fetched everything again
    cluster.wait_until(topic, lambda ps: victim in ps[0].isrs, f"broker {victim} back in the ISR")


def test_a_follower_behind_its_leaders_log_start_starts_there(cluster):
    """DeleteRecords moved the leader's log start (the followers follow it); a follower back on
    an empty disk is told OFFSET_OUT_OF_RANGE at offset 0 and starts afresh at that log start."""
    topic = new_topic(cluster, partitions=1)
    acked = produce(cluster, topic, [b"a%d" % i for i in range(200)], partition=0)
    with KafkaClient(cluster.bootstrap) as client:
        assert client.delete_records(topic, {0: 150}) == {0: 150}
    kept = {0: [(offset, value) for offset, value in by_partition(acked)[0] if offset >= 150]}
    for broker in cluster.brokers.values():   # answered once every in-sync replica deleted them
        assert replica_contents(broker, topic) == kept
    leader = cluster.partitions(topic)[0].leader
    victim = next(n for n in cluster.brokers if n != leader)
    cluster.brokers[victim].kill()
    shutil.rmtree(cluster.brokers[victim].data_dir)
    cluster.brokers[victim].start()
    acked += produce(cluster, topic, [b"b%d" % i for i in range(20)], partition=0)
    kept[0] += [(offset, value) for _, offset, value in acked[200:]]
    wait_replicas_equal(cluster, topic, (1, 2, 3), kept)
    cluster.wait_until(topic, lambda ps: victim in ps[0].isrs, f"broker {victim} back in the ISR")


def test_the_last_in_sync_replica_back_on_an_empty_disk_leaves_the_partition_offline(cluster):
    """Only it held every acknowledged record: electing it with nothing would serve a log that lost
    them. The partition stays without a leader instead (unclean election is off)."""
    topic = new_topic(cluster, partitions=1)
    produce(cluster, topic, [b"precious"], partition=0)
    leader = cluster.partitions(topic)[0].leader
    others = [n for n in cluster.brokers if n != leader]
    for n in others:
        cluster.brokers[n].kill()
    cluster.wait_until(topic, lambda ps: list(ps[0].isrs) == [leader], "the leader alone in the ISR")
    cluster.brokers[leader].kill()
    shutil.rmtree(cluster.brokers[leader].data_dir)
    for n in [leader, *others]:
        cluster.brokers[n].start()
    cluster.wait_for_brokers(set(cluster.brokers))
    time.sleep(3 * 2.0)   # leases, a controller's grace and elections have run their course
    part = cluster.partitions(topic)[0]
    assert part.leader == -1 and list(part.isrs) == [leader], part
    assert produce_error(cluster.brokers[leader], topic, 0) == 6   # it does not serve its empty log
    assert replica_contents(cluster.brokers[leader], topic) == {0: []}


def test_the_controller_gives_leaderships_back_to_preferred_replicas(cluster):
    topic = new_topic(cluster)
    preferred = {p.id: p.replicas[0] for p in cluster.partitions(topic).values()}
    victim = preferred[0]
    cluster.brokers[victim].restart()   # SIGTERM: its leaderships move to the others at once
    cluster.wait_until(topic, lambda ps: all(victim in p.isrs for p in ps.values())
                       and all(p.leader == preferred[p.id] for p in ps.values()),
                       f"broker {victim} back in sync and leading what it prefers (leader.imbalance.check)")
