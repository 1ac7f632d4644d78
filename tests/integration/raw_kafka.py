"""A tiny raw-socket Kafka connection for the admin, ApiVersions and bad-input tests: frames
built with pstream's generated codecs (any api key, version and correlation id), one
response frame read with a timeout and decoded, and arbitrary bytes for malformed input.

Real clients retry, negotiate versions and hide what the broker actually sent; this shows
the wire. Tests only: one blocking socket, no retries.

pytest runs with --import-mode=importlib (tests/integration is not on sys.path), so test
modules load this file by path, sharing one module object:

    raw_kafka = load_helper()   # see the test modules' top
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        cid, resp = conn.call("Metadata", 12, MetadataRequest(topics=None))
"""

from __future__ import annotations

import socket
import struct
import time

from typing_extensions import Self

from pstream.client.wire import api_key, codec_classes
from pstream.protocol.headers import API_VERSIONS_KEY, is_flexible
from pstream.protocol.messages import API_INDEX
from pstream.protocol.primitives import Reader, Writer

_i32 = struct.Struct(">i")
codecs = codec_classes


def request_header(key: int, version: int, correlation_id: int, client_id: str | None = "raw-kafka",
                   flexible: bool | None = None) -> bytes:
    """Request header v1, or v2 (empty tagged fields) for a flexible version of a known API."""
    w = Writer()
    w.int16(key)
    w.int16(version)
    w.int32(correlation_id)
    w.nstring(client_id)
    if is_flexible(key, version) if flexible is None else flexible:
        w.uvarint(0)
    return w.getvalue()


def encode_body(api, version: int, request) -> bytes:
    req_cls, _ = codecs(api)
    w = Writer()
    req_cls.WRITERS[version - req_cls.MIN_VERSION](w, request)
    return w.getvalue()


def frame(payload: bytes) -> bytes:
    return _i32.pack(len(payload)) + payload


def encode_request(api, version: int, correlation_id: int, request, client_id: str | None = "raw-kafka") -> bytes:
    """One whole frame, length prefix included."""
    key = api_key(api)
    return frame(request_header(key, version, correlation_id, client_id) + encode_body(key, version, request))


def decode_response(api, version: int, payload: bytes, header_version: int | None = None):
    """(correlation id, response) of a frame without its length prefix. The response header is
    v1 (tagged fields) for flexible versions except ApiVersions (always v0), unless
    header_version says otherwise; the whole frame must be consumed."""
    key = api_key(api)
    _, resp_cls = codecs(key)
    r = Reader(memoryview(payload))
    correlation_id = r.int32()
    if header_version is None:
        header_version = 1 if key != API_VERSIONS_KEY and is_flexible(key, version) else 0
    if header_version >= 1:
        r.skip_tags()
    response = resp_cls.READERS[version - resp_cls.MIN_VERSION](r)
    if r.remaining():
        raise AssertionError(f"{API_INDEX[key][0]} v{version} response: {r.remaining()} bytes left after decoding")
    return correlation_id, response


class RawConnection:
    """One TCP connection to the broker. Not thread-safe."""

    def __init__(self, bootstrap: str, timeout: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.port = int(port)
        self.timeout = timeout
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next_cid = 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def next_cid(self) -> int:
        cid, self._next_cid = self._next_cid, self._next_cid + 1
        return cid

    # --- bytes ------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_exact(self, n: int, deadline: float) -> bytes:
        out = bytearray()
        while len(out) < n:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError(f"closed by the broker after {len(out)} of {n} bytes")
            out += chunk
        return bytes(out)

    def read_frame(self, timeout: float | None = None) -> bytes:
        """The next response frame without its length prefix; socket.timeout past the timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        (size,) = _i32.unpack(self._read_exact(4, deadline))
        return self._read_exact(size, deadline)

    def closed_by_broker(self, timeout: float = 5.0) -> bool:
        """True when the broker closes the connection (EOF or reset) within timeout, False when it
        is still open then. Raises if the broker sends bytes instead."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False
            if not data:
                return True
            raise AssertionError(f"expected the broker to close the connection, it sent {data[:64]!r}")

    # --- requests ---------------------------------------------------------------------

    def send(self, api, version: int, request, correlation_id: int | None = None) -> int:
        cid = self.next_cid() if correlation_id is None else correlation_id
        self.send_raw(encode_request(api, version, cid, request))
        return cid

    def receive(self, api, version: int, timeout: float | None = None):
        """(correlation id, response) of the next frame, decoded as api/version."""
        return decode_response(api, version, self.read_frame(timeout))

    def call(self, api, version: int, request, timeout: float | None = None):
        """Sends one request and returns its decoded response (checks the correlation id)."""
        cid = self.send(api, version, request)
        got, response = self.receive(api, version, timeout)
        if got != cid:
            raise AssertionError(f"correlation id {got} in the answer to {cid}")
        return response


# --- requests the tests build often -----------------------------------------------------

def metadata_request(topics=None, version: int = 12, allow_auto_topic_creation: bool = True):
    req_cls, _ = codecs("Metadata")
    request = req_cls(topics=[req_cls.MetadataRequestTopic(name=t) for t in topics or ()],
                      allow_auto_topic_creation=allow_auto_topic_creation,
                      include_cluster_authorized_operations=False, include_topic_authorized_operations=False)
    if topics is None:   # the generated constructors turn None into []: null ("all topics") is set after
        request.topics = [] if version == 0 else None
    return request


def create_topics_request(topics: dict, validate_only: bool = False):
    """topics: {name: (partitions, replication factor, {config: value})}."""
    req_cls, _ = codecs("CreateTopics")
    return req_cls(topics=[req_cls.CreatableTopic(
        name=name, num_partitions=parts, replication_factor=rf, assignments=[],
        configs=[req_cls.CreatableTopicConfig(name=k, value=v) for k, v in configs.items()])
        for name, (parts, rf, configs) in topics.items()], timeout_ms=30000, validate_only=validate_only)


def produce_request(topic: str, partition: int, records, acks: int = -1):
    req_cls, _ = codecs("Produce")
    return req_cls(transactional_id=None, acks=acks, timeout_ms=30000, topic_data=[
        req_cls.TopicProduceData(name=topic, partition_data=[
            req_cls.PartitionProduceData(index=partition, records=records)])])


def fetch_request(topic: str, partition: int, offset: int, topic_id=None, max_wait_ms: int = 0,
                  max_bytes: int = 1 << 20):
    req_cls, _ = codecs("Fetch")
    from pstream.protocol.primitives import ZERO_UUID
    return req_cls(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=max_bytes, isolation_level=0,
                   session_id=0, session_epoch=-1, topics=[req_cls.FetchTopic(
                       topic=topic, topic_id=topic_id or ZERO_UUID, partitions=[req_cls.FetchPartition(
                           partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes)])],
                   forgotten_topics_data=[], rack_id="")


def list_offsets_request(topic: str, partition: int, timestamp: int):
    req_cls, _ = codecs("ListOffsets")
    return req_cls(replica_id=-1, isolation_level=0, topics=[req_cls.ListOffsetsTopic(
        name=topic, partitions=[req_cls.ListOffsetsPartition(partition_index=partition, timestamp=timestamp)])])
