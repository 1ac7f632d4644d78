"""The generated message codecs: round trips for every message at every version, tagged
fields, byte-exact vectors worked out by hand from the Kafka protocol guide, and agreement
with kafka-python's two independent protocol implementations (its JSON-driven codec in
kafka.protocol.* and its hand-written schemas in kafka.protocol.old)."""

from __future__ import annotations

import importlib
import importlib.util
import io
import pkgutil
import re
import uuid
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


import _support as S  # noqa: E402  (tests/protocol is on sys.path: see conftest.py)

from pstream.protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from pstream.protocol.messages.fetch import FetchRequest, FetchResponse
from pstream.protocol.messages.join_group import JoinGroupRequest
from pstream.protocol.messages.metadata import MetadataRequest, MetadataResponse
from pstream.protocol.messages.produce import ProduceRequest
from pstream.protocol.messages.request_header import RequestHeader
from pstream.protocol.messages.response_header import ResponseHeader
from pstream.protocol.primitives import ProtocolError

PAIRS = S.all_message_versions()
PAIR_IDS = [f"{n}-v{v}" for n, v in PAIRS]
PROPERTY = settings(max_examples=15, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The cross-checks compare layouts that the round trip already exercised: fewer examples.
CROSS_CHECK = settings(PROPERTY, max_examples=8)

read, write, normal = S.read, S.write, S.normal


def decode_all(cls, version, data):
    """Decodes and checks that the reader consumed every byte."""
    obj, r = read(cls, version, data)
    assert r.remaining() == 0, f"{r.remaining()} bytes left unread"
    return obj


# --- round trips -----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "version"), PAIRS, ids=PAIR_IDS)
@PROPERTY
@given(data=st.data())
def test_round_trip_preserves_every_field(name, version, data):
    cls = S.message_class(name)
    obj = data.draw(S.instance_strategy(name, version), label=name)
    encoded = write(cls, version, obj)
    back = decode_all(cls, version, encoded)
    assert normal(back) == normal(obj)
    # The encoding is canonical: re-encoding the decoded message gives the same bytes.
    assert write(cls, version, back) == encoded


@pytest.mark.parametrize(("name", "version"), PAIRS, ids=PAIR_IDS)
def test_default_message_round_trips(name, version):
    cls = S.message_class(name)
    assert normal(decode_all(cls, version, write(cls, version, cls()))) == normal(cls())


def _nullable_arrays():
    """(message, struct, field) for every array field that is nullable in some version."""
    out = []
    for name in S.all_message_names():
        spec = S.schema(name)
        structs = S._structs(spec)
        structs[name] = spec["fields"]
        for sname, fields in structs.items():
            for f in fields:
                if f["type"].startswith("[]") and S.Versions(f.get("nullableVersions")).first is not None:
                    out.append((name, sname, f["name"]))
    return out


NULLABLE_ARRAYS = _nullable_arrays()


@pytest.mark.parametrize(("name", "struct", "field"), NULLABLE_ARRAYS,
                         ids=[f"{n}.{s}.{f}" if n != s else f"{n}.{f}" for n, s, f in NULLABLE_ARRAYS])
def test_constructor_keeps_none_for_a_nullable_array(name, struct, field):
    # None and [] mean different things on the wire (e.g. MetadataRequest topics: all topics
    # vs no topics), so passing None to the constructor must not turn it into [].
    top = S.message_class(name)
    cls = top if struct == name else getattr(top, struct)
    attr = S.snake(field)
    assert getattr(cls(**{attr: None}), attr) is None


# --- tagged fields ---------------------------------------------------------------------

def test_unknown_top_level_tag_is_skipped():
    # ApiVersionsRequest v3: compact string "a", compact string "b", then one tagged field:
    # tag 99, size 3, three bytes pstream does not know.
    data = b"\x02a" + b"\x02b" + b"\x01" + b"\x63\x03" + b"\xaa\xbb\xcc"
    obj = decode_all(ApiVersionsRequest, 3, data)
    assert (obj.client_software_name, obj.client_software_version) == ("a", "b")


def test_unknown_tags_in_a_nested_struct_and_between_known_tags_are_skipped():
    # ApiVersionsResponse v3: error 0; api_keys = [ (18, 0, 4) with unknown tag 99 ];
    # throttle 0; top-level tags: 1 (FinalizedFeaturesEpoch = 7), 50 (unknown), 3 (ZkMigrationReady).
    data = (b"\x00\x00" + b"\x02" + b"\x00\x12\x00\x00\x00\x04" + b"\x01\x63\x01\xff"
            + b"\x00\x00\x00\x00"
            + b"\x03" + b"\x01\x08" + (7).to_bytes(8, "big") + b"\x32\x02zz" + b"\x03\x01\x01")
    obj = decode_all(ApiVersionsResponse, 3, data)
    assert [(k.api_key, k.min_version, k.max_version) for k in obj.api_keys] == [(18, 0, 4)]
    assert obj.finalized_features_epoch == 7
    assert obj.zk_migration_ready is True
    assert obj.supported_features == [] and obj.finalized_features == []


def test_tagged_field_longer_than_its_declared_size_is_refused():
    # ZkMigrationReady (tag 3, a bool) declared as 2 bytes: the bool reads only one.
    data = b"\x00\x00" + b"\x01" + b"\x00\x00\x00\x00" + b"\x01" + b"\x03\x02\x01\x00"
    with pytest.raises(ProtocolError):
        read(ApiVersionsResponse, 3, data)


def test_tagged_field_running_past_the_end_is_refused():
    data = b"\x02a\x02b" + b"\x01" + b"\x63\x09" + b"\xaa"
    with pytest.raises(ProtocolError):
        read(ApiVersionsRequest, 3, data)


def test_tagged_fields_are_written_only_when_not_default_and_in_tag_order():
    resp = ApiVersionsResponse(api_keys=[ApiVersionsResponse.ApiVersion(18, 0, 4)])
    base = b"\x00\x00" + b"\x02" + b"\x00\x12\x00\x00\x00\x04\x00" + b"\x00\x00\x00\x00"
    assert write(ApiVersionsResponse, 3, resp) == base + b"\x00"
    resp.zk_migration_ready = True
    resp.finalized_features_epoch = 7
    assert write(ApiVersionsResponse, 3, resp) == (
        base + b"\x02" + b"\x01\x08" + (7).to_bytes(8, "big") + b"\x03\x01\x01")


# --- byte-exact vectors, worked out from the protocol guide -----------------------------

def test_request_header_v1_and_v2_vectors():
    h = RequestHeader(request_api_key=18, request_api_version=3, correlation_id=1, client_id="x")
    # int16 key, int16 version, int32 correlation id, int16-length client id.
    v1 = b"\x00\x12" + b"\x00\x03" + b"\x00\x00\x00\x01" + b"\x00\x01x"
    assert write(RequestHeader, 1, h) == v1
    # v2 keeps the old-style client id (flexibleVersions "none") and adds empty tagged fields.
    assert write(RequestHeader, 2, h) == v1 + b"\x00"
    assert normal(decode_all(RequestHeader, 2, v1 + b"\x00")) == normal(h)
    h.client_id = None
    assert write(RequestHeader, 2, h) == v1[:8] + b"\xff\xff" + b"\x00"
    assert write(RequestHeader, 0, h) == v1[:8]


def test_response_header_v0_and_v1_vectors():
    h = ResponseHeader(correlation_id=7)
    assert write(ResponseHeader, 0, h) == b"\x00\x00\x00\x07"
    assert write(ResponseHeader, 1, h) == b"\x00\x00\x00\x07\x00"


def test_metadata_request_v1_null_topics_differs_from_empty_topics():
    all_topics = MetadataRequest()
    all_topics.topics = None   # set after construction: see test_constructor_keeps_none_for_a_nullable_array
    assert write(MetadataRequest, 1, all_topics) == b"\xff\xff\xff\xff"
    assert write(MetadataRequest, 1, MetadataRequest(topics=[])) == b"\x00\x00\x00\x00"
    one = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="t")])
    assert write(MetadataRequest, 1, one) == b"\x00\x00\x00\x01\x00\x01t"
    assert decode_all(MetadataRequest, 1, b"\xff\xff\xff\xff").topics is None
    assert decode_all(MetadataRequest, 1, b"\x00\x00\x00\x00").topics == []


