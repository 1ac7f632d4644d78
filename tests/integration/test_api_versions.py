"""ApiVersions and version handling over a raw socket: the advertised ranges are Kafka
3.9's, the ApiVersions response header stays v0 for flexible requests, an unknown
ApiVersions version gets Kafka's v0 UNSUPPORTED_VERSION answer, Produce v0-v2 are refused
per partition, and every API answers well-formed at its lowest and highest version.
"""

from __future__ import annotations

import pytest
import raw_kafka

import pstream
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.primitives import ZERO_UUID, ProtocolError

codecs = raw_kafka.codecs

# What Apache Kafka 3.9 advertises for each API pstream implements: (key, min, max).
KAFKA_3_9 = {
    "Produce": (0, 0, 11),
    "Fetch": (1, 0, 17),
    "ListOffsets": (2, 0, 9),
    "Metadata": (3, 0, 12),
    "OffsetCommit": (8, 0, 9),
    "OffsetFetch": (9, 0, 9),
    "FindCoordinator": (10, 0, 6),
    "JoinGroup": (11, 0, 9),
    "Heartbeat": (12, 0, 4),
    "LeaveGroup": (13, 0, 5),
    "SyncGroup": (14, 0, 5),
    "DescribeGroups": (15, 0, 5),
    "ListGroups": (16, 0, 5),
    "ApiVersions": (18, 0, 4),
    "CreateTopics": (19, 0, 7),
    "DeleteTopics": (20, 0, 6),
    "DeleteRecords": (21, 0, 2),
    "InitProducerId": (22, 0, 5),
    "AddPartitionsToTxn": (24, 0, 5),
    "AddOffsetsToTxn": (25, 0, 4),
    "EndTxn": (26, 0, 4),
    "WriteTxnMarkers": (27, 0, 1),
    "TxnOffsetCommit": (28, 0, 4),
    "OffsetForLeaderEpoch": (23, 0, 4),
    "DescribeConfigs": (32, 0, 4),
    "AlterConfigs": (33, 0, 2),
    "DescribeLogDirs": (35, 0, 4),
    "CreatePartitions": (37, 0, 3),
    "IncrementalAlterConfigs": (44, 0, 1),
    "DeleteGroups": (42, 0, 2),
    "OffsetDelete": (47, 0, 0),
    "DescribeCluster": (60, 0, 1),
    "DescribeProducers": (61, 0, 0),
    "DescribeTransactions": (65, 0, 0),
    "ListTransactions": (66, 0, 1),
    "AlterReplicaLogDirs": (34, 0, 2),
    "ElectLeaders": (43, 0, 2),
    "AlterPartitionReassignments": (45, 0, 0),
    "ListPartitionReassignments": (46, 0, 0),
    "DescribeQuorum": (55, 0, 2),
    "DescribeTopicPartitions": (75, 0, 0),
    "DescribeClientQuotas": (48, 0, 1),
    "AlterClientQuotas": (49, 0, 1),
    "SaslHandshake": (17, 0, 1),
    "SaslAuthenticate": (36, 0, 2),
    "DescribeUserScramCredentials": (50, 0, 0),
    "AlterUserScramCredentials": (51, 0, 0),
    "DescribeAcls": (29, 0, 3),
    "CreateAcls": (30, 0, 3),
    "DeleteAcls": (31, 0, 3),
}
# KIP-848's consumer group APIs at Kafka 4.0's ranges (3.9 serves ConsumerGroupHeartbeat v0 only, and
# only when the new protocol is switched on): v1 adds regex subscriptions, which librdkafka and the
# Java client 4.x use.
KAFKA_4_0 = {
    "ConsumerGroupHeartbeat": (68, 0, 1),
    "ConsumerGroupDescribe": (69, 0, 0),
}
EXPECTED_RANGES = {key: (low, high) for key, low, high in (*KAFKA_3_9.values(), *KAFKA_4_0.values())}
API_VERSIONS = 18
TOPIC = "av"


def advertised(response) -> dict:
    return {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}


# --- ApiVersions ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_api_versions_advertises_kafka_3_9_ranges(broker, version):
    req_cls, _ = codecs("ApiVersions")
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        cid = conn.send("ApiVersions", version, req_cls(client_software_name="pstream-tests",
                                                        client_software_version="1.0"), correlation_id=123456 + version)
        got_cid, response = conn.receive("ApiVersions", version)   # decoded with a v0 response header
    assert got_cid == cid
    assert response.error_code == 0
    assert advertised(response) == EXPECTED_RANGES
    assert len(response.api_keys) == len(EXPECTED_RANGES)   # each key once
    if version >= 1:
        assert response.throttle_time_ms == 0


@pytest.mark.parametrize("version", [3, 4])
def test_api_versions_response_header_is_v0_even_for_flexible_requests(broker, version):
    req_cls, _ = codecs("ApiVersions")
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        conn.send("ApiVersions", version, req_cls(client_software_name="x", client_software_version="1"),
                  correlation_id=77)
        payload = conn.read_frame()
    # Header v0 (correlation id only), then the body: the whole frame decodes that way...
    cid, response = raw_kafka.decode_response("ApiVersions", version, payload, header_version=0)
    assert cid == 77 and advertised(response) == EXPECTED_RANGES
    # ...and not with a v1 header (a tagged-field byte after the correlation id).
    with pytest.raises((ProtocolError, AssertionError)):
        raw_kafka.decode_response("ApiVersions", version, payload, header_version=1)


