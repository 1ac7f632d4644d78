"""ACLs enforced on the transaction, producer, cluster, quota, partition-administration and SCRAM APIs,
as Kafka 3.9's KafkaApis enforces them: one broker with authorization on (super user admin), a user
per area created through AlterUserScramCredentials, and ACLs added with raw CreateAcls requests.

For each API: refused without the ACL (Kafka's error code where Kafka puts it, and nothing leaked:
no partition data, no ids listed, no credential changed), answered once the ACL exists."""

from __future__ import annotations

import pytest
import raw_kafka

from pstream.client import KafkaClient, Security
from pstream.protocol.error_codes import ErrorCode
from pstream.security.acls import CLUSTER_NAME, Operation, PatternType, Permission, ResourceType
from pstream.testing import BrokerProcess, stop_broker

codecs = raw_kafka.codecs
ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
PASSWORD = "user-secret"
MIN_INT32 = -(1 << 31)
TOPIC_A, TOPIC_B = "acl-a", "acl-b"

TOPIC_AUTH = ErrorCode.TOPIC_AUTHORIZATION_FAILED
GROUP_AUTH = ErrorCode.GROUP_AUTHORIZATION_FAILED
CLUSTER_AUTH = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
TXN_AUTH = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def sasl(user: str, password: str = PASSWORD) -> Security:
    return Security("SASL_PLAINTEXT", "SCRAM-SHA-512", user, password)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = BrokerProcess(str(tmp_path_factory.mktemp("acl-admin") / "data"), listeners="PLAINTEXT,SASL_PLAINTEXT",
                      bootstrap_user=f"{ADMIN}:{ADMIN_PASSWORD}", authorization="acls",
                      super_users=f"User:{ADMIN}").start()
    with KafkaClient(b.address("SASL_PLAINTEXT"), security=sasl(ADMIN, ADMIN_PASSWORD)) as admin:
        admin.create_topic(TOPIC_A, partitions=2)
        admin.create_topic(TOPIC_B, partitions=1)
    yield b
    stop_broker(b)


@pytest.fixture(scope="module")
def admin(broker):
    with KafkaClient(broker.address("SASL_PLAINTEXT"), security=sasl(ADMIN, ADMIN_PASSWORD)) as client:
        yield client


@pytest.fixture
def user(broker, admin, request):
    """A user of its own for the test (no ACL yet) and a connection authenticated as it."""
    name = request.node.name.removeprefix("test_").replace("_", "-")[:40]
    admin.alter_scram_user(name, "SCRAM-SHA-512", PASSWORD)
    with KafkaClient(broker.address("SASL_PLAINTEXT"), security=sasl(name)) as client:
        conn = client.any_connection()
        conn.principal = f"User:{name}"
        yield conn


def call(conn, api: str, version: int, **fields):
    return conn.call(api, version, codecs(api)[0](**fields))


def grant(admin, principal: str, resource_type: ResourceType, name: str, *operations: Operation) -> None:
    req = codecs("CreateAcls")[0]
    resp = admin.any_connection().call("CreateAcls", 3, req(creations=[req.AclCreation(
        resource_type=resource_type, resource_name=name, resource_pattern_type=PatternType.LITERAL,
        principal=principal, host="*", operation=op, permission_type=Permission.ALLOW) for op in operations]))
    assert [r.error_code for r in resp.results] == [0] * len(operations)


def errors_by_partition(topics, name="name", parts="partitions", index="partition_index", code="error_code"):
    return {(getattr(t, name), getattr(p, index)): getattr(p, code) for t in topics for p in getattr(t, parts)}


# --- InitProducerId -------------------------------------------------------------------------------