def test_metadata_request_v0_leaves_later_fields_at_their_defaults():
    obj = decode_all(MetadataRequest, 0, b"\x00\x00\x00\x00")
    assert obj.topics == [] and obj.allow_auto_topic_creation is True


def test_metadata_request_v9_and_v12_vectors():
    # v9: compact nullable array (0 = null), AllowAutoTopicCreation, IncludeCluster..., IncludeTopic..., tags.
    all_topics = MetadataRequest()
    all_topics.topics = None
    assert write(MetadataRequest, 9, all_topics) == b"\x00\x01\x00\x00\x00"
    assert write(MetadataRequest, 9, MetadataRequest(topics=[])) == b"\x01\x01\x00\x00\x00"
    # v12: topic id uuid, nullable compact name (0 = null), topic tags; no IncludeCluster... (8-10).
    req = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(topic_id=uuid.UUID(int=5), name=None)],
                          allow_auto_topic_creation=False, include_topic_authorized_operations=True)
    expected = b"\x02" + (5).to_bytes(16, "big") + b"\x00" + b"\x00" + b"\x00\x01\x00"
    assert write(MetadataRequest, 12, req) == expected
    assert normal(decode_all(MetadataRequest, 12, expected)) == normal(req)


def test_api_versions_response_v0_vector():
    resp = ApiVersionsResponse(error_code=0, api_keys=[ApiVersionsResponse.ApiVersion(18, 0, 4),
                                                       ApiVersionsResponse.ApiVersion(3, 0, 12)])
    expected = b"\x00\x00" + b"\x00\x00\x00\x02" + b"\x00\x12\x00\x00\x00\x04" + b"\x00\x03\x00\x00\x00\x0c"
    assert write(ApiVersionsResponse, 0, resp) == expected
    assert normal(decode_all(ApiVersionsResponse, 0, expected)) == normal(resp)


