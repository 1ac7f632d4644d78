"""Security against the real broker with real clients: one broker with four listeners (PLAINTEXT,
SSL with client certificates, SASL_PLAINTEXT, SASL_SSL) and a CA made for the run (trustme).

confluent-kafka, kafka-python and aiokafka produce and consume over SASL_SSL with SCRAM-SHA-512 and
over mutual TLS; kcat over SASL_PLAINTEXT with PLAIN; Metadata advertises the listener a client came
through; users are managed with `pstream user`. Bad input: a wrong password, an unknown mechanism,
a truncated SCRAM exchange, requests before authentication and a TLS handshake of garbage each get
their error, the connection closes, and nothing else happens."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
import raw_kafka
import trustme

import pstream
from pstream.client import KafkaClient, KafkaError, Security
from pstream.protocol.error_codes import ErrorCode
from pstream.testing import BrokerProcess, stop_broker

codecs = raw_kafka.codecs
ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
ALICE, ALICE_PASSWORD = "alice", "alice-secret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, the broker's certificate (127.0.0.1) and a client certificate, as PEM files."""
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    client = ca.issue_cert("client@example.com", common_name="app-one", organization_unit_name="payments")
    client.cert_chain_pems[0].write_to_path(str(d / "client.pem"))
    client.private_key_pem.write_to_path(str(d / "client.key"))
    return {name: str(d / f"{name}.pem") for name in ("ca", "server", "client")} | {"client_key": str(d / "client.key")}


@pytest.fixture(scope="module")
def broker(tmp_path_factory, pki):
    b = BrokerProcess(str(tmp_path_factory.mktemp("secure") / "data"), listeners="PLAINTEXT,SSL,SASL_PLAINTEXT,SASL_SSL",
                      ssl_certfile=pki["server"], ssl_cafile=pki["ca"], ssl_client_auth="requested",
                      ssl_principal_mapping_rules="RULE:^CN=([^,]+),.*$/$1/,DEFAULT",
                      bootstrap_user=f"{ADMIN}:{ADMIN_PASSWORD}").start()
    with KafkaClient(b.bootstrap) as client:   # the PLAINTEXT listener: an internal one
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            client.alter_scram_user(ALICE, mechanism, ALICE_PASSWORD)
    yield b
    stop_broker(b)


def sasl_ssl(broker, pki, mechanism="SCRAM-SHA-512", user=ALICE, password=ALICE_PASSWORD) -> dict:
    return {"bootstrap.servers": broker.address("SASL_SSL"), "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password,
            "ssl.ca.location": pki["ca"]}


def mtls(broker, pki) -> dict:
    return {"bootstrap.servers": broker.address("SSL"), "security.protocol": "SSL", "ssl.ca.location": pki["ca"],
            "ssl.certificate.location": pki["client"], "ssl.key.location": pki["client_key"]}


def metrics(broker) -> dict[str, float]:
    text = urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


# --- real clients ------------------------------------------------------------------------------------


def confluent_round_trip(conf: dict, topic: str, n: int = 20) -> list[bytes]:
    from confluent_kafka import Consumer, Producer
    producer = Producer(conf)
    for i in range(n):
        producer.produce(topic, value=b"m%d" % i)
    assert producer.flush(20) == 0
    consumer = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got, deadline = [], time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is not None:
            assert m.error() is None, m.error()
            got.append(m.value())
    consumer.close()
    return got


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_confluent_kafka_over_sasl_ssl(broker, pki, mechanism):
    topic = broker.create_topic()
    before = metrics(broker).get(f'pstream_sasl_authentications_total{{mechanism="{mechanism}",outcome="success"}}', 0)
    assert confluent_round_trip(sasl_ssl(broker, pki, mechanism), topic) == [b"m%d" % i for i in range(20)]
    after = metrics(broker)[f'pstream_sasl_authentications_total{{mechanism="{mechanism}",outcome="success"}}']
    assert after > before