def test_init_producer_id(admin, user):
    me = user.principal
    resp = call(user, "InitProducerId", 4, transactional_id=None, transaction_timeout_ms=60000)
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (CLUSTER_AUTH, -1, -1)
    resp = call(user, "InitProducerId", 4, transactional_id="ipi-txn", transaction_timeout_ms=60000)
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (TXN_AUTH, -1, -1)

    grant(admin, me, ResourceType.TOPIC, TOPIC_B, Operation.WRITE)   # KIP-679: WRITE on some topic will do
    resp = call(user, "InitProducerId", 4, transactional_id=None, transaction_timeout_ms=60000)
    assert resp.error_code == 0 and resp.producer_id >= 0
    grant(admin, me, ResourceType.TRANSACTIONAL_ID, "ipi-txn", Operation.WRITE)
    resp = call(user, "InitProducerId", 4, transactional_id="ipi-txn", transaction_timeout_ms=60000)
    assert resp.error_code == 0 and resp.producer_id >= 0


def test_init_producer_id_with_idempotent_write(admin, user):
    assert call(user, "InitProducerId", 2, transactional_id=None, transaction_timeout_ms=60000).error_code == \
        CLUSTER_AUTH
    grant(admin, user.principal, ResourceType.CLUSTER, CLUSTER_NAME, Operation.IDEMPOTENT_WRITE)
    assert call(user, "InitProducerId", 2, transactional_id=None, transaction_timeout_ms=60000).error_code == 0


# --- transactions ---------------------------------------------------------------------------------

