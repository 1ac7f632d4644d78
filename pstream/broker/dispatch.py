"""One registry: API key -> handler, codec and the version range pstream advertises.

Handlers register with `@api("Produce", 0, 11)`; dispatch and the ApiVersions answer both
read REGISTRY, so the two cannot drift. Ranges are those Apache Kafka 3.9 advertises.
Requests are read with pstream._core.WireReader and responses written with WireWriter; for
the APIs compiled by tools/gen_protocol.py (_core.COMPILED_CODECS) the codec is compiled too.
A handler takes (ctx, request) and returns the response, a coroutine or future of it, or None
for no response (acks=0 produce).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from pstream import _core
from pstream.protocol.messages import API_INDEX


@dataclass(frozen=True)
class Api:
    key: int
    name: str
    request: type
    response: type
    min_version: int
    max_version: int
    handler: Callable[..., Any]
    compiled_read: Callable[..., Any] | None = None    # (version, WireReader) -> request
    compiled_write: Callable[..., Any] | None = None   # (version, WireWriter, response)

    def read(self, version: int, reader):
        if self.compiled_read is not None:
            return self.compiled_read(version, reader)
        return self.request.READERS[version - self.request.MIN_VERSION](reader)

    def write(self, version: int, writer, response) -> None:
        if self.compiled_write is not None:
            self.compiled_write(version, writer, response)
        else:
            self.response.WRITERS[version - self.response.MIN_VERSION](writer, response)


REGISTRY: dict[int, Api] = {}


def api(name: str, min_version: int, max_version: int):
    key = next(k for k, entry in API_INDEX.items() if entry[0] == name)
    module = importlib.import_module(f"pstream.protocol.messages.{API_INDEX[key][1]}")
    request, response = getattr(module, f"{name}Request"), getattr(module, f"{name}Response")
    if not request.MIN_VERSION <= min_version <= max_version <= request.MAX_VERSION:
        raise ValueError(f"{name}: versions {min_version}-{max_version} outside the schema's "
                         f"{request.MIN_VERSION}-{request.MAX_VERSION}")

    def register(handler):
        if key in REGISTRY:
            raise ValueError(f"{name} registered twice")
        REGISTRY[key] = Api(key, name, request, response, min_version, max_version, handler,
                            _core.COMPILED_CODECS.get(request.__name__), _core.COMPILED_CODECS.get(response.__name__))
        return handler

    return register


def load_handlers() -> dict[int, Api]:
    """Imports every handler module so each registers itself."""
    from pstream.broker import handlers  # noqa: F401

    return REGISTRY