@pytest.mark.parametrize("version", [5, 99, 32767])
def test_api_versions_of_an_unknown_version_answers_v0_unsupported_version(broker, version):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        # A client sends its newest ApiVersions with a v2 header and a body the broker cannot read.
        conn.send_raw(raw_kafka.frame(raw_kafka.request_header(API_VERSIONS, version, 4242, "future-client",
                                                               flexible=True) + b"\x05hello\x041.0\x00"))
        cid, response = conn.receive("ApiVersions", 0)   # a v0 body, whatever was asked
        assert cid == 4242
        assert response.error_code == ErrorCode.UNSUPPORTED_VERSION
        # Kafka lists at least ApiVersions' own range, so the client can retry with a version it has.
        assert advertised(response)[API_VERSIONS] == (0, 4)
        # The connection stays open: the retry on it is answered.
        req_cls, _ = codecs("ApiVersions")
        retried = conn.call("ApiVersions", 4, req_cls(client_software_name="future-client",
                                                      client_software_version="1.0"))
        assert retried.error_code == 0 and advertised(retried) == EXPECTED_RANGES


@pytest.mark.parametrize("name, version", [("", "1.0"), ("bad name", "1.0"), ("-leading", "1.0"),
                                           ("trailing.", "1.0"), ("ok", ""), ("ok", "1.0+local")])
def test_api_versions_v3_with_invalid_client_software_is_invalid_request(broker, name, version):
    req_cls, _ = codecs("ApiVersions")
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        response = conn.call("ApiVersions", 3, req_cls(client_software_name=name, client_software_version=version))
        assert (response.error_code, response.api_keys) == (ErrorCode.INVALID_REQUEST, [])
        # v0-v2 have no such fields; the same connection still gets its answer.
        assert advertised(conn.call("ApiVersions", 2, req_cls())) == EXPECTED_RANGES


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_v0_to_v2_is_refused_per_partition_with_unsupported_version(broker, version):
    batch = pstream._core.encode_batch([(None, b"v", [], None)])
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create(conn)
        response = conn.call("Produce", version, raw_kafka.produce_request(TOPIC, 0, batch, acks=1))
        [topic] = response.responses
        [part] = topic.partition_responses
        assert (topic.name, part.index, part.error_code) == (TOPIC, 0, ErrorCode.UNSUPPORTED_VERSION)
        assert part.base_offset == -1
        assert latest(conn) == 0   # nothing was written
        # The connection carries on.
        assert conn.call("Produce", 3, raw_kafka.produce_request(TOPIC, 0, batch, acks=1)) \
            .responses[0].partition_responses[0].error_code == 0


# --- every API at its lowest and highest version -------------------------------------------------

def create(conn, name=TOPIC, partitions=1):
    resp = conn.call("CreateTopics", 7, raw_kafka.create_topics_request({name: (partitions, -1, {})}))
    assert resp.topics[0].error_code == 0, resp.topics[0]
    return resp.topics[0].topic_id


def latest(conn, name=TOPIC, partition=0):
    return conn.call("ListOffsets", 9, raw_kafka.list_offsets_request(name, partition, -1)).topics[0] \
        .partitions[0].offset


def seeded(conn):
    """The test topic with three records (offsets 0-2); returns its topic id."""
    topic_id = create(conn)
    batch = pstream._core.encode_batch([(b"k", b"v%d" % i, [], None) for i in range(3)])
    assert conn.call("Produce", 9, raw_kafka.produce_request(TOPIC, 0, batch)) \
        .responses[0].partition_responses[0].error_code == 0
    return topic_id


def _produce(conn, version):
    seeded(conn)
    batch = pstream._core.encode_batch([(None, b"new", [], None)])
    return raw_kafka.produce_request(TOPIC, 0, batch, acks=-1)


def _check_produce(conn, version, resp):
    part = resp.responses[0].partition_responses[0]
    if version < 3:
        assert part.error_code == ErrorCode.UNSUPPORTED_VERSION
    else:
        assert (part.error_code, part.base_offset) == (0, 3)
        assert resp.throttle_time_ms == 0


def _fetch(conn, version):
    topic_id = seeded(conn)
    return raw_kafka.fetch_request(TOPIC if version < 13 else "", 0, 0, topic_id=topic_id if version >= 13 else None)


def _check_fetch(conn, version, resp):
    [topic] = resp.responses
    [part] = topic.partitions
    assert (part.error_code, part.high_watermark) == (0, 3)
    if version >= 13:
        assert topic.topic_id != ZERO_UUID
    else:
        assert topic.topic == TOPIC
    header, records = pstream._core.decode_batch(bytes(part.records))
    assert (header.base_offset, [r.value for r in records]) == (0, [b"v0", b"v1", b"v2"])


def _list_offsets(conn, version):
    seeded(conn)
    return raw_kafka.list_offsets_request(TOPIC, 0, -1)


def _check_list_offsets(conn, version, resp):
    part = resp.topics[0].partitions[0]
    assert part.error_code == 0
    if version == 0:
        assert part.old_style_offsets == [3]
    else:
        assert part.offset == 3


def _metadata(conn, version):
    create(conn, partitions=2)
    return raw_kafka.metadata_request(None, version)


def _check_metadata(conn, version, resp):
    assert [(b.node_id, b.port) for b in resp.brokers] == [(0, int(conn.sock.getpeername()[1]))]
    [topic] = resp.topics
    assert (topic.error_code, topic.name, [p.partition_index for p in topic.partitions]) == (0, TOPIC, [0, 1])
    assert all(p.leader_id == 0 for p in topic.partitions)
    if version >= 10:
        assert topic.topic_id != ZERO_UUID


