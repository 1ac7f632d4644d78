"""Group coordinators in a cluster: spread over the leaders of __consumer_offsets's partitions,
committing only what the in-sync replicas hold, and moving with those leaders: a consumer group
whose coordinator is killed with SIGKILL resumes, on the next leader, from exactly the offsets
it committed. Producer ids stay unique across brokers; transactions are refused with the reason
until they are served in cluster mode.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from pstream.client.connection import BrokerConnection
from pstream.client.wire import codec_classes
from pstream.cluster.group_shards import partition_for
from pstream.protocol.error_codes import ErrorCode

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:   # importlib mode: the helpers are this folder's module
    sys.path.insert(0, HERE)

from clients import TIMEOUT, new_topic, produce  # noqa: E402

OFFSETS_PARTITIONS = 16   # the default offsets.topic.num.partitions


def find_coordinator(broker, key: str, key_type: int = 0):
    """(error, node id) of a FindCoordinator v4 asked of one broker."""
    conn = BrokerConnection("127.0.0.1", broker.port)
    try:
        req_cls, _ = codec_classes("FindCoordinator")
        answer = conn.call("FindCoordinator", 4, req_cls(key_type=key_type, coordinator_keys=[key]))
        return answer.coordinators[0].error_code, answer.coordinators[0].node_id
    finally:
        conn.close()


def coordinator_of(cluster, group: str, not_on: int = -1) -> int:
    """The group's coordinator, once there is one (and it is not `not_on`)."""
    broker = next(b for b in cluster.brokers.values() if b.proc is not None and b.proc.poll() is None)
    deadline = time.monotonic() + TIMEOUT
    while True:
        error, node = find_coordinator(broker, group)
        if error == ErrorCode.NONE and node != not_on:
            return node
        assert error in (ErrorCode.NONE, ErrorCode.COORDINATOR_NOT_AVAILABLE), error   # being created, or moving
        assert time.monotonic() < deadline, f"no coordinator for {group} within {TIMEOUT} s"
        time.sleep(0.1)


def group_consumer(cluster, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "session.timeout.ms": 6000})


def take(consumer: Consumer, count: int) -> list:
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.append(msg)
    assert len(got) == count, f"consumed {len(got)} of {count}"
    return got


def test_groups_spread_over_the_leaders_of_the_offsets_partitions(cluster):
    groups = [f"spread-{i}" for i in range(24)]
    coordinators = {g: coordinator_of(cluster, g) for g in groups}
    offsets = cluster.wait_until("__consumer_offsets", lambda ps: len(ps) == OFFSETS_PARTITIONS
                                 and all(p.leader > 0 and len(p.isrs) == 3 for p in ps.values()),
                                 "every offsets partition led, with three in-sync replicas")
    assert {g: offsets[partition_for(g, OFFSETS_PARTITIONS)].leader for g in groups} == coordinators
    assert set(coordinators.values()) == {1, 2, 3}


def test_committed_offsets_survive_their_coordinator_killed(cluster):
    topic = new_topic(cluster, partitions=3)
    produce(cluster, topic, [b"r%d" % i for i in range(300)])
    group = f"survivor-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(cluster, group)
    consumer.subscribe([topic])
    first = take(consumer, 150)
    committed = consumer.commit(asynchronous=False)
    consumer.close()
    expected = {p.partition: p.offset for p in committed if p.offset >= 0}
    assert sum(expected.values()) == 150
    assert {m.partition(): m.offset() + 1 for m in first} == expected

    coordinator = coordinator_of(cluster, group)
    cluster.brokers[coordinator].kill()
    try:
        coordinator_of(cluster, group, not_on=coordinator)   # the offsets partition's next leader
        consumer = group_consumer(cluster, group)
        stored = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=TIMEOUT)
        assert {tp.partition: tp.offset for tp in stored if tp.offset >= 0} == expected
        consumer.subscribe([topic])
        rest = take(consumer, 150)   # exactly what was not committed: nothing again, nothing skipped
        consumer.close()
        seen = {(m.partition(), m.offset()) for m in first} | {(m.partition(), m.offset()) for m in rest}
        assert len(seen) == 300
        assert all(m.offset() >= expected.get(m.partition(), 0) for m in rest)
    finally:
        cluster.brokers[coordinator].start()
    cluster.wait_until("__consumer_offsets", lambda ps: all(coordinator in p.isrs for p in ps.values()),
                       f"broker {coordinator} back in every offsets partition's ISR")


def test_producer_ids_are_unique_across_brokers(cluster):
    req_cls, _ = codec_classes("InitProducerId")
    seen = []
    for broker in cluster.brokers.values():
        conn = BrokerConnection("127.0.0.1", broker.port)
        try:
            for _ in range(3):
                answer = conn.call("InitProducerId", 4, req_cls(transactional_id=None, transaction_timeout_ms=-1,
                                                                producer_id=-1, producer_epoch=-1))
                assert answer.error_code == ErrorCode.NONE
                seen.append(answer.producer_id)
        finally:
            conn.close()
    assert len(set(seen)) == len(seen), seen


def test_transactions_are_refused_with_the_reason(cluster):
    broker = cluster.brokers[1]
    assert find_coordinator(broker, "txn-1", key_type=1)[0] == ErrorCode.INVALID_REQUEST
