"""SCRAM (RFC 5802, RFC 7677) on the server side, and PLAIN checked against SCRAM credentials.

A credential keeps the salt, the iteration count, StoredKey and ServerKey; never the password,
nor the salted password (Kafka's ScramCredential). PLAIN (RFC 4616) derives the salted password
from what the client sent with the stored salt and iterations and compares StoredKey, so one
credential store serves both mechanisms (as Redpanda does).

The exchange, as Kafka's ScramSaslServer runs it:

    client-first  n,[a=authzid],n=user,r=cnonce[,extensions]
    server-first  r=cnonce+snonce,s=salt,i=iterations
    client-final  c=base64(gs2 header),r=cnonce+snonce,p=proof
    server-final  v=server signature        (or e=error; the broker answers SASL_AUTHENTICATION_FAILED)
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
import re

MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS = 4096      # Kafka's ScramMechanism.minIterations
MAX_ITERATIONS = 16384     # Kafka's ScramMechanism.maxIterations (AlterUserScramCredentials)


class AuthenticationError(Exception):
    """The exchange failed; the message is what the client is told (never whether the user exists)."""


@dataclasses.dataclass(frozen=True)
class ScramCredential:
    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def to_json(self) -> dict:
        return {"salt": _b64(self.salt), "iterations": self.iterations, "stored_key": _b64(self.stored_key),
                "server_key": _b64(self.server_key)}

    @classmethod
    def from_json(cls, mechanism: str, data: dict) -> ScramCredential:
        return cls(mechanism, _unb64(data["salt"]), int(data["iterations"]), _unb64(data["stored_key"]),
                   _unb64(data["server_key"]))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def _hmac(digest: str, key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, digest).digest()


def salted_password(mechanism: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(MECHANISMS[mechanism], password, salt, iterations)


def credential_from_salted(mechanism: str, salted: bytes, salt: bytes, iterations: int) -> ScramCredential:
    """What AlterUserScramCredentials carries (the client salts and hashes) -> the stored credential."""
    digest = MECHANISMS[mechanism]
    client_key = _hmac(digest, salted, b"Client Key")
    return ScramCredential(mechanism, salt, iterations, hashlib.new(digest, client_key).digest(),
                           _hmac(digest, salted, b"Server Key"))


def make_credential(mechanism: str, password: str, iterations: int = MIN_ITERATIONS,
                    salt: bytes | None = None) -> ScramCredential:
    salt = salt if salt is not None else os.urandom(32)
    return credential_from_salted(mechanism, salted_password(mechanism, password.encode(), salt, iterations),
                                  salt, iterations)


def password_matches(credential: ScramCredential, password: bytes) -> bool:
    derived = credential_from_salted(credential.mechanism, salted_password(
        credential.mechanism, password, credential.salt, credential.iterations), credential.salt, credential.iterations)
    return hmac.compare_digest(derived.stored_key, credential.stored_key)


def decode_text(message: bytes, what: str) -> str:
    """A client's SASL message as text; AuthenticationError naming `what` when it is not UTF-8."""
    try:
        return message.decode()
    except UnicodeDecodeError:
        raise AuthenticationError(f"Invalid {what}: not UTF-8") from None


def decode_sasl_name(name: str) -> str:
    """RFC 5802 saslname: "=2C" is a comma, "=3D" an equals sign; any other "=" is an error."""
    if re.search(r"=(?!2C|3D)", name):
        raise AuthenticationError("Invalid username: an '=' must be written =2C or =3D")
    return name.replace("=2C", ",").replace("=3D", "=")


_CLIENT_FIRST = re.compile(r"(?P<gs2>(?P<cb>[ny]|p=[^,]*),(?:a=(?P<authzid>[^,]*))?,)"
                           r"n=(?P<user>[^,]*),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)"
                           r"(?P<ext>(?:,[a-zA-Z][a-zA-Z0-9]*=[^,]*)*)")
_CLIENT_FINAL = re.compile(r"c=(?P<binding>[A-Za-z0-9+/=]*),r=(?P<nonce>[^,]+)(?:,[a-zA-Z]=[^,]*)*,p=(?P<proof>[A-Za-z0-9+/=]+)")