def _api_versions(conn, version):
    return codecs("ApiVersions")[0](client_software_name="pstream-tests", client_software_version="1")


def _check_api_versions(conn, version, resp):
    assert resp.error_code == 0 and advertised(resp) == EXPECTED_RANGES


def _create_topics(conn, version):
    return raw_kafka.create_topics_request({"made": (2, 1, {"retention.ms": "100000"})})


def _check_create_topics(conn, version, resp):
    [t] = resp.topics
    assert (t.name, t.error_code) == ("made", 0)
    if version >= 5:
        assert (t.num_partitions, t.replication_factor) == (2, 1)
        assert {c.name: c.value for c in t.configs}["retention.ms"] == "100000"
    if version >= 7:
        assert t.topic_id != ZERO_UUID
    assert conn.call("Metadata", 12, raw_kafka.metadata_request(["made"])).topics[0].partitions[1].partition_index == 1


def _delete_topics(conn, version):
    create(conn)
    req_cls, _ = codecs("DeleteTopics")
    return req_cls(topics=[req_cls.DeleteTopicState(name=TOPIC)], topic_names=[TOPIC], timeout_ms=1000)


def _check_delete_topics(conn, version, resp):
    [r] = resp.responses
    assert (r.name, r.error_code) == (TOPIC, 0)
    assert conn.call("Metadata", 12, raw_kafka.metadata_request(None)).topics == []


def _delete_records(conn, version):
    seeded(conn)
    req_cls, _ = codecs("DeleteRecords")
    return req_cls(topics=[req_cls.DeleteRecordsTopic(name=TOPIC, partitions=[
        req_cls.DeleteRecordsPartition(partition_index=0, offset=2)])], timeout_ms=1000)


def _check_delete_records(conn, version, resp):
    part = resp.topics[0].partitions[0]
    assert (part.error_code, part.low_watermark) == (0, 2)


def _init_producer_id(conn, version):
    return codecs("InitProducerId")[0](transactional_id=None, transaction_timeout_ms=60000)


def _check_init_producer_id(conn, version, resp):
    assert resp.error_code == 0 and resp.producer_id >= 0 and resp.producer_epoch == 0


def _offset_for_leader_epoch(conn, version):
    seeded(conn)
    req_cls, _ = codecs("OffsetForLeaderEpoch")
    return req_cls(replica_id=-1, topics=[req_cls.OffsetForLeaderTopic(topic=TOPIC, partitions=[
        req_cls.OffsetForLeaderPartition(partition=0, current_leader_epoch=0, leader_epoch=0)])])


def _check_offset_for_leader_epoch(conn, version, resp):
    part = resp.topics[0].partitions[0]
    assert (part.error_code, part.end_offset) == (0, 3)
    if version >= 1:
        assert part.leader_epoch == 0


def _describe_configs(conn, version):
    create(conn)
    req_cls, _ = codecs("DescribeConfigs")
    return req_cls(resources=[req_cls.DescribeConfigsResource(resource_type=2, resource_name=TOPIC,
                                                              configuration_keys=["retention.ms", "segment.bytes"])],
                   include_synonyms=True, include_documentation=True)


def _check_describe_configs(conn, version, resp):
    [result] = resp.results
    assert (result.error_code, result.resource_name) == (0, TOPIC)
    assert {c.name: c.value for c in result.configs} == {"retention.ms": "604800000", "segment.bytes": str(1 << 30)}


def _alter_configs(conn, version):
    create(conn)
    req_cls, _ = codecs("AlterConfigs")
    return req_cls(resources=[req_cls.AlterConfigsResource(resource_type=2, resource_name=TOPIC, configs=[
        req_cls.AlterableConfig(name="retention.ms", value="100000")])])


def _check_alter_configs(conn, version, resp):
    [r] = resp.responses
    assert (r.error_code, r.resource_name) == (0, TOPIC)
    assert _describe(conn)["retention.ms"] == "100000"


def _describe(conn):
    req_cls, _ = codecs("DescribeConfigs")
    resource = req_cls.DescribeConfigsResource(resource_type=2, resource_name=TOPIC)
    resource.configuration_keys = None
    return {c.name: c.value for c in conn.call("DescribeConfigs", 4, req_cls(resources=[resource])).results[0].configs}


def _describe_log_dirs(conn, version):
    seeded(conn)
    request = codecs("DescribeLogDirs")[0]()
    request.topics = None   # every topic
    return request


def _check_describe_log_dirs(conn, version, resp):
    [result] = resp.results
    assert result.error_code == 0 and result.log_dir
    [topic] = result.topics
    assert topic.name == TOPIC and topic.partitions[0].partition_size > 0
    if version >= 4:
        assert result.total_bytes >= result.usable_bytes > 0


def _create_partitions(conn, version):
    create(conn)
    req_cls, _ = codecs("CreatePartitions")
    request = req_cls(topics=[req_cls.CreatePartitionsTopic(name=TOPIC, count=3)], timeout_ms=1000)
    request.topics[0].assignments = None
    return request


def _check_create_partitions(conn, version, resp):
    [r] = resp.results
    assert (r.name, r.error_code) == (TOPIC, 0)
    assert len(conn.call("Metadata", 12, raw_kafka.metadata_request([TOPIC])).topics[0].partitions) == 3


