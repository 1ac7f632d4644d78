"""The relay: requests a client sent to core k > 0 that only core 0 answers (group, transaction
and admin requests, producer ids, Metadata that may create a topic).

Core k opens one Unix stream connection to core 0 per client connection that needs it and
sends the client's request frames through unchanged, after a first frame saying who the
client is (principal, address, listener), as Kafka's Envelope carries them to the controller.
Core 0 serves that connection as one of its own (RelayedConnection: same dispatch, ACL checks
against the client's principal, answers in order), and core k puts each answer in the client
connection's slot for its request. The socket lives in a directory only this user may enter:
whoever reaches it speaks as any principal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections import deque

from pstream.broker.connection import KafkaConnection

_log = logging.getLogger("pstream.broker")
_len = struct.Struct(">i")


class RelayedConnection(KafkaConnection):
    """Core 0's end of a relay: a client connection of core k, served here."""

    def __init__(self, broker):
        super().__init__(broker, broker.listeners[0])
        self.sasl = None   # authenticated by core k: its principal comes in the first frame
        self._greeted = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = self.host = "relay"
        transport.set_write_buffer_limits(high=0, low=0)
        self.broker.connections.add(self)

    def _request(self, frame: memoryview, pooled: bytearray | None, charge: int) -> None:
        if self._greeted:
            super()._request(frame, pooled, charge)
            return
        try:
            hello = json.loads(bytes(frame))
            self.principal, self.host = hello["principal"], hello["host"]
            self.peer = f"{hello['peer']} via core {hello['core']}"
            self.listener = next((lis for lis in self.broker.listeners if lis.name == hello["listener"]),
                                 self.broker.listeners[0])
        except (ValueError, KeyError, TypeError) as exc:
            self._drop(pooled, charge)
            self.abort(f"unreadable relay greeting: {exc}")
            return
        self._drop(pooled, charge)
        self._greeted = True


class Relay(asyncio.Protocol):
    """Core k's end of a relay for one client connection: frames out in order, answers back in
    the same order into the client connection's slots."""

    def __init__(self, conn: KafkaConnection, path: str, core: int):
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self._waiting: deque = deque()   # the client connection's slots, in the order sent
        self._unsent: list[bytes] = []   # frames written before the connection is up
        self._buf = bytearray()
        self._closed = False
        hello = json.dumps({"principal": conn.principal, "host": conn.host, "peer": conn.peer,
                            "listener": conn.listener.name, "core": core}).encode()
        self._unsent.append(_len.pack(len(hello)) + hello)
        self._opening = asyncio.ensure_future(
            asyncio.get_running_loop().create_unix_connection(lambda: self, path))
        self._opening.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Future) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            self.conn.abort(f"cannot reach core 0 for a request only it answers: {task.exception()}")

    def send(self, frame: memoryview, slot) -> None:
        data = _len.pack(len(frame)) + bytes(frame)
        self._waiting.append(slot)
        if self.transport is not None:
            self.transport.write(data)
        else:
            self._unsent.append(data)

    def connection_made(self, transport) -> None:
        if self._closed:
            transport.close()
            return
        self.transport = transport
        transport.writelines(self._unsent)
        self._unsent = []

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        start = 0
        while len(buf) - start >= 4:
            end = start + 4 + _len.unpack_from(buf, start)[0]
            if len(buf) < end:
                break
            if not self._waiting:
                self.conn.abort("core 0 answered a request that was not relayed")
                return
            self.conn.relayed(self._waiting.popleft(), bytes(buf[start:end]))
            start = end
        del buf[:start]

    def connection_lost(self, exc) -> None:
        self.transport = None
        if self._closed:
            return
        if self._waiting:   # their answers are lost: the client must see the connection fail
            self.conn.abort("core 0's relay closed (core 0 stopping?) with requests unanswered")
        else:   # closed idle (connections.max.idle.ms on core 0): the next relayed request opens another
            self.conn.relay_closed(self)

    def close(self) -> None:
        self._closed = True
        self._opening.cancel()
        if self.transport is not None:
            self.transport.close()