class ScramServer:
    """One SCRAM exchange; `lookup(user, mechanism)` returns the credential or None."""

    def __init__(self, mechanism: str, lookup):
        self.mechanism = mechanism
        self.digest = MECHANISMS[mechanism]
        self.lookup = lookup
        self.user: str | None = None
        self.done = False
        self._credential: ScramCredential | None = None
        self._gs2 = ""
        self._nonce = ""
        self._auth_message = b""

    def first(self, message: bytes) -> bytes:
        text = decode_text(message, "SCRAM client first message")
        m = _CLIENT_FIRST.fullmatch(text)
        if m is None:
            raise AuthenticationError("Invalid SCRAM client first message")
        if m["cb"].startswith("p="):
            raise AuthenticationError("SCRAM channel binding is not supported")
        user = decode_sasl_name(m["user"])
        if m["authzid"] and decode_sasl_name(m["authzid"]) != user:
            raise AuthenticationError("Authentication failed: Client requested an authorization id that is "
                                      "different from username")
        extensions = dict(e.split("=", 1) for e in m["ext"].split(",")[1:])
        if extensions.get("tokenauth", "false").lower() == "true":
            raise AuthenticationError("Authentication failed: delegation tokens are not supported")
        credential = self.lookup(user, self.mechanism)
        # An unknown user gets the same kind of answer as a wrong password, one round later
        # (Kafka: "Authentication failed: Invalid user credentials"), so names cannot be probed.
        size = hashlib.new(self.digest).digest_size
        self._credential = credential or ScramCredential(self.mechanism, hashlib.sha256(user.encode()).digest(),
                                                         MIN_ITERATIONS, os.urandom(size), os.urandom(size))
        self._known = credential is not None
        self.user = user
        self._gs2 = m["gs2"]
        self._nonce = m["nonce"] + base64.b64encode(os.urandom(24)).decode().rstrip("=")
        server_first = f"r={self._nonce},s={_b64(self._credential.salt)},i={self._credential.iterations}"
        bare = text[len(m["gs2"]):]
        self._auth_message = f"{bare},{server_first},".encode()
        return server_first.encode()

    def final(self, message: bytes) -> bytes:
        text = decode_text(message, "SCRAM client final message")
        m = _CLIENT_FINAL.fullmatch(text)
        if m is None:
            raise AuthenticationError("Invalid SCRAM client final message")
        if m["nonce"] != self._nonce:
            raise AuthenticationError("Invalid SCRAM client final message: the nonce does not match")
        try:
            binding = base64.b64decode(m["binding"], validate=True).decode()
            proof = base64.b64decode(m["proof"], validate=True)
        except (ValueError, UnicodeDecodeError):
            raise AuthenticationError("Invalid SCRAM client final message: bad base64") from None
        if binding != self._gs2:
            raise AuthenticationError("Invalid SCRAM client final message: the channel binding does not match")
        auth_message = self._auth_message + text[:text.rindex(",p=")].encode()
        credential = self._credential
        signature = _hmac(self.digest, credential.stored_key, auth_message)
        if len(proof) != len(signature):
            raise AuthenticationError("Authentication failed: Invalid user credentials")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not self._known or not hmac.compare_digest(hashlib.new(self.digest, client_key).digest(),
                                                      credential.stored_key):
            raise AuthenticationError("Authentication failed: Invalid user credentials")
        self.done = True
        return f"v={_b64(_hmac(self.digest, credential.server_key, auth_message))}".encode()


def parse_plain(message: bytes) -> tuple[str, str, bytes]:
    """(authzid, user, password) of a PLAIN message (RFC 4616): authzid NUL user NUL password."""
    parts = message.split(b"\x00")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise AuthenticationError("Invalid SASL/PLAIN response: expected 3 tokens")
    try:
        authzid, user = parts[0].decode(), parts[1].decode()
    except UnicodeDecodeError:
        raise AuthenticationError("Invalid SASL/PLAIN response: not UTF-8") from None
    if authzid and authzid != user:
        raise AuthenticationError("Authentication failed: Client requested an authorization id that is different "
                                  "from username")
    return authzid, user, parts[2]


class ScramClient:
    """The client's side of one SCRAM exchange (pstream's own client and CLI)."""

    def __init__(self, mechanism: str, user: str, password: str):
        self.mechanism, self.digest = mechanism, MECHANISMS[mechanism]
        self.user = user.replace("=", "=3D").replace(",", "=2C")
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(24)).decode().rstrip("=")
        self._first_bare = f"n={self.user},r={self.nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self._first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        fields = dict(part.split("=", 1) for part in server_first.decode().split(","))
        if not fields.get("r", "").startswith(self.nonce):
            raise AuthenticationError("the server's SCRAM nonce does not extend ours")
        salted = salted_password(self.mechanism, self.password, _unb64(fields["s"]), int(fields["i"]))
        client_key = _hmac(self.digest, salted, b"Client Key")
        stored_key = hashlib.new(self.digest, client_key).digest()
        without_proof = f"c={_b64(b'n,,')},r={fields['r']}"
        auth_message = f"{self._first_bare},{server_first.decode()},{without_proof}".encode()
        proof = bytes(a ^ b for a, b in zip(client_key, _hmac(self.digest, stored_key, auth_message)))
        self._server_signature = _hmac(self.digest, _hmac(self.digest, salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}".encode()

    def verify(self, server_final: bytes) -> None:
        text = server_final.decode()
        if not text.startswith("v=") or not hmac.compare_digest(_unb64(text[2:]), self._server_signature):
            raise AuthenticationError("the server's SCRAM signature is wrong: it does not know the credential")