def _incremental_alter_configs(conn, version):
    create(conn)
    req_cls, _ = codecs("IncrementalAlterConfigs")
    return req_cls(resources=[req_cls.AlterConfigsResource(resource_type=2, resource_name=TOPIC, configs=[
        req_cls.AlterableConfig(name="segment.bytes", config_operation=0, value="1000000")])])


def _check_incremental_alter_configs(conn, version, resp):
    [r] = resp.responses
    assert (r.error_code, r.resource_name) == (0, TOPIC)
    assert _describe(conn)["segment.bytes"] == "1000000"


def _describe_cluster(conn, version):
    return codecs("DescribeCluster")[0](endpoint_type=1)


def _check_describe_cluster(conn, version, resp):
    assert resp.error_code == 0 and resp.controller_id == 0 and len(resp.cluster_id) == 22
    assert [(b.broker_id, b.host) for b in resp.brokers] == [(0, "127.0.0.1")]


def _describe_producers(conn, version):
    seeded(conn)
    pid_resp = conn.call("InitProducerId", 4, codecs("InitProducerId")[0](transactional_id=None,
                                                                         transaction_timeout_ms=60000))
    batch = pstream._core.encode_batch([(None, b"idem", [], None)], producer_id=pid_resp.producer_id,
                                       producer_epoch=0, base_sequence=0)
    assert conn.call("Produce", 9, raw_kafka.produce_request(TOPIC, 0, batch)) \
        .responses[0].partition_responses[0].error_code == 0
    conn.producer_id = pid_resp.producer_id
    req_cls, _ = codecs("DescribeProducers")
    return req_cls(topics=[req_cls.TopicRequest(name=TOPIC, partition_indexes=[0])])


def _check_describe_producers(conn, version, resp):
    part = resp.topics[0].partitions[0]
    assert part.error_code == 0
    assert [(p.producer_id, p.producer_epoch, p.last_sequence) for p in part.active_producers] == \
        [(conn.producer_id, 0, 0)]


# --- groups: requests about a group that does not exist, answered with Kafka's codes -------------

GROUP = "av-group"
UNKNOWN_MEMBER_ID, INVALID_SESSION_TIMEOUT, MEMBER_ID_REQUIRED, GROUP_ID_NOT_FOUND = 25, 26, 79, 69


def _find_coordinator(conn, version):
    req_cls, _ = codecs("FindCoordinator")
    return req_cls(key=GROUP, key_type=0, coordinator_keys=[GROUP])


def _check_find_coordinator(conn, version, resp):
    if version >= 4:
        [c] = resp.coordinators
        assert (c.key, c.node_id, c.host, c.port, c.error_code) == (GROUP, 0, "127.0.0.1", conn.port, 0)
    else:
        assert (resp.error_code, resp.node_id, resp.host, resp.port) == (0, 0, "127.0.0.1", conn.port)


def _join_group(conn, version):
    req_cls, _ = codecs("JoinGroup")
    # v0-3 have no MEMBER_ID_REQUIRED: an out-of-range session timeout gets an immediate answer instead.
    return req_cls(group_id=GROUP, session_timeout_ms=30000 if version >= 4 else 1, rebalance_timeout_ms=30000,
                   member_id="", protocol_type="consumer",
                   protocols=[req_cls.JoinGroupRequestProtocol(name="range", metadata=b"")])


def _check_join_group(conn, version, resp):
    if version >= 4:
        assert resp.error_code == MEMBER_ID_REQUIRED and resp.member_id
    else:
        assert resp.error_code == INVALID_SESSION_TIMEOUT


def _sync_group(conn, version):
    return codecs("SyncGroup")[0](group_id=GROUP, generation_id=1, member_id="nobody", protocol_type="consumer",
                                  protocol_name="range", assignments=[])


def _heartbeat(conn, version):
    return codecs("Heartbeat")[0](group_id=GROUP, generation_id=1, member_id="nobody")


def _check_unknown_member(conn, version, resp):
    assert resp.error_code == UNKNOWN_MEMBER_ID


def _leave_group(conn, version):
    req_cls, _ = codecs("LeaveGroup")
    return req_cls(group_id=GROUP, member_id="nobody", members=[req_cls.MemberIdentity(member_id="nobody")])


def _check_leave_group(conn, version, resp):
    if version >= 3:
        assert [(m.member_id, m.error_code) for m in resp.members] == [("nobody", UNKNOWN_MEMBER_ID)]
    else:
        assert resp.error_code == UNKNOWN_MEMBER_ID


def _offset_commit(conn, version):
    seeded(conn)
    req_cls, _ = codecs("OffsetCommit")
    return req_cls(group_id=GROUP, generation_id_or_member_epoch=-1, member_id="", retention_time_ms=-1,
                   topics=[req_cls.OffsetCommitRequestTopic(name=TOPIC, partitions=[
                       req_cls.OffsetCommitRequestPartition(partition_index=0, committed_offset=2,
                                                            committed_metadata="m")])])


def _check_offset_commit(conn, version, resp):
    assert [(p.partition_index, p.error_code) for t in resp.topics for p in t.partitions] == [(0, 0)]
    fetched = conn.call("OffsetFetch", 7, _offset_fetch(conn, 7))
    assert [(p.committed_offset, p.metadata) for t in fetched.topics for p in t.partitions] == [(2, "m")]


def _offset_fetch(conn, version):
    req_cls, _ = codecs("OffsetFetch")
    return req_cls(group_id=GROUP, topics=[req_cls.OffsetFetchRequestTopic(name=TOPIC, partition_indexes=[0])],
                   groups=[req_cls.OffsetFetchRequestGroup(group_id=GROUP, topics=[
                       req_cls.OffsetFetchRequestTopics(name=TOPIC, partition_indexes=[0])])])


