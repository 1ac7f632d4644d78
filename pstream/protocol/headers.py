"""Request and response headers, with Kafka's rule for which header version applies.

A request's header is v2 (tagged fields) when its API version is flexible, else v1; a
response's header is v1 when flexible, else v0, except ApiVersions, whose response header
is always v0 so that a client can read it before it knows which versions the broker has.
"""

from __future__ import annotations

from pstream.protocol.messages import API_INDEX
from pstream.protocol.primitives import Reader, Writer

API_VERSIONS_KEY = 18


class RequestHeader:
    __slots__ = ("api_key", "api_version", "correlation_id", "client_id")

    def __init__(self, api_key: int, api_version: int, correlation_id: int, client_id: str | None):
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.client_id = client_id


def is_flexible(api_key: int, version: int) -> bool:
    entry = API_INDEX.get(api_key)
    return entry is not None and entry[3] is not None and version >= entry[3]


def read_request_header(r: Reader) -> RequestHeader:
    """Reads the header; the body's reader position follows it. The client id is always
    int16-length-prefixed; tagged fields follow it only for flexible versions."""
    api_key = r.int16()
    version = r.int16()
    correlation_id = r.int32()
    client_id = r.nstring()
    if is_flexible(api_key, version):
        r.skip_tags()
    return RequestHeader(api_key, version, correlation_id, client_id)


def write_response_header(w: Writer, api_key: int, version: int, correlation_id: int) -> None:
    w.int32(correlation_id)
    if api_key != API_VERSIONS_KEY and is_flexible(api_key, version):
        w.uvarint(0)