def test_transaction_apis(admin, user, broker):
    me, txn, group = user.principal, "tx-acl", "g-acl"
    req = codecs("AddPartitionsToTxn")[0]

    def add_partitions(topics: dict, tid=txn):
        return errors_by_partition(call(user, "AddPartitionsToTxn", 3, v3_and_below_transactional_id=tid,
                                        v3_and_below_producer_id=pid, v3_and_below_producer_epoch=epoch,
                                        v3_and_below_topics=[req.AddPartitionsToTxnTopic(name=t, partitions=ps)
                                                             for t, ps in topics.items()]).results_by_topic_v3_and_below,
                                   parts="results_by_partition", code="partition_error_code")

    grant(admin, me, ResourceType.TRANSACTIONAL_ID, txn, Operation.WRITE)
    resp = call(user, "InitProducerId", 4, transactional_id=txn, transaction_timeout_ms=60000)
    assert resp.error_code == 0
    pid, epoch = resp.producer_id, resp.producer_epoch

    # AddPartitionsToTxn: the transactional id, then each topic (the others not attempted)
    assert add_partitions({TOPIC_A: [0]}, tid="tx-other") == {(TOPIC_A, 0): TXN_AUTH}
    assert add_partitions({TOPIC_A: [0, 1], TOPIC_B: [0]}) == {
        (TOPIC_A, 0): TOPIC_AUTH, (TOPIC_A, 1): TOPIC_AUTH, (TOPIC_B, 0): TOPIC_AUTH}
    grant(admin, me, ResourceType.TOPIC, TOPIC_A, Operation.WRITE)
    assert add_partitions({TOPIC_A: [0, 1], TOPIC_B: [0]}) == {
        (TOPIC_A, 0): ErrorCode.OPERATION_NOT_ATTEMPTED, (TOPIC_A, 1): ErrorCode.OPERATION_NOT_ATTEMPTED,
        (TOPIC_B, 0): TOPIC_AUTH}
    resp = call(user, "AddPartitionsToTxn", 4, transactions=[req.AddPartitionsToTxnTransaction(
        transactional_id=txn, producer_id=pid, producer_epoch=epoch, verify_only=True,
        topics=[req.AddPartitionsToTxnTopic(name=TOPIC_A, partitions=[0])])])
    assert (resp.error_code, resp.results_by_transaction) == (CLUSTER_AUTH, [])   # the brokers' batched form
    assert add_partitions({TOPIC_A: [0, 1]}) == {(TOPIC_A, 0): 0, (TOPIC_A, 1): 0}

    # AddOffsetsToTxn: the transactional id, then READ on the group
    add_offsets = {"producer_id": pid, "producer_epoch": epoch, "group_id": group}
    assert call(user, "AddOffsetsToTxn", 3, transactional_id="tx-other", **add_offsets).error_code == TXN_AUTH
    assert call(user, "AddOffsetsToTxn", 3, transactional_id=txn, **add_offsets).error_code == GROUP_AUTH
    grant(admin, me, ResourceType.GROUP, group, Operation.READ)
    assert call(user, "AddOffsetsToTxn", 3, transactional_id=txn, **add_offsets).error_code == 0

    # TxnOffsetCommit: the transactional id, the group, then READ on each topic
    oreq = codecs("TxnOffsetCommit")[0]

    def commit(tid=txn, group_id=group):
        resp = call(user, "TxnOffsetCommit", 3, transactional_id=tid, group_id=group_id, producer_id=pid,
                    producer_epoch=epoch, topics=[oreq.TxnOffsetCommitRequestTopic(name=t, partitions=[
                        oreq.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=5)])
                        for t in (TOPIC_A, TOPIC_B)])
        return errors_by_partition(resp.topics)

    assert commit(tid="tx-other") == {(TOPIC_A, 0): TXN_AUTH, (TOPIC_B, 0): TXN_AUTH}
    assert commit(group_id="g-other") == {(TOPIC_A, 0): GROUP_AUTH, (TOPIC_B, 0): GROUP_AUTH}
    assert commit() == {(TOPIC_A, 0): TOPIC_AUTH, (TOPIC_B, 0): TOPIC_AUTH}   # WRITE does not imply READ
    grant(admin, me, ResourceType.TOPIC, TOPIC_A, Operation.READ)
    assert commit() == {(TOPIC_A, 0): 0, (TOPIC_B, 0): TOPIC_AUTH}

    # DescribeTransactions / ListTransactions by a principal without DESCRIBE: nothing shown
    admin.alter_scram_user("txn-watcher", "SCRAM-SHA-512", PASSWORD)
    with KafkaClient(broker.address("SASL_PLAINTEXT"), security=sasl("txn-watcher")) as client:
        watcher = client.any_connection()
        [state] = call(watcher, "DescribeTransactions", 0, transactional_ids=[txn]).transaction_states
        assert (state.error_code, state.transactional_id, state.producer_id, state.transaction_state,
                state.topics) == (TXN_AUTH, txn, 0, "", [])
        assert call(watcher, "ListTransactions", 1).transaction_states == []
        grant(admin, "User:txn-watcher", ResourceType.TRANSACTIONAL_ID, txn, Operation.DESCRIBE)
        [state] = call(watcher, "DescribeTransactions", 0, transactional_ids=[txn]).transaction_states
        assert (state.error_code, state.producer_id, state.transaction_state) == (0, pid, "Ongoing")
        assert [t.topic for t in state.topics] == []   # topics it may not describe are left out
        grant(admin, "User:txn-watcher", ResourceType.TOPIC, TOPIC_A, Operation.DESCRIBE)
        [state] = call(watcher, "DescribeTransactions", 0, transactional_ids=[txn]).transaction_states
        assert {(t.topic, tuple(t.partitions)) for t in state.topics} == {(TOPIC_A, (0, 1))}
        assert [s.transactional_id for s in call(watcher, "ListTransactions", 1).transaction_states] == [txn]

    # EndTxn: WRITE on the transactional id
    end = {"producer_id": pid, "producer_epoch": epoch, "committed": True}
    assert call(user, "EndTxn", 3, transactional_id="tx-other", **end).error_code == TXN_AUTH
    assert call(user, "EndTxn", 3, transactional_id=txn, **end).error_code == 0