def _check_offset_fetch(conn, version, resp):
    topics = resp.groups[0].topics if version >= 8 else resp.topics
    assert [(p.partition_index, p.committed_offset) for t in topics for p in t.partitions] == [(0, -1)]


def _describe_groups(conn, version):
    return codecs("DescribeGroups")[0](groups=[GROUP])


def _check_describe_groups(conn, version, resp):
    [g] = resp.groups
    assert (g.group_id, g.error_code, g.group_state, g.members) == (GROUP, 0, "Dead", [])


def _list_groups(conn, version):
    return codecs("ListGroups")[0]()


def _check_list_groups(conn, version, resp):
    assert (resp.error_code, resp.groups) == (0, [])


def _delete_groups(conn, version):
    return codecs("DeleteGroups")[0](groups_names=[GROUP])


def _check_delete_groups(conn, version, resp):
    assert [(r.group_id, r.error_code) for r in resp.results] == [(GROUP, GROUP_ID_NOT_FOUND)]


def _offset_delete(conn, version):
    req_cls, _ = codecs("OffsetDelete")
    return req_cls(group_id=GROUP, topics=[req_cls.OffsetDeleteRequestTopic(
        name=TOPIC, partitions=[req_cls.OffsetDeleteRequestPartition(partition_index=0)])])


def _check_offset_delete(conn, version, resp):
    assert resp.error_code == GROUP_ID_NOT_FOUND


TXN_ID = "txn-api-versions"
INVALID_TXN_STATE, INVALID_PRODUCER_ID_MAPPING, TRANSACTIONAL_ID_NOT_FOUND = 48, 49, 105


def _add_partitions_to_txn(conn, version):
    req_cls, _ = codecs("AddPartitionsToTxn")
    seeded(conn)
    topics = [req_cls.AddPartitionsToTxnTopic(name=TOPIC, partitions=[0])]
    return req_cls(v3_and_below_transactional_id=TXN_ID, v3_and_below_producer_id=7, v3_and_below_producer_epoch=0,
                   v3_and_below_topics=topics,
                   transactions=[req_cls.AddPartitionsToTxnTransaction(transactional_id=TXN_ID, producer_id=7,
                                                                       producer_epoch=0, topics=topics)])


def _check_add_partitions_to_txn(conn, version, resp):
    if version >= 4:
        assert resp.error_code == 0
        [result] = resp.results_by_transaction
        assert result.transactional_id == TXN_ID
        topics = result.topic_results
    else:
        topics = resp.results_by_topic_v3_and_below
    assert [(t.name, p.partition_index, p.partition_error_code) for t in topics for p in t.results_by_partition] \
        == [(TOPIC, 0, INVALID_PRODUCER_ID_MAPPING)]


def _add_offsets_to_txn(conn, version):
    return codecs("AddOffsetsToTxn")[0](transactional_id=TXN_ID, producer_id=7, producer_epoch=0, group_id=GROUP)


def _end_txn(conn, version):
    return codecs("EndTxn")[0](transactional_id=TXN_ID, producer_id=7, producer_epoch=0, committed=True)


def _check_unknown_producer_mapping(conn, version, resp):
    assert resp.error_code == INVALID_PRODUCER_ID_MAPPING


def _write_txn_markers(conn, version):
    req_cls, _ = codecs("WriteTxnMarkers")
    seeded(conn)
    return req_cls(markers=[req_cls.WritableTxnMarker(
        producer_id=7, producer_epoch=0, transaction_result=False, coordinator_epoch=0,
        topics=[req_cls.WritableTxnMarkerTopic(name=TOPIC, partition_indexes=[0])])])


def _check_write_txn_markers(conn, version, resp):
    assert [(m.producer_id, t.name, p.partition_index, p.error_code)
            for m in resp.markers for t in m.topics for p in t.partitions] == [(7, TOPIC, 0, 0)]


def _txn_offset_commit(conn, version):
    req_cls, _ = codecs("TxnOffsetCommit")
    return req_cls(transactional_id=TXN_ID, group_id=GROUP, producer_id=7, producer_epoch=0, generation_id=-1,
                   member_id="", topics=[req_cls.TxnOffsetCommitRequestTopic(name=TOPIC, partitions=[
                       req_cls.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=1)])])


def _check_txn_offset_commit(conn, version, resp):
    assert [(t.name, p.partition_index, p.error_code) for t in resp.topics for p in t.partitions] \
        == [(TOPIC, 0, INVALID_TXN_STATE)]   # producer 7 has no transaction holding the group


def _describe_transactions(conn, version):
    return codecs("DescribeTransactions")[0](transactional_ids=[TXN_ID])


def _check_describe_transactions(conn, version, resp):
    assert [(s.transactional_id, s.error_code) for s in resp.transaction_states] \
        == [(TXN_ID, TRANSACTIONAL_ID_NOT_FOUND)]


def _list_transactions(conn, version):
    return codecs("ListTransactions")[0](state_filters=["Ongoing", "Bogus"], producer_id_filters=[])


def _check_list_transactions(conn, version, resp):
    assert (resp.error_code, resp.unknown_state_filters, resp.transaction_states) == (0, ["Bogus"], [])


# --- partition administration: one node leads every partition, nothing moves -----------------------

ELECTION_NOT_NEEDED, NO_REASSIGNMENT_IN_PROGRESS = 84, 85


