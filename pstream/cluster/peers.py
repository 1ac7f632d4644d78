"""A connection from one broker of the cluster to another, for the requests brokers send each
other (replica Fetch, OffsetForLeaderEpoch, WriteTxnMarkers): Kafka's wire format over the
peer's inter-broker listener (`inter_broker_listener_name`, Kafka's setting; the first by
default), one request at a time, reconnecting after any failure. On a TLS listener the broker
checks the peer's certificate against `ssl_cafile` and shows its own (mutual TLS); on a SASL
one it logs in as `inter_broker_user` (PLAIN or SCRAM), as a Kafka broker does with its JAAS
login. The peer authorizes it like any client: it needs CLUSTER_ACTION on the cluster."""

from __future__ import annotations

import asyncio
import ssl
import struct

from pstream.client.wire import codec_classes, decode_response, encode_request
from pstream.errors import PStreamError
from pstream.protocol.error_codes import ErrorCode
from pstream.security.scram import AuthenticationError, ScramClient

_i32 = struct.Struct(">i")
CONNECT_TIMEOUT_S = 5.0
SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36


def peer_tls_context(config) -> ssl.SSLContext:
    """What a broker trusts (ssl_cafile, else the system's CAs) and shows (its own certificate)."""
    context = ssl.create_default_context(cafile=config.ssl_cafile)
    context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, config.ssl_key_password)
    return context


class PeerConnection:
    def __init__(self, node, peer: int, client_id: str):
        self.node = node            # the ClusterNode: the view says where the peer listens
        self.peer = peer
        self.client_id = client_id
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._correlation = 0
        self._lock = asyncio.Lock()
        self._renew_at: float | None = None   # a SASL session's lifetime (KIP-368): reconnect before it ends
        self.listener = node.broker.config.inter_broker_listener()

    async def call(self, key: int, version: int, request, timeout_s: float):
        """Sends one request and returns its decoded response; any failure closes the connection
        (the next call opens a new one) and raises. A connection kept from an earlier call that
        turns out closed (the peer restarted meanwhile) is replaced once and the request sent
        again: every request between brokers may be (a fetch, a verification, a marker, which
        ends nothing twice)."""
        async with self._lock:
            try:
                if self._renew_at is not None and asyncio.get_running_loop().time() >= self._renew_at:
                    self.close()   # the peer would close it at the end of its session
                if self._writer is not None:
                    try:
                        return await self._exchange(key, version, request, timeout_s)
                    except (ConnectionError, asyncio.IncompleteReadError):
                        self.close()
                await self._connect(timeout_s)
                return await self._exchange(key, version, request, timeout_s)
            except BaseException:
                self.close()
                raise

    async def _exchange(self, key: int, version: int, request, timeout_s: float):
        self._correlation += 1
        self._writer.write(encode_request(key, version, self._correlation, request, self.client_id))
        await self._writer.drain()
        size = _i32.unpack(await asyncio.wait_for(self._reader.readexactly(4), timeout_s))[0]
        body = await asyncio.wait_for(self._reader.readexactly(size), timeout_s)
        return decode_response(key, version, body)[1]

    async def _connect(self, timeout_s: float) -> None:
        record = self.node.view.brokers.get(self.peer)
        if record is None:
            raise PStreamError(f"broker {self.peer} is not registered")
        host, port = record.address(self.listener.name)
        config = self.node.broker.config
        tls = dict(ssl=peer_tls_context(config), server_hostname=host) if self.listener.tls else {}
        self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(host, port, **tls),
                                                            CONNECT_TIMEOUT_S)
        if self.listener.sasl:
            await self._authenticate(*config.inter_broker_credentials(), f"{host}:{port}", timeout_s)

    async def _authenticate(self, user: str, password: str, mechanism: str, where: str, timeout_s: float) -> None:
        """SaslHandshake v1, then SaslAuthenticate: PLAIN in one token, SCRAM in two."""
        handshake, authenticate = codec_classes(SASL_HANDSHAKE)[0], codec_classes(SASL_AUTHENTICATE)[0]
        answer = await self._exchange(SASL_HANDSHAKE, 1, handshake(mechanism=mechanism), timeout_s)
        if answer.error_code:
            raise PStreamError(f"broker {self.peer} at {where} does not offer SASL {mechanism} "
                               f"(it offers {', '.join(answer.mechanisms)})")

        async def token(data: bytes) -> bytes:
            answer = await self._exchange(SASL_AUTHENTICATE, 1, authenticate(auth_bytes=data), timeout_s)
            if answer.error_code:
                raise PStreamError(f"broker {self.peer} at {where} refused inter_broker_user {user!r} "
                                   f"({ErrorCode(answer.error_code).name}: {answer.error_message})")
            if answer.session_lifetime_ms > 0:
                self._renew_at = asyncio.get_running_loop().time() + answer.session_lifetime_ms / 1000 * 0.8
            return bytes(answer.auth_bytes)
        if mechanism == "PLAIN":
            await token(f"\0{user}\0{password}".encode())
            return
        scram = ScramClient(mechanism, user, password)
        try:
            scram.verify(await token(scram.final(await token(scram.first()))))
        except AuthenticationError as exc:
            raise PStreamError(f"SASL {mechanism} with broker {self.peer} at {where}: {exc}") from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._renew_at = None
