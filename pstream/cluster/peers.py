"""A connection from one broker of the cluster to another, for the requests brokers send each
other (replica Fetch, OffsetForLeaderEpoch, WriteTxnMarkers): Kafka's wire format over the
peer's first listener, one request at a time, reconnecting after any failure."""

from __future__ import annotations

import asyncio
import struct

from pstream.client.wire import decode_response, encode_request
from pstream.errors import PStreamError

_i32 = struct.Struct(">i")
CONNECT_TIMEOUT_S = 5.0


class PeerConnection:
    def __init__(self, node, peer: int, client_id: str):
        self.node = node            # the ClusterNode: the view says where the peer listens
        self.peer = peer
        self.client_id = client_id
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._correlation = 0
        self._lock = asyncio.Lock()

    async def call(self, key: int, version: int, request, timeout_s: float):
        """Sends one request and returns its decoded response; any failure closes the connection
        (the next call opens a new one) and raises."""
        async with self._lock:
            try:
                if self._writer is None:
                    self._reader, self._writer = await self._connect()
                self._correlation += 1
                self._writer.write(encode_request(key, version, self._correlation, request, self.client_id))
                await self._writer.drain()
                size = _i32.unpack(await asyncio.wait_for(self._reader.readexactly(4), timeout_s))[0]
                body = await asyncio.wait_for(self._reader.readexactly(size), timeout_s)
            except BaseException:
                self.close()
                raise
        return decode_response(key, version, body)[1]

    async def _connect(self):
        record = self.node.view.brokers.get(self.peer)
        if record is None:
            raise PStreamError(f"broker {self.peer} is not registered")
        host, port = record.address(self.node.broker.listeners[0].name)
        return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