def _describe_topic_partitions(conn, version):
    create(conn, partitions=3)
    req_cls, _ = codecs("DescribeTopicPartitions")
    return req_cls(topics=[req_cls.TopicRequest(name=TOPIC)], response_partition_limit=2)


def _check_describe_topic_partitions(conn, version, resp):
    [topic] = resp.topics
    assert (topic.name, topic.error_code, [(p.partition_index, p.leader_id, p.replica_nodes) for p in topic.partitions]) \
        == (TOPIC, 0, [(0, 0, [0]), (1, 0, [0])])
    assert topic.topic_id != ZERO_UUID
    assert (resp.next_cursor.topic_name, resp.next_cursor.partition_index) == (TOPIC, 2)


def _list_partition_reassignments(conn, version):
    create(conn)
    request = codecs("ListPartitionReassignments")[0](timeout_ms=1000)
    request.topics = None   # every partition
    return request


def _check_list_partition_reassignments(conn, version, resp):
    assert (resp.error_code, resp.topics) == (0, [])


def _alter_partition_reassignments(conn, version):
    create(conn, partitions=2)
    req_cls, _ = codecs("AlterPartitionReassignments")
    return req_cls(timeout_ms=1000, topics=[req_cls.ReassignableTopic(name=TOPIC, partitions=[
        req_cls.ReassignablePartition(partition_index=0, replicas=[0]),
        req_cls.ReassignablePartition(partition_index=1, replicas=None)])])


def _check_alter_partition_reassignments(conn, version, resp):
    assert resp.error_code == 0
    assert [(p.partition_index, p.error_code) for t in resp.responses for p in t.partitions] == \
        [(0, 0), (1, NO_REASSIGNMENT_IN_PROGRESS)]


def _elect_leaders(conn, version):
    create(conn)
    req_cls, _ = codecs("ElectLeaders")
    return req_cls(election_type=0, timeout_ms=1000, topic_partitions=[req_cls.TopicPartitions(topic=TOPIC,
                                                                                               partitions=[0, 3])])


