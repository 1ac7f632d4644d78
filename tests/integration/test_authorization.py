"""Authorization against the real broker (authorization=acls): the ACL APIs with Kafka's rules and
messages, and a denied-access matrix: for each API a principal without the ACL gets Kafka's error
code and learns nothing it may not describe; with the ACL the same request works. Also DENY over
ALLOW, prefixed and wildcard ACLs, hosts, super users, ANONYMOUS on a plaintext listener, ACLs
surviving a restart, confluent-kafka under ACLs and `pstream acl`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import raw_kafka

import pstream
from pstream.client import KafkaClient, Security
from pstream.protocol.error_codes import ErrorCode as E
from pstream.security.acls import Acl, AclFilter, Operation, PatternType, Permission, ResourceType
from pstream.testing import BrokerProcess, stop_broker

codecs = raw_kafka.codecs
ADMIN, ALICE, BOB = "admin", "alice", "bob"
PASSWORDS = {ADMIN: "admin-pw", ALICE: "alice-pw", BOB: "bob-pw"}
TOPIC, GROUP = "secret-topic", "secret-group"
LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED
T, G, C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = BrokerProcess(str(tmp_path_factory.mktemp("authz") / "data"), listeners="SASL_PLAINTEXT,PLAINTEXT",
                      authorization="acls", super_users=f"User:{ADMIN}",
                      bootstrap_user=f"{ADMIN}:{PASSWORDS[ADMIN]}", group_initial_rebalance_delay_ms=0).start()
    with admin_client(b) as client:
        for user in (ALICE, BOB):
            client.alter_scram_user(user, "SCRAM-SHA-512", PASSWORDS[user])
        client.create_topic(TOPIC, 2)
    yield b
    stop_broker(b)


def admin_client(broker, user=ADMIN) -> KafkaClient:
    return KafkaClient(broker.address("SASL_PLAINTEXT"),
                       security=Security("SASL_PLAINTEXT", "SCRAM-SHA-512", user, PASSWORDS[user]))


@pytest.fixture
def acls(broker):
    """Creates ACLs for the test (as the super user); all are deleted after it."""
    made = []

    def grant(*bindings: Acl) -> None:
        with admin_client(broker) as client:
            client.create_acls(list(bindings))
        made.extend(bindings)

    yield grant
    with admin_client(broker) as client:
        for acl in made:
            client.delete_acls(AclFilter(acl.resource_type, acl.resource_name, acl.pattern_type, acl.principal,
                                         acl.host, acl.operation, acl.permission))


def allow(user, op, rtype=T, name=TOPIC, pattern=LIT, host="*", permission=Permission.ALLOW) -> Acl:
    cluster = name if rtype != C else "kafka-cluster"
    return Acl(rtype, cluster, pattern, user if ":" in user else f"User:{user}", host, op, permission)


def call(broker, user, api, version, request):
    with admin_client(broker, user) as client:
        return client.any_connection().call(api, version, request)


def produce_request():
    return raw_kafka.produce_request(TOPIC, 0, pstream._core.encode_batch([(None, b"v", [], None)]))


def fetch_request():
    req_cls, _ = codecs("Fetch")
    return req_cls(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0, session_id=0,
                   session_epoch=-1, rack_id="", forgotten_topics_data=[], topics=[req_cls.FetchTopic(
                       topic=TOPIC, partitions=[req_cls.FetchPartition(partition=0, fetch_offset=0,
                                                                       partition_max_bytes=1 << 20)])])


def list_offsets_request():
    req_cls, _ = codecs("ListOffsets")
    return req_cls(replica_id=-1, isolation_level=0, topics=[req_cls.ListOffsetsTopic(
        name=TOPIC, partitions=[req_cls.ListOffsetsPartition(partition_index=0, timestamp=-1)])])


def commit_request():
    req_cls, _ = codecs("OffsetCommit")
    return req_cls(group_id=GROUP, generation_id_or_member_epoch=-1, member_id="", retention_time_ms=-1,
                   topics=[req_cls.OffsetCommitRequestTopic(name=TOPIC, partitions=[
                       req_cls.OffsetCommitRequestPartition(partition_index=0, committed_offset=1)])])


def offset_fetch_request():
    req_cls, _ = codecs("OffsetFetch")
    return req_cls(require_stable=False, groups=[req_cls.OffsetFetchRequestGroup(group_id=GROUP, topics=None)])


def describe_configs_request(rtype, name):
    req_cls, _ = codecs("DescribeConfigs")
    return req_cls(resources=[req_cls.DescribeConfigsResource(resource_type=rtype, resource_name=name,
                                                               configuration_keys=None)])


def alter_configs_request(rtype, name, key, value):
    req_cls, _ = codecs("IncrementalAlterConfigs")
    return req_cls(resources=[req_cls.AlterConfigsResource(resource_type=rtype, resource_name=name, configs=[
        req_cls.AlterableConfig(name=key, config_operation=0, value=value)])], validate_only=True)


def create_partitions_request():
    req_cls, _ = codecs("CreatePartitions")
    return req_cls(topics=[req_cls.CreatePartitionsTopic(name=TOPIC, count=3, assignments=None)], timeout_ms=5000,
                   validate_only=True)


def delete_records_request():
    req_cls, _ = codecs("DeleteRecords")
    return req_cls(topics=[req_cls.DeleteRecordsTopic(name=TOPIC, partitions=[
        req_cls.DeleteRecordsPartition(partition_index=1, offset=0)])], timeout_ms=5000)


def heartbeat848_request():
    req_cls, _ = codecs("ConsumerGroupHeartbeat")
    return req_cls(group_id=GROUP, member_id="m" * 22, member_epoch=0, rebalance_timeout_ms=5000,
                   subscribed_topic_names=[TOPIC], topic_partitions=[])


def join_request():
    req_cls, _ = codecs("JoinGroup")
    return req_cls(group_id=GROUP, session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="",
                   group_instance_id=None, protocol_type="consumer", reason=None,
                   protocols=[req_cls.JoinGroupRequestProtocol(name="range", metadata=b"")])


def offset_delete_request():
    req_cls, _ = codecs("OffsetDelete")
    return req_cls(group_id=GROUP, topics=[req_cls.OffsetDeleteRequestTopic(
        name=TOPIC, partitions=[req_cls.OffsetDeleteRequestPartition(partition_index=0)])])


def find_coordinator_request():
    return codecs("FindCoordinator")[0](key_type=0, coordinator_keys=[GROUP])


def partition_error(resp):
    """The single partition error of Produce/Fetch/ListOffsets/OffsetCommit/DeleteRecords answers."""
    for attr in ("responses", "topics"):
        for t in getattr(resp, attr, None) or []:
            for p in getattr(t, "partition_responses", None) or getattr(t, "partitions", None) or []:
                return p.error_code
    raise AssertionError(f"no partition in {resp}")


# (api, version, request factory, how to read the error, the denied error, the ACLs that allow it)
MATRIX = [
    ("Produce", 9, produce_request, partition_error, E.TOPIC_AUTHORIZATION_FAILED, [(Operation.WRITE, T, TOPIC)]),
    ("Fetch", 12, fetch_request, partition_error, E.TOPIC_AUTHORIZATION_FAILED, [(Operation.READ, T, TOPIC)]),
    ("ListOffsets", 7, list_offsets_request, partition_error, E.TOPIC_AUTHORIZATION_FAILED,
     [(Operation.DESCRIBE, T, TOPIC)]),
    ("OffsetCommit", 8, commit_request, partition_error, E.GROUP_AUTHORIZATION_FAILED,
     [(Operation.READ, G, GROUP), (Operation.READ, T, TOPIC)]),
    ("OffsetFetch", 8, offset_fetch_request, lambda r: r.groups[0].error_code, E.GROUP_AUTHORIZATION_FAILED,
     [(Operation.DESCRIBE, G, GROUP)]),
    ("FindCoordinator", 4, find_coordinator_request, lambda r: r.coordinators[0].error_code,
     E.GROUP_AUTHORIZATION_FAILED, [(Operation.DESCRIBE, G, GROUP)]),
    ("ConsumerGroupHeartbeat", 1, heartbeat848_request, lambda r: r.error_code, E.GROUP_AUTHORIZATION_FAILED,
     [(Operation.READ, G, GROUP), (Operation.DESCRIBE, T, TOPIC)]),
    # allowed, a new member is told MEMBER_ID_REQUIRED (v4+): it got past authorization
    ("JoinGroup", 9, join_request, lambda r: r.error_code if r.error_code != E.MEMBER_ID_REQUIRED else E.NONE,
     E.GROUP_AUTHORIZATION_FAILED, [(Operation.READ, G, GROUP)]),
    ("Heartbeat", 4, lambda: codecs("Heartbeat")[0](group_id=GROUP, generation_id=1, member_id="m"),
     lambda r: r.error_code if r.error_code != E.UNKNOWN_MEMBER_ID else E.NONE, E.GROUP_AUTHORIZATION_FAILED,
     [(Operation.READ, G, GROUP)]),
    ("LeaveGroup", 5, lambda: codecs("LeaveGroup")[0](group_id=GROUP, members=[]), lambda r: r.error_code,
     E.GROUP_AUTHORIZATION_FAILED, [(Operation.READ, G, GROUP)]),
    ("OffsetDelete", 0, offset_delete_request, lambda r: r.error_code if r.error_code != E.GROUP_ID_NOT_FOUND
     else E.NONE, E.GROUP_AUTHORIZATION_FAILED, [(Operation.DELETE, G, GROUP), (Operation.READ, T, TOPIC)]),
    ("DescribeGroups", 5, lambda: codecs("DescribeGroups")[0](groups=[GROUP]), lambda r: r.groups[0].error_code,
     E.GROUP_AUTHORIZATION_FAILED, [(Operation.DESCRIBE, G, GROUP)]),
    ("CreatePartitions", 3, create_partitions_request, lambda r: r.results[0].error_code,
     E.TOPIC_AUTHORIZATION_FAILED, [(Operation.ALTER, T, TOPIC)]),
    ("DeleteRecords", 2, delete_records_request, partition_error, E.TOPIC_AUTHORIZATION_FAILED,
     [(Operation.DELETE, T, TOPIC)]),
    ("DescribeConfigs", 4, lambda: describe_configs_request(2, TOPIC), lambda r: r.results[0].error_code,
     E.TOPIC_AUTHORIZATION_FAILED, [(Operation.DESCRIBE_CONFIGS, T, TOPIC)]),
    ("DescribeConfigs", 4, lambda: describe_configs_request(4, "0"), lambda r: r.results[0].error_code,
     E.CLUSTER_AUTHORIZATION_FAILED, [(Operation.DESCRIBE_CONFIGS, C, "")]),
    ("IncrementalAlterConfigs", 1, lambda: alter_configs_request(2, TOPIC, "retention.ms", "1000"),
     lambda r: r.responses[0].error_code, E.TOPIC_AUTHORIZATION_FAILED, [(Operation.ALTER_CONFIGS, T, TOPIC)]),
    ("IncrementalAlterConfigs", 1, lambda: alter_configs_request(4, "0", "log.retention.ms", "1000"),
     lambda r: r.responses[0].error_code, E.CLUSTER_AUTHORIZATION_FAILED, [(Operation.ALTER_CONFIGS, C, "")]),
]


@pytest.mark.parametrize("api,version,build,error_of,denied,needed", MATRIX,
                         ids=[f"{m[0]}-{m[4].name}" for m in MATRIX])
def test_denied_without_the_acl_and_allowed_with_it(broker, acls, api, version, build, error_of, denied, needed):
    resp = call(broker, ALICE, api, version, build())
    assert error_of(resp) == denied
    if api == "Fetch":
        assert not resp.responses[0].partitions[0].records   # no data leaks with the error
    acls(*[allow(ALICE, op, rtype, name) for op, rtype, name in needed])
    resp = call(broker, ALICE, api, version, build())
    assert error_of(resp) == E.NONE, resp
    if api == "ConsumerGroupHeartbeat":   # leave again: the group must not keep a member
        leave = heartbeat848_request()
        leave.member_epoch, leave.topic_partitions, leave.rebalance_timeout_ms = -1, None, -1
        leave.subscribed_topic_names = None
        call(broker, ALICE, api, version, leave)


def test_metadata_hides_topics_and_needs_create_to_auto_create(broker, acls):
    listed = call(broker, ALICE, "Metadata", 12, raw_kafka.metadata_request(version=12))
    assert TOPIC not in [t.name for t in listed.topics]
    named = call(broker, ALICE, "Metadata", 12, raw_kafka.metadata_request([TOPIC], version=12))
    assert [(t.name, t.error_code, t.partitions) for t in named.topics] == [(TOPIC, E.TOPIC_AUTHORIZATION_FAILED, [])]
    auto = call(broker, ALICE, "Metadata", 12, raw_kafka.metadata_request(["made-by-alice"], version=12))
    assert auto.topics[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    acls(allow(ALICE, Operation.DESCRIBE), allow(ALICE, Operation.ALL, name="made-by-", pattern=PRE))
    listed = call(broker, ALICE, "Metadata", 12, raw_kafka.metadata_request(version=12))
    assert TOPIC in [t.name for t in listed.topics] and "__consumer_offsets" not in [t.name for t in listed.topics]
    auto = call(broker, ALICE, "Metadata", 12, raw_kafka.metadata_request(["made-by-alice"], version=12))
    assert auto.topics[0].error_code == E.NONE and len(auto.topics[0].partitions) >= 1
    req = raw_kafka.metadata_request([TOPIC], version=12)
    req.include_topic_authorized_operations = True
    ops = call(broker, ALICE, "Metadata", 12, req).topics[0].topic_authorized_operations
    assert ops == 1 << Operation.DESCRIBE   # KIP-430: exactly what alice may do on it


def test_create_and_delete_topics_need_create_and_delete(broker, acls):
    req_cls, _ = codecs("CreateTopics")
    create = req_cls(topics=[req_cls.CreatableTopic(name="alice-new", num_partitions=1, replication_factor=1,
                                                    assignments=[], configs=[])], timeout_ms=5000, validate_only=False)
    assert call(broker, ALICE, "CreateTopics", 7, create).topics[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    acls(allow(ALICE, Operation.CREATE, name="alice-new"))
    created = call(broker, ALICE, "CreateTopics", 7, create).topics[0]
    assert created.error_code == E.NONE and created.topic_config_error_code == E.TOPIC_AUTHORIZATION_FAILED
    delete = codecs("DeleteTopics")[0](topic_names=["alice-new"], timeout_ms=5000)
    assert call(broker, ALICE, "DeleteTopics", 5, delete).responses[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    acls(allow(ALICE, Operation.DELETE, name="alice-new"))
    assert call(broker, ALICE, "DeleteTopics", 5, delete).responses[0].error_code == E.NONE


def test_list_and_delete_groups_show_only_what_may_be_described(broker, acls):
    with admin_client(broker) as client:
        client.commit_offsets(GROUP, {(TOPIC, 0): 0})
    assert GROUP not in [g.group_id for g in call(broker, ALICE, "ListGroups", 4, codecs("ListGroups")[0]()).groups]
    delete = codecs("DeleteGroups")[0](groups_names=[GROUP])
    assert call(broker, ALICE, "DeleteGroups", 2, delete).results[0].error_code == E.GROUP_AUTHORIZATION_FAILED
    acls(allow(ALICE, Operation.DESCRIBE, G, GROUP))
    assert GROUP in [g.group_id for g in call(broker, ALICE, "ListGroups", 4, codecs("ListGroups")[0]()).groups]


def test_deny_wins_over_allow_and_prefixes_wildcards_and_hosts_apply(broker, acls):
    acls(allow(BOB, Operation.ALL, name="secret-", pattern=PRE))
    assert partition_error(call(broker, BOB, "Produce", 9, produce_request())) == E.NONE
    acls(allow(BOB, Operation.WRITE, permission=Permission.DENY))
    assert partition_error(call(broker, BOB, "Produce", 9, produce_request())) == E.TOPIC_AUTHORIZATION_FAILED
    assert partition_error(call(broker, BOB, "Fetch", 12, fetch_request())) == E.NONE   # READ still allowed
    acls(allow("User:*", Operation.DESCRIBE, name="*"), allow(ALICE, Operation.READ, host="10.9.8.7"))
    assert partition_error(call(broker, ALICE, "ListOffsets", 7, list_offsets_request())) == E.NONE
    assert partition_error(call(broker, ALICE, "Fetch", 12, fetch_request())) == E.TOPIC_AUTHORIZATION_FAILED


def test_anonymous_on_a_plaintext_listener_is_just_another_principal(broker, acls):
    with KafkaClient(broker.address("PLAINTEXT")) as client:
        conn = client.any_connection()
        assert partition_error(conn.call("Produce", 9, produce_request())) == E.TOPIC_AUTHORIZATION_FAILED
        acls(allow("User:ANONYMOUS", Operation.WRITE))
        assert partition_error(conn.call("Produce", 9, produce_request())) == E.NONE


def test_acl_apis_follow_kafkas_rules(broker):
    req_cls, _ = codecs("CreateAcls")

    def creation(**kw):
        base = dict(resource_type=2, resource_name="t", resource_pattern_type=3, principal="User:x", host="*",
                    operation=3, permission_type=3)
        return req_cls.AclCreation(**{**base, **kw})

    bad = [creation(resource_type=4, resource_name="c"), creation(principal="x"), creation(operation=1),
           creation(resource_pattern_type=2), creation(resource_name=""), creation(permission_type=1)]
    results = call(broker, ADMIN, "CreateAcls", 3, req_cls(creations=bad)).results
    assert [(r.error_code, r.error_message) for r in results] == [
        (E.INVALID_REQUEST, "The only valid name for the CLUSTER resource is kafka-cluster"),
        (E.INVALID_REQUEST, "Could not parse principal from `x` (no colon is present separating the principal "
                            "type from name)"),
        (E.INVALID_REQUEST, "Invalid operation ANY"), (E.INVALID_REQUEST, "Invalid patternType MATCH"),
        (E.INVALID_REQUEST, "Resource name should not be empty"), (E.INVALID_REQUEST, "Invalid permissionType ANY")]
    denied = call(broker, ALICE, "CreateAcls", 3, req_cls(creations=[creation()])).results[0]
    assert denied.error_code == E.CLUSTER_AUTHORIZATION_FAILED
    described = call(broker, ALICE, "DescribeAcls", 3, codecs("DescribeAcls")[0](
        resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1, principal_filter=None,
        host_filter=None, operation=1, permission_type=1))
    assert (described.error_code, described.resources) == (E.CLUSTER_AUTHORIZATION_FAILED, [])


def test_acls_survive_a_restart_and_cli_manages_them(tmp_path):
    b = BrokerProcess(str(tmp_path / "data"), listeners="SASL_PLAINTEXT", authorization="acls",
                      super_users="User:admin", bootstrap_user="admin:admin-pw").start()
    try:
        env = {**os.environ, "PSTREAM_PASSWORD": "admin-pw"}
        cli = [sys.executable, "-P", "-m", "pstream", "acl"]   # -P: the installed pstream, not the checkout
        auth = ["--brokers", b.bootstrap, "--security-protocol", "SASL_PLAINTEXT", "--user", "admin"]

        def run(*args):
            return subprocess.run([*cli, args[0], *auth, *args[1:]], env=env, capture_output=True, text=True,
                                  timeout=60, check=False)

        made = run("create", "--allow-principal", "User:alice", "--operation", "read", "--operation", "describe",
                   "--topic", "orders", "--group", "billing")
        assert made.returncode == 0, made.stderr
        assert made.stdout.count("created ALLOW User:alice") == 4
        assert run("create", "--deny-principal", "User:mallory", "--operation", "all", "--topic", "pay-",
                   "--resource-pattern-type", "prefixed").returncode == 0
        b.restart()
        listed = json.loads(run("list", "--format", "json").stdout)
        assert len(listed) == 5
        assert {"principal": "User:mallory", "host": "*", "resource_type": "TOPIC", "resource_name": "pay-",
                "pattern_type": "PREFIXED", "operation": "ALL", "permission": "DENY"} in listed
        matching = json.loads(run("list", "--format", "json", "--topic", "pay-now", "--resource-pattern-type",
                                  "match").stdout)
        assert [r["principal"] for r in matching] == ["User:mallory"]
        deleted = run("delete", "--allow-principal", "User:alice", "--group", "billing")
        assert deleted.returncode == 0 and "deleted 2 ACLs" in deleted.stdout
        assert len(json.loads(run("list", "--format", "json").stdout)) == 3
        refused = run("create", "--allow-principal", "alice", "--operation", "read", "--topic", "x")
        assert refused.returncode != 0 and "Could not parse principal" in refused.stderr
    finally:
        stop_broker(b)


def test_a_consumer_under_acls_needs_read_on_the_topic_and_its_group(broker, acls):
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
    conf = {"bootstrap.servers": broker.address("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": BOB, "sasl.password": PASSWORDS[BOB]}

    def produce_once() -> object:
        reports = []
        producer = Producer({**conf, "message.timeout.ms": 5000})
        try:
            producer.produce(TOPIC, b"bob's", partition=1, on_delivery=lambda err, msg: reports.append(err))
            producer.flush(10)
        except KafkaException as exc:   # librdkafka may refuse at once: it remembers the topic's error
            reports.append(exc.args[0])
        del producer
        return reports[0] if reports else "no report"

    refused = produce_once()
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    acls(allow(BOB, Operation.WRITE), allow(BOB, Operation.READ), allow(BOB, Operation.READ, G, "bob-group"))
    assert produce_once() is None
    consumer = Consumer({**conf, "group.id": "bob-group", "auto.offset.reset": "earliest"})
    consumer.subscribe([TOPIC])
    got, deadline = [], time.monotonic() + 20
    while b"bob's" not in got and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m.value())
    consumer.close()
    assert b"bob's" in got


def test_allow_everyone_if_no_acl_found_opens_only_resources_no_acl_names(tmp_path):
    b = BrokerProcess(str(tmp_path / "data"), listeners="SASL_PLAINTEXT", authorization="acls",
                      super_users="User:admin", allow_everyone_if_no_acl_found=True,
                      bootstrap_user=f"{ADMIN}:{PASSWORDS[ADMIN]}").start()
    try:
        with admin_client(b) as client:
            client.alter_scram_user(ALICE, "SCRAM-SHA-512", PASSWORDS[ALICE])
            client.create_topic(TOPIC, 2)
            client.create_topic("guarded", 1)
            client.create_acls([allow(BOB, Operation.WRITE, name="guarded")])
        assert partition_error(call(b, ALICE, "Produce", 9, produce_request())) == E.NONE   # no ACL names it
        guarded = raw_kafka.produce_request("guarded", 0, pstream._core.encode_batch([(None, b"v", [], None)]))
        assert partition_error(call(b, ALICE, "Produce", 9, guarded)) == E.TOPIC_AUTHORIZATION_FAILED
    finally:
        stop_broker(b)


def test_a_client_certificate_principal_is_what_acls_name(tmp_path):
    import trustme
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    for cn in ("app-one", "app-two"):
        cert = ca.issue_cert(f"{cn}@example.com", common_name=cn, organization_unit_name="payments")
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / f"{cn}.pem"))
        cert.private_key_pem.write_to_path(str(tmp_path / f"{cn}.key"))
    b = BrokerProcess(str(tmp_path / "data"), listeners="SSL,PLAINTEXT", ssl_certfile=str(tmp_path / "server.pem"),
                      ssl_cafile=str(tmp_path / "ca.pem"), ssl_client_auth="required",
                      ssl_principal_mapping_rules="RULE:^CN=([^,]+),OU=payments.*$/$1/,DEFAULT",
                      authorization="acls", super_users="User:ANONYMOUS").start()   # the PLAINTEXT one administers
    try:
        with KafkaClient(b.address("PLAINTEXT")) as admin:
            admin.create_topic(TOPIC, 2)
            admin.create_acls([allow("app-one", Operation.WRITE)])

        def produce_as(cn):
            security = Security("SSL", cafile=str(tmp_path / "ca.pem"), certfile=str(tmp_path / f"{cn}.pem"),
                                keyfile=str(tmp_path / f"{cn}.key"))
            with KafkaClient(b.bootstrap, security=security) as client:
                return partition_error(client.any_connection().call("Produce", 9, produce_request()))

        assert produce_as("app-one") == E.NONE
        assert produce_as("app-two") == E.TOPIC_AUTHORIZATION_FAILED
    finally:
        stop_broker(b)


def test_a_kip848_member_may_subscribe_only_to_topics_it_may_describe(broker, acls):
    acls(allow(ALICE, Operation.READ, G, GROUP))
    assert call(broker, ALICE, "ConsumerGroupHeartbeat", 1, heartbeat848_request()).error_code == \
        E.TOPIC_AUTHORIZATION_FAILED


def test_a_kip848_regex_selects_only_topics_the_member_may_describe(broker, acls):
    with admin_client(broker) as client:
        client.create_topic("rx-open", 1)
        client.create_topic("rx-closed", 1)
    acls(allow(ALICE, Operation.READ, G, "rx-group"), allow(ALICE, Operation.DESCRIBE, name="rx-open"))
    req = heartbeat848_request()
    req.group_id, req.subscribed_topic_names, req.subscribed_topic_regex = "rx-group", None, "rx-.*"
    with admin_client(broker, ALICE) as client:
        conn = client.any_connection()
        resp = conn.call("ConsumerGroupHeartbeat", 1, req)
        assert resp.error_code == 0, resp
        ids = {t.topic_id for t in resp.assignment.topic_partitions}
        topics = {t.name: t.topic_id for t in conn.call("Metadata", 12, raw_kafka.metadata_request(
            ["rx-open"], version=12)).topics}
        assert ids == {topics["rx-open"]}
        leave = heartbeat848_request()
        leave.group_id, leave.member_epoch, leave.topic_partitions = "rx-group", -1, None
        leave.rebalance_timeout_ms, leave.subscribed_topic_names = -1, None
        conn.call("ConsumerGroupHeartbeat", 1, leave)
