"""A small HTTP/1.1 server on asyncio streams, for the admin API and /metrics.

It runs on the broker's event loop, so handlers read broker state directly, without threads
or locks. Each route says its methods: GET (which also answers HEAD) never changes state,
POST and PUT do (a body of up to MAX_BODY bytes is read into Request.body; a larger one gets 413);
a known path asked with another method gets 405 with an Allow header. Keep-alive and pipelined requests; JSON errors `{"error": ..., "code": ...}`.

What a client cannot do to the broker: a request head (request line and headers) is bounded
(MAX_HEAD_BYTES, MAX_HEADERS); bytes that cannot begin an HTTP request get 400 as soon as
they arrive (a Kafka client pointed at this port is answered at once, not left waiting); a
head that does not complete within HEAD_TIMEOUT_S gets 408; an idle keep-alive connection
closes after IDLE_TIMEOUT_S; at most MAX_CONNECTIONS are open at once. A handler that raises
answers 500 and logs the traceback; the server and the broker carry on.

This module knows nothing of the broker: routes map paths to handlers (see Router).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

_log = logging.getLogger("pstream.admin")

MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_BODY = 64 * 1024   # a larger request body is not read: 413, and the connection closes after the answer
HEAD_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0
WRITE_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 64
JSON_TYPE = "application/json"

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           413: "Content Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}

# What may come first in an HTTP/1.x request line, checked on a partial line too.
_LINE_PREFIX = re.compile(rb"[A-Z]{0,16}|[A-Z]{1,16} [\x21-\x7e]*( [\x21-\x7e]*\r?)?")
_REQUEST_LINE = re.compile(rb"([A-Z]{1,16}) ([\x21-\x7e]+) HTTP/(\d)\.(\d)")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*")


@dataclass
class Request:
    method: str
    path: str                                  # percent-decoded, without the query
    query: dict[str, str]                      # the last value of each name
    headers: dict[str, str]                    # names in lower case
    version: tuple[int, int] = (1, 1)
    body: bytes = b""


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(obj, indent=2, default=str).encode() + b"\n")


class HttpError(Exception):
    """Raised by a handler (or the server) to answer with a JSON error."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}

    def response(self) -> Response:
        r = Response.json({"error": self.message, "code": self.status}, self.status)
        r.headers.update(self.headers)
        return r


Handler = Callable[..., "Response | Awaitable[Response]"]


class Router:
    """Paths -> handlers. A "{name}" segment of a path matches any one segment, passed to the
    handler as the keyword `name` (percent-decoded): "/v1/partitions/{ns}/{topic}/{partition}".
    Handlers take (request, **params). Exact paths win over patterns; patterns are tried in the
    order they were added."""

    def __init__(self):
        self._exact: dict[str, dict[str, Handler]] = {}                     # path -> method -> handler
        self._patterns: list[tuple[str, re.Pattern, dict[str, Handler]]] = []   # (path, regex, routes)

    def get(self, path: str, handler: Handler) -> None:
        """A read-only route (HEAD too)."""
        self._add(path, ("GET", "HEAD"), handler)

    def post(self, path: str, handler: Handler) -> None:
        """A route that changes state."""
        self._add(path, ("POST",), handler)

    def put(self, path: str, handler: Handler) -> None:
        """A route that sets state from the request body."""
        self._add(path, ("PUT",), handler)

    def _add(self, path: str, methods: tuple[str, ...], handler: Handler) -> None:
        if "{" in path:
            for known, _regex, routes in self._patterns:
                if known == path:
                    break
            else:
                regex = re.compile("".join(f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
                                           for part in re.split(r"(\{\w+\})", path)))
                routes = {}
                self._patterns.append((path, regex, routes))
        else:
            routes = self._exact.setdefault(path, {})
        for method in methods:
            routes[method] = handler

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        routes, params = self._exact.get(path), {}
        if routes is None:
            for _known, regex, candidate in self._patterns:
                m = regex.fullmatch(path)
                if m:
                    routes, params = candidate, m.groupdict()
                    break
        if routes is None:
            raise HttpError(404, f"no such path: {path}")
        if method not in routes:
            raise HttpError(405, f"{method} is not allowed on {path}", {"Allow": ", ".join(routes)})
        return routes[method], params


class _Close(Exception):
    """Ends a connection without an answer (the client went away or stayed idle)."""


def _head_end(buf: bytearray) -> int:
    """Index just past the empty line that ends a request head (CRLF or bare LF), or -1."""
    crlf, lf = buf.find(b"\r\n\r\n"), buf.find(b"\n\n")
    ends = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(ends) if ends else -1


def _check_prefix(buf: bytearray) -> None:
    """400 if the bytes received so far cannot be the start of an HTTP/1.x request."""
    nl = buf.find(b"\n")
    line = bytes(buf[:nl] if nl >= 0 else buf[:MAX_HEAD_BYTES])
    if not _LINE_PREFIX.fullmatch(line):
        raise HttpError(400, "not an HTTP request")


