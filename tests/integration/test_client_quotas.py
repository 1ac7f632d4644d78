"""Client quotas (KIP-546): AlterClientQuotas stores the quotas of users, client-ids, both, and
ips (defaults included), DescribeClientQuotas finds them through exact, default and any-name
filters, strict or not, and both refuse what Kafka 3.9.2 refuses with its codes and messages
(each expectation below was asked of Kafka 3.9.2 itself). Quotas survive a restart."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest

from pstream.protocol.error_codes import ErrorCode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import raw_kafka  # noqa: E402

A, _ = raw_kafka.codecs("AlterClientQuotas")
D, _ = raw_kafka.codecs("DescribeClientQuotas")
EXACT, DEFAULT, ANY = 0, 1, 2
INVALID_REQUEST = ErrorCode.INVALID_REQUEST


def alter(conn, *entries, validate_only=False, version=1) -> list:
    """[(error code, message, [(type, name)])] of AlterClientQuotas entries ([(type, name)],
    {key: value, or None to remove})."""
    request = A(validate_only=validate_only, entries=[
        A.EntryData(entity=[A.EntityData(entity_type=t, entity_name=n) for t, n in entity],
                    ops=[A.OpData(key=k, value=0.0 if v is None else v, remove=v is None) for k, v in ops])
        for entity, ops in entries])
    return [(e.error_code, e.error_message, [(x.entity_type, x.entity_name) for x in e.entity])
            for e in conn.call("AlterClientQuotas", version, request).entries]


def set_quotas(conn, entity, **values) -> None:
    assert alter(conn, (entity, list(values.items()))) == [(0, None, entity)]


def describe(conn, *components, strict=False, version=1):
    """{((type, name), ...): {key: value}} of the entries matching [(type, match type, match)];
    (error code, message) when refused (Kafka then sends no entries at all)."""
    request = D(strict=strict, components=[D.ComponentData(entity_type=t, match_type=m, match=n)
                                           for t, m, n in components])
    response = conn.call("DescribeClientQuotas", version, request)
    if response.error_code:
        assert response.entries is None
        return response.error_code, response.error_message
    assert response.error_message == ""
    return {tuple((x.entity_type, x.entity_name) for x in e.entity): {v.key: v.value for v in e.values}
            for e in response.entries}


ALICE, BOB = [("user", "alice")], [("user", "bob")]
USER_DEFAULT, CLIENT, CLIENT_DEFAULT = [("user", None)], [("client-id", "app")], [("client-id", None)]
USER_CLIENT = [("client-id", "app"), ("user", "alice")]          # Kafka's order: client-id first
DEFAULTS = [("client-id", None), ("user", None)]
ALICE_ANY_CLIENT = [("client-id", None), ("user", "alice")]
IP, IP_DEFAULT = [("ip", "10.0.0.1")], [("ip", None)]


@pytest.fixture
def conn(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as c:
        yield c


def _populate(conn) -> dict:
    quotas = {
        tuple(ALICE): {"producer_byte_rate": 1024.0, "request_percentage": 12.5},
        tuple(USER_DEFAULT): {"consumer_byte_rate": 2048.0},
        tuple(CLIENT): {"producer_byte_rate": 100.0},
        tuple(CLIENT_DEFAULT): {"controller_mutation_rate": 3.5},
        tuple(USER_CLIENT): {"consumer_byte_rate": 500.0},
        tuple(DEFAULTS): {"consumer_byte_rate": 501.0},
        tuple(ALICE_ANY_CLIENT): {"consumer_byte_rate": 502.0},
        tuple(IP): {"connection_creation_rate": 10.0},
        tuple(IP_DEFAULT): {"connection_creation_rate": 20.0},
    }
    for entity, values in quotas.items():
        set_quotas(conn, list(entity), **values)
    return quotas


# --- set, describe, remove -------------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 1])
def test_each_entity_kind_and_default_is_stored_and_described(conn, version):
    quotas = _populate(conn)
    assert describe(conn, version=version) == quotas
    assert describe(conn, ("ip", EXACT, "10.0.0.1"), version=version) == {tuple(IP): quotas[tuple(IP)]}


def test_removing_keys_drops_them_and_an_entity_with_none_left_disappears(conn):
    set_quotas(conn, ALICE, producer_byte_rate=1.0, consumer_byte_rate=2.0)
    assert alter(conn, (ALICE, [("producer_byte_rate", None)])) == [(0, None, ALICE)]
    assert describe(conn) == {tuple(ALICE): {"consumer_byte_rate": 2.0}}
    # set and remove in one entry; a removal of a key never set, or unknown, is fine (not checked)
    ops = [("request_percentage", 7.0), ("consumer_byte_rate", None), ("bogus", None)]
    assert alter(conn, (ALICE, ops)) == [(0, None, ALICE)]
    assert describe(conn) == {tuple(ALICE): {"request_percentage": 7.0}}
    assert alter(conn, (ALICE, [("request_percentage", None)])) == [(0, None, ALICE)]
    assert describe(conn) == {}
    assert alter(conn, (IP_DEFAULT, [("connection_creation_rate", None)])) == [(0, None, IP_DEFAULT)]


def test_setting_a_key_again_replaces_its_value(conn):
    set_quotas(conn, CLIENT, producer_byte_rate=10.0)
    set_quotas(conn, CLIENT, producer_byte_rate=20.0, consumer_byte_rate=30.0)
    assert describe(conn) == {tuple(CLIENT): {"producer_byte_rate": 20.0, "consumer_byte_rate": 30.0}}


# --- filters ---------------------------------------------------------------------------------

def _keys(*entities):
    return {tuple(e) for e in entities}


@pytest.mark.parametrize("components, strict, expected", [
    ([], False, _keys(ALICE, USER_DEFAULT, CLIENT, CLIENT_DEFAULT, USER_CLIENT, DEFAULTS, ALICE_ANY_CLIENT,
                      IP, IP_DEFAULT)),
    ([], True, set()),
    ([("user", ANY, None)], False, _keys(ALICE, USER_DEFAULT, USER_CLIENT, DEFAULTS, ALICE_ANY_CLIENT)),
    ([("user", ANY, None)], True, _keys(ALICE, USER_DEFAULT)),          # any name includes the default
    ([("user", EXACT, "alice")], False, _keys(ALICE, USER_CLIENT, ALICE_ANY_CLIENT)),
    ([("user", EXACT, "alice")], True, _keys(ALICE)),
    ([("user", DEFAULT, None)], False, _keys(USER_DEFAULT, DEFAULTS)),
    ([("user", DEFAULT, None)], True, _keys(USER_DEFAULT)),
    ([("client-id", ANY, None)], False,
     _keys(CLIENT, CLIENT_DEFAULT, USER_CLIENT, DEFAULTS, ALICE_ANY_CLIENT)),
    ([("user", ANY, None), ("client-id", ANY, None)], False, _keys(USER_CLIENT, DEFAULTS, ALICE_ANY_CLIENT)),
    ([("user", EXACT, "alice"), ("client-id", DEFAULT, None)], True, _keys(ALICE_ANY_CLIENT)),
    ([("user", EXACT, "nobody")], False, set()),
    ([("ip", ANY, None)], False, _keys(IP, IP_DEFAULT)),
    ([("ip", DEFAULT, None)], False, _keys(IP_DEFAULT)),
    ([("ip", EXACT, "10.0.0.1")], True, _keys(IP)),
])
def test_filters_match_as_kafka_does(conn, components, strict, expected):
    _populate(conn)
    assert set(describe(conn, *components, strict=strict)) == expected


@pytest.mark.parametrize("components, error", [
    ([("user", ANY, None), ("user", EXACT, "a")],
     (INVALID_REQUEST, "Entity type user cannot appear more than once in the filter.")),
    ([("", ANY, None)], (INVALID_REQUEST, "Invalid empty entity type.")),
    ([("group", ANY, None)], (ErrorCode.UNSUPPORTED_VERSION, "Unsupported entity type group")),
    ([("group", EXACT, None)], (ErrorCode.UNSUPPORTED_VERSION, "Unsupported entity type group")),
    ([("user", EXACT, None)],
     (INVALID_REQUEST, "Request specified MATCH_TYPE_EXACT, but set match string to null.")),
    ([("user", DEFAULT, "x")],
     (INVALID_REQUEST, "Request specified MATCH_TYPE_DEFAULT, but also specified a match string.")),
    ([("user", ANY, "x")],
     (INVALID_REQUEST, "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.")),
    ([("user", 3, None)], (INVALID_REQUEST, "Unknown match type 3")),
    ([("client-id", EXACT, "c"), ("ip", DEFAULT, None)],
     (INVALID_REQUEST, "Invalid entity filter component combination. IP filter component should not be used "
                       "with user or clientId filter component.")),
])
@pytest.mark.parametrize("version", [0, 1])
def test_a_bad_filter_is_refused_with_kafkas_error_and_no_entries(conn, components, error, version):
    assert describe(conn, *components, version=version) == error


# --- validate_only, refusals ------------------------------------------------------------------

def test_validate_only_checks_but_changes_nothing(conn):
    assert alter(conn, (ALICE, [("producer_byte_rate", 5.0)]), validate_only=True) == [(0, None, ALICE)]
    assert alter(conn, (ALICE, [("bogus", 5.0)]), validate_only=True) \
        == [(INVALID_REQUEST, "Invalid configuration key bogus", ALICE)]
    assert describe(conn) == {}


@pytest.mark.parametrize("entity, ops, message", [
    (ALICE, [("foo", 1.0)], "Invalid configuration key foo"),
    (ALICE, [("connection_creation_rate", 1.0)], "Invalid configuration key connection_creation_rate"),
    (ALICE, [("SCRAM-SHA-256", 1.0)], "Invalid configuration key SCRAM-SHA-256"),
    (IP, [("producer_byte_rate", 1.0)], "Invalid configuration key producer_byte_rate"),
    (ALICE, [("producer_byte_rate", 1.5)], "producer_byte_rate cannot be a fractional value."),
    (ALICE, [("producer_byte_rate", 0.0)], "Quota producer_byte_rate must be greater than 0"),
    (ALICE, [("request_percentage", -1.0)], "Quota request_percentage must be greater than 0"),
    (ALICE, [("producer_byte_rate", math.inf)],
     "Proposed value for producer_byte_rate is too large for a LONG."),
    (ALICE, [("consumer_byte_rate", 1e19)], "Proposed value for consumer_byte_rate is too large for a LONG."),
    (IP, [("connection_creation_rate", 1.5)], "connection_creation_rate cannot be a fractional value."),
    (IP, [("connection_creation_rate", 2.0**31)],
     "Proposed value for connection_creation_rate is too large for an INT."),
    (ALICE, [("producer_byte_rate", 5.0), ("bogus", 1.0)], "Invalid configuration key bogus"),   # all or none
    (ALICE, [("zzz", 1.0), ("aaa", 1.0)], "Invalid configuration key aaa"),       # Kafka's hash-map order
    ([("ip", "1.2.3.4"), ("user", "x")],
     [("connection_creation_rate", 1.0)],
     "Invalid quota entity combination, IP entity shouldnot be combined with User or ClientId"),
    ([("user", "a"), ("ip", "1.1.1.1")], [("bogus", 1.0)],
     "Invalid quota entity combination, IP entity shouldnot be combined with User or ClientId"),
    ([], [("producer_byte_rate", 1.0)], "Invalid empty client quota entity"),
    ([("group", "g")], [("producer_byte_rate", 1.0)], "Unhandled client quota entity type: group"),
    ([("user", "")], [("producer_byte_rate", 1.0)], "Empty user not supported"),
    ([("client-id", "")], [("producer_byte_rate", 1.0)], "Empty client-id not supported"),
    ([("ip", "")], [("connection_creation_rate", 1.0)], "Empty ip not supported"),
    ([("ip", "not an ip")], [("connection_creation_rate", 1.0)],
     "not an ip is not a valid IP or resolvable host."),
    ([("ip", "999.1.1.1")], [("connection_creation_rate", 1.0)],
     "999.1.1.1 is not a valid IP or resolvable host."),
    ([("ip", "0x7f.1")], [("connection_creation_rate", 1.0)], "0x7f.1 is not a valid IP or resolvable host."),
    ([("ip", "[1.2.3.4]")], [("connection_creation_rate", 1.0)],
     "[1.2.3.4] is not a valid IP or resolvable host."),
    ([("ip", "1::2::3")], [("connection_creation_rate", 1.0)],
     "1::2::3 is not a valid IP or resolvable host."),
    ([("ip", "no-such-host.invalid")], [("connection_creation_rate", 1.0)],
     "no-such-host.invalid is not a valid IP or resolvable host."),
])
def test_a_bad_entry_is_refused_with_kafkas_message(conn, entity, ops, message):
    [(code, got, echoed)] = alter(conn, (entity, ops))
    assert (code, got) == (INVALID_REQUEST, message)
    assert sorted(echoed) == sorted(entity)
    assert describe(conn) == {}


@pytest.mark.parametrize("ip", ["::1", "[::1]", "::ffff:1.2.3.4", "fe80::1%1", "127.1", "1.2.3", "01.2.3.4",
                                "4294967295", "localhost"])
def test_ip_entities_java_accepts_are_accepted(conn, ip):
    set_quotas(conn, [("ip", ip)], connection_creation_rate=3.0)
    assert describe(conn, ("ip", EXACT, ip)) == {(("ip", ip),): {"connection_creation_rate": 3.0}}


def test_values_kafka_takes_at_the_edges(conn):
    # 2^63: Long.MAX_VALUE as a double
    set_quotas(conn, ALICE, producer_byte_rate=2.0**63, request_percentage=math.inf)
    set_quotas(conn, IP, connection_creation_rate=2.0**31 - 1)
    set_quotas(conn, BOB, consumer_byte_rate=1.0 + 1e-12)                           # within Kafka's 1e-10
    set_quotas(conn, CLIENT, controller_mutation_rate=math.nan)                     # NaN fails no comparison
    got = describe(conn)
    assert got[tuple(ALICE)] == {"producer_byte_rate": 2.0**63, "request_percentage": math.inf}
    assert got[tuple(IP)] == {"connection_creation_rate": 2.0**31 - 1}
    assert math.isnan(got[tuple(CLIENT)]["controller_mutation_rate"])


def test_one_refused_entity_does_not_stop_the_others_and_answers_come_in_kafkas_order(conn):
    assert alter(conn, ([("user", "okk")], [("producer_byte_rate", 7.0)]),
                 ([("user", "bad")], [("bogus", 1.0)])) \
        == [(0, None, [("user", "okk")]),
            (INVALID_REQUEST, "Invalid configuration key bogus", [("user", "bad")])]
    assert alter(conn, ([("user", "u0")], [("producer_byte_rate", 1.0)]),
                 ([("user", "u8")], [("producer_byte_rate", 1.0)])) \
        == [(0, None, [("user", "u8")]), (0, None, [("user", "u0")])]
    assert set(describe(conn)) == {(("user", "okk"),), (("user", "u0"),), (("user", "u8"),)}


def test_an_entity_twice_is_refused_but_its_first_entry_applies_as_in_kafka(conn):
    answer = alter(conn, (BOB, [("producer_byte_rate", 3.0)]),
                   ([("user", "zed")], [("consumer_byte_rate", 2.0)]),
                   (BOB, [("consumer_byte_rate", 4.0)]))
    assert answer == [(0, None, [("user", "zed")]),
                      (INVALID_REQUEST, "Ignoring duplicate entity ClientQuotaEntity(entries={user=bob})",
                       BOB)]
    assert describe(conn) == {tuple(BOB): {"producer_byte_rate": 3.0},
                              (("user", "zed"),): {"consumer_byte_rate": 2.0}}


def test_a_key_twice_refuses_the_entity_with_kafkas_message(conn):
    assert alter(conn, (DEFAULTS, [("producer_byte_rate", 1.0), ("producer_byte_rate", None)])) \
        == [(INVALID_REQUEST,
             "Ignoring duplicate entity ClientQuotaEntity(entries={client-id=null, user=null})", DEFAULTS)]
    assert describe(conn) == {}


def test_a_type_twice_in_an_entity_keeps_the_last_name(conn):
    assert alter(conn, ([("user", "a"), ("user", "b")], [("producer_byte_rate", 1.0)])) \
        == [(0, None, [("user", "b")])]
    assert describe(conn) == {(("user", "b"),): {"producer_byte_rate": 1.0}}


# --- durability, a real client ----------------------------------------------------------------

def test_quotas_survive_a_restart(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        quotas = _populate(conn)
        assert alter(conn, (IP, [("connection_creation_rate", None)])) == [(0, None, IP)]
        del quotas[tuple(IP)]
    with open(os.path.join(broker.data_dir, "@node", "client-quotas.json")) as f:
        assert len(json.load(f)["quotas"]) == len(quotas)
    broker.restart()
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        assert describe(conn) == quotas
        assert describe(conn, ("user", DEFAULT, None), strict=True) \
            == {tuple(USER_DEFAULT): {"consumer_byte_rate": 2048.0}}


def test_validate_only_writes_no_file(broker):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        assert alter(conn, (ALICE, [("producer_byte_rate", 5.0)]), validate_only=True) == [(0, None, ALICE)]
    assert not os.path.exists(os.path.join(broker.data_dir, "@node", "client-quotas.json"))


def test_kafka_python_sets_and_describes_quotas(broker):
    """kafka-python's own codecs, versions negotiated through ApiVersions (no installed client
    has an admin call for quotas: confluent-kafka 2.16, kafka-python 3.0, aiokafka 0.14)."""
    from kafka.admin import KafkaAdminClient
    from kafka.protocol.admin import AlterClientQuotasRequest as KA
    from kafka.protocol.admin import DescribeClientQuotasRequest as KD

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        async def send(request):
            return await admin._manager.send(request)
        entity = [KA.EntryData.EntityData(entity_type="user", entity_name="kp"),
                  KA.EntryData.EntityData(entity_type="client-id", entity_name=None)]
        altered = admin._manager.run(send, KA(validate_only=False, entries=[KA.EntryData(entity=entity, ops=[
            KA.EntryData.OpData(key="producer_byte_rate", value=2048.0, remove=False),
            KA.EntryData.OpData(key="request_percentage", value=50.0, remove=False)])]))
        [entry] = altered.entries
        assert (entry.error_code, entry.error_message) == (0, None)
        assert [(e.entity_type, e.entity_name) for e in entry.entity] == [("client-id", None), ("user", "kp")]
        described = admin._manager.run(send, KD(strict=True, components=[
            KD.ComponentData(entity_type="user", match_type=EXACT, match="kp"),
            KD.ComponentData(entity_type="client-id", match_type=DEFAULT, match=None)]))
        assert described.error_code == 0
        [entry] = described.entries
        assert {v.key: v.value for v in entry.values} \
            == {"producer_byte_rate": 2048.0, "request_percentage": 50.0}
    finally:
        admin.close()
