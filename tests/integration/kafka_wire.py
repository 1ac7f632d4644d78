"""A small raw-socket Kafka client for integration tests: one blocking TCP connection that
sends requests built with pstream's generated codecs and reads responses by correlation id.

Real clients hide what the broker actually answered (they retry, dedupe, re-split batches);
this one shows the wire: exact error codes, base offsets, the bytes of fetched batches.
It is for tests only (no retries, no metadata cache, one broker).

tests/integration/conftest.py puts this folder on sys.path, so a test module says:

    import kafka_wire

    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("t", partitions=3)
        pid, epoch = wire.init_producer_id()
        batch = pstream._core.encode_batch([(b"k", b"v", [], None)], producer_id=pid,
                                           producer_epoch=epoch, base_sequence=0)
        part = wire.produce("t", 0, batch)          # the PartitionProduceResponse
        assert part.error_code == 0 and part.base_offset == 0
        wire.list_offset("t", 0, kafka_wire.LATEST)  # -> 1 (list_offsets_entry: the whole answer)
        for header, records in kafka_wire.iter_fetched(wire.fetch("t", 0, 0).records): ...
        wire.fetch_all("t", 0)                       # every (BatchHeader, [Record]) up to the watermark

Request classes: `Req, Resp = kafka_wire.codec_classes("Fetch")` (names as in API_INDEX).

Lower level: `wire.request("Metadata", 12, MetadataRequest(...))` sends and waits;
`wire.send(...)` returns the correlation id and `wire.receive(cid)` reads its answer, so
several requests can be pipelined; `wire.send_frame(raw_bytes)` writes anything at all
(for bad-input tests), and `wire.read_frame()` returns the next response frame undecoded.
"""

from __future__ import annotations

import socket
import struct
import time

from pstream.client.client import fetched_batches
from pstream.client.wire import api_key, codec_classes, decode_response, encode_request

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED = -1, -2, -3, -4, -5
_i32 = struct.Struct(">i")


class WireError(AssertionError):
    pass


