"""Plain HTTP against the admin API for the tests: urllib for requests, a raw socket for bytes
no HTTP library would send."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]   # names in lower case
    body: bytes

    def json(self):
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)


def request(url: str, method: str = "GET", data: bytes | None = None, timeout: float = 30.0) -> Reply:
    """One request; an HTTP error status is returned as a Reply, not raised."""
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


def get_json(url: str):
    reply = request(url)
    assert reply.status == 200, (url, reply.status, reply.body)
    return reply.json()


def raw_exchange(port: int, data: bytes, timeout: float = 15.0) -> bytes:
    """Sends `data` on a fresh connection and returns everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
