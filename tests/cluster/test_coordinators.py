"""Group coordinators in a cluster: spread over the leaders of __consumer_offsets's partitions,
committing only what the in-sync replicas hold, and moving with those leaders: a consumer group
whose coordinator is killed with SIGKILL resumes, on the next leader, from exactly the offsets
it committed. Transaction coordinators the same over __transaction_state: transactions commit
and abort across partitions led by every broker, offsets committed in a transaction count once
it commits, and a transaction left open when its coordinator is killed is aborted by the next
one. Producer ids stay unique across brokers.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

import pstream
from pstream import _core
from pstream.client.connection import BrokerConnection
from pstream.client.wire import codec_classes
from pstream.cluster.coordinator_shards import partition_for
from pstream.protocol.error_codes import ErrorCode
from pstream.storage.markers import decode_marker

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


def coordinator_of(cluster, key: str, key_type: int = 0, not_on: int = -1) -> int:
    """The coordinator of a group (key type 0) or transactional id (1), once there is one (and it
    is not `not_on`)."""
    broker = next(b for b in cluster.brokers.values() if b.proc is not None and b.proc.poll() is None)
    deadline = time.monotonic() + TIMEOUT
    while True:
        error, node = find_coordinator(broker, key, key_type)
        if error == ErrorCode.NONE and node != not_on:
            return node
        assert error in (ErrorCode.NONE, ErrorCode.COORDINATOR_NOT_AVAILABLE), error   # being created, or moving
        assert time.monotonic() < deadline, f"no coordinator for {key} within {TIMEOUT} s"
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


def txn_producer(cluster, transactional_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": transactional_id,
                         "transaction.timeout.ms": 60000, "message.timeout.ms": int(TIMEOUT * 1000)})
    producer.init_transactions(TIMEOUT)
    return producer


def read_values(cluster, topic: str, isolation: str, partitions: int = 3) -> list[bytes]:
    """Every value of the topic as a consumer of that isolation level reads it (to the end)."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"read-{uuid.uuid4().hex[:6]}",
                         "isolation.level": isolation, "enable.auto.commit": False,
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values, ended = [], set()
    deadline = time.monotonic() + TIMEOUT
    while len(ended) < partitions:
        assert time.monotonic() < deadline, f"read {len(values)} values; ended {ended}"
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            ended.add(msg.partition())
        else:
            values.append(msg.value())
    consumer.close()
    return sorted(values)


def test_transactions_commit_and_abort_across_partition_leaders(cluster):
    topic = new_topic(cluster, partitions=3)
    assert len({p.leader for p in cluster.partitions(topic).values()}) == 3   # markers to every broker
    producer = txn_producer(cluster, f"txn-{uuid.uuid4().hex[:6]}")
    for outcome in ("commit", "abort", "commit"):
        producer.begin_transaction()
        for i in range(30):
            producer.produce(topic, b"%s-%d" % (outcome.encode(), i), partition=i % 3)
        producer.flush(TIMEOUT)   # stored before the end (librdkafka drops what it has not sent at an abort)
        (producer.commit_transaction if outcome == "commit" else producer.abort_transaction)(TIMEOUT)
    committed = sorted(b"commit-%d" % i for i in range(30)) * 2
    assert read_values(cluster, topic, "read_committed") == sorted(committed)
    assert len(read_values(cluster, topic, "read_uncommitted")) == 90


def test_offsets_committed_in_a_transaction_count_once_it_commits(cluster):
    source, sink = new_topic(cluster, partitions=3), new_topic(cluster, partitions=3)
    produce(cluster, source, [b"in-%d" % i for i in range(60)])
    group = f"eos-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(cluster, group)
    consumer.subscribe([source])
    taken = take(consumer, 60)
    producer = txn_producer(cluster, f"eos-{uuid.uuid4().hex[:6]}")
    producer.begin_transaction()
    for msg in taken:
        producer.produce(sink, b"out-" + msg.value(), partition=msg.partition())
    positions = consumer.position(consumer.assignment())
    producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), TIMEOUT)
    producer.commit_transaction(TIMEOUT)
    stored = consumer.committed([TopicPartition(source, p) for p in range(3)], timeout=TIMEOUT)
    consumer.close()
    assert sum(tp.offset for tp in stored) == 60
    assert len(read_values(cluster, sink, "read_committed")) == 60