def test_confluent_kafka_over_mutual_tls(broker, pki):
    topic = broker.create_topic()
    assert confluent_round_trip(mtls(broker, pki), topic) == [b"m%d" % i for i in range(20)]


def test_kafka_python_over_sasl_ssl_and_mutual_tls(broker, pki):
    from kafka import KafkaConsumer, KafkaProducer
    topic = broker.create_topic()
    settings = [
        {"bootstrap_servers": broker.address("SASL_SSL"), "security_protocol": "SASL_SSL",
         "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": ALICE, "sasl_plain_password": ALICE_PASSWORD,
         "ssl_cafile": pki["ca"]},
        {"bootstrap_servers": broker.address("SSL"), "security_protocol": "SSL", "ssl_cafile": pki["ca"],
         "ssl_certfile": pki["client"], "ssl_keyfile": pki["client_key"]}]
    for i, conf in enumerate(settings):
        producer = KafkaProducer(**conf)
        producer.send(topic, b"kp%d" % i).get(timeout=20)
        producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=5000, **settings[0])
    assert [m.value for m in consumer] == [b"kp0", b"kp1"]
    consumer.close()


def test_aiokafka_over_sasl_ssl_and_mutual_tls(broker, pki):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context
    topic = broker.create_topic()

    async def main():
        sasl = {"bootstrap_servers": broker.address("SASL_SSL"), "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": ALICE,
                "sasl_plain_password": ALICE_PASSWORD, "ssl_context": create_ssl_context(cafile=pki["ca"])}
        tls = {"bootstrap_servers": broker.address("SSL"), "security_protocol": "SSL",
               "ssl_context": create_ssl_context(cafile=pki["ca"], certfile=pki["client"], keyfile=pki["client_key"])}
        for i, conf in enumerate((sasl, tls)):
            producer = AIOKafkaProducer(**conf)
            await producer.start()
            try:
                await producer.send_and_wait(topic, b"ak%d" % i)
            finally:
                await producer.stop()
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **tls)
        await consumer.start()
        try:
            got = []
            async with asyncio.timeout(20):
                async for m in consumer:
                    got.append(m.value)
                    if len(got) == 2:
                        break
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(main()) == [b"ak0", b"ak1"]


def test_kcat_with_sasl_plain(broker, kcat_path):
    topic = broker.create_topic()
    auth = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN", "-X", f"sasl.username={ALICE}",
            "-X", f"sasl.password={ALICE_PASSWORD}", "-b", broker.address("SASL_PLAINTEXT")]
    subprocess.run([kcat_path, *auth, "-P", "-t", topic], input=b"one\ntwo\n", check=True, timeout=60)
    out = subprocess.run([kcat_path, *auth, "-C", "-t", topic, "-o", "beginning", "-c", "2", "-e"],
                         capture_output=True, check=True, timeout=60).stdout
    assert out.split() == [b"one", b"two"]
    refused = subprocess.run([kcat_path, *auth[:-4], "-X", "sasl.password=wrong", "-b",
                              broker.address("SASL_PLAINTEXT"), "-L", "-m", "5"], capture_output=True, timeout=60,
                             check=False)
    assert refused.returncode != 0 and b"Authentication failed" in refused.stderr


def test_metadata_advertises_the_listener_a_client_came_through(broker, pki):
    for listener, security in [("PLAINTEXT", Security()),
                               ("SASL_SSL", Security("SASL_SSL", "SCRAM-SHA-256", ALICE, ALICE_PASSWORD, pki["ca"])),
                               ("SSL", Security("SSL", cafile=pki["ca"], certfile=pki["client"],
                                                keyfile=pki["client_key"]))]:
        with KafkaClient(broker.address(listener), security=security) as client:
            conn = client.any_connection()
            resp = conn.call("Metadata", 12, raw_kafka.metadata_request(version=12))
            assert [(b.host, b.port) for b in resp.brokers] == [("127.0.0.1", broker.listener_ports[listener])]


