"""Partition administration on one node, as Apache Kafka 3.9.2 answers it (each answer was asked of a
single-node KRaft Kafka): DescribeTopicPartitions with Kafka's cursor paging, List/Alter
PartitionReassignments, ElectLeaders, AlterReplicaLogDirs and DescribeQuorum, over raw requests
and through kafka-python's and confluent-kafka's admin clients.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import ElectionType
from confluent_kafka import TopicPartition as CkTopicPartition
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import InvalidReplicationAssignmentError, LogDirNotFoundError, NoError, NoReassignmentInProgressError
from kafka.structs import TopicPartitionReplica

from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.primitives import ZERO_UUID

import raw_kafka  # noqa: E402  (tests/integration is on sys.path: see conftest.py)
from admin_client import confluent_admin, kp_admin  # noqa: E402

codecs = raw_kafka.codecs
ELECTION_NOT_NEEDED, NO_REASSIGNMENT_IN_PROGRESS = 84, 85
ALL_TOPIC_OPERATIONS = 3576   # what Kafka without an authorizer reports in DescribeTopicPartitions
NOT_NEEDED = "Leader election not needed for topic partition."


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(conn, topics: dict[str, int]) -> dict:
    """{name: partitions} created; returns {name: topic id}."""
    resp = conn.call("CreateTopics", 7, raw_kafka.create_topics_request({n: (p, -1, {}) for n, p in topics.items()}))
    assert all(t.error_code == 0 for t in resp.topics), resp.topics
    return {t.name: t.topic_id for t in resp.topics}


def node_id(conn) -> int:
    [broker] = conn.call("Metadata", 12, raw_kafka.metadata_request([])).brokers
    return broker.node_id


def log_dir(conn) -> str:
    """The data directory's name as DescribeLogDirs gives it."""
    request = codecs("DescribeLogDirs")[0]()
    request.topics = None
    [result] = conn.call("DescribeLogDirs", 4, request).results
    return result.log_dir


# --- DescribeTopicPartitions --------------------------------------------------------------------

def dtp(conn, names=(), limit=2000, cursor=None):
    req_cls, _ = codecs("DescribeTopicPartitions")
    return conn.call("DescribeTopicPartitions", 0, req_cls(
        topics=[req_cls.TopicRequest(name=n) for n in names], response_partition_limit=limit,
        cursor=None if cursor is None else req_cls.Cursor(topic_name=cursor[0], partition_index=cursor[1])))


def page(resp):
    """[(topic, error, [partition indexes])], next cursor as (topic, partition) or None."""
    cursor = resp.next_cursor and (resp.next_cursor.topic_name, resp.next_cursor.partition_index)
    return [(t.name, t.error_code, [p.partition_index for p in t.partitions]) for t in resp.topics], cursor