def test_write_txn_markers(admin, user):
    req = codecs("WriteTxnMarkers")[0]
    markers = [req.WritableTxnMarker(producer_id=123, producer_epoch=0, transaction_result=False, coordinator_epoch=0,
                                     topics=[req.WritableTxnMarkerTopic(name=TOPIC_B, partition_indexes=[0])])]
    [marker] = call(user, "WriteTxnMarkers", 1, markers=markers).markers
    assert (marker.producer_id, errors_by_partition(marker.topics)) == (123, {(TOPIC_B, 0): CLUSTER_AUTH})
    grant(admin, user.principal, ResourceType.CLUSTER, CLUSTER_NAME, Operation.CLUSTER_ACTION)
    [marker] = call(user, "WriteTxnMarkers", 1, markers=markers).markers
    assert errors_by_partition(marker.topics)[(TOPIC_B, 0)] != CLUSTER_AUTH


def test_describe_producers(admin, user):
    req = codecs("DescribeProducers")[0]

    def describe():
        [topic] = call(user, "DescribeProducers", 0, topics=[req.TopicRequest(name=TOPIC_B, partition_indexes=[0])]).topics
        return topic.partitions[0]

    part = describe()
    assert (part.error_code, part.error_message, part.active_producers) == (TOPIC_AUTH, "Topic authorization failed.", [])
    grant(admin, user.principal, ResourceType.TOPIC, TOPIC_B, Operation.READ)
    assert describe().error_code == 0


# --- cluster.py -----------------------------------------------------------------------------------

def test_cluster_apis(admin, user):
    me = user.principal
    resp = call(user, "DescribeCluster", 1, include_cluster_authorized_operations=True)
    assert (resp.error_code, resp.cluster_authorized_operations) == (0, 0)   # Kafka: open, operations hidden
    assert call(user, "DescribeCluster", 1).cluster_authorized_operations == MIN_INT32
    resp = call(admin.any_connection(), "DescribeCluster", 1, include_cluster_authorized_operations=True)
    assert resp.cluster_authorized_operations == sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))

    resp = call(user, "DescribeLogDirs", 4, topics=None)
    assert (resp.error_code, resp.results) == (CLUSTER_AUTH, [])
    assert call(user, "DescribeLogDirs", 1, topics=None).results == []   # no error code before v3

    oreq = codecs("OffsetForLeaderEpoch")[0]
    topics = [oreq.OffsetForLeaderTopic(topic=t, partitions=[oreq.OffsetForLeaderPartition(partition=0, leader_epoch=0)])
              for t in (TOPIC_B, TOPIC_A)]
    resp = call(user, "OffsetForLeaderEpoch", 4, replica_id=-1, topics=topics)
    assert [(t.topic, [(p.error_code, p.end_offset) for p in t.partitions]) for t in resp.topics] == [
        (TOPIC_B, [(TOPIC_AUTH, -1)]), (TOPIC_A, [(TOPIC_AUTH, -1)])]
    grant(admin, me, ResourceType.TOPIC, TOPIC_A, Operation.DESCRIBE)
    resp = call(user, "OffsetForLeaderEpoch", 4, replica_id=-1, topics=topics)
    assert [(t.topic, t.partitions[0].error_code) for t in resp.topics] == [(TOPIC_A, 0), (TOPIC_B, TOPIC_AUTH)]

    grant(admin, me, ResourceType.CLUSTER, CLUSTER_NAME, Operation.DESCRIBE)
    assert call(user, "DescribeCluster", 1, include_cluster_authorized_operations=True) \
        .cluster_authorized_operations == 1 << Operation.DESCRIBE
    resp = call(user, "DescribeLogDirs", 4, topics=None)
    assert resp.error_code == 0 and len(resp.results) == 1
    assert {t.name for t in resp.results[0].topics} >= {TOPIC_A, TOPIC_B}


# --- quotas.py ------------------------------------------------------------------------------------

