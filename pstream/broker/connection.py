"""One client connection: frames in, requests dispatched, responses out in request order.

Frames are int32-length-prefixed. Small frames are read into a reusable scratch buffer and
copied out once; a frame larger than the scratch space gets a buffer of its own that the
socket reads straight into, so a 1 MiB produce request is never copied on the way in and its
records reach the shard as memoryviews of that buffer.

Requests are pipelined: each gets a slot in arrival order; handlers may finish out of order,
but responses leave in order, all ready ones in one writelines call. Anything the broker
cannot parse (a bad length, a truncated header or body, an unknown API) closes this
connection with one log line; the broker and other connections carry on.

Each request is counted in its API's ApiStats (pstream.admin.metrics) when its answer is
ready: latency from the arrival of its last bytes, and whether it failed (the handler raised,
the request was refused, the response has a top-level error code, or the handler set
ctx.failed for a partition's error). One dict look-up and a few additions a request.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import deque

from pstream.admin.metrics import UNKNOWN_API
from pstream.broker.dispatch import REGISTRY
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.headers import API_VERSIONS_KEY, read_request_header, write_response_header
from pstream.protocol.primitives import ProtocolError, Reader, Writer

_log = logging.getLogger("pstream.broker")
_len = struct.Struct(">i")

SCRATCH_BYTES = 64 * 1024
MAX_PIPELINED = 128   # requests in flight on one connection before reading pauses


class RequestContext:
    __slots__ = ("broker", "connection", "failed", "header")

    def __init__(self, broker, header, connection):
        self.broker = broker
        self.header = header
        self.connection = connection
        self.failed = False   # set by a handler whose answer carries an error below the top level

    @property
    def version(self) -> int:
        return self.header.api_version


class _Slot:
    __slots__ = ("chunks", "ctx", "frame_buffer", "ready", "started")

    def __init__(self, frame_buffer: bytearray | None = None, ctx: RequestContext | None = None,
                 started: float = 0.0):
        self.chunks = None
        self.ready = False
        self.frame_buffer = frame_buffer   # a pooled receive buffer to return once answered
        self.ctx = ctx
        self.started = started             # time.monotonic() when the request's last bytes arrived


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(self, broker):
        self.broker = broker
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._buf = bytearray(SCRATCH_BYTES)
        self._start = 0          # first unparsed byte in _buf
        self._end = 0            # end of received bytes in _buf
        self._big: bytearray | None = None   # a large frame being received into its own buffer
        self._big_size = 0
        self._big_fill = 0
        self._slots: deque[_Slot] = deque()
        self._closed = False
        self._paused = False
        self._write_paused = False
        self._draining = False
        self.last_active = time.monotonic()
        self._api_stats = broker.metrics.api

    # --- transport callbacks ------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if len(self.broker.connections) >= self.broker.config.max_connections:
            self.abort(f"{len(self.broker.connections)} connections open, the limit (max.connections)")
            return
        self.broker.connections.add(self)

    def connection_lost(self, exc) -> None:
        self._closed = True
        self.broker.connections.discard(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def get_buffer(self, sizehint: int):
        if self._big is not None:
            return memoryview(self._big)[self._big_fill:self._big_size]
        if self._end == len(self._buf):
            pending = self._end - self._start
            if self._start == 0:  # a frame header claims more than fits: cannot happen (see _parse)
                self._buf = bytearray(len(self._buf) * 2)
            else:
                self._buf[:pending] = self._buf[self._start:self._end]
                self._start, self._end = 0, pending
        return memoryview(self._buf)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        self.last_active = time.monotonic()
        if self._big is not None:
            self._big_fill += nbytes
            if self._big_fill == self._big_size:
                frame, self._big = self._big, None
                self._request(memoryview(frame)[:self._big_size], frame)
            return
        self._end += nbytes
        self._parse()

    def eof_received(self):
        if self._big is not None or self._end > self._start:
            have = self._big_fill if self._big is not None else self._end - self._start
            self.abort(f"the client closed its side in the middle of a frame ({have} bytes of it received)")
        return False

    # --- framing ------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        limit = self.broker.config.socket_request_max_bytes
        while not self._closed and self._end - self._start >= 4:
            size = _len.unpack_from(buf, self._start)[0]
            if size <= 0 or size > limit:
                self.abort(f"frame of {size} bytes (the limit is {limit}, socket.request.max.bytes)")
                return
            body = self._start + 4
            if self._end - body >= size:
                frame = bytes(memoryview(buf)[body:body + size])
                self._start = body + size
                self._request(memoryview(frame))
                continue
            if size > len(buf) - body:  # will not fit: receive the rest straight into its own buffer
                have = self._end - body
                self._big = self.broker.frame_pool.acquire(size)
                self._big_size = size
                self._big[:have] = memoryview(buf)[body:self._end]
                self._big_fill = have
                self._start = self._end = 0
            break
        if self._start == self._end:
            self._start = self._end = 0

    # --- requests -----------------------------------------------------------------

    def _request(self, frame: memoryview, pooled: bytearray | None = None) -> None:
        r = Reader(frame)
        try:
            header = read_request_header(r)
        except ProtocolError as exc:
            self.abort(f"unreadable request header: {exc}")
            return
        api = REGISTRY.get(header.api_key)
        if api is None:
            self._refused(UNKNOWN_API)
            self.abort(f"unknown API key {header.api_key} (correlation id {header.correlation_id})")
            return
        if not api.min_version <= header.api_version <= api.max_version:
            if header.api_key == API_VERSIONS_KEY:
                # A v0 body with UNSUPPORTED_VERSION and our ranges: the client retries with one we have.
                self._answer_unsupported_api_versions(header)
                return
            self._refused(api.key)
            self.abort(f"{api.name} v{header.api_version} is not supported "
                       f"(versions {api.min_version}-{api.max_version})")
            return
        try:
            request = api.read(header.api_version, r)
        except ProtocolError as exc:
            self._refused(api.key)
            self.abort(f"malformed {api.name} v{header.api_version} request: {exc}")
            return
        ctx = RequestContext(self.broker, header, self)
        slot = _Slot(pooled, ctx, self.last_active)
        self._slots.append(slot)
        self._update_reading()
        try:
            result = api.handler(ctx, request)
        except Exception:
            _log.exception("%s: %s v%d handler failed; closing", self.peer, api.name, header.api_version)
            self._count(slot, api.key, True)
            self.abort(None)
            return
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda t, s=slot, a=api, h=header: self._finished(t, s, a, h))
        else:
            self._complete(slot, api, header, result)

    def _finished(self, task: asyncio.Task, slot: _Slot, api, header) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            _log.error("%s: %s v%d handler failed; closing", self.peer, api.name, header.api_version,
                       exc_info=exc)
            self._count(slot, api.key, True)
            self.abort(None)
            return
        self._complete(slot, api, header, task.result())

    def _count(self, slot: _Slot, api_key: int, failed) -> None:
        self._api_stats[api_key].observe(time.monotonic() - slot.started, failed)

    def _refused(self, api_key: int) -> None:
        """Counts a request refused before it reached a handler (the connection closes)."""
        self._api_stats[api_key].observe(time.monotonic() - self.last_active, True)

    def _complete(self, slot: _Slot, api, header, response) -> None:
        ctx = slot.ctx
        if ctx is not None:
            slot.ctx = None
            self._count(slot, api.key, ctx.failed or getattr(response, "error_code", 0))
        if response is not None:
            w = Writer()
            w.int32(0)  # size, patched below
            head = w.buf
            write_response_header(w, api.key, header.api_version, header.correlation_id)
            api.write(header.api_version, w, response)
            _len.pack_into(head, 0, w.total() - 4)
            slot.chunks = w.chunks()
        if slot.frame_buffer is not None:
            self.broker.frame_pool.release(slot.frame_buffer)   # kept only if no view of it remains
            slot.frame_buffer = None
        slot.ready = True
        self._flush()

    def _answer_unsupported_api_versions(self, header) -> None:
        from pstream.broker.handlers.api_versions import supported_versions
        from pstream.protocol.messages.api_versions import ApiVersionsResponse

        slot = _Slot(None, RequestContext(self.broker, header, self), self.last_active)
        self._slots.append(slot)
        response = ApiVersionsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=supported_versions())
        header.api_version = 0
        self._complete(slot, REGISTRY[API_VERSIONS_KEY], header, response)

    def _flush(self) -> None:
        if self._closed:
            self._slots.clear()
            return
        out = []
        slots = self._slots
        while slots and slots[0].ready:
            chunks = slots.popleft().chunks
            if chunks:
                out.extend(chunks)
        if out:
            self.transport.writelines(out)
            self.last_active = time.monotonic()
        self._update_reading()

    def drain(self) -> None:
        """Stops reading requests (the broker is shutting down); those in flight are still answered."""
        self._draining = True
        self._update_reading()

    def _update_reading(self) -> None:
        want_pause = self._draining or self._write_paused or len(self._slots) >= MAX_PIPELINED
        if self._closed or want_pause == self._paused:
            return
        self._paused = want_pause
        if want_pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    @property
    def idle(self) -> bool:
        return not self._slots

    def abort(self, why: str | None) -> None:
        """Closes this connection (one log line saying why); responses not yet sent are dropped."""
        if self._closed:
            return
        if why:
            _log.warning("%s: closing the connection: %s", self.peer, why)
        self._closed = True
        self._slots.clear()
        if self.transport is not None:
            self.transport.abort()