def _produce(records):
    P = ProduceRequest
    return P(transactional_id=None, acks=-1, timeout_ms=30000, topic_data=[
        P.TopicProduceData(name="t", partition_data=[P.PartitionProduceData(index=0, records=records)])])


def test_produce_request_v3_and_v9_vectors():
    v3 = (b"\xff\xff" + b"\xff\xff" + b"\x00\x00\x75\x30" + b"\x00\x00\x00\x01" + b"\x00\x01t"
          + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x03abc")
    assert write(ProduceRequest, 3, _produce(b"abc")) == v3
    v9 = (b"\x00" + b"\xff\xff" + b"\x00\x00\x75\x30" + b"\x02" + b"\x02t" + b"\x02" + b"\x00\x00\x00\x00"
          + b"\x04abc" + b"\x00" + b"\x00" + b"\x00")
    assert write(ProduceRequest, 9, _produce(b"abc")) == v9
    back = decode_all(ProduceRequest, 9, v9)
    assert isinstance(back.topic_data[0].partition_data[0].records, memoryview)
    assert normal(back) == normal(_produce(b"abc"))
    assert write(ProduceRequest, 3, _produce(None)).endswith(b"\x00\x00\x00\x00\xff\xff\xff\xff")


def test_large_records_are_written_as_their_own_chunk_without_copying():
    from pstream.protocol.primitives import Writer

    records = bytes(range(256)) * 4
    w = Writer()
    ProduceRequest.WRITERS[3 - ProduceRequest.MIN_VERSION](w, _produce(records))
    assert any(c is records for c in w.chunks())
    back = decode_all(ProduceRequest, 3, w.getvalue())
    assert bytes(back.topic_data[0].partition_data[0].records) == records


# --- kafka-python's JSON-driven codec (kafka.protocol.*) ---------------------------------

def _kafka_python_json_classes() -> dict:
    """name -> kafka-python message class; empty (so the coverage test below fails, while the
    round trips still run) if kafka-python, a test dependency, is not installed."""
    found = {}
    with warnings.catch_warnings():
        # kafka-python's schema loader uses importlib.resources' deprecated API.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import kafka.protocol as kp
            from kafka.protocol.api_message import ApiMessage
        except ImportError:
            return {}
        for m in pkgutil.walk_packages(kp.__path__, "kafka.protocol."):
            if ".old" in m.name or ".schemas" in m.name or m.name.endswith("generate_stubs"):
                continue
            mod = importlib.import_module(m.name)
            for v in vars(mod).values():
                if isinstance(v, type) and issubclass(v, ApiMessage) and getattr(v, "_json", None):
                    found[v.name] = v
    return found


KP_JSON = _kafka_python_json_classes()
# Versions both sides define (kafka-python's schemas are from a newer Kafka).
KP_JSON_PAIRS = [(n, v) for n, v in PAIRS
                 if n in KP_JSON and KP_JSON[n].valid_versions[0] <= v <= KP_JSON[n].valid_versions[1]]


def test_kafka_python_json_codec_shares_most_versions():
    # Guards the cross-check below against silently checking nothing (kafka-python missing,
    # or its classes moved).
    assert len(KP_JSON_PAIRS) > 300


@pytest.mark.parametrize(("name", "version"), KP_JSON_PAIRS, ids=[f"{n}-v{v}" for n, v in KP_JSON_PAIRS])
@CROSS_CHECK
@given(data=st.data())
def test_kafka_python_json_codec_decodes_and_reencodes_pstream_bytes_identically(name, version, data):
    cls, kcls = S.message_class(name), KP_JSON[name]
    obj = data.draw(S.instance_strategy(name, version), label=name)
    if name == "ApiVersionsResponse":
        obj.error_code = 0   # kafka-python reads an error response as v0 (the broker's fallback)
    encoded = write(cls, version, obj)
    theirs = kcls.decode(encoded, version=version)
    theirs._header = None    # kafka-python's encode() expects the slot that decode() leaves unset
    assert bytes(theirs.encode(version=version)) == encoded


def test_kafka_python_json_codec_produce_v9_decodes_in_pstream():
    from kafka.protocol.producer import ProduceRequest as KP

    T = KP.TopicProduceData
    theirs = KP(transactional_id="tx", acks=1, timeout_ms=1500, topic_data=[
        T(name="t", partition_data=[T.PartitionProduceData(index=2, records=b"batch")])])
    ours = decode_all(ProduceRequest, 9, bytes(theirs.encode(version=9)))
    assert (ours.transactional_id, ours.acks, ours.timeout_ms) == ("tx", 1, 1500)
    part = ours.topic_data[0].partition_data[0]
    assert (ours.topic_data[0].name, part.index, bytes(part.records)) == ("t", 2, b"batch")


def test_kafka_python_json_codec_fetch_v13_decodes_in_pstream():
    from kafka.protocol.consumer import FetchRequest as KF

    tid = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    theirs = KF(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=1 << 20, isolation_level=1,
                session_id=0, session_epoch=-1,
                topics=[KF.FetchTopic(topic_id=tid, partitions=[KF.FetchTopic.FetchPartition(
                    partition=3, current_leader_epoch=4, fetch_offset=42, last_fetched_epoch=-1,
                    log_start_offset=-1, partition_max_bytes=1024)])],
                forgotten_topics_data=[], rack_id="r1")
    ours = decode_all(FetchRequest, 13, bytes(theirs.encode(version=13)))
    assert (ours.max_wait_ms, ours.isolation_level, ours.rack_id) == (500, 1, "r1")
    p = ours.topics[0].partitions[0]
    assert ours.topics[0].topic_id == tid
    assert (p.partition, p.current_leader_epoch, p.fetch_offset, p.partition_max_bytes) == (3, 4, 42, 1024)


def test_kafka_python_request_header_decodes_in_pstream():
    from kafka.protocol.api_header import RequestHeader as KH

    h = KH(request_api_key=3, request_api_version=12, correlation_id=99, client_id="client")
    for version, flexible in ((1, False), (2, True)):
        ours = decode_all(RequestHeader, version, bytes(h.encode(flexible=flexible)))
        assert (ours.request_api_key, ours.request_api_version, ours.correlation_id, ours.client_id) == (
            3, 12, 99, "client")


# --- kafka-python's hand-written schemas (kafka.protocol.old) ----------------------------

def _kafka_python_old_classes() -> dict:
    try:
        from kafka.protocol import old
        from kafka.protocol.old.struct import Struct
    except ImportError:
        return {}

    found = {}
    for m in pkgutil.iter_modules(old.__path__):
        mod = importlib.import_module(f"kafka.protocol.old.{m.name}")
        for k, v in vars(mod).items():
            match = re.fullmatch(r"(\w+(?:Request|Response))_v(\d+)", k)
            if match and isinstance(v, type) and issubclass(v, Struct):
                found[(match.group(1), int(match.group(2)))] = v
    return found


KP_OLD = _kafka_python_old_classes()
# kafka-python's old DescribeLogDirsRequest_v0 declares Partitions as int32, not []int32; its
# DescribeAcls v2 is not flexible, which Kafka's schema makes it ("flexibleVersions": "2+").
KP_OLD_WRONG = {("DescribeLogDirsRequest", 0), ("DescribeAclsRequest", 2), ("DescribeAclsResponse", 2)}
KP_OLD_PAIRS = [p for p in PAIRS if p in KP_OLD and p not in KP_OLD_WRONG]


def test_kafka_python_old_codec_shares_many_versions():
    assert len(KP_OLD_PAIRS) > 200


@pytest.mark.parametrize(("name", "version"), KP_OLD_PAIRS, ids=[f"{n}-v{v}" for n, v in KP_OLD_PAIRS])
@CROSS_CHECK
@given(data=st.data())
def test_kafka_python_old_codec_decodes_and_reencodes_pstream_bytes_identically(name, version, data):
    cls, kcls = S.message_class(name), KP_OLD[(name, version)]
    obj = data.draw(S.instance_strategy(name, version), label=name)
    if name == "ApiVersionsResponse":
        obj.error_code = 0   # kafka-python reads an error response as v0 (the broker's fallback)
    encoded = write(cls, version, obj)
    stream = io.BytesIO(encoded)
    theirs = kcls.decode(stream)
    assert stream.tell() == len(encoded), "kafka-python read a different length"
    assert kcls.encode(theirs) == encoded


def test_kafka_python_old_metadata_request_v1_decodes_in_pstream():
    from kafka.protocol.old.metadata import MetadataRequest_v1

    assert decode_all(MetadataRequest, 1, MetadataRequest_v1(topics=None).encode()).topics is None
    ours = decode_all(MetadataRequest, 1, MetadataRequest_v1(topics=["a", "bc"]).encode())
    assert [t.name for t in ours.topics] == ["a", "bc"]


def test_kafka_python_old_produce_request_v3_decodes_in_pstream():
    from kafka.protocol.old.produce import ProduceRequest_v3

    theirs = ProduceRequest_v3(transactional_id=None, acks=-1, timeout_ms=1000,
                               topic_data=[("t", [(0, b"abc"), (1, None)])])
    ours = decode_all(ProduceRequest, 3, theirs.encode())
    assert (ours.transactional_id, ours.acks, ours.timeout_ms) == (None, -1, 1000)
    parts = ours.topic_data[0].partition_data
    got = [(p.index, None if p.records is None else bytes(p.records)) for p in parts]
    assert got == [(0, b"abc"), (1, None)]


def test_kafka_python_old_fetch_request_v4_decodes_in_pstream():
    from kafka.protocol.old.fetch import FetchRequest_v4

    theirs = FetchRequest_v4(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=1 << 20,
                             isolation_level=1, topics=[("t", [(0, 42, 1024)])])
    ours = decode_all(FetchRequest, 4, theirs.encode())
    assert (ours.replica_id, ours.max_wait_ms, ours.min_bytes, ours.max_bytes, ours.isolation_level) == (
        -1, 500, 1, 1 << 20, 1)
    p = ours.topics[0].partitions[0]
    assert (ours.topics[0].topic, p.partition, p.fetch_offset, p.partition_max_bytes) == ("t", 0, 42, 1024)


def test_kafka_python_old_join_group_request_v5_decodes_in_pstream():
    from kafka.protocol.old.group import JoinGroupRequest_v5

    theirs = JoinGroupRequest_v5(group_id="g", session_timeout_ms=10000, rebalance_timeout_ms=30000,
                                 member_id="", group_instance_id=None, protocol_type="consumer",
                                 protocols=[("range", b"\x00\x01meta")])
    ours = decode_all(JoinGroupRequest, 5, theirs.encode())
    assert (ours.group_id, ours.session_timeout_ms, ours.rebalance_timeout_ms, ours.member_id,
            ours.group_instance_id, ours.protocol_type) == ("g", 10000, 30000, "", None, "consumer")
    assert [(p.name, bytes(p.metadata)) for p in ours.protocols] == [("range", b"\x00\x01meta")]


def test_kafka_python_old_api_versions_response_v3_unknown_tag_decodes_in_pstream():
    from kafka.protocol.old.api_versions import ApiVersionsResponse_v3

    theirs = ApiVersionsResponse_v3(error_code=0, api_keys=[(18, 0, 4, {})], throttle_time_ms=5,
                                    tags={3: b"\x01", 60: b"zz"})
    ours = decode_all(ApiVersionsResponse, 3, theirs.encode())
    assert [(k.api_key, k.min_version, k.max_version) for k in ours.api_keys] == [(18, 0, 4)]
    assert (ours.throttle_time_ms, ours.zk_migration_ready) == (5, True)


def test_pstream_fetch_response_v4_decodes_in_kafka_python_old():
    from kafka.protocol.old.fetch import FetchResponse_v4

    R = FetchResponse
    ours = R(throttle_time_ms=5, responses=[R.FetchableTopicResponse(topic="t", partitions=[R.PartitionData(
        partition_index=0, error_code=0, high_watermark=10, last_stable_offset=9,
        aborted_transactions=[R.AbortedTransaction(producer_id=7, first_offset=3)], records=b"abc")])])
    theirs = FetchResponse_v4.decode(write(FetchResponse, 4, ours))
    assert theirs.throttle_time_ms == 5
    assert theirs.responses == [("t", [(0, 0, 10, 9, [(7, 3)], b"abc")])]


def test_pstream_metadata_response_v1_decodes_in_kafka_python_old():
    from kafka.protocol.old.metadata import MetadataResponse_v1

    R = MetadataResponse
    ours = R(brokers=[R.MetadataResponseBroker(node_id=1, host="h", port=9092, rack=None)], controller_id=1,
             topics=[R.MetadataResponseTopic(error_code=0, name="t", is_internal=False, partitions=[
                 R.MetadataResponsePartition(error_code=0, partition_index=0, leader_id=1,
                                             replica_nodes=[1], isr_nodes=[1])])])
    theirs = MetadataResponse_v1.decode(write(MetadataResponse, 1, ours))
    assert theirs.brokers == [(1, "h", 9092, None)]
    assert theirs.controller_id == 1
    assert theirs.topics == [(0, "t", False, [(0, 0, 1, [1], [1])])]