def test_client_quotas(admin, user):
    dreq, areq = codecs("DescribeClientQuotas")[0], codecs("AlterClientQuotas")[0]
    entry = areq.EntryData(entity=[areq.EntityData(entity_type="user", entity_name="quota-user")],
                           ops=[areq.OpData(key="producer_byte_rate", value=1024.0)])
    [result] = call(user, "AlterClientQuotas", 1, entries=[entry]).entries
    assert (result.error_code, [(e.entity_type, e.entity_name) for e in result.entity]) == (
        CLUSTER_AUTH, [("user", "quota-user")])
    resp = call(user, "DescribeClientQuotas", 1, components=[dreq.ComponentData(entity_type="user", match_type=1)])
    assert (resp.error_code, resp.entries) == (CLUSTER_AUTH, None)
    # nothing was stored
    resp = call(admin.any_connection(), "DescribeClientQuotas", 1,
                components=[dreq.ComponentData(entity_type="user", match_type=0, match="quota-user")])
    assert (resp.error_code, resp.entries) == (0, [])

    grant(admin, user.principal, ResourceType.CLUSTER, CLUSTER_NAME, Operation.ALTER_CONFIGS)   # implies DESCRIBE_CONFIGS
    assert [r.error_code for r in call(user, "AlterClientQuotas", 1, entries=[entry]).entries] == [0]
    resp = call(user, "DescribeClientQuotas", 1,
                components=[dreq.ComponentData(entity_type="user", match_type=0, match="quota-user")])
    assert resp.error_code == 0 and [[(v.key, v.value) for v in e.values] for e in resp.entries] == [
        [("producer_byte_rate", 1024.0)]]


# --- partitions_admin.py --------------------------------------------------------------------------

def test_describe_topic_partitions(admin, user):
    req = codecs("DescribeTopicPartitions")[0]
    resp = call(user, "DescribeTopicPartitions", 0, topics=[])
    assert resp.topics == []   # listing all: the hidden ones are left out
    grant(admin, user.principal, ResourceType.TOPIC, TOPIC_B, Operation.DESCRIBE)
    resp = call(user, "DescribeTopicPartitions", 0, topics=[req.TopicRequest(name=n) for n in (TOPIC_A, TOPIC_B)])
    assert [(t.name, t.error_code, t.topic_authorized_operations, len(t.partitions), t.topic_id.int == 0)
            for t in resp.topics] == [(TOPIC_B, 0, 1 << Operation.DESCRIBE, 1, False),
                                     (TOPIC_A, TOPIC_AUTH, MIN_INT32, 0, True)]
    assert [t.name for t in call(user, "DescribeTopicPartitions", 0, topics=[]).topics] == [TOPIC_B]
    resp = call(admin.any_connection(), "DescribeTopicPartitions", 0, topics=[req.TopicRequest(name=TOPIC_A)])
    assert [(t.error_code, t.topic_authorized_operations) for t in resp.topics] == [(0, 3576)]


