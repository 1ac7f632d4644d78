"""Client-side framing of Kafka requests and responses with pstream's generated codecs.

The broker reads requests and writes responses (pstream/broker/connection.py); a client
does the opposite. This module is that opposite half, with no I/O: one whole request
frame from a message object, and a response object from one frame.
"""

from __future__ import annotations

import importlib
import struct
from functools import cache

from pstream.protocol.headers import API_VERSIONS_KEY, is_flexible
from pstream.protocol.messages import API_INDEX
from pstream.protocol.primitives import Reader, Writer

_i32 = struct.Struct(">i")
_KEYS = {entry[0]: key for key, entry in API_INDEX.items()}


def api_key(name_or_key: str | int) -> int:
    return name_or_key if isinstance(name_or_key, int) else _KEYS[name_or_key]


def api_name(key: int) -> str:
    return API_INDEX[key][0] if key in API_INDEX else f"api {key}"


@cache
def codec_classes(name_or_key: str | int) -> tuple[type, type]:
    """(XRequest, XResponse) of the generated codec for an API name or key."""
    name, module_name = API_INDEX[api_key(name_or_key)][:2]
    module = importlib.import_module(f"pstream.protocol.messages.{module_name}")
    return getattr(module, f"{name}Request"), getattr(module, f"{name}Response")


def codec_versions(name_or_key: str | int) -> tuple[int, int]:
    """The (min, max) versions the generated codec reads and writes."""
    return API_INDEX[api_key(name_or_key)][2]


def encode_request(key: int, version: int, correlation_id: int, request, client_id: str | None) -> bytes:
    """One whole frame (length prefix included): request header v1 or v2, then the body."""
    req_cls, _ = codec_classes(key)
    w = Writer()
    w.int16(key)
    w.int16(version)
    w.int32(correlation_id)
    w.nstring(client_id)
    if is_flexible(key, version):
        w.uvarint(0)  # no tagged fields in the header
    req_cls.WRITERS[version - req_cls.MIN_VERSION](w, request)
    body = w.getvalue()
    return _i32.pack(len(body)) + body


def decode_response(key: int, version: int, frame) -> tuple[int, object]:
    """(correlation id, response) of one frame without its length prefix."""
    _, resp_cls = codec_classes(key)
    r = Reader(memoryview(frame))
    correlation_id = r.int32()
    if key != API_VERSIONS_KEY and is_flexible(key, version):
        r.skip_tags()
    return correlation_id, resp_cls.READERS[version - resp_cls.MIN_VERSION](r)
