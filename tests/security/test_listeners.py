"""Listener configuration as Kafka reads it, client-certificate principals (RFC 2253 names and
ssl.principal.mapping.rules), and a TLS context that picks up a renewed certificate."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading

import pytest
import trustme

from pstream.errors import ConfigError
from pstream.security.listeners import (
    DEFAULT_PROTOCOL_MAP,
    PrincipalMapper,
    TlsContext,
    distinguished_name,
    parse_listeners,
    resolve_listeners,
)


def test_listeners_resolve_with_protocols_and_advertised_addresses():
    got = resolve_listeners("INTERNAL://0.0.0.0:9092,SASL_SSL://[::1]:9093,EXTERNAL://127.0.0.1:0",
                            "EXTERNAL://kafka.example.com:443",
                            "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL," + DEFAULT_PROTOCOL_MAP)
    assert [(x.name, x.protocol, x.host, x.port, x.advertised_host) for x in got] == [
        ("INTERNAL", "PLAINTEXT", "0.0.0.0", 9092, "127.0.0.1"),
        ("SASL_SSL", "SASL_SSL", "::1", 9093, "::1"),
        ("EXTERNAL", "SASL_SSL", "127.0.0.1", 0, "kafka.example.com")]
    assert got[2].advertised == ("kafka.example.com", 443) and got[2].tls and got[2].sasl
    assert got[0].url() == "INTERNAL://127.0.0.1:9092" and got[1].url() == "SASL_SSL://[::1]:9093"


@pytest.mark.parametrize("listeners,advertised,message", [
    ("PLAINTEXT//127.0.0.1:9092", None, "is not NAME://HOST:PORT"),
    ("PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9093", None, "appears twice"),
    ("PLAINTEXT://127.0.0.1:70000", None, "out of range"),
    ("CLIENT://127.0.0.1:9092", None, "has no security protocol"),
    ("PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9092", None, "two listeners on one port"),
    ("PLAINTEXT://127.0.0.1:9092", "SSL://h:1", "which is not in listeners"),
    ("PLAINTEXT://0.0.0.0:9092", "PLAINTEXT://0.0.0.0:9092", "wildcard"),
])
def test_bad_listener_settings_say_what_is_wrong(listeners, advertised, message):
    with pytest.raises(ConfigError, match=message):
        resolve_listeners(listeners, advertised, DEFAULT_PROTOCOL_MAP)


def test_listener_names_are_case_insensitive_as_in_kafka():
    assert parse_listeners("plaintext://h:1") == {"PLAINTEXT": ("h", 1)}


def cert(subject):
    return {"subject": tuple(((k, v),) for k, v in subject)}


def test_a_certificate_subject_is_written_as_rfc_2253():
    subject = [("countryName", "US"), ("organizationName", "Acme, Inc."), ("organizationalUnitName", "eng"),
               ("commonName", "client one")]
    assert distinguished_name(cert(subject)) == "CN=client one,OU=eng,O=Acme\\, Inc.,C=US"


@pytest.mark.parametrize("rules,dn,principal", [
    ("DEFAULT", "CN=alice,OU=eng", "User:CN=alice,OU=eng"),
    ("RULE:^CN=(.*?),OU=eng$/$1/,DEFAULT", "CN=alice,OU=eng", "User:alice"),
    ("RULE:^CN=(.*?),OU=eng$/$1/U,DEFAULT", "CN=alice,OU=eng", "User:ALICE"),
    ("RULE:^CN=(.*?),OU=eng$/$1/,DEFAULT", "CN=bob,OU=ops", "User:CN=bob,OU=ops"),
    ("RULE:^CN=([A-Z]+)\\/x,.*$/$1/L", "CN=ADMIN/x,O=acme", "User:admin"),
])
def test_principal_mapping_rules(rules, dn, principal):
    assert PrincipalMapper(rules).principal(dn) == principal


def test_a_name_no_rule_maps_is_refused_and_bad_rules_are_config_errors():
    with pytest.raises(ValueError, match="no ssl.principal.mapping.rules rule matches"):
        PrincipalMapper("RULE:^CN=(.*),OU=eng$/$1/").principal("CN=x,OU=ops")
    for bad in ("RULE:^CN=(.*$/$1/", "NONSENSE", "RULE:a/b"):
        with pytest.raises(ConfigError):
            PrincipalMapper(bad)


def handshake(context: ssl.SSLContext, ca: trustme.CA) -> dict:
    """One TLS handshake against `context`; returns the certificate the client saw."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert()
    finally:
        thread.join(5)
        listener.close()


def test_a_renewed_certificate_is_used_after_a_reload(tmp_path):
    ca = trustme.CA()
    path = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1", organization_unit_name="first").private_key_and_cert_chain_pem.write_to_path(str(path))
    tls = TlsContext(str(path), None, None, None, "none")
    assert dict(x[0] for x in handshake(tls.context, ca)["subject"])["organizationalUnitName"] == "first"
    assert not tls.reload_if_changed()
    renewed = tmp_path / "renewed.pem"
    ca.issue_cert("127.0.0.1", organization_unit_name="second").private_key_and_cert_chain_pem.write_to_path(
        str(renewed))
    shutil.move(renewed, path)
    assert tls.reload_if_changed()
    assert dict(x[0] for x in handshake(tls.context, ca)["subject"])["organizationalUnitName"] == "second"
    path.write_text("not a certificate")
    assert not tls.reload_if_changed()   # the previous one stays in use
    assert dict(x[0] for x in handshake(tls.context, ca)["subject"])["organizationalUnitName"] == "second"


def test_client_auth_needs_a_ca_and_a_missing_certificate_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="needs ssl_cafile"):
        TlsContext(str(tmp_path / "x.pem"), None, None, None, "required")
    with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
        TlsContext(str(tmp_path / "missing.pem"), None, None, None, "none")
