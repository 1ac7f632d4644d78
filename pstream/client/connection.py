"""One blocking TCP connection to one Kafka broker, with its negotiated API versions.

On connect it asks ApiVersions (v3, falling back to v0 for brokers that refuse it) and
from then on sends each API at the highest version both sides speak, capped by what the
caller's code was written for. Requests may be pipelined: `send` returns a correlation
id and `receive` its answer, keeping answers to other requests read meanwhile.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import struct
import time

from pstream.client.wire import (
    api_key,
    api_name,
    codec_classes,
    codec_versions,
    decode_response,
    encode_request,
)
from pstream.protocol.error_codes import ErrorCode
from pstream.security.scram import AuthenticationError, ScramClient

_i32 = struct.Struct(">i")
MAX_RESPONSE_BYTES = 1 << 30


class KafkaError(Exception):
    """A request failed: the Kafka error code (if the broker sent one) and what was asked."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code

    @classmethod
    def from_code(cls, code: int, what: str, detail: str | None = None) -> KafkaError:
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = f"error code {code}"
        return cls(f"{what}: {name}" + (f" ({detail})" if detail else ""), code)


def check(code: int, what: str, detail: str | None = None) -> None:
    if code:
        raise KafkaError.from_code(code, what, detail)


@dataclasses.dataclass(frozen=True)
class Security:
    """How to reach a secured listener: Kafka's security.protocol, and for SASL the mechanism and
    credentials; for TLS the CA to trust (None: the system's) and a client certificate (mTLS)."""

    protocol: str = "PLAINTEXT"           # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    mechanism: str = "SCRAM-SHA-512"      # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    user: str | None = None
    password: str | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context


class BrokerConnection:
    """Not thread-safe: one caller at a time."""

    def __init__(self, host: str, port: int, client_id: str = "pstream-cli", timeout: float = 30.0,
                 security: Security | None = None):
        self.address = f"{host}:{port}"
        self.client_id = client_id
        self.timeout = timeout
        self.security = security or Security()
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            if self.security.protocol in ("SSL", "SASL_SSL"):
                self.sock = self.security.ssl_context().wrap_socket(self.sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            self.close_quietly()
            raise KafkaError(f"cannot connect to {self.address}: {getattr(exc, 'strerror', None) or exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next_id = 1
        self._sent: dict[int, tuple[int, int]] = {}
        self._early: dict[int, object] = {}
        self.versions: dict[int, tuple[int, int]] = {}
        self._negotiate()
        if self.security.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            self._authenticate()

    def close(self) -> None:
        self.sock.close()

    def close_quietly(self) -> None:
        if getattr(self, "sock", None) is not None:
            self.sock.close()

    def _authenticate(self) -> None:
        """SaslHandshake v1, then SaslAuthenticate tokens: PLAIN in one, SCRAM in two."""
        s = self.security
        if not s.user or s.password is None:
            raise KafkaError(f"{self.address} is a {s.protocol} listener: give a user and a password")
        req_cls, _ = codec_classes("SaslHandshake")
        resp = self.call("SaslHandshake", 1, req_cls(mechanism=s.mechanism))
        check(resp.error_code, f"SASL handshake with {self.address}",
              f"the broker offers {', '.join(resp.mechanisms)}" if resp.mechanisms else None)
        if s.mechanism == "PLAIN":
            self._sasl_token(f"\0{s.user}\0{s.password}".encode())
            return
        try:
            scram = ScramClient(s.mechanism, s.user, s.password)
            server_first = self._sasl_token(scram.first())
            scram.verify(self._sasl_token(scram.final(server_first)))
        except AuthenticationError as exc:
            raise KafkaError(f"SASL {s.mechanism} with {self.address}: {exc}") from None

    def _sasl_token(self, token: bytes) -> bytes:
        req_cls, _ = codec_classes("SaslAuthenticate")
        resp = self.call("SaslAuthenticate", 1, req_cls(auth_bytes=token))
        check(resp.error_code, f"SASL authentication with {self.address}", resp.error_message)
        return bytes(resp.auth_bytes)

    def _negotiate(self) -> None:
        req_cls, _ = codec_classes("ApiVersions")
        resp = self.call("ApiVersions", 3, req_cls(client_software_name="pstream-cli", client_software_version="1"))
        if resp.error_code == ErrorCode.UNSUPPORTED_VERSION:
            resp = self.call("ApiVersions", 0, req_cls())
        check(resp.error_code, f"ApiVersions from {self.address}")
        self.versions = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}

    def version(self, api: str | int, highest: int) -> int:
        """The version to send: the highest both the broker and pstream's codec speak, at most `highest`."""
        key = api_key(api)
        ours_min, ours_max = codec_versions(key)
        if key not in self.versions:
            raise KafkaError(f"the broker at {self.address} does not support {api_name(key)}",
                             ErrorCode.UNSUPPORTED_VERSION)
        theirs_min, theirs_max = self.versions[key]
        v = min(highest, ours_max, theirs_max)
        if v < max(ours_min, theirs_min):
            raise KafkaError(f"no common version of {api_name(key)} with {self.address} "
                             f"(it speaks {theirs_min}..{theirs_max}, pstream {ours_min}..{min(highest, ours_max)})",
                             ErrorCode.UNSUPPORTED_VERSION)
        return v

    # --- frames ---------------------------------------------------------------------

    def _read_exact(self, n: int, timeout: float) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaError(f"no answer from {self.address} within {timeout:g} s", ErrorCode.REQUEST_TIMED_OUT)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(n - len(out), 1 << 20))
            except TimeoutError:
                continue
            except OSError as exc:
                raise KafkaError(f"connection to {self.address} failed: {exc.strerror or exc}") from None
            if not chunk:
                raise KafkaError(f"the broker at {self.address} closed the connection")
            out += chunk
        return bytes(out)

    def send(self, api: str | int, version: int, request, expect_answer: bool = True) -> int:
        """Sends one request; returns its correlation id (Produce with acks=0 gets no answer)."""
        key = api_key(api)
        cid = self._next_id
        self._next_id += 1
        try:
            self.sock.sendall(encode_request(key, version, cid, request, self.client_id))
        except OSError as exc:
            raise KafkaError(f"cannot send to {self.address}: {exc.strerror or exc}") from None
        if expect_answer:
            self._sent[cid] = (key, version)
        return cid

    def receive(self, correlation_id: int, timeout: float | None = None):
        if correlation_id in self._early:
            return self._early.pop(correlation_id)
        timeout = self.timeout if timeout is None else timeout
        while True:
            (size,) = _i32.unpack(self._read_exact(4, timeout))
            if not 4 <= size <= MAX_RESPONSE_BYTES:
                raise KafkaError(f"the broker at {self.address} sent a frame of {size} bytes")
            frame = self._read_exact(size, timeout)
            (cid,) = _i32.unpack_from(frame)
            if cid not in self._sent:
                raise KafkaError(f"the broker at {self.address} answered correlation id {cid}, never sent")
            key, version = self._sent.pop(cid)
            try:
                got, response = decode_response(key, version, frame)
            except ValueError as exc:
                raise KafkaError(f"cannot decode {api_name(key)} v{version} from {self.address}: {exc}") from None
            if got == correlation_id:
                return response
            self._early[got] = response

    def call(self, api: str | int, version: int, request, timeout: float | None = None):
        return self.receive(self.send(api, version, request), timeout)