def test_a_transaction_survives_its_coordinator_killed(cluster):
    topic = new_topic(cluster, partitions=3)
    transactional_id = f"failover-{uuid.uuid4().hex[:6]}"
    producer = txn_producer(cluster, transactional_id)
    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic, b"kept-%d" % i, partition=i % 3)
    producer.commit_transaction(TIMEOUT)
    producer.begin_transaction()   # left open: the next coordinator must abort it
    for i in range(30):
        producer.produce(topic, b"open-%d" % i, partition=i % 3)
    producer.flush(TIMEOUT)
    coordinator = coordinator_of(cluster, transactional_id, key_type=1)
    cluster.brokers[coordinator].kill()
    try:
        coordinator_of(cluster, transactional_id, key_type=1, not_on=coordinator)
        again = txn_producer(cluster, transactional_id)   # fences the first, whose transaction is aborted
        again.begin_transaction()
        for i in range(30):
            again.produce(topic, b"after-%d" % i, partition=i % 3)
        again.commit_transaction(TIMEOUT)
        values = read_values(cluster, topic, "read_committed")
        assert values == sorted([b"kept-%d" % i for i in range(30)] + [b"after-%d" % i for i in range(30)])
        # The new coordinator's markers carry its epoch (the leader epoch it leads the id's
        # partition at, above the dead one's); a marker from an older coordinator is fenced.
        epoch = txn_partition_epoch(cluster, transactional_id, not_on=coordinator)
        leader = cluster.brokers[cluster.partitions(topic)[0].leader]
        last = markers_in(leader, topic, 0)[-1]
        assert (last.commit, last.coordinator_epoch) == (True, epoch) and epoch > 0
        req = codec_classes("WriteTxnMarkers")[0]
        answer = call(leader, "WriteTxnMarkers", 1, markers=[req.WritableTxnMarker(
            producer_id=last.producer_id, producer_epoch=last.producer_epoch, transaction_result=False,
            coordinator_epoch=epoch - 1, topics=[req.WritableTxnMarkerTopic(name=topic, partition_indexes=[0])])])
        assert answer.markers[0].topics[0].partitions[0].error_code == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    finally:
        cluster.brokers[coordinator].start()
    cluster.wait_until(topic, lambda ps: all(coordinator in p.isrs for p in ps.values()),
                       f"broker {coordinator} back in sync")


def txn_partition_epoch(cluster, transactional_id: str, not_on: int) -> int:
    """The leader epoch of the __transaction_state partition that coordinates the id."""
    answer = call(cluster.brokers[next(n for n in cluster.brokers if n != not_on)], "Metadata", 12,
                  topics=[codec_classes("Metadata")[0].MetadataRequestTopic(name="__transaction_state")],
                  allow_auto_topic_creation=False, include_topic_authorized_operations=False)
    partitions = answer.topics[0].partitions
    index = partition_for(transactional_id, len(partitions))
    return next(p.leader_epoch for p in partitions if p.partition_index == index)


def markers_in(broker, topic: str, partition: int) -> list:
    """The transaction markers of a partition, as the broker holds them (a read-only Log)."""
    log = pstream.Log(broker.data_dir, readonly=True)
    try:
        data = log.get_topic(topic).partition(partition).read_batches(0, 1 << 24)
    finally:
        log.close()
    return [m for start, end in _core.cut_batches(data) if (m := decode_marker(data[start:end])) is not None]


def call(broker, api: str, version: int, **fields):
    conn = BrokerConnection("127.0.0.1", broker.port)
    try:
        return conn.call(api, version, codec_classes(api)[0](**fields))
    finally:
        conn.close()


def produce_transactional(broker, txn: str, topic: str, partition: int, pid: int, epoch: int, sequence: int):
    """One transactional batch (raw Produce v9, acks=all) to the partition's leader: its error code."""
    req_cls = codec_classes("Produce")[0]
    batch = _core.encode_batch([(None, b"s%d" % sequence, None, None)], producer_id=pid, producer_epoch=epoch,
                               base_sequence=sequence, is_transactional=True)
    answer = call(broker, "Produce", 9, transactional_id=txn, acks=-1, timeout_ms=30000, topic_data=[
        req_cls.TopicProduceData(name=topic, partition_data=[req_cls.PartitionProduceData(index=partition,
                                                                                          records=batch)])])
    return answer.responses[0].partition_responses[0].error_code