class KafkaWire:
    """One connection to one broker. Not thread-safe."""

    def __init__(self, bootstrap: str, client_id: str | None = "pstream-tests", timeout: float = 30.0):
        host, port = bootstrap.rsplit(":", 1)
        self.client_id = client_id
        self.timeout = timeout
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next_id = 1
        self._sent: dict[int, tuple[int, int]] = {}  # correlation id -> (api key, version)
        self._early: dict[int, object] = {}  # answers read while waiting for another

    def __enter__(self) -> KafkaWire:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # --- frames ---------------------------------------------------------------------

    def send_frame(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError(f"the broker closed the connection ({len(out)} of {n} bytes read)")
            out += chunk
        return bytes(out)

    def read_frame(self) -> bytes:
        """The next response frame, without its length prefix (blocks up to the timeout)."""
        (size,) = _i32.unpack(self._read_exact(4))
        return self._read_exact(size)

    def is_closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the broker has closed this connection (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(self.timeout)

    # --- requests -------------------------------------------------------------------

    def send(self, api, version: int, request) -> int:
        """Sends one request; returns its correlation id (for receive)."""
        key = api_key(api)
        cid = self._next_id
        self._next_id += 1
        self.send_frame(encode_request(key, version, cid, request, self.client_id))
        self._sent[cid] = (key, version)
        return cid

    def receive(self, correlation_id: int):
        """The response to an earlier send (answers to other requests read meanwhile are kept)."""
        if correlation_id in self._early:
            return self._early.pop(correlation_id)
        while True:
            frame = self.read_frame()
            (cid,) = _i32.unpack_from(frame)
            if cid not in self._sent:
                raise WireError(f"response with correlation id {cid}, which was never sent")
            key, version = self._sent.pop(cid)
            got_cid, response = decode_response(key, version, frame)
            if got_cid == correlation_id:
                return response
            self._early[got_cid] = response

    def request(self, api, version: int, request):
        return self.receive(self.send(api, version, request))

    # --- conveniences ----------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int = 1, configs: dict[str, str] | None = None, version: int = 7
    ) -> None:
        req_cls, _ = codec_classes("CreateTopics")
        topic = req_cls.CreatableTopic(
            name=name,
            num_partitions=partitions,
            replication_factor=1,
            configs=[req_cls.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()],
        )
        resp = self.request("CreateTopics", version, req_cls(topics=[topic], timeout_ms=30000))
        result = resp.topics[0]
        if result.error_code:
            raise WireError(f"CreateTopics {name}: error {result.error_code} {result.error_message}")

    def init_producer_id(self, version: int = 4) -> tuple[int, int]:
        req_cls, _ = codec_classes("InitProducerId")
        resp = self.request(
            "InitProducerId", version, req_cls(transactional_id=None, transaction_timeout_ms=60000)
        )
        if resp.error_code:
            raise WireError(f"InitProducerId: error {resp.error_code}")
        return resp.producer_id, resp.producer_epoch

    def produce(self, topic: str, partition: int, records, acks: int = -1, version: int = 9):
        """Sends records (batch bytes) to one partition; returns its PartitionProduceResponse."""
        req_cls, _ = codec_classes("Produce")
        req = req_cls(
            transactional_id=None,
            acks=acks,
            timeout_ms=30000,
            topic_data=[
                req_cls.TopicProduceData(
                    name=topic,
                    partition_data=[req_cls.PartitionProduceData(index=partition, records=records)],
                )
            ],
        )
        resp = self.request("Produce", version, req)
        return resp.responses[0].partition_responses[0]

    def list_offsets_entry(self, topic: str, partition: int, timestamp: int = LATEST, version: int = 7):
        """ListOffsets for one partition: its ListOffsetsPartitionResponse (error_code, timestamp, offset)."""
        req_cls, _ = codec_classes("ListOffsets")
        req = req_cls(
            replica_id=-1,
            isolation_level=0,
            topics=[
                req_cls.ListOffsetsTopic(
                    name=topic,
                    partitions=[req_cls.ListOffsetsPartition(partition_index=partition, timestamp=timestamp)],
                )
            ],
        )
        return self.request("ListOffsets", version, req).topics[0].partitions[0]

    def list_offset(self, topic: str, partition: int, timestamp: int = LATEST, version: int = 7) -> int:
        """The offset ListOffsets answers (LATEST, EARLIEST or a timestamp); raises on an error code."""
        out = self.list_offsets_entry(topic, partition, timestamp, version)
        if out.error_code:
            raise WireError(f"ListOffsets {topic}-{partition} @ {timestamp}: error {out.error_code}")
        return out.offset

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        max_bytes: int = 16 << 20,
        max_wait_ms: int = 0,
        version: int = 12,
    ):
        """One Fetch of one partition (by name, so version <= 12); returns its PartitionData."""
        req_cls, _ = codec_classes("Fetch")
        req = req_cls(
            replica_id=-1,
            max_wait_ms=max_wait_ms,
            min_bytes=1,
            max_bytes=max_bytes,
            topics=[
                req_cls.FetchTopic(
                    topic=topic,
                    partitions=[
                        req_cls.FetchPartition(
                            partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes
                        )
                    ],
                )
            ],
        )
        return self.request("Fetch", version, req).responses[0].partitions[0]

    def fetch_all(self, topic: str, partition: int, offset: int = 0, timeout: float = 30.0) -> list:
        """Every (BatchHeader, [Record]) from offset to the high watermark, as stored."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            data = self.fetch(topic, partition, offset)
            if data.error_code:
                raise WireError(f"Fetch {topic}-{partition} @ {offset}: error {data.error_code}")
            for header, records in iter_fetched(data.records):
                if header.last_offset >= offset:
                    out.append((header, records))
                    offset = header.last_offset + 1
            if offset >= data.high_watermark:
                return out
            if time.monotonic() > deadline:
                raise WireError(f"Fetch {topic}-{partition}: stuck at {offset} below {data.high_watermark}")


def iter_fetched(data):
    """(BatchHeader, [Record]) for each whole batch in a fetched records field (a trailing
    partial batch, which Kafka may send, is skipped)."""
    return fetched_batches(data)
