"""One client connection: frames in, requests dispatched, responses out in request order.

Frames are int32-length-prefixed. Small frames are read into a reusable scratch buffer and
copied out once; a frame larger than the scratch space gets a buffer of its own once the
scratch is full, and the socket reads straight into it, so a 1 MiB produce request is copied
once on the way in and its records reach the shard as memoryviews of that buffer. That buffer
grows as the frame's bytes arrive (FIRST_FRAME_BYTES, then doubling), never from what the
length prefix claims.

Memory is bounded whatever the client does:
- every frame is charged to the broker's MemoryBudget (queued_max_request_bytes) before it is
  copied or its buffer grows; when the budget is spent, this connection stops reading until
  another request's memory is released. Fetch data is charged as it is read (`charged_read`),
  encoded responses until the kernel has taken them, and all of it is released exactly once:
  when the response leaves, or when the connection closes;
- back-pressure: while more than connections_max_unsent_bytes of responses wait to be sent,
  no request is dispatched and the connection is not read (Kafka mutes such a channel), and at
  most one Fetch per connection is being answered at a time, so a client that never reads
  holds at most about that bound plus one response;
- a request must arrive whole within request_receive_timeout_ms of its first byte (slow-loris
  clients), else the connection is closed. Each close is counted by reason in the metrics.

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
import contextvars
import logging
import struct
import time
from collections import deque

from pstream._core import WireReader, WireWriter
from pstream.admin.metrics import UNKNOWN_API
from pstream.broker.cores import CHANGES_SHARED_STATE
from pstream.broker.dispatch import REGISTRY
from pstream.broker.frames import FramePool
from pstream.cluster.shared_state import CHANGING_APIS as SHARED_CHANGING_APIS
from pstream.errors import ClusterUnavailableError
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.headers import API_VERSIONS_KEY, read_request_header, write_response_header
from pstream.protocol.primitives import ProtocolError
from pstream.security.acls import CLUSTER_NAME, ResourceType
from pstream.security.listeners import ANONYMOUS, distinguished_name
from pstream.security.sasl import PRE_AUTH_APIS, SaslSession, SaslStateError
from pstream.security.scram import AuthenticationError

_log = logging.getLogger("pstream.broker")
_len = struct.Struct(">i")
_api_key = struct.Struct(">h")

SCRATCH_BYTES = 64 * 1024
FIRST_FRAME_BYTES = 2 << 20   # a large frame's first buffer (a 1 MB produce request fits at once)
MAX_PIPELINED = 128   # requests in flight on one connection before reading pauses
FETCH_KEY = 1         # at most one Fetch per connection is answered at a time

# Why a connection was closed: the label of pstream_connections_closed_total.
CLOSE_RECEIVE_TIMEOUT = "receive_timeout"
CLOSE_OVERSIZE = "oversize"
CLOSE_BAD_REQUEST = "bad_request"
CLOSE_HANDLER_ERROR = "handler_error"
CLOSE_MAX_CONNECTIONS = "max_connections"
CLOSE_IDLE = "idle"
CLOSE_EOF_MID_FRAME = "eof_mid_frame"
CLOSE_UNAUTHENTICATED = "unauthenticated"           # a request other than SASL's before authentication
CLOSE_AUTHENTICATION_FAILED = "authentication_failed"
CLOSE_CONNECTION_RATE = "connection_rate"               # KIP-612: the ip's connection_creation_rate

# The request a handler is running for (set around its call; tasks copy it): charged_read
# charges fetch data to that request.
_handling: contextvars.ContextVar = contextvars.ContextVar("pstream_handling", default=None)


async def charged_read(room: int, read, *args):
    """`await read(*args)`, which allocates up to `room` bytes, once the broker's memory budget
    has room; what it returned stays charged to the request being handled until its response
    has been sent. Outside a connection (tests, tools) it just reads."""
    handling = _handling.get()
    if handling is None:
        return await read(*args)
    conn, slot = handling
    budget = conn.broker.memory
    await budget.acquire(room, conn.fetch_headroom)
    try:
        data = await read(*args)
    except BaseException:
        budget.release(room)
        raise
    if slot.released:   # the connection closed meanwhile: nothing will send this
        budget.release(room)
    else:
        kept = min(len(data), room)
        slot.charge += kept
        budget.release(room - kept)
    return data


def charged_read_now(room: int, read, *args):
    """charged_read for a read that does not wait: `read(*args)` once the budget has room for
    `room` bytes now, else None (nothing read, nothing charged: the caller takes the waiting path)."""
    handling = _handling.get()
    if handling is None:
        return read(*args)
    conn, slot = handling
    budget = conn.broker.memory
    if budget.used + room > budget.limit - conn.fetch_headroom:
        return None
    budget.force(room)
    try:
        data = read(*args)
    except BaseException:
        budget.release(room)
        raise
    kept = min(len(data), room)
    slot.charge += kept
    budget.release(room - kept)
    return data


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

    def allowed(self, operation, resource_type, name: str) -> bool:
        """Whether this connection's principal may do `operation` on the resource (the broker's
        authorizer; everything when authorization is off)."""
        conn = self.connection   # None: a request made in process (the benchmarks), as an anonymous local client
        principal, host = (conn.principal, conn.host) if conn is not None else (ANONYMOUS, "127.0.0.1")
        return self.broker.authorizer.authorize(principal, host, operation, resource_type, name)

    def allowed_on_cluster(self, operation) -> bool:
        return self.allowed(operation, ResourceType.CLUSTER, CLUSTER_NAME)


class _Slot:
    __slots__ = ("charge", "chunks", "ctx", "fetch", "frame_buffer", "ready", "released", "started")

    def __init__(self, frame_buffer: bytearray | None = None, ctx: RequestContext | None = None,
                 started: float = 0.0, charge: int = 0):
        self.chunks = None
        self.ready = False
        self.frame_buffer = frame_buffer   # a pooled receive buffer to return once answered
        self.ctx = ctx
        self.started = started             # time.monotonic() when the request's last bytes arrived
        self.charge = charge               # bytes of the memory budget this request holds
        self.released = False              # its charge went back (sent, or the connection closed)
        self.fetch = False


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(self, broker, listener):
        self.broker = broker
        self.listener = listener
        # Who the client is: User:ANONYMOUS on PLAINTEXT, its certificate's subject on SSL (mTLS),
        # the SASL user once authenticated (until then the connection may only authenticate).
        self.principal = ANONYMOUS
        self.sasl = SaslSession(broker.config.sasl_mechanisms(), broker.credentials,
                                broker.config.connections_max_reauth_ms, broker.oauth) if listener.sasl else None
        self.close_after_flush = False   # a failed authentication: answer, then close
        self._throttled_until = 0.0      # not read until then: over a client quota (KIP-219)
        config = broker.config
        self.budget = broker.memory
        self.max_unsent = config.connections_max_unsent_bytes
        self.receive_timeout = config.request_receive_timeout_ms / 1000
        # Fetch data leaves room in the budget for one largest request (producers go on).
        self.fetch_headroom = min(config.socket_request_max_bytes, config.queued_max_request_bytes // 2)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.host = "?"
        self._buf = bytearray(SCRATCH_BYTES)
        self._start = 0          # first unparsed byte in _buf
        self._end = 0            # end of received bytes in _buf
        self._big: bytearray | None = None   # a large frame being received into its own buffer
        self._big_size = 0
        self._big_fill = 0
        self._slots: deque[_Slot] = deque()
        self._closed = False
        self._paused = False
        self._draining = False
        self._parsing = False     # in _parse: callbacks must not start another
        self._parked = None       # (frame, pooled buffer, charge) read whole but not dispatched yet
        self._fetches = 0         # Fetch requests being answered
        self._unsent = 0          # bytes queued on the transport (charged to the budget)
        self._granted = 0         # budget taken for the frame this connection waited for
        self._budget_wait = None  # the budget's handle while this connection waits for memory
        self._frame_started = 0.0   # when the first byte of the frame not yet whole arrived
        self._deadline = None       # the timer that checks it
        self.muted = False          # not read because of unsent responses
        self._relay = None          # to core 0, for requests only it answers (pstream serve --cores)
        self.last_active = time.monotonic()
        self._api_stats = broker.metrics.api

    # --- transport callbacks ------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.host = peer[0] if peer else "?"
        if self.listener.tls and self.sasl is None:
            cert = transport.get_extra_info("peercert")
            if cert:
                try:
                    self.principal = self.broker.principal_mapper.principal(distinguished_name(cert))
                except ValueError as exc:   # no mapping rule fits: refused, as Kafka does
                    self.abort(f"client certificate refused: {exc}", CLOSE_UNAUTHENTICATED)
                    return
        if len(self.broker.connections) >= self.broker.config.max_connections:
            self.abort(f"{len(self.broker.connections)} connections open, the limit (max.connections)",
                       CLOSE_MAX_CONNECTIONS)
            return
        # pause_writing whenever anything waits in user space, resume_writing once all of it is
        # in the kernel: _unsent is then exact at both ends.
        transport.set_write_buffer_limits(high=0, low=0)
        self.broker.connections.add(self)
        throttle = self.broker.quota_enforcer.connection(self.host, time.monotonic())
        if throttle:   # KIP-612: past its ip's connection_creation_rate, held unread, then closed
            self._throttled_until = time.monotonic() + throttle / 1000
            self._update_reading()
            asyncio.get_running_loop().call_later(
                throttle / 1000, self.abort, f"over the connection_creation_rate of {self.host}", CLOSE_CONNECTION_RATE)

    def connection_lost(self, exc) -> None:
        self._close()

    def pause_writing(self) -> None:
        self._set_unsent(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self._set_unsent(0)

    def get_buffer(self, sizehint: int):
        if self._big is not None:
            return memoryview(self._big)[self._big_fill:min(len(self._big), self._big_size)]
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
            self._receive_big()
        else:
            self._end += nbytes
            self._parse()
        self._watch_partial_frame()

    def eof_received(self):
        if self._frame_incomplete():
            have = self._big_fill if self._big is not None else self._end - self._start
            self.abort(f"the client closed its side in the middle of a frame ({have} bytes of it received)",
                       CLOSE_EOF_MID_FRAME)
        return False

    # --- framing ------------------------------------------------------------------

    def _parse(self) -> None:
        if self._parsing:
            return
        self._parsing = True
        try:
            self._parse_frames()
        finally:
            self._parsing = False
        self._update_reading()

    def _parse_frames(self) -> None:
        if self._parked is not None and not self._dispatch_parked():
            return
        buf = self._buf
        limit = self.broker.config.socket_request_max_bytes
        while not self._closed and self._parked is None and self._big is None and self._end - self._start >= 4:
            size = _len.unpack_from(buf, self._start)[0]
            if size <= 0 or size > limit:
                self.abort(f"frame of {size} bytes (the limit is {limit}, socket.request.max.bytes)", CLOSE_OVERSIZE)
                return
            body = self._start + 4
            if self._end - body >= size:
                if not self._take(size):
                    return
                frame = bytes(memoryview(buf)[body:body + size])
                self._start = body + size
                self._frame_started = 0.0
                self._request(memoryview(frame), None, size)
                continue
            if size + 4 <= len(buf):   # fits the scratch: wait for the rest (get_buffer makes room)
                break
            if self._start > 0:   # a large frame: its start goes to the front, the scratch fills first
                pending = self._end - self._start
                buf[:pending] = buf[self._start:self._end]
                self._start, self._end, body = 0, pending, 4
            if self._end < len(buf):   # nothing is allocated for a bare length prefix
                break
            # The scratch is full of this frame's start: receive the rest into a buffer of its own.
            have = self._end - body
            cap = FramePool.size_for(min(size, max(FIRST_FRAME_BYTES, 2 * have)))
            if not self._take(cap):
                return
            self._big = self.broker.frame_pool.acquire(cap)
            self._big_size = size
            self._big[:have] = memoryview(buf)[body:self._end]
            self._big_fill = have
            self._start = self._end = 0
        if self._start == self._end:
            self._start = self._end = 0

    def _receive_big(self) -> None:
        """After bytes arrived in the large frame's buffer: dispatch it once whole, or grow it
        (within the budget) once full."""
        big = self._big
        if self._big_fill >= self._big_size:
            self._big = None
            self._frame_started = 0.0
            self._request(memoryview(big)[:self._big_size], big, len(big))
            self._parse()
            return
        if self._big_fill < len(big):
            return
        cap = FramePool.size_for(min(self._big_size, 2 * len(big)))
        if not self._take(cap - len(big)):
            self._update_reading()
            return
        grown = self.broker.frame_pool.acquire(cap)
        grown[:self._big_fill] = big
        self._big = grown
        self.broker.frame_pool.release(big)

    def _take(self, need: int) -> bool:
        """Charges `need` bytes of the budget for the frame in hand; False while it must wait
        (reading pauses; the grant resumes it)."""
        if self._granted >= need:
            self._granted -= need
            return True
        if self._budget_wait is not None:
            return False
        need -= self._granted
        handle = self.budget.request(need, lambda: self._on_grant(need))
        if handle is None:
            self._granted = 0
            return True
        self._budget_wait = handle
        self._update_reading()
        return False

    def _on_grant(self, nbytes: int) -> None:
        self._budget_wait = None
        self._granted += nbytes
        if self._closed:
            return
        if self._big is not None:
            self._receive_big()
        self._parse()

    # --- the receive deadline -----------------------------------------------------

    def _frame_incomplete(self) -> bool:
        if self._big is not None:
            return True
        pending = self._end - self._start
        return 0 < pending and (pending < 4 or pending - 4 < _len.unpack_from(self._buf, self._start)[0])

    def _watch_partial_frame(self) -> None:
        if self._closed or not self._frame_incomplete():
            return
        if not self._frame_started:
            self._frame_started = self.last_active
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(self.receive_timeout, self._check_deadline)

    def _check_deadline(self) -> None:
        self._deadline = None
        if self._closed or not self._frame_incomplete():
            return
        now = time.monotonic()
        if self._paused and self._budget_wait is None:
            self._frame_started = now   # not reading for our own reasons (unsent output): not the client's delay
        elif now - self._frame_started >= self.receive_timeout:
            have = self._big_fill if self._big is not None else self._end - self._start
            self.abort(f"a request did not arrive whole within request_receive_timeout_ms "
                       f"({self.receive_timeout * 1000:.0f}; {have} bytes of it received)", CLOSE_RECEIVE_TIMEOUT)
            return
        self._deadline = asyncio.get_running_loop().call_later(
            self.receive_timeout - (now - self._frame_started), self._check_deadline)

    # --- requests -----------------------------------------------------------------

    def _request(self, frame: memoryview, pooled: bytearray | None, charge: int) -> None:
        """A whole frame, holding `charge` bytes of the budget: dispatched now, or parked until
        back-pressure allows."""
        is_fetch = len(frame) >= 2 and _api_key.unpack_from(frame)[0] == FETCH_KEY
        if not self._may_dispatch(is_fetch):
            self._parked = (frame, pooled, charge)
            self._update_reading()
            return
        self._dispatch(frame, pooled, charge, is_fetch)

    def _may_dispatch(self, is_fetch: bool) -> bool:
        return (not self._draining and self._unsent <= self.max_unsent and len(self._slots) < MAX_PIPELINED
                and not (is_fetch and self._fetches) and not self.throttled)

    @property
    def throttled(self) -> bool:
        return self._throttled_until > 0 and time.monotonic() < self._throttled_until

    def _parked_is_fetch(self) -> bool:
        frame = self._parked[0]
        return len(frame) >= 2 and _api_key.unpack_from(frame)[0] == FETCH_KEY

    def _dispatch_parked(self) -> bool:
        frame, pooled, charge = self._parked
        is_fetch = self._parked_is_fetch()
        if not self._may_dispatch(is_fetch):
            return False
        self._parked = None
        self._dispatch(frame, pooled, charge, is_fetch)
        return True

    def _dispatch(self, frame: memoryview, pooled: bytearray | None, charge: int, is_fetch: bool) -> None:
        if self.sasl is not None and self.sasl.raw and self.sasl.exchanging:
            self._dispatch_sasl_token(frame, pooled, charge)
            return
        r = WireReader(frame)
        try:
            header = read_request_header(r)
        except ProtocolError as exc:
            self._drop(pooled, charge)
            self.abort(f"unreadable request header: {exc}", CLOSE_BAD_REQUEST)
            return
        api = REGISTRY.get(header.api_key)
        if api is None:
            self._drop(pooled, charge)
            self._refused(UNKNOWN_API)
            self.abort(f"unknown API key {header.api_key} (correlation id {header.correlation_id})",
                       CLOSE_BAD_REQUEST)
            return
        if self.sasl is not None and header.api_key not in PRE_AUTH_APIS and (
                not self.sasl.complete or self.sasl.expired(time.monotonic())):
            self._drop(pooled, charge)
            self._refused(api.key)
            why = "its authentication expired (connections_max_reauth_ms) and was not renewed" \
                if self.sasl.complete else "before SASL authentication (only ApiVersions, SaslHandshake and " \
                                           "SaslAuthenticate are allowed until then)"
            self.abort(f"{api.name} request {why}", CLOSE_UNAUTHENTICATED)
            return
        if not api.min_version <= header.api_version <= api.max_version:
            if header.api_key == API_VERSIONS_KEY:
                # A v0 body with UNSUPPORTED_VERSION and our ranges: the client retries with one we have.
                self._drop(pooled, charge)
                self._answer_unsupported_api_versions(header)
                return
            self._drop(pooled, charge)
            self._refused(api.key)
            self.abort(f"{api.name} v{header.api_version} is not supported "
                       f"(versions {api.min_version}-{api.max_version})", CLOSE_BAD_REQUEST)
            return
        try:
            request = api.read(header.api_version, r)
        except ProtocolError as exc:
            self._drop(pooled, charge)
            self._refused(api.key)
            self.abort(f"malformed {api.name} v{header.api_version} request: {exc}", CLOSE_BAD_REQUEST)
            return
        if self.broker.core_map.core and not self.broker.core_map.answers_here(api.key, request, self.broker.log):
            self._relay_request(frame, pooled, charge, header)   # only core 0 answers it (cores/relay.py)
            return
        ctx = RequestContext(self.broker, header, self)
        slot = _Slot(pooled, ctx, self.last_active, charge)
        if is_fetch:
            slot.fetch = True
            self._fetches += 1
        self._slots.append(slot)
        token = _handling.set((self, slot))
        try:
            if self.broker.cluster is not None and api.key in SHARED_CHANGING_APIS:   # under the cluster's lock
                result = self.broker.cluster.shared.answer(ctx, request, lambda: api.handler(ctx, request))
            else:
                result = api.handler(ctx, request)
            if self.broker.supervisor is not None and api.key in CHANGES_SHARED_STATE:   # --cores: tell the others
                result = self.broker.supervisor.after_change(api.key, result, self.broker.log.topic_changes)
            if not isinstance(result, asyncio.Future) and asyncio.iscoroutine(result):   # a Future: no ABC check
                result = asyncio.ensure_future(result)   # copies the context: charged_read finds this slot
        except Exception:
            _log.exception("%s: %s v%d handler failed; closing", self.peer, api.name, header.api_version)
            self._count(slot, api.key, True)
            self.abort(None, CLOSE_HANDLER_ERROR)
            return
        finally:
            _handling.reset(token)
        if isinstance(result, asyncio.Future):   # a task, or a future the handler resolves (Produce)
            result.add_done_callback(lambda t, s=slot, a=api, h=header: self._finished(t, s, a, h))
        else:
            self._complete(slot, api, header, result)

    def _relay_request(self, frame: memoryview, pooled: bytearray | None, charge: int, header) -> None:
        slot = _Slot(pooled, RequestContext(self.broker, header, self), self.last_active, charge)
        self._slots.append(slot)
        if self._relay is None:
            from pstream.broker.cores.relay import Relay

            self._relay = Relay(self, self.broker.relay_path, self.broker.core_map.core)
        self._relay.send(frame, slot)

    def relay_closed(self, relay) -> None:
        if self._relay is relay:
            self._relay = None

    def relayed(self, slot: _Slot, answer: bytes) -> None:
        """Core 0's answer (a whole response frame) to a request relayed to it, sent as it came."""
        ctx, slot.ctx = slot.ctx, None
        self._count(slot, ctx.header.api_key, False)
        if slot.frame_buffer is not None:
            self.broker.frame_pool.release(slot.frame_buffer)
            slot.frame_buffer = None
        if slot.released:
            return
        self.budget.force(len(answer))
        self.budget.release(slot.charge)
        slot.charge = len(answer)
        slot.chunks = [answer]
        slot.ready = True
        self._flush()

    def _dispatch_sasl_token(self, frame: memoryview, pooled: bytearray | None, charge: int) -> None:
        """After a SaslHandshake v0 the client sends its SASL tokens as bare frames, and gets the
        server's back the same way (Kafka's SaslServerAuthenticator); a failure closes the
        connection after connection_failed_authentication_delay_ms (v0 has no error answer)."""
        slot = _Slot(pooled, None, self.last_active, charge)
        self._slots.append(slot)
        task = asyncio.ensure_future(self.sasl.authenticate(bytes(frame), self.broker.log.run_blocking))
        task.add_done_callback(lambda t: self._sasl_token_done(t, slot))

    def _sasl_token_done(self, task: asyncio.Task, slot: _Slot) -> None:
        if task.cancelled() or slot.released:
            return
        exc = task.exception()
        session = self.sasl
        if exc is not None:
            if not isinstance(exc, (AuthenticationError, SaslStateError)):
                _log.error("%s: SASL %s failed", self.peer, session.mechanism, exc_info=exc)
            self.broker.metrics.authenticated(session.mechanism, "failure")
            _log.warning("%s: SASL %s authentication failed (user %s): %s", self.peer, session.mechanism,
                         session.user or "?", exc)
            self.drain()
            asyncio.get_running_loop().call_later(self.broker.config.connection_failed_authentication_delay_ms / 1000,
                                                  self.abort, None, CLOSE_AUTHENTICATION_FAILED)
            return
        token = task.result()
        if not session.exchanging:   # done: requests follow as Kafka requests again
            session.raw = False
            self.principal = session.principal
            self.broker.metrics.authenticated(session.mechanism, "success")
        size = 4 + len(token)
        self.budget.force(size)
        self.budget.release(slot.charge)
        slot.charge = size
        slot.chunks = [_len.pack(len(token)) + token]
        if slot.frame_buffer is not None:
            self.broker.frame_pool.release(slot.frame_buffer)
            slot.frame_buffer = None
        slot.ready = True
        self._flush()

    def _drop(self, pooled: bytearray | None, charge: int) -> None:
        """A frame that will not be answered: its memory goes back."""
        self.budget.release(charge)
        if pooled is not None:
            self.broker.frame_pool.release(pooled)

    def _finished(self, task: asyncio.Task, slot: _Slot, api, header) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if isinstance(exc, ClusterUnavailableError):   # the client reconnects and retries
                _log.warning("%s: %s: %s; closing", self.peer, api.name, exc)
            else:
                _log.error("%s: %s v%d handler failed; closing", self.peer, api.name, header.api_version,
                           exc_info=exc)
            self._count(slot, api.key, True)
            self.abort(None, CLOSE_HANDLER_ERROR)
            return
        self._complete(slot, api, header, task.result())

    def _count(self, slot: _Slot, api_key: int, failed) -> None:
        self._api_stats[api_key].observe(time.monotonic() - slot.started, failed)

    def _refused(self, api_key: int) -> None:
        """Counts a request refused before it reached a handler (the connection closes)."""
        self._api_stats[api_key].observe(time.monotonic() - self.last_active, True)

    def _throttle(self, slot: _Slot, api, header, response) -> None:
        """Records the request against its client's quotas (pstream/security/quotas.py); past them
        the answer says how long to back off, and this connection is not read for that long."""
        now = time.monotonic()
        nbytes = slot.charge
        if api.key == FETCH_KEY and response is not None:
            nbytes = sum(len(p.records or b"") for t in response.responses for p in t.partitions)
        throttle = self.broker.quota_enforcer.record(self.principal, header.client_id or "", api.key, nbytes,
                                                     now - slot.started, now)
        if throttle <= 0:
            return
        if response is not None and hasattr(response, "throttle_time_ms"):
            response.throttle_time_ms = max(response.throttle_time_ms or 0, throttle)
        until = now + throttle / 1000
        if until > self._throttled_until:
            self._throttled_until = until
            asyncio.get_running_loop().call_later(throttle / 1000, self._update_reading)
            self._update_reading()

    def _complete(self, slot: _Slot, api, header, response) -> None:
        ctx = slot.ctx
        if ctx is not None:
            slot.ctx = None
            self._count(slot, api.key, ctx.failed or getattr(response, "error_code", 0))
            if self.broker.quota_enforcer.quotas.quotas:
                self._throttle(slot, api, header, response)
        if slot.fetch:
            slot.fetch = False
            self._fetches -= 1
        if slot.frame_buffer is not None:
            self.broker.frame_pool.release(slot.frame_buffer)   # kept only if no view of it remains
            slot.frame_buffer = None
        if slot.released:   # the connection closed: nothing to send
            return
        size = 0
        if response is not None:
            w = WireWriter()
            w.int32(0)  # size, patched below
            head = w.buf
            write_response_header(w, api.key, header.api_version, header.correlation_id)
            api.write(header.api_version, w, response)
            size = w.total()
            _len.pack_into(head, 0, size - 4)
            slot.chunks = w.chunks()
        # The request's frame is gone; the encoded response (fetch data included) is what it holds now.
        self.budget.force(size)
        self.budget.release(slot.charge)
        slot.charge = size
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
            self._release_slots()
            return
        out = []
        sent = 0
        slots = self._slots
        while slots and slots[0].ready:
            slot = slots.popleft()
            if slot.chunks:
                out.extend(slot.chunks)
            sent += slot.charge
            slot.released = True
        if out:
            self.transport.writelines(out)   # what the kernel did not take is charged in pause_writing
            self.last_active = time.monotonic()
            if self._unsent:
                self._set_unsent(self.transport.get_write_buffer_size())
        self.budget.release(sent)
        if self.close_after_flush and not slots:
            self.drain()
            self.broker.metrics.connections_closed[CLOSE_AUTHENTICATION_FAILED] = \
                self.broker.metrics.connections_closed.get(CLOSE_AUTHENTICATION_FAILED, 0) + 1
            self.transport.close()   # after what was written is sent
            return
        self._update_reading()

    def _set_unsent(self, nbytes: int) -> None:
        if self._closed:
            return
        self.budget.force(nbytes - self._unsent)   # charge first, then release: never under-counted
        self._unsent = nbytes
        was_muted, self.muted = self.muted, nbytes > self.max_unsent
        if self.muted and not was_muted:
            self.broker.metrics.connections_muted += 1
        self._update_reading()

    def drain(self) -> None:
        """Stops reading requests (the broker is shutting down); those in flight are still answered."""
        self._draining = True
        self._update_reading()

    def _update_reading(self) -> None:
        if self._closed:
            return
        if self._parked is not None and not self._parsing and self._may_dispatch(self._parked_is_fetch()):
            self._parse()   # back-pressure eased: the parked request and the frames behind it go on
            return
        want_pause = (self._draining or self._parked is not None or self._budget_wait is not None
                      or self._unsent > self.max_unsent or len(self._slots) >= MAX_PIPELINED or self.throttled)
        if want_pause == self._paused:
            return
        self._paused = want_pause
        if want_pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()
            if not self._parsing:
                self._parse()   # frames that arrived before the pause

    @property
    def idle(self) -> bool:
        return not self._slots

    def _release_slots(self) -> None:
        held = 0
        for slot in self._slots:
            if not slot.released:
                slot.released = True
                held += slot.charge
        self._slots.clear()
        self.budget.release(held)

    def _close(self) -> None:
        """Gives back everything this connection holds of the budget (once)."""
        if self._closed:
            return
        self._closed = True
        self.broker.connections.discard(self)
        if self._relay is not None:
            self._relay.close()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.budget.cancel(self._budget_wait)
        self._budget_wait = None
        held = self._granted + self._unsent
        self._granted = self._unsent = 0
        if self._big is not None:
            held += len(self._big)
            self._big = None
        if self._parked is not None:
            held += self._parked[2]
            self._parked = None
        self.budget.release(held)
        self._release_slots()

    def abort(self, why: str | None, reason: str | None = None) -> None:
        """Closes this connection (one log line saying why; counted by `reason`); responses not
        yet sent are dropped."""
        if self._closed:
            return
        if why:
            _log.warning("%s: closing the connection: %s", self.peer, why)
        if reason is not None:
            closed = self.broker.metrics.connections_closed
            closed[reason] = closed.get(reason, 0) + 1
        self._close()
        if self.transport is not None:
            self.transport.abort()