def test_describe_topic_partitions_shows_this_node_leading_every_partition(shared_broker):
    a, b = unique("dtp-a"), unique("dtp-b")
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        ids = create(conn, {a: 3, b: 1})
        node = node_id(conn)
        resp = dtp(conn, [b, "no-such-topic", a, "bad name!", a])
    # Sorted by name, each once; unknown and invalid names get Kafka's codes and no id.
    assert [(t.name, t.error_code) for t in resp.topics] == sorted([
        (a, 0), (b, 0), ("no-such-topic", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ("bad name!", ErrorCode.INVALID_TOPIC_EXCEPTION)])
    assert resp.next_cursor is None
    by_name = {t.name: t for t in resp.topics}
    for name in (a, b):
        topic = by_name[name]
        assert (topic.topic_id, topic.is_internal, topic.topic_authorized_operations) == \
            (ids[name], False, ALL_TOPIC_OPERATIONS)
        for index, p in enumerate(topic.partitions):
            assert (p.error_code, p.partition_index, p.leader_id, p.leader_epoch) == (0, index, node, 0)
            assert (p.replica_nodes, p.isr_nodes, p.offline_replicas) == ([node], [node], [])
            assert (p.eligible_leader_replicas, p.last_known_elr) == ([], [])
        assert len(topic.partitions) == (3 if name == a else 1)
    unknown = by_name["no-such-topic"]
    assert (unknown.topic_id, unknown.partitions, unknown.topic_authorized_operations) == \
        (ZERO_UUID, [], ALL_TOPIC_OPERATIONS)


def test_describe_topic_partitions_pages_with_kafkas_cursor(broker_factory):
    broker = broker_factory()   # its own: "all topics" must be exactly these
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create(conn, {"a": 1, "b": 3, "c": 2})
        # A page ends mid-topic with the next partition; a topic that fits exactly ends it with
        # the next topic's partition 0; the last page has no cursor.
        assert page(dtp(conn, limit=2)) == ([("a", 0, [0]), ("b", 0, [0])], ("b", 1))
        assert page(dtp(conn, limit=2, cursor=("b", 1))) == ([("b", 0, [1, 2])], ("c", 0))
        assert page(dtp(conn, limit=2, cursor=("c", 0))) == ([("c", 0, [0, 1])], None)
        assert page(dtp(conn, limit=4)) == ([("a", 0, [0]), ("b", 0, [0, 1, 2])], ("c", 0))
        assert page(dtp(conn)) == ([("a", 0, [0]), ("b", 0, [0, 1, 2]), ("c", 0, [0, 1])], None)
        # A limit below 1 is 1; above 2000 it is 2000 (Kafka's max.request.partition.size.limit).
        assert page(dtp(conn, limit=0)) == ([("a", 0, [0])], ("b", 0))
        assert page(dtp(conn, limit=-5)) == ([("a", 0, [0])], ("b", 0))
        assert page(dtp(conn, limit=1 << 30)) == page(dtp(conn))
        # The cursor's topic need not exist with all topics; past a topic's end it gives an empty list.
        assert page(dtp(conn, cursor=("bb", 7))) == ([("c", 0, [0, 1])], None)
        assert page(dtp(conn, cursor=("b", 9))) == ([("b", 0, []), ("c", 0, [0, 1])], None)
        # With named topics, the ones before the cursor's are left out; an unknown one costs nothing.
        assert page(dtp(conn, ["c", "a", "b"], cursor=("b", 2))) == ([("b", 0, [2]), ("c", 0, [0, 1])], None)
        assert page(dtp(conn, ["b", "aa"], limit=1)) == \
            ([("aa", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, []), ("b", 0, [0])], ("b", 1))
        # Walking the pages visits every partition once.
        seen, cursor = [], None
        while True:
            topics, cursor = page(dtp(conn, limit=1, cursor=cursor))
            seen += [(name, i) for name, _, parts in topics for i in parts]
            if cursor is None:
                break
        assert seen == [("a", 0), ("b", 0), ("b", 1), ("b", 2), ("c", 0), ("c", 1)]


def test_describe_topic_partitions_refuses_a_bad_cursor_or_an_empty_name_as_kafka_does(shared_broker):
    a = unique("dtp-refused")
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        create(conn, {a: 2})

        def refused(resp):
            assert resp.next_cursor is None
            assert all((t.topic_id, t.partitions, t.topic_authorized_operations) ==
                       (ZERO_UUID, [], -2147483648) for t in resp.topics)
            return [(t.name, t.error_code) for t in resp.topics]

        # The cursor's topic must be one of those named; its partition must not be negative.
        assert refused(dtp(conn, [a], cursor=("elsewhere", 0))) == [(a, ErrorCode.INVALID_REQUEST)]
        assert refused(dtp(conn, [a, a], cursor=(a, -1))) == [(a, ErrorCode.INVALID_REQUEST)] * 2
        assert refused(dtp(conn, [], cursor=(a, -1))) == []
        # Kafka 3.9 fails the whole request on an empty topic name.
        failed = ErrorCode.UNKNOWN_SERVER_ERROR
        assert refused(dtp(conn, [a, ""])) == [(a, failed), ("", failed)]


# --- reassignments ------------------------------------------------------------------------------

def test_list_partition_reassignments_is_empty_whatever_is_asked(shared_broker):
    a = unique("lpr")
    req_cls, _ = codecs("ListPartitionReassignments")
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        create(conn, {a: 2})
        every = req_cls(timeout_ms=1000)
        every.topics = None
        T = req_cls.ListPartitionReassignmentsTopics
        named = req_cls(timeout_ms=1000, topics=[T(name=a, partition_indexes=[0, 9]),
                                                 T(name="nope", partition_indexes=[0])])
        for request in (every, named, req_cls(timeout_ms=1000, topics=[])):
            resp = conn.call("ListPartitionReassignments", 0, request)
            # Kafka lists partitions being moved only: unknown ones are not an error.
            assert (resp.error_code, resp.error_message, resp.topics) == (0, None, [])


def test_alter_partition_reassignments_answers_with_kafkas_codes_and_messages(shared_broker):
    a, b = unique("apr-a"), unique("apr-b")
    req_cls, _ = codecs("AlterPartitionReassignments")
    P = req_cls.ReassignablePartition
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        create(conn, {a: 3, b: 1})
        node = node_id(conn)
        other = node + 1
        resp = conn.call("AlterPartitionReassignments", 0, req_cls(timeout_ms=1000, topics=[
            req_cls.ReassignableTopic(name=a, partitions=[
                P(partition_index=0, replicas=[node]), P(partition_index=1, replicas=[node, other]),
                P(partition_index=2, replicas=None), P(partition_index=7, replicas=[node]),
                P(partition_index=0, replicas=[node, node]), P(partition_index=1, replicas=[]),
                P(partition_index=2, replicas=[other, other])]),
            req_cls.ReassignableTopic(name="nope", partitions=[P(partition_index=0, replicas=None)]),
            req_cls.ReassignableTopic(name=b, partitions=[P(partition_index=0, replicas=[-1])])]))
        assert (resp.error_code, resp.error_message) == (0, None)
        unregistered = "The manual partition assignment includes broker {}, but no such broker is registered."
        assert [(t.name, [(p.partition_index, p.error_code, p.error_message) for p in t.partitions])
                for t in resp.responses] == [
            (a, [(0, 0, None),
                 (1, ErrorCode.INVALID_REPLICA_ASSIGNMENT, unregistered.format(other)),
                 (2, NO_REASSIGNMENT_IN_PROGRESS, None),
                 (7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {a}:7."),
                 (0, ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                  f"The manual partition assignment includes the broker {node} more than once."),
                 (1, ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                  "The manual partition assignment includes an empty replica list."),
                 (2, ErrorCode.INVALID_REPLICA_ASSIGNMENT, unregistered.format(other))]),
            ("nope", [(0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "Unable to find a topic named nope.")]),
            (b, [(0, ErrorCode.INVALID_REPLICA_ASSIGNMENT, unregistered.format(-1))])]
        # Nothing moved: no leader epoch changed, and nothing is in progress.
        assert all(p.leader_epoch == 0 and p.replica_nodes == [node] for p in dtp(conn, [a]).topics[0].partitions)
        empty = conn.call("AlterPartitionReassignments", 0, req_cls(timeout_ms=1000, topics=[]))
        assert (empty.error_code, empty.error_message, empty.responses) == (0, "", [])


# --- ElectLeaders -------------------------------------------------------------------------------

@pytest.mark.parametrize("version, election_type", [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1)])
def test_elect_leaders_is_never_needed_on_one_node(shared_broker, version, election_type):
    a = unique("elect")
    req_cls, _ = codecs("ElectLeaders")
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        create(conn, {a: 2})
        request = req_cls(election_type=election_type, timeout_ms=1000, topic_partitions=[
            req_cls.TopicPartitions(topic=a, partitions=[0, 1, 5]),
            req_cls.TopicPartitions(topic="nope", partitions=[0])])
        resp = conn.call("ElectLeaders", version, request)
    assert resp.error_code == 0
    assert [(r.topic, [(p.partition_id, p.error_code, p.error_message) for p in r.partition_result])
            for r in resp.replica_election_results] == [
        (a, [(0, ELECTION_NOT_NEEDED, NOT_NEEDED), (1, ELECTION_NOT_NEEDED, NOT_NEEDED),
             (5, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"No such partition as {a}-5")]),
        ("nope", [(0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "No such topic as nope")])]


def test_elect_leaders_of_all_partitions_and_bad_types_as_kafka(broker_factory):
    broker = broker_factory()
    req_cls, _ = codecs("ElectLeaders")
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create(conn, {"x": 2, "y": 1})
        every = req_cls(election_type=0, timeout_ms=1000)
        every.topic_partitions = None
        # Kafka leaves out the partitions that need no election: each topic, with an empty list.
        resp = conn.call("ElectLeaders", 2, every)
        assert (resp.error_code, [(r.topic, r.partition_result) for r in resp.replica_election_results]) == \
            (0, [("x", []), ("y", [])])
        every.election_type = 7
        resp = conn.call("ElectLeaders", 2, every)
        assert (resp.error_code, resp.replica_election_results) == (ErrorCode.INVALID_REQUEST, [])
        resp = conn.call("ElectLeaders", 1, req_cls(election_type=-1, timeout_ms=1000, topic_partitions=[
            req_cls.TopicPartitions(topic="x", partitions=[0])]))
        assert resp.error_code == ErrorCode.INVALID_REQUEST
        [result] = resp.replica_election_results
        assert [(p.partition_id, p.error_code, p.error_message) for p in result.partition_result] == \
            [(0, ErrorCode.INVALID_REQUEST, "Unknown election type -1")]
        # No partitions at all: nothing to check, not even the type.
        resp = conn.call("ElectLeaders", 2, req_cls(election_type=7, timeout_ms=1000, topic_partitions=[]))
        assert (resp.error_code, resp.replica_election_results) == (0, [])


# --- AlterReplicaLogDirs ------------------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 1, 2])
def test_alter_replica_log_dirs_to_the_data_directory_is_a_no_op(shared_broker, version):
    a = unique("arld")
    too_long = "t" * 214   # Kafka's future directory "<topic>-0.<32 hex>-future" would exceed 255 bytes
    req_cls, _ = codecs("AlterReplicaLogDirs")

    def move(path, topics):
        return req_cls.AlterReplicaLogDir(path=path, topics=[req_cls.AlterReplicaLogDirTopic(name=n, partitions=p)
                                                             for n, p in topics.items()])

    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        create(conn, {a: 2})
        here = log_dir(conn)
        resp = conn.call("AlterReplicaLogDirs", version, req_cls(dirs=[
            move(here, {a: [0, 5], "nope": [0], too_long: [0]}),
            move(here + "/", {a: [1]}),          # Kafka compares the exact string
            move("/elsewhere", {"nope": [1]})]))
        before = dtp(conn, [a]).topics[0]
    assert [(t.topic_name, [(p.partition_index, p.error_code) for p in t.partitions]) for t in resp.results] == [
        (a, [(0, 0), (5, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), (1, ErrorCode.LOG_DIR_NOT_FOUND)]),
        ("nope", [(0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), (1, ErrorCode.LOG_DIR_NOT_FOUND)]),
        (too_long, [(0, ErrorCode.INVALID_TOPIC_EXCEPTION)])]
    assert [p.partition_index for p in before.partitions] == [0, 1]


def test_alter_replica_log_dirs_sends_a_partition_named_twice_to_the_last_path(shared_broker):
    a = unique("arld-twice")
    req_cls, _ = codecs("AlterReplicaLogDirs")
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        create(conn, {a: 1})
        here = log_dir(conn)
        dirs = [req_cls.AlterReplicaLogDir(path=path, topics=[req_cls.AlterReplicaLogDirTopic(name=a, partitions=[0])])
                for path in (here, "/elsewhere")]
        resp = conn.call("AlterReplicaLogDirs", 2, req_cls(dirs=dirs))
        assert [(p.partition_index, p.error_code) for p in resp.results[0].partitions] == \
            [(0, ErrorCode.LOG_DIR_NOT_FOUND)]
        resp = conn.call("AlterReplicaLogDirs", 2, req_cls(dirs=dirs[::-1]))
        assert [(p.partition_index, p.error_code) for p in resp.results[0].partitions] == [(0, 0)]


# --- DescribeQuorum -----------------------------------------------------------------------------

def quorum_request(*topics):
    req_cls, _ = codecs("DescribeQuorum")
    return req_cls(topics=[req_cls.TopicData(topic_name=name, partitions=[req_cls.PartitionData(partition_index=i)
                                                                          for i in parts]) for name, parts in topics])


@pytest.mark.parametrize("version", [0, 1, 2])
def test_describe_quorum_is_a_single_voter_led_by_this_node(shared_broker, version):
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        node = node_id(conn)
        before = int(time.time() * 1000)
        resp = conn.call("DescribeQuorum", version, quorum_request(("__cluster_metadata", [0])))
        after = int(time.time() * 1000)
    assert resp.error_code == 0
    [topic] = resp.topics
    [p] = topic.partitions
    assert (topic.topic_name, p.partition_index, p.error_code) == ("__cluster_metadata", 0, 0)
    assert (p.leader_id, p.leader_epoch, p.high_watermark, p.observers) == (node, 1, 0, [])
    [voter] = p.current_voters
    assert (voter.replica_id, voter.log_end_offset, voter.replica_directory_id) == (node, 0, ZERO_UUID)
    if version >= 1:   # the leader is caught up now
        assert before <= voter.last_fetch_timestamp == voter.last_caught_up_timestamp <= after
    if version >= 2:
        [n] = resp.nodes
        host, port = shared_broker.bootstrap.rsplit(":", 1)
        assert (n.node_id, [(x.name, x.host, x.port) for x in n.listeners]) == (node, [("PLAINTEXT", host, int(port))])


def test_describe_quorum_of_anything_but_the_metadata_partition_alone_is_unknown(shared_broker):
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        for topics in ([("__cluster_metadata", [1])], [("x", [0])], [("__cluster_metadata", [0, 0])],
                       [("__cluster_metadata", [0]), ("x", [0])]):
            resp = conn.call("DescribeQuorum", 2, quorum_request(*topics))
            assert (resp.error_code, resp.nodes) == (0, [])
            assert [(t.topic_name, [(p.partition_index, p.error_code, p.error_message, p.leader_id, p.current_voters)
                                    for p in t.partitions]) for t in resp.topics] == [
                (name, [(i, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.",
                         0, []) for i in parts]) for name, parts in topics]
        assert conn.call("DescribeQuorum", 2, quorum_request()).topics == []


# --- real clients -------------------------------------------------------------------------------

def test_kafka_python_admin_client_uses_each_api(shared_broker):
    a = unique("kp-partadmin")
    admin = kp_admin(shared_broker)
    try:
        with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
            ids = create(conn, {a: 3})
            node = node_id(conn)
            here = log_dir(conn)
        described = admin.describe_topic_partitions([a], response_partition_limit=2)
        [topic] = described["topics"]
        assert (topic["name"], topic["error_code"], topic["topic_id"]) == (a, 0, ids[a])
        assert [(p["partition_index"], p["leader_id"], p["replica_nodes"]) for p in topic["partitions"]] == \
            [(0, node, [node]), (1, node, [node])]
        assert described["next_cursor"] == {"topic_name": a, "partition_index": 2}
        rest = admin.describe_topic_partitions([a], cursor=described["next_cursor"])
        assert [p["partition_index"] for p in rest["topics"][0]["partitions"]] == [2]

        assert admin.list_partition_reassignments() == {}
        assert admin.alter_partition_reassignments({
            KpTopicPartition(a, 0): [node], KpTopicPartition(a, 1): [node + 1], KpTopicPartition(a, 2): None}) == {
            KpTopicPartition(a, 0): None, KpTopicPartition(a, 1): InvalidReplicationAssignmentError,
            KpTopicPartition(a, 2): NoReassignmentInProgressError}

        resp = admin.elect_leaders(0, {a: [0, 1]}, raise_errors=False)
        assert [(p.partition_id, p.error_code) for r in resp.replica_election_results for p in r.partition_result] \
            == [(0, ELECTION_NOT_NEEDED), (1, ELECTION_NOT_NEEDED)]

        assert admin.alter_replica_log_dirs({TopicPartitionReplica(a, 0, node): here,
                                             TopicPartitionReplica(a, 1, node): "/elsewhere"}) == {
            TopicPartitionReplica(a, 0, node): NoError, TopicPartitionReplica(a, 1, node): LogDirNotFoundError}

        quorum = admin.describe_metadata_quorum()
        [part] = quorum["topics"][0]["partitions"]
        assert (part["leader_id"], part["leader_epoch"], [v["replica_id"] for v in part["current_voters"]]) == \
            (node, 1, [node])
        assert [n["node_id"] for n in quorum["nodes"]] == [node]
    finally:
        admin.close()


def test_confluent_kafka_elect_leaders_reports_kafkas_errors(shared_broker):
    a = unique("ck-elect")
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        create(conn, {a: 2})
    admin = confluent_admin(shared_broker)
    for election in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        result = admin.elect_leaders(election, [CkTopicPartition(a, 0), CkTopicPartition(a, 1),
                                                CkTopicPartition(a, 9)]).result(timeout=15)
        assert {(tp.topic, tp.partition): (err.code(), err.str()) for tp, err in result.items()} == {
            (a, 0): (ELECTION_NOT_NEEDED, NOT_NEEDED), (a, 1): (ELECTION_NOT_NEEDED, NOT_NEEDED),
            (a, 9): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"No such partition as {a}-9")}
    # Every partition: none needs an election, so none is reported.
    assert admin.elect_leaders(ElectionType.PREFERRED, None).result(timeout=15) == {}
