"""SCRAM and PLAIN as pstream/security/scram.py runs them: RFC 7677's SCRAM-SHA-256 example
exchange, pstream's server against its client for both mechanisms, what a wrong password, an
unknown user, a broken message or a replayed nonce get, and PLAIN checked against SCRAM
credentials."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pstream.security.scram import (
    MECHANISMS,
    AuthenticationError,
    ScramClient,
    ScramServer,
    credential_from_salted,
    make_credential,
    parse_plain,
    password_matches,
    salted_password,
)

# RFC 7677, section 3
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_the_client_reproduces_rfc_7677s_exchange():
    client = ScramClient("SCRAM-SHA-256", "user", "pencil")
    client.nonce = "rOprNGfwEbeRWgbNEkqO"
    client._first_bare = f"n=user,r={client.nonce}"
    assert client.first() == RFC_CLIENT_FIRST
    assert client.final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify(RFC_SERVER_FINAL)
    with pytest.raises(AuthenticationError):
        client.verify(b"v=" + base64.b64encode(b"x" * 32))


def test_the_server_checks_rfc_7677s_proof():
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    stored = make_credential("SCRAM-SHA-256", "pencil", 4096, salt)
    server = ScramServer("SCRAM-SHA-256", lambda user, mech: stored if user == "user" else None)
    server.first(RFC_CLIENT_FIRST)
    # the server's nonce is random: take the RFC's, as if it had drawn it
    server._nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    server._auth_message = b"n=user,r=rOprNGfwEbeRWgbNEkqO," + RFC_SERVER_FIRST + b","
    assert server.final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL and server.done


def exchange(mechanism, stored_password, password, user="alice", known=True):
    credential = make_credential(mechanism, stored_password)
    server = ScramServer(mechanism, lambda u, m: credential if known and (u, m) == (user, mechanism) else None)
    client = ScramClient(mechanism, user, password)
    client.verify(server.final(client.final(server.first(client.first()))))
    return server


@pytest.mark.parametrize("mechanism", sorted(MECHANISMS))
def test_client_and_server_agree(mechanism):
    server = exchange(mechanism, "s3cret", "s3cret", user="a,b=c")
    assert server.done and server.user == "a,b=c"


@pytest.mark.parametrize("mechanism", sorted(MECHANISMS))
@pytest.mark.parametrize("known", [True, False])
def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(mechanism, known):
    with pytest.raises(AuthenticationError, match="^Authentication failed: Invalid user credentials$"):
        exchange(mechanism, "s3cret", "guess", known=known)


@pytest.mark.parametrize("message,error", [
    (b"", "Invalid SCRAM client first message"),
    (b"n,,n=alice", "Invalid SCRAM client first message"),
    (b"p=tls-unique,,n=alice,r=abc", "channel binding is not supported"),
    (b"n,a=bob,n=alice,r=abc", "authorization id that is different from username"),
    (b"n,,n=al=ice,r=abc", "Invalid username"),
    (b"n,,n=alice,r=abc,tokenauth=true", "delegation tokens are not supported"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_a_bad_client_first_message_is_refused(message, error):
    server = ScramServer("SCRAM-SHA-256", lambda u, m: None)
    with pytest.raises(AuthenticationError, match=error):
        server.first(message)


def test_a_client_final_with_another_nonce_or_binding_is_refused():
    credential = make_credential("SCRAM-SHA-512", "pw")
    server = ScramServer("SCRAM-SHA-512", lambda u, m: credential)
    server.first(b"n,,n=alice,r=abc")
    with pytest.raises(AuthenticationError, match="nonce"):
        server.final(b"c=biws,r=abcOTHER,p=AAAA")
    server._nonce = "abcXYZ"
    with pytest.raises(AuthenticationError, match="channel binding"):
        server.final(b"c=eSws,r=abcXYZ,p=AAAA")


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_authenticates(token):
    server = ScramServer("SCRAM-SHA-256", lambda u, m: make_credential("SCRAM-SHA-256", "pw"))
    with pytest.raises(AuthenticationError):
        server.first(token)
        server.final(token)


def test_plain_is_checked_against_the_scram_credential():
    credential = make_credential("SCRAM-SHA-512", "pw")
    assert password_matches(credential, b"pw") and not password_matches(credential, b"pW")
    assert parse_plain(b"\x00alice\x00pw") == ("", "alice", b"pw")
    assert parse_plain(b"alice\x00alice\x00pw") == ("alice", "alice", b"pw")
    for bad in (b"alice\x00pw", b"\x00\x00pw", b"\x00alice\x00", b"bob\x00alice\x00pw"):
        with pytest.raises(AuthenticationError):
            parse_plain(bad)


def test_a_credential_from_a_salted_password_matches_one_from_the_password():
    salt = b"0123456789abcdef"
    salted = salted_password("SCRAM-SHA-256", b"pw", salt, 4096)
    assert credential_from_salted("SCRAM-SHA-256", salted, salt, 4096) == make_credential("SCRAM-SHA-256", "pw",
                                                                                          4096, salt)