def _check_elect_leaders(conn, version, resp):
    assert resp.error_code == 0
    assert [(p.partition_id, p.error_code) for r in resp.replica_election_results for p in r.partition_result] == \
        [(0, ELECTION_NOT_NEEDED), (3, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]


def _alter_replica_log_dirs(conn, version):
    create(conn, partitions=2)
    request = codecs("DescribeLogDirs")[0]()
    request.topics = None
    here = conn.call("DescribeLogDirs", 4, request).results[0].log_dir
    req_cls, _ = codecs("AlterReplicaLogDirs")
    return req_cls(dirs=[req_cls.AlterReplicaLogDir(path=path, topics=[req_cls.AlterReplicaLogDirTopic(
        name=TOPIC, partitions=[index])]) for path, index in ((here, 0), ("/elsewhere", 1))])


def _check_alter_replica_log_dirs(conn, version, resp):
    assert [(t.topic_name, p.partition_index, p.error_code) for t in resp.results for p in t.partitions] == \
        [(TOPIC, 0, 0), (TOPIC, 1, ErrorCode.LOG_DIR_NOT_FOUND)]


def _describe_quorum(conn, version):
    req_cls, _ = codecs("DescribeQuorum")
    return req_cls(topics=[req_cls.TopicData(topic_name="__cluster_metadata",
                                             partitions=[req_cls.PartitionData(partition_index=0)])])


def _check_describe_quorum(conn, version, resp):
    [p] = resp.topics[0].partitions
    assert (resp.error_code, p.error_code, p.leader_id, p.leader_epoch) == (0, 0, 0, 1)
    assert [v.replica_id for v in p.current_voters] == [0]
    if version >= 1:
        assert p.current_voters[0].last_caught_up_timestamp > 0
    if version >= 2:
        assert [(n.node_id, [(x.host, x.port) for x in n.listeners]) for n in resp.nodes] == \
            [(0, [("127.0.0.1", conn.port)])]


def _describe_client_quotas(conn, version):
    req_cls, _ = codecs("AlterClientQuotas")
    conn.call("AlterClientQuotas", 1, req_cls(entries=[req_cls.EntryData(
        entity=[req_cls.EntityData(entity_type="user", entity_name="alice")],
        ops=[req_cls.OpData(key="producer_byte_rate", value=1024.0)])]))
    req_cls, _ = codecs("DescribeClientQuotas")
    return req_cls(components=[req_cls.ComponentData(entity_type="user", match_type=0, match="alice")], strict=True)


def _check_describe_client_quotas(conn, version, resp):
    assert (resp.error_code, resp.error_message) == (0, "")
    [entry] = resp.entries
    assert [(e.entity_type, e.entity_name) for e in entry.entity] == [("user", "alice")]
    assert [(v.key, v.value) for v in entry.values] == [("producer_byte_rate", 1024.0)]


def _alter_client_quotas(conn, version):
    req_cls, _ = codecs("AlterClientQuotas")
    return req_cls(entries=[req_cls.EntryData(
        entity=[req_cls.EntityData(entity_type="user", entity_name="alice"),
                req_cls.EntityData(entity_type="client-id", entity_name=None)],
        ops=[req_cls.OpData(key="consumer_byte_rate", value=2048.0)])])


def _check_alter_client_quotas(conn, version, resp):
    [entry] = resp.entries
    assert (entry.error_code, entry.error_message) == (0, None)
    assert [(e.entity_type, e.entity_name) for e in entry.entity] == [("client-id", None), ("user", "alice")]
    req_cls, _ = codecs("DescribeClientQuotas")
    described = conn.call("DescribeClientQuotas", 1, req_cls(components=[
        req_cls.ComponentData(entity_type="user", match_type=0, match="alice"),
        req_cls.ComponentData(entity_type="client-id", match_type=1, match=None)], strict=True))
    assert [[(v.key, v.value) for v in e.values] for e in described.entries] == [[("consumer_byte_rate", 2048.0)]]


def _consumer_group_heartbeat(conn, version):
    seeded(conn)
    req_cls, _ = codecs("ConsumerGroupHeartbeat")
    return req_cls(group_id=GROUP, member_id="m-" + "x" * 20, member_epoch=0, rebalance_timeout_ms=30000,
                   subscribed_topic_names=[TOPIC], topic_partitions=[])


def _check_consumer_group_heartbeat(conn, version, resp):
    assert (resp.error_code, resp.error_message, resp.member_id, resp.member_epoch) == (0, None, "m-" + "x" * 20, 1)
    assert resp.heartbeat_interval_ms == 5000
    [assigned] = resp.assignment.topic_partitions
    assert assigned.partitions == [0]
    topic_id = conn.call("Metadata", 12, codecs("Metadata")[0](topics=None)).topics[0].topic_id
    assert assigned.topic_id == topic_id


def _consumer_group_describe(conn, version):
    conn.call("ConsumerGroupHeartbeat", 0, _consumer_group_heartbeat(conn, 0))
    return codecs("ConsumerGroupDescribe")[0](group_ids=[GROUP, "nobody"], include_authorized_operations=True)


def _check_consumer_group_describe(conn, version, resp):
    g, missing = resp.groups
    assert (g.error_code, g.group_state, g.group_epoch, g.assignment_epoch, g.assignor_name) == \
        (0, "Stable", 1, 1, "uniform")
    [m] = g.members
    assert (m.member_id, m.member_epoch, m.subscribed_topic_names, m.client_host) == \
        ("m-" + "x" * 20, 1, [TOPIC], "/127.0.0.1")
    assert [(t.topic_name, t.partitions) for t in m.assignment.topic_partitions] == [(TOPIC, [0])]
    assert [(t.topic_name, t.partitions) for t in m.target_assignment.topic_partitions] == [(TOPIC, [0])]
    assert (missing.group_id, missing.error_code, missing.error_message) == \
        ("nobody", 69, "Group nobody not found.")


def _sasl_handshake(conn, version):
    return codecs("SaslHandshake")[0](mechanism="PLAIN")


def _check_sasl_handshake(conn, version, resp):
    assert (resp.error_code, resp.mechanisms) == (34, [])   # ILLEGAL_SASL_STATE: a PLAINTEXT listener


def _sasl_authenticate(conn, version):
    return codecs("SaslAuthenticate")[0](auth_bytes=b"\0u\0p")


def _check_sasl_authenticate(conn, version, resp):
    assert (resp.error_code, resp.error_message) == \
        (34, "SaslAuthenticate request received after successful authentication")


def _alter_user_scram_credentials(conn, version):
    req_cls, _ = codecs("AlterUserScramCredentials")
    return req_cls(deletions=[req_cls.ScramCredentialDeletion(name="ghost", mechanism=1)], upsertions=[
        req_cls.ScramCredentialUpsertion(name="alice", mechanism=2, iterations=4096, salt=b"s" * 16,
                                         salted_password=b"p" * 64)])


def _check_alter_user_scram_credentials(conn, version, resp):
    assert [(r.user, r.error_code, r.error_message) for r in resp.results] == [
        ("ghost", 91, "Attempt to delete a user credential that does not exist"), ("alice", 0, None)]


def _describe_user_scram_credentials(conn, version):
    conn.call("AlterUserScramCredentials", 0, _alter_user_scram_credentials(conn, 0))
    req_cls, _ = codecs("DescribeUserScramCredentials")
    return req_cls(users=[req_cls.UserName(name="alice"), req_cls.UserName(name="bob")])


def _check_describe_user_scram_credentials(conn, version, resp):
    assert resp.error_code == 0
    alice, bob = resp.results
    assert (alice.user, alice.error_code, [(c.mechanism, c.iterations) for c in alice.credential_infos]) == \
        ("alice", 0, [(2, 4096)])
    assert (bob.error_code, bob.error_message) == (91, "Attempt to describe a user credential that does not exist: bob")


# Without an authorizer (the default) Kafka answers the ACL APIs SECURITY_DISABLED.
NO_AUTHORIZER = (54, "No Authorizer is configured on the broker")


def _describe_acls(conn, version):
    return codecs("DescribeAcls")[0](resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
                                     principal_filter=None, host_filter=None, operation=1, permission_type=1)


def _check_describe_acls(conn, version, resp):
    assert (resp.error_code, resp.error_message, resp.resources) == (*NO_AUTHORIZER, [])


def _create_acls(conn, version):
    req_cls, _ = codecs("CreateAcls")
    return req_cls(creations=[req_cls.AclCreation(resource_type=2, resource_name="t", resource_pattern_type=3,
                                                  principal="User:a", host="*", operation=3, permission_type=3)])


def _check_create_acls(conn, version, resp):
    assert [(r.error_code, r.error_message) for r in resp.results] == [NO_AUTHORIZER]


def _delete_acls(conn, version):
    req_cls, _ = codecs("DeleteAcls")
    return req_cls(filters=[req_cls.DeleteAclsFilter(resource_type_filter=1, resource_name_filter=None,
                                                     pattern_type_filter=1, principal_filter=None, host_filter=None,
                                                     operation=1, permission_type=1)])


def _check_delete_acls(conn, version, resp):
    assert [(r.error_code, r.error_message, r.matching_acls) for r in resp.filter_results] == [(*NO_AUTHORIZER, [])]


CASES = {
    "DescribeAcls": (_describe_acls, _check_describe_acls),
    "CreateAcls": (_create_acls, _check_create_acls),
    "DeleteAcls": (_delete_acls, _check_delete_acls),
    "SaslHandshake": (_sasl_handshake, _check_sasl_handshake),
    "SaslAuthenticate": (_sasl_authenticate, _check_sasl_authenticate),
    "AlterUserScramCredentials": (_alter_user_scram_credentials, _check_alter_user_scram_credentials),
    "DescribeUserScramCredentials": (_describe_user_scram_credentials, _check_describe_user_scram_credentials),
    "ConsumerGroupHeartbeat": (_consumer_group_heartbeat, _check_consumer_group_heartbeat),
    "ConsumerGroupDescribe": (_consumer_group_describe, _check_consumer_group_describe),
    "DescribeTopicPartitions": (_describe_topic_partitions, _check_describe_topic_partitions),
    "ListPartitionReassignments": (_list_partition_reassignments, _check_list_partition_reassignments),
    "AlterPartitionReassignments": (_alter_partition_reassignments, _check_alter_partition_reassignments),
    "ElectLeaders": (_elect_leaders, _check_elect_leaders),
    "AlterReplicaLogDirs": (_alter_replica_log_dirs, _check_alter_replica_log_dirs),
    "DescribeQuorum": (_describe_quorum, _check_describe_quorum),
    "AddPartitionsToTxn": (_add_partitions_to_txn, _check_add_partitions_to_txn),
    "AddOffsetsToTxn": (_add_offsets_to_txn, _check_unknown_producer_mapping),
    "EndTxn": (_end_txn, _check_unknown_producer_mapping),
    "WriteTxnMarkers": (_write_txn_markers, _check_write_txn_markers),
    "TxnOffsetCommit": (_txn_offset_commit, _check_txn_offset_commit),
    "DescribeTransactions": (_describe_transactions, _check_describe_transactions),
    "ListTransactions": (_list_transactions, _check_list_transactions),
    "FindCoordinator": (_find_coordinator, _check_find_coordinator),
    "JoinGroup": (_join_group, _check_join_group),
    "SyncGroup": (_sync_group, _check_unknown_member),
    "Heartbeat": (_heartbeat, _check_unknown_member),
    "LeaveGroup": (_leave_group, _check_leave_group),
    "OffsetCommit": (_offset_commit, _check_offset_commit),
    "OffsetFetch": (_offset_fetch, _check_offset_fetch),
    "DescribeGroups": (_describe_groups, _check_describe_groups),
    "ListGroups": (_list_groups, _check_list_groups),
    "DeleteGroups": (_delete_groups, _check_delete_groups),
    "OffsetDelete": (_offset_delete, _check_offset_delete),
    "Produce": (_produce, _check_produce),
    "Fetch": (_fetch, _check_fetch),
    "ListOffsets": (_list_offsets, _check_list_offsets),
    "Metadata": (_metadata, _check_metadata),
    "ApiVersions": (_api_versions, _check_api_versions),
    "CreateTopics": (_create_topics, _check_create_topics),
    "DeleteTopics": (_delete_topics, _check_delete_topics),
    "DeleteRecords": (_delete_records, _check_delete_records),
    "InitProducerId": (_init_producer_id, _check_init_producer_id),
    "OffsetForLeaderEpoch": (_offset_for_leader_epoch, _check_offset_for_leader_epoch),
    "DescribeConfigs": (_describe_configs, _check_describe_configs),
    "AlterConfigs": (_alter_configs, _check_alter_configs),
    "DescribeLogDirs": (_describe_log_dirs, _check_describe_log_dirs),
    "CreatePartitions": (_create_partitions, _check_create_partitions),
    "IncrementalAlterConfigs": (_incremental_alter_configs, _check_incremental_alter_configs),
    "DescribeCluster": (_describe_cluster, _check_describe_cluster),
    "DescribeProducers": (_describe_producers, _check_describe_producers),
    "DescribeClientQuotas": (_describe_client_quotas, _check_describe_client_quotas),
    "AlterClientQuotas": (_alter_client_quotas, _check_alter_client_quotas),
}


def test_every_advertised_api_has_a_case_here():
    assert set(CASES) == set(KAFKA_3_9) | set(KAFKA_4_0)


@pytest.mark.parametrize("api", sorted({**KAFKA_3_9, **KAFKA_4_0}))
def test_api_answers_well_formed_at_its_lowest_and_highest_version(broker_factory, api):
    _, low, high = {**KAFKA_3_9, **KAFKA_4_0}[api]
    build, check = CASES[api]
    for version in sorted({low, high}):
        # A fresh broker per version: each case starts from an empty log.
        broker = broker_factory()
        with raw_kafka.RawConnection(broker.bootstrap) as conn:
            request = build(conn, version)
            cid = 0x7FFFFF00 + version   # near the int32 limit: echoed exactly
            conn.send(api, version, request, correlation_id=cid)
            got_cid, response = conn.receive(api, version)   # raises unless the whole frame decodes
            assert got_cid == cid, (api, version)
            check(conn, version, response)
        broker.stop()