def test_pstream_user_manages_scram_users_through_a_sasl_listener(broker, pki):
    env = {**os.environ, "PSTREAM_PASSWORD": ADMIN_PASSWORD, "PSTREAM_NEW_PASSWORD": "bob-secret"}
    cli = [sys.executable, "-P", "-m", "pstream", "user", "--brokers", broker.address("SASL_SSL"), "--security-protocol",
           "SASL_SSL", "--user", ADMIN, "--ca", pki["ca"]]

    def run(*args):
        return subprocess.run([*cli[:5], args[0], *cli[5:], *args[1:]], env=env, capture_output=True, text=True,
                              timeout=60, check=False)

    assert run("create", "bob", "--mechanism", "SCRAM-SHA-256").returncode == 0
    listed = json.loads(run("list", "--format", "json").stdout)
    assert {"user": "bob", "mechanisms": {"SCRAM-SHA-256": 4096}} in listed
    bob = Security("SASL_SSL", "SCRAM-SHA-256", "bob", "bob-secret", pki["ca"])
    with KafkaClient(broker.address("SASL_SSL"), security=bob) as client:
        assert client.any_connection() is not None
    assert run("delete", "bob").returncode == 0
    with pytest.raises(KafkaError, match="SASL_AUTHENTICATION_FAILED"):
        KafkaClient(broker.address("SASL_SSL"), security=bob).any_connection()
    missing = run("delete", "nobody")
    assert missing.returncode != 0 and "there is no user 'nobody'" in missing.stderr


# --- bad input -------------------------------------------------------------------------------------------


def handshake(conn, mechanism: str, version: int = 1):
    return conn.call("SaslHandshake", version, codecs("SaslHandshake")[0](mechanism=mechanism))


def authenticate(conn, token: bytes):
    return conn.call("SaslAuthenticate", 2, codecs("SaslAuthenticate")[0](auth_bytes=token))


def test_a_wrong_password_is_refused_after_a_delay_and_the_connection_closes(broker):
    before = metrics(broker).get('pstream_sasl_authentications_total{mechanism="PLAIN",outcome="failure"}', 0)
    with raw_kafka.RawConnection(broker.address("SASL_PLAINTEXT")) as conn:
        assert (handshake(conn, "PLAIN").error_code, handshake.__name__) == (0, "handshake")
        started = time.monotonic()
        resp = authenticate(conn, b"\0alice\0wrong")
        assert time.monotonic() - started >= 0.09   # connection_failed_authentication_delay_ms
        assert (resp.error_code, resp.error_message) == (ErrorCode.SASL_AUTHENTICATION_FAILED,
                                                         "Authentication failed: Invalid username or password")
        assert conn.closed_by_broker()
    after = metrics(broker)['pstream_sasl_authentications_total{mechanism="PLAIN",outcome="failure"}']
    assert after == before + 1
    assert "127.0.0.1" in broker.output() and "SASL PLAIN authentication failed (user alice)" in broker.output()