def test_partition_admin_apis(admin, user):
    me = user.principal
    areq = codecs("AlterPartitionReassignments")[0]
    resp = call(user, "AlterPartitionReassignments", 0, topics=[areq.ReassignableTopic(
        name=TOPIC_A, partitions=[areq.ReassignablePartition(partition_index=0, replicas=[1])])])
    assert resp.error_code == CLUSTER_AUTH
    assert errors_by_partition(resp.responses) == {(TOPIC_A, 0): CLUSTER_AUTH}
    eraq = codecs("ElectLeaders")[0]
    resp = call(user, "ElectLeaders", 2, election_type=0,
                topic_partitions=[eraq.TopicPartitions(topic=TOPIC_A, partitions=[0, 1])])
    assert resp.error_code == CLUSTER_AUTH
    assert errors_by_partition(resp.replica_election_results, "topic", "partition_result", "partition_id") == {
        (TOPIC_A, 0): CLUSTER_AUTH, (TOPIC_A, 1): CLUSTER_AUTH}
    lreq = codecs("AlterReplicaLogDirs")[0]
    dirs = [lreq.AlterReplicaLogDir(path="/nowhere", topics=[lreq.AlterReplicaLogDirTopic(name=TOPIC_A, partitions=[1])])]
    resp = call(user, "AlterReplicaLogDirs", 2, dirs=dirs)
    assert errors_by_partition(resp.results, "topic_name") == {(TOPIC_A, 1): CLUSTER_AUTH}
    resp = call(user, "ListPartitionReassignments", 0, topics=None)
    assert (resp.error_code, resp.topics) == (CLUSTER_AUTH, [])
    qreq = codecs("DescribeQuorum")[0]
    quorum = [qreq.TopicData(topic_name="__cluster_metadata", partitions=[qreq.PartitionData(partition_index=0)])]
    resp = call(user, "DescribeQuorum", 2, topics=quorum)
    assert (resp.error_code, resp.topics, resp.nodes) == (CLUSTER_AUTH, [], [])

    grant(admin, me, ResourceType.CLUSTER, CLUSTER_NAME, Operation.ALTER)   # ALTER implies DESCRIBE
    resp = call(user, "AlterPartitionReassignments", 0, topics=[areq.ReassignableTopic(
        name=TOPIC_A, partitions=[areq.ReassignablePartition(partition_index=0, replicas=[1])])])
    assert resp.error_code == 0 and errors_by_partition(resp.responses)[(TOPIC_A, 0)] != CLUSTER_AUTH
    resp = call(user, "ElectLeaders", 2, election_type=0,
                topic_partitions=[eraq.TopicPartitions(topic=TOPIC_A, partitions=[0])])
    assert resp.error_code == 0 and resp.replica_election_results[0].partition_result[0].error_code == \
        ErrorCode.ELECTION_NOT_NEEDED
    resp = call(user, "AlterReplicaLogDirs", 2, dirs=dirs)
    assert errors_by_partition(resp.results, "topic_name") == {(TOPIC_A, 1): ErrorCode.LOG_DIR_NOT_FOUND}
    assert call(user, "ListPartitionReassignments", 0, topics=None).error_code == 0
    resp = call(user, "DescribeQuorum", 2, topics=quorum)
    assert resp.error_code == 0 and resp.topics[0].partitions[0].error_code == 0


# --- SCRAM users ----------------------------------------------------------------------------------

def test_scram_credentials(admin, user):
    dreq, areq = codecs("DescribeUserScramCredentials")[0], codecs("AlterUserScramCredentials")[0]
    resp = call(user, "DescribeUserScramCredentials", 0, users=[dreq.UserName(name=ADMIN)])
    assert (resp.error_code, [(r.user, r.error_code, r.credential_infos) for r in resp.results]) == (
        CLUSTER_AUTH, [("", CLUSTER_AUTH, [])])
    resp = call(user, "DescribeUserScramCredentials", 0, users=None)
    assert (resp.error_code, resp.results) == (CLUSTER_AUTH, [])
    resp = call(user, "AlterUserScramCredentials", 0, upsertions=[], deletions=[
        areq.ScramCredentialDeletion(name=ADMIN, mechanism=2), areq.ScramCredentialDeletion(name="zed", mechanism=2)])
    assert [(r.user, r.error_code) for r in resp.results] == [(ADMIN, CLUSTER_AUTH), ("zed", CLUSTER_AUTH)]
    assert "SCRAM-SHA-512" in admin.scram_users()[ADMIN]   # not deleted

    grant(admin, user.principal, ResourceType.CLUSTER, CLUSTER_NAME, Operation.ALTER)   # implies DESCRIBE
    resp = call(user, "DescribeUserScramCredentials", 0, users=[dreq.UserName(name=ADMIN)])
    assert resp.error_code == 0 and [(r.user, r.error_code) for r in resp.results] == [(ADMIN, 0)]
    resp = call(user, "AlterUserScramCredentials", 0, upsertions=[],
                deletions=[areq.ScramCredentialDeletion(name="zed", mechanism=2)])
    assert [(r.user, r.error_code) for r in resp.results] == [("zed", ErrorCode.RESOURCE_NOT_FOUND)]