def _parse_head(head: bytes) -> Request:
    lines = head.split(b"\n")
    m = _REQUEST_LINE.fullmatch(lines[0].rstrip(b"\r"))
    if not m:
        raise HttpError(400, "malformed request line")
    method, target, major, minor = m.group(1).decode(), m.group(2).decode("ascii"), int(m.group(3)), int(m.group(4))
    if major != 1:
        raise HttpError(505, f"HTTP/{major}.{minor} is not supported (HTTP/1.0 and 1.1 are)")
    headers: dict[str, str] = {}
    fields = [line.rstrip(b"\r") for line in lines[1:]]
    fields = [f for f in fields if f]
    if len(fields) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header fields")
    for line in fields:
        h = _HEADER.fullmatch(line)
        if not h:
            raise HttpError(400, "malformed header field")
        name = h.group(1).decode().lower()
        value = h.group(2).decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    parts = urlsplit(target)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return Request(method, unquote(parts.path) or "/", query, headers, (major, minor))


def _keep_alive(request: Request) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
    if request.version >= (1, 1):
        return "close" not in tokens
    return "keep-alive" in tokens


class HttpServer:
    """Serves a Router on one address; `start` returns the (host, port) actually bound."""

    def __init__(self, router: Router, server_name: str = "pstream", guard=None, ssl=None):
        """guard: an async callable(request) that raises HttpError (401, 403) for a request the
        caller may not make (see pstream/security/http_auth.py); ssl: an ssl.SSLContext (HTTPS)."""
        self.router = router
        self.server_name = server_name
        self.guard = guard
        self.ssl = ssl
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True, ssl=self.ssl)
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            if len(self._connections) > MAX_CONNECTIONS:
                await self._send(writer, HttpError(503, f"more than {MAX_CONNECTIONS} admin connections "
                                                        f"are open").response(), False, False)
                return
            await self._serve(reader, writer)
        except (_Close, ConnectionError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:   # a bug here must not take the broker down
            _log.exception("admin connection from %s failed", writer.get_extra_info("peername"))
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        while True:
            try:
                request = await self._read_request(reader, buf)
            except HttpError as exc:   # unparseable: answer and close, the stream cannot be resynchronised
                await self._send(writer, exc.response(), False, False)
                return
            keep = _keep_alive(request) and not request.headers.get("transfer-encoding")
            length = request.headers.get("content-length", "0")
            if not length.isdigit():
                await self._send(writer, HttpError(400, "malformed Content-Length").response(), False, False)
                return
            if int(length) > MAX_BODY:
                await self._send(writer, HttpError(413, f"request body larger than {MAX_BODY} bytes").response(),
                                 request.method == "HEAD", False)
                return
            if int(length):
                request.body = await self._read_body(reader, buf, int(length))
            response = await self._answer(request)
            await self._send(writer, response, request.method == "HEAD", keep)
            if not keep:
                return

    async def _read_request(self, reader: asyncio.StreamReader, buf: bytearray) -> Request:
        while True:
            while buf[:2] == b"\r\n" or buf[:1] == b"\n":   # empty lines before a request are ignored
                del buf[:2 if buf[:1] == b"\r" else 1]
            end = _head_end(buf)
            if end >= 0:
                if end > MAX_HEAD_BYTES:
                    raise HttpError(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
                head = bytes(buf[:end])
                del buf[:end]
                return _parse_head(head.rstrip(b"\r\n"))
            _check_prefix(buf)
            if len(buf) > MAX_HEAD_BYTES:
                raise HttpError(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
            try:
                chunk = await asyncio.wait_for(reader.read(MAX_HEAD_BYTES), HEAD_TIMEOUT_S if buf else IDLE_TIMEOUT_S)
            except asyncio.TimeoutError:
                if buf:
                    raise HttpError(408, f"the request head did not arrive within {HEAD_TIMEOUT_S:g} s") from None
                raise _Close() from None
            if not chunk:
                raise _Close()
            buf += chunk

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, buf: bytearray, length: int) -> bytes:
        body = bytearray(buf[:length])
        del buf[:len(body)]
        while len(body) < length:
            chunk = await asyncio.wait_for(reader.read(length - len(body)), HEAD_TIMEOUT_S)
            if not chunk:
                raise _Close()
            body += chunk
        return bytes(body)

    async def _answer(self, request: Request) -> Response:
        try:
            handler, params = self.router.resolve(request.method, request.path)
            if self.guard is not None:
                await self.guard(request)
            response = handler(request, **params)
            if asyncio.iscoroutine(response):
                response = await response
            return response
        except HttpError as exc:
            return exc.response()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.exception("admin API: %s %s failed", request.method, request.path)
            return HttpError(500, f"{type(exc).__name__}: {exc}").response()

    async def _send(self, writer: asyncio.StreamWriter, response: Response, head_only: bool, keep: bool) -> None:
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
                 f"Server: {self.server_name}", f"Content-Type: {response.content_type}",
                 f"Content-Length: {len(response.body)}", f"Connection: {'keep-alive' if keep else 'close'}"]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only and response.body:
            writer.write(response.body)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