def test_an_unknown_mechanism_gets_the_enabled_ones(broker):
    with raw_kafka.RawConnection(broker.address("SASL_PLAINTEXT")) as conn:
        resp = handshake(conn, "GSSAPI")
        assert (resp.error_code, resp.mechanisms) == (ErrorCode.UNSUPPORTED_SASL_MECHANISM,
                                                      ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
        assert conn.closed_by_broker()


@pytest.mark.parametrize("token,message", [
    (b"n,,n=", "Invalid SCRAM client first message"),
    (b"\xff" * 40, "Invalid SCRAM client first message: not UTF-8"),
])
def test_a_truncated_or_garbled_scram_exchange_is_refused(broker, token, message):
    with raw_kafka.RawConnection(broker.address("SASL_PLAINTEXT")) as conn:
        assert handshake(conn, "SCRAM-SHA-512").error_code == 0
        resp = authenticate(conn, token)
        assert (resp.error_code, resp.error_message) == (ErrorCode.SASL_AUTHENTICATION_FAILED, message)
        assert conn.closed_by_broker()


def test_a_second_scram_message_that_is_garbage_is_refused(broker):
    with raw_kafka.RawConnection(broker.address("SASL_PLAINTEXT")) as conn:
        assert handshake(conn, "SCRAM-SHA-256").error_code == 0
        first = authenticate(conn, b"n,,n=alice,r=abcdefgh")
        assert first.error_code == 0 and bytes(first.auth_bytes).startswith(b"r=abcdefgh")
        resp = authenticate(conn, b"c=biws,r=abcdefgh,p=")
        assert resp.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert conn.closed_by_broker()


@pytest.mark.parametrize("api", ["Produce", "Metadata", "CreateTopics"])
def test_requests_before_authentication_close_the_connection_and_do_nothing(broker, api):
    batch = pstream._core.encode_batch([(None, b"sneaky", [], None)])
    requests = {"Produce": (9, raw_kafka.produce_request("sneaky", 0, batch)),
                "Metadata": (12, raw_kafka.metadata_request(["sneaky"], version=12)),
                "CreateTopics": (7, raw_kafka.create_topics_request({"sneaky": (1, -1, {})}))}
    version, request = requests[api]
    with raw_kafka.RawConnection(broker.address("SASL_PLAINTEXT")) as conn:
        conn.send(api, version, request)
        assert conn.closed_by_broker()
    with raw_kafka.RawConnection(broker.address("SASL_PLAINTEXT")) as conn:   # after a handshake, still nothing
        assert handshake(conn, "PLAIN").error_code == 0
        conn.send(api, version, request)
        assert conn.closed_by_broker()
    with KafkaClient(broker.bootstrap) as client:
        assert "sneaky" not in client.metadata().topics


def test_sasl_authenticate_before_the_handshake_is_an_illegal_state(broker):
    with raw_kafka.RawConnection(broker.address("SASL_PLAINTEXT")) as conn:
        resp = authenticate(conn, b"\0alice\0" + ALICE_PASSWORD.encode())
        assert resp.error_code == ErrorCode.ILLEGAL_SASL_STATE
        assert conn.closed_by_broker()


@pytest.mark.parametrize("garbage", [b"\x00\x00\x00\x10" + b"\x00" * 16, b"GET / HTTP/1.1\r\n\r\n",
                                     b"\x16\x03\x01\x00\x05hello"])
def test_a_tls_handshake_of_garbage_gets_nothing_and_the_broker_serves_on(broker, pki, garbage):
    with socket.create_connection(("127.0.0.1", broker.listener_ports["SSL"]), timeout=10) as sock:
        sock.sendall(garbage)
        sock.settimeout(10)
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        assert not data.startswith(b"\x00")   # no Kafka answer, only (at most) a TLS alert
    context = ssl.create_default_context(cafile=pki["ca"])
    with socket.create_connection(("127.0.0.1", broker.listener_ports["SSL"])) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert broker.alive()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_older_than_1_2_is_refused(broker, pki):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki["ca"])
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        context.minimum_version = ssl.TLSVersion.TLSv1
    except ValueError:
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", broker.listener_ports["SSL"])) as raw, \
            pytest.raises(ssl.SSLError):
        context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_a_required_client_certificate_is_enforced(tmp_path, pki):
    b = BrokerProcess(str(tmp_path / "data"), listeners="SSL", ssl_certfile=pki["server"], ssl_cafile=pki["ca"],
                      ssl_client_auth="required").start()
    try:
        with pytest.raises(KafkaError):
            KafkaClient(b.bootstrap, security=Security("SSL", cafile=pki["ca"]), timeout=5).any_connection()
        with KafkaClient(b.bootstrap, security=Security("SSL", cafile=pki["ca"], certfile=pki["client"],
                                                        keyfile=pki["client_key"])) as client:
            assert client.metadata().brokers
    finally:
        stop_broker(b)