def commit_in_transaction(cluster, txn: str, group: str, topic: str, pid: int, epoch: int) -> int:
    """TxnOffsetCommit v3 of offset 1 of partition 0 to the group's coordinator: its error code."""
    req_cls = codec_classes("TxnOffsetCommit")[0]
    answer = call(cluster.brokers[coordinator_of(cluster, group)], "TxnOffsetCommit", 3, transactional_id=txn,
                  group_id=group, producer_id=pid, producer_epoch=epoch, generation_id=-1, member_id="",
                  group_instance_id=None, topics=[req_cls.TxnOffsetCommitRequestTopic(name=topic, partitions=[
                      req_cls.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=1,
                                                              committed_leader_epoch=-1, committed_metadata="")])])
    return answer.topics[0].partitions[0].error_code


def test_a_leader_verifies_a_transactional_batch_with_its_coordinator_on_another_broker(cluster):
    """KIP-890 part 1 across brokers: the first batch of a transaction on a partition is checked
    with the coordinator (AddPartitionsToTxn v4 verify_only); a batch of a transaction that ended
    (a zombie's, a late retry) or into a partition never added is refused, not taken into a
    transaction nobody would end; and so are offsets committed in it for a group whose offsets
    partition it does not hold (TxnOffsetCommit before AddOffsetsToTxn)."""
    topic = new_topic(cluster)
    for settling in (topic, "__transaction_state"):   # no leadership moves back meanwhile (the rebalance)
        cluster.wait_until(settling, lambda ps: all(p.leader == p.replicas[0] and len(p.isrs) == len(p.replicas)
                                                    for p in ps.values()), f"{settling} led by preferred replicas")
    leaders = {p.id: p.leader for p in cluster.partitions(topic).values()}
    txn = next(t for t in (f"verify-{uuid.uuid4().hex[:6]}" for _ in range(100))
               if len(set(leaders.values()) - {coordinator_of(cluster, t, 1)}) >= 2)
    coordinator = cluster.brokers[coordinator_of(cluster, txn, 1)]
    added, never_added = [p for p, leader in leaders.items() if leader != coordinator_of(cluster, txn, 1)][:2]
    leader, other = cluster.brokers[leaders[added]], cluster.brokers[leaders[never_added]]
    init = call(coordinator, "InitProducerId", 4, transactional_id=txn, transaction_timeout_ms=60000)
    assert init.error_code == ErrorCode.NONE
    pid, epoch = init.producer_id, init.producer_epoch
    req_cls = codec_classes("AddPartitionsToTxn")[0]
    answer = call(coordinator, "AddPartitionsToTxn", 3, v3_and_below_transactional_id=txn,
                  v3_and_below_producer_id=pid, v3_and_below_producer_epoch=epoch,
                  v3_and_below_topics=[req_cls.AddPartitionsToTxnTopic(name=topic, partitions=[added])])
    assert answer.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 0
    assert produce_transactional(leader, txn, topic, added, pid, epoch, 0) == ErrorCode.NONE
    assert produce_transactional(leader, txn, topic, added, pid, epoch, 1) == ErrorCode.NONE   # verified once
    assert produce_transactional(other, txn, topic, never_added, pid, epoch, 0) == ErrorCode.INVALID_TXN_STATE
    group = next(g for g in (f"verify-{uuid.uuid4().hex[:6]}" for _ in range(100))
                 if coordinator_of(cluster, g) != coordinator_of(cluster, txn, 1))
    assert commit_in_transaction(cluster, txn, group, topic, pid, epoch) == ErrorCode.INVALID_TXN_STATE   # not added
    assert call(coordinator, "AddOffsetsToTxn", 3, transactional_id=txn, producer_id=pid, producer_epoch=epoch,
                group_id=group).error_code == ErrorCode.NONE
    assert commit_in_transaction(cluster, txn, group, topic, pid, epoch) == ErrorCode.NONE
    ended = call(coordinator, "EndTxn", 3, transactional_id=txn, producer_id=pid, producer_epoch=epoch, committed=True)
    assert ended.error_code == ErrorCode.NONE
    deadline = time.monotonic() + TIMEOUT
    while call(coordinator, "DescribeTransactions", 0, transactional_ids=[txn]).transaction_states[0]. \
            transaction_state != "CompleteCommit":   # the markers are written
        assert time.monotonic() < deadline, "the transaction did not complete"
        time.sleep(0.05)
    assert produce_transactional(leader, txn, topic, added, pid, epoch, 2) == ErrorCode.INVALID_TXN_STATE