def test_the_admin_api_asks_for_a_scram_user_over_https_and_changes_need_a_super_user(tmp_path, pki):
    import base64
    import urllib.error
    b = BrokerProcess(str(tmp_path / "data"), admin_api_require_auth=True, admin_api_tls=True,
                      ssl_certfile=pki["server"], bootstrap_user=f"{ADMIN}:{ADMIN_PASSWORD}",
                      super_users=f"User:{ADMIN}").start()
    try:
        with KafkaClient(b.bootstrap) as client:
            client.alter_scram_user(ALICE, "SCRAM-SHA-256", ALICE_PASSWORD)
        context = ssl.create_default_context(cafile=pki["ca"])
        base = f"https://127.0.0.1:{b.admin_port}"

        def get(path, user=None, password=None, method="GET", data=None):
            request = urllib.request.Request(base + path, method=method, data=data)
            if user:
                request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
            try:
                with urllib.request.urlopen(request, context=context, timeout=10) as reply:
                    return reply.status, reply.headers, reply.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers, exc.read()

        assert get("/v1/status/ready")[0] == 200 and get("/metrics")[0] == 200   # monitors need no user
        status, headers, body = get("/v1/topics")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert get("/v1/topics", ALICE, "wrong")[0] == 401
        assert get("/v1/topics", ALICE, ALICE_PASSWORD)[0] == 200
        change = json.dumps({"upsert": {"log_retention_ms": "3600000"}, "remove": []}).encode()
        status, _, body = get("/v1/cluster_config", ALICE, ALICE_PASSWORD, "PUT", change)
        assert status == 403 and b"needs a super user" in body
        assert get("/v1/cluster_config", ADMIN, ADMIN_PASSWORD, "PUT", change)[0] == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):   # plain HTTP is not served
            urllib.request.urlopen(f"http://127.0.0.1:{b.admin_port}/v1/status/ready", timeout=5)
    finally:
        stop_broker(b)


def test_clients_reauthenticate_within_connections_max_reauth_ms_and_the_others_are_cut_off(tmp_path, pki):
    from confluent_kafka import Producer
    b = BrokerProcess(str(tmp_path / "data"), listeners="SASL_PLAINTEXT", connections_max_reauth_ms=1500,
                      bootstrap_user=f"{ADMIN}:{ADMIN_PASSWORD}").start()
    try:
        with KafkaClient(b.bootstrap, security=Security("SASL_PLAINTEXT", "SCRAM-SHA-512", ADMIN,
                                                        ADMIN_PASSWORD)) as client:
            client.create_topic("reauth", 1)
            conn = client.any_connection()
            time.sleep(1.7)   # past the lifetime, without re-authenticating: the next request closes it
            with pytest.raises(KafkaError):
                conn.call("Metadata", 12, raw_kafka.metadata_request(version=12))
        assert "authentication expired" in b.output()
        producer = Producer({"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                             "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": ADMIN,
                             "sasl.password": ADMIN_PASSWORD, "linger.ms": 0})
        errors = []
        deadline = time.monotonic() + 5
        sent = 0
        while time.monotonic() < deadline:   # librdkafka re-authenticates (KIP-368) and goes on
            producer.produce("reauth", b"x", on_delivery=lambda err, msg: errors.append(err) if err else None)
            producer.flush(5)
            sent += 1
            time.sleep(0.1)
        assert not errors and sent > 20
        success = metrics(b)['pstream_sasl_authentications_total{mechanism="SCRAM-SHA-512",outcome="success"}']
        assert success >= 4   # the first authentications and at least two renewals
        del producer
    finally:
        stop_broker(b)


def test_byte_rate_quotas_throttle_producers_and_consumers_per_user(tmp_path):
    """A user over producer_byte_rate / consumer_byte_rate gets throttle_time_ms and a muted
    connection, so its throughput settles near the quota; another user is not slowed."""
    from confluent_kafka import Consumer, Producer
    b = BrokerProcess(str(tmp_path / "data"), listeners="SASL_PLAINTEXT", bootstrap_user=f"{ADMIN}:{ADMIN_PASSWORD}").start()
    try:
        admin = Security("SASL_PLAINTEXT", "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD)
        with KafkaClient(b.bootstrap, security=admin) as client:
            client.alter_scram_user(ALICE, "SCRAM-SHA-512", ALICE_PASSWORD)
            client.create_topic("quota", 1)
            req_cls, _ = codecs("AlterClientQuotas")
            resp = client.any_connection().call("AlterClientQuotas", 1, req_cls(entries=[req_cls.EntryData(
                entity=[req_cls.EntityData(entity_type="user", entity_name=ALICE)],
                ops=[req_cls.OpData(key="producer_byte_rate", value=200_000.0),
                     req_cls.OpData(key="consumer_byte_rate", value=200_000.0)])], validate_only=False))
            assert resp.entries[0].error_code == 0

        def produce_for(user, password, seconds=4.0) -> float:
            """Bytes/s acknowledged while producing as fast as a 1 MB client buffer allows."""
            p = Producer({"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                          "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": password,
                          "linger.ms": 5, "queue.buffering.max.kbytes": 1024})
            acked = [0]

            def delivered(err, msg):
                if err is None:
                    acked[0] += len(msg.value())

            started = time.monotonic()
            while time.monotonic() - started < seconds:
                try:
                    p.produce("quota", b"x" * 10_000, on_delivery=delivered)
                except BufferError:
                    p.poll(0.05)
                p.poll(0)
            rate = acked[0] / (time.monotonic() - started)
            p.flush(60)
            del p
            return rate

        fast = produce_for(ADMIN, ADMIN_PASSWORD, 2.0)
        slow = produce_for(ALICE, ALICE_PASSWORD)
        # Kafka's rate counts over at least 10 s: the first ~2 MB pass, then the throttles hold alice
        # to the quota; so in 4 s at most quota * (10 + 4) s, plus what her 1 MB buffer had in flight.
        assert slow * 4 <= 200_000 * 14 + 1_200_000 and fast > 10 * slow, (slow, fast)
        values = metrics(b)
        throttled = values.get('pstream_quota_throttle_seconds_total{client_id="",ip="",kind="produce",user="alice"}',
                               0)
        assert throttled > 0

        c = Consumer({"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                      "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": ALICE, "sasl.password": ALICE_PASSWORD,
                      "group.id": "q", "auto.offset.reset": "earliest"})
        c.subscribe(["quota"])
        got, started = 0, time.monotonic()
        while time.monotonic() - started < 4:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got += len(m.value())
        c.close()
        assert 0 < got <= 200_000 * 14 + 2 * 1_048_576, got   # plus up to a fetch's worth in flight
        assert metrics(b).get('pstream_quota_throttle_seconds_total{client_id="",ip="",kind="fetch",user="alice"}',
                              0) > 0
    finally:
        stop_broker(b)


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    """An identity provider of our own: an RSA key, its JWKS file, and a token maker."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    path = tmp_path_factory.mktemp("idp") / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(sub="carol", ttl=60, aud="pstream", iss="test-idp", signer=key, kid="k1") -> str:
        now = int(time.time())
        return jwt.encode({"sub": sub, "exp": now + ttl, "iat": now, "aud": aud, "iss": iss}, signer,
                          algorithm="RS256", headers={"kid": kid})

    token.other_key = other
    return {"jwks": str(path), "token": token}


def test_oauthbearer_tokens_are_checked_against_the_jwks(tmp_path, idp):
    from confluent_kafka import Producer
    b = BrokerProcess(str(tmp_path / "data"), listeners="SASL_PLAINTEXT",
                      sasl_enabled_mechanisms="OAUTHBEARER,SCRAM-SHA-512", sasl_oauthbearer_jwks_file=idp["jwks"],
                      sasl_oauthbearer_expected_audience="pstream", sasl_oauthbearer_expected_issuer="test-idp",
                      authorization="acls", super_users="User:carol").start()
    try:
        make = idp["token"]
        with raw_kafka.RawConnection(b.bootstrap) as conn:   # a good token: carol, a super user
            assert handshake(conn, "OAUTHBEARER").error_code == 0
            resp = authenticate(conn, f"n,,\x01auth=Bearer {make()}\x01\x01".encode())
            assert (resp.error_code, resp.error_message) == (0, None)
            conn.call("CreateTopics", 7, raw_kafka.create_topics_request({"oauth": (1, -1, {})}))
        bad = [(make(ttl=-120), "invalid_token: the token has expired"),
               (make(aud="elsewhere"), "invalid_token: Audience doesn't match"),
               (make(iss="evil"), "invalid_token: Invalid issuer"),
               (make(signer=make.other_key), "invalid_token: Signature verification failed"),
               (make(kid="k2"), "invalid_token: no key 'k2' in the JWKS"),
               ("not-a-jwt", "invalid_token: the token is not a JWT")]
        for token, message in bad:
            with raw_kafka.RawConnection(b.bootstrap) as conn:
                assert handshake(conn, "OAUTHBEARER").error_code == 0
                resp = authenticate(conn, f"n,,\x01auth=Bearer {token}\x01\x01".encode())
                assert resp.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
                assert resp.error_message.startswith(message), resp.error_message
                assert conn.closed_by_broker()
        reports = []
        producer = Producer({"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                             "sasl.mechanisms": "OAUTHBEARER",
                             "oauth_cb": lambda _config: (make(), time.time() + 60)})
        producer.produce("oauth", b"with a token", on_delivery=lambda err, msg: reports.append(err))
        producer.flush(20)
        assert reports == [None]
        del producer
    finally:
        stop_broker(b)


def test_the_admin_api_takes_bearer_tokens_when_oauthbearer_is_configured(tmp_path, idp):
    import urllib.error
    b = BrokerProcess(str(tmp_path / "data"), listeners="SASL_PLAINTEXT", admin_api_require_auth=True,
                      sasl_enabled_mechanisms="OAUTHBEARER", sasl_oauthbearer_jwks_file=idp["jwks"],
                      sasl_oauthbearer_expected_audience="pstream", super_users="User:ops").start()

    def get(path, token, method="GET"):
        request = urllib.request.Request(b.admin_url + path, method=method,
                                         data=b'{"upsert": {}, "remove": []}' if method == "PUT" else None)
        request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        make = idp["token"]
        assert get("/v1/topics", make(sub="carol")) == 200
        assert get("/v1/topics", make(ttl=-120)) == 401
        assert get("/v1/topics", make(signer=make.other_key)) == 401
        assert get("/v1/cluster_config", make(sub="carol"), "PUT") == 403
        assert get("/v1/cluster_config", make(sub="ops"), "PUT") == 200
    finally:
        stop_broker(b)


def test_controller_mutation_rate_refuses_topic_creation_past_the_quota(broker):
    """KIP-599: creating and deleting partitions counts against controller_mutation_rate; past it,
    CreateTopics v6+ and DeleteTopics v5+ answer THROTTLING_QUOTA_EXCEEDED with throttle_time_ms."""
    req_cls, _ = codecs("AlterClientQuotas")
    client_id = "mutator"
    with KafkaClient(broker.bootstrap) as admin:
        resp = admin.any_connection().call("AlterClientQuotas", 1, req_cls(entries=[req_cls.EntryData(
            entity=[req_cls.EntityData(entity_type="client-id", entity_name=client_id)],
            ops=[req_cls.OpData(key="controller_mutation_rate", value=1.0)])], validate_only=False))
        assert resp.entries[0].error_code == 0
    create_cls, _ = codecs("CreateTopics")

    def create(name, partitions):
        with KafkaClient(broker.bootstrap, client_id=client_id) as client:
            return client.any_connection().call("CreateTopics", 7, create_cls(topics=[create_cls.CreatableTopic(
                name=name, num_partitions=partitions, replication_factor=1, assignments=[], configs=[])],
                timeout_ms=5000, validate_only=False))

    first = create("mutation-a", 20)   # 20 partitions at 1/s: over the quota once made
    assert first.topics[0].error_code == 0 and first.throttle_time_ms > 0
    second = create("mutation-b", 1)
    assert (second.topics[0].error_code, second.topics[0].error_message) == \
        (ErrorCode.THROTTLING_QUOTA_EXCEEDED, "The throttling quota has been exceeded.")
    assert second.throttle_time_ms > 0
    with KafkaClient(broker.bootstrap) as other:   # another client id is not held back
        assert "mutation-b" not in other.metadata().topics
        other.create_topic("mutation-c", 1)


def test_connection_creation_rate_holds_and_closes_connections_past_the_ip_quota(tmp_path):
    """KIP-612: past its ip's connection_creation_rate a new connection is not served, then closed."""
    b = BrokerProcess(str(tmp_path / "data")).start()
    try:
        req_cls, _ = codecs("AlterClientQuotas")
        with KafkaClient(b.bootstrap) as client:
            resp = client.any_connection().call("AlterClientQuotas", 1, req_cls(entries=[req_cls.EntryData(
                entity=[req_cls.EntityData(entity_type="ip", entity_name="127.0.0.1")],
                ops=[req_cls.OpData(key="connection_creation_rate", value=1.0)])], validate_only=False))
            assert resp.entries[0].error_code == 0
        served, held = 0, 0
        for _ in range(25):   # 25 connections at once: at 1/s over a 10 s window, most are over
            with raw_kafka.RawConnection(b.bootstrap) as conn:
                try:
                    conn.call("ApiVersions", 3, codecs("ApiVersions")[0](client_software_name="t",
                                                                         client_software_version="1"), timeout=0.5)
                    served += 1
                except (TimeoutError, ConnectionError, OSError):
                    held += 1
        assert served >= 5 and held >= 10, (served, held)
        assert metrics(b)['pstream_quota_throttle_seconds_total{client_id="",ip="127.0.0.1",kind="connections",user=""}'] > 0
    finally:
        stop_broker(b)


def test_sasl_handshake_v0_takes_the_tokens_as_bare_frames(broker):
    """Kafka's first SASL flow (SaslHandshake v0, before KIP-152): the tokens travel as bare
    length-prefixed frames, and Kafka requests resume once authenticated."""
    import struct

    from pstream.security.scram import ScramClient

    def bare(conn, token: bytes) -> bytes:
        conn.send_raw(struct.pack(">i", len(token)) + token)
        return conn.read_frame(timeout=10)

    with raw_kafka.RawConnection(broker.address("SASL_PLAINTEXT")) as conn:
        assert handshake(conn, "PLAIN", version=0).error_code == 0
        assert bare(conn, f"\0{ALICE}\0{ALICE_PASSWORD}".encode()) == b""
        assert conn.call("Metadata", 12, raw_kafka.metadata_request(version=12)).brokers
    with raw_kafka.RawConnection(broker.address("SASL_PLAINTEXT")) as conn:
        assert handshake(conn, "SCRAM-SHA-256", version=0).error_code == 0
        client = ScramClient("SCRAM-SHA-256", ALICE, ALICE_PASSWORD)
        client.verify(bare(conn, client.final(bare(conn, client.first()))))
        assert conn.call("Metadata", 12, raw_kafka.metadata_request(version=12)).brokers
    with raw_kafka.RawConnection(broker.address("SASL_PLAINTEXT")) as conn:
        assert handshake(conn, "PLAIN", version=0).error_code == 0
        wrong = f"\0{ALICE}\0wrong!".encode()
        conn.send_raw(struct.pack(">i", len(wrong)) + wrong)
        assert conn.closed_by_broker()   # v0 has no error answer: the connection closes
