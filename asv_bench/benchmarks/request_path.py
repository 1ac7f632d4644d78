"""The broker's cost per small request: one Produce of one 1 KiB record (acks=all) or one
Fetch answering one 1 KiB batch (partition_max_bytes=1: the first batch, KIP-74) to a
consumer at the end of the partition, taken by a real KafkaConnection of a real Broker from the
bytes a socket would deliver to the response bytes it would write, in process.

The connection's transport is a stand-in that keeps what is written (no socket), so the
figure is the Python and Cython work of the request path without the kernel's: framing,
the header, decoding, the handler, the shard hand-off (flush=interval: acks=all waits for
the append, not for an fdatasync, so the disk is not timed), encoding, the write. The
broker's loop runs until the response is written, one request at a time, as at a low
request rate where nothing is batched.

`track_cpu_us_per_request`: process CPU seconds (every thread: the shard's too) per request
over 2,000 requests, in microseconds; `track_cpu_us_per_pipelined_request` the same with
PIPELINED requests per socket read, so that wake-ups and hand-offs are shared as on a busy broker:
the per-core cost that bounds requests/s. `FetchAtEnd`: fetches that wait at the end of the
partition until an append wakes them (the long poll of a consumer keeping up). The end-to-end
figure with sockets comes from `pstream bench --workloads requests`.
"""

from __future__ import annotations

import asyncio
import struct
import time

from pstream.client.wire import api_key, codec_classes, encode_request

from .broker import InProcessBroker, _highest
from .common import SEED, exact_batch

_TOPIC = "requests"
_FETCH_BATCHES = 4000   # one 1 KiB record each
_TAIL = 16              # fetches start this close to the end
PIPELINED = 8           # requests per socket read in the pipelined figures (librdkafka keeps up to 5 in
                        # flight per connection; a few connections' worth arrive per loop turn when busy)
_len = struct.Struct(">i")


class _Transport:
    """What KafkaConnection needs of an asyncio transport; keeps the bytes written."""

    def __init__(self):
        self.written = 0
        self.writes = 0
        self.answered: asyncio.Future | None = None   # resolved by the next write

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def get_write_buffer_size(self):
        return 0

    def writelines(self, chunks):
        self.written += sum(len(c) for c in chunks)
        self.writes += 1
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(None)

    def write(self, data):
        self.writelines([data])

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def close(self):
        pass

    abort = close


def produce_frame(correlation_id: int, batch: bytes) -> bytes:
    request_cls, _ = codec_classes("Produce")
    data = [request_cls.PartitionProduceData(index=0, records=batch)]
    request = request_cls(transactional_id=None, acks=-1, timeout_ms=30_000,
                          topic_data=[request_cls.TopicProduceData(name=_TOPIC, partition_data=data)])
    return encode_request(api_key("Produce"), _highest("Produce"), correlation_id, request, "rdkafka")


def fetch_frame(correlation_id: int, topic, offset: int) -> bytes:
    request_cls, _ = codec_classes("Fetch")
    wanted = request_cls.FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=1,
                                        current_leader_epoch=-1, log_start_offset=-1)
    request = request_cls(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=52428800, isolation_level=1,
                          session_id=0, session_epoch=-1,
                          topics=[request_cls.FetchTopic(topic=topic.name, topic_id=topic.topic_id,
                                                         partitions=[wanted])])
    return encode_request(api_key("Fetch"), _highest("Fetch"), correlation_id, request, "rdkafka")


class SmallRequests:
    """One small Produce or Fetch, socket bytes in to response bytes out, in process."""

    params = ["produce", "fetch"]
    param_names = ["api"]
    timeout = 120

    def setup(self, api):
        from pstream.broker.connection import KafkaConnection

        self.server = InProcessBroker("requests", flush="interval")
        try:
            broker = self.server.broker
            self.topic = broker.log.topic(_TOPIC, partitions=1)
            self.part = self.topic.partition(0)
            self.batch = exact_batch(1024 + 61, 1024, seed=SEED)
            self.transport = _Transport()
            self.conn = KafkaConnection(broker, broker.listeners[0])
            self.conn.connection_made(self.transport)
            if api == "fetch":
                for _ in range(_FETCH_BATCHES):
                    self.part.append_batch(self.batch)
                self.part.flush()
            self.frames = self._frames(api, 200)
            self.request(self.frames[0])   # warm: the first answer is checked
            if self.transport.writes != 1 or self.transport.written < 40:
                raise RuntimeError(f"{api}: {self.transport.writes} writes of {self.transport.written} bytes")
        except BaseException:
            self.server.close()
            raise

    def _frames(self, api: str, count: int) -> list[bytes]:
        if api == "produce":
            return [produce_frame(i, self.batch) for i in range(count)]
        # A consumer at the end (the last 16 batches, still in the shard's buffers): read inline from memory.
        return [fetch_frame(i, self.topic, _FETCH_BATCHES - _TAIL + i % _TAIL) for i in range(count)]

    def teardown(self, api):
        self.conn.abort(None)
        self.server.close()

    def request(self, *frames: bytes) -> None:
        """Delivers each frame as a socket read would and runs the loop until it is answered."""
        self.server.loop.run_until_complete(self._answered(frames))

    async def _answered(self, frames) -> None:
        conn, transport = self.conn, self.transport
        loop = asyncio.get_running_loop()
        for frame in frames:
            transport.answered = loop.create_future()
            buf = conn.get_buffer(len(frame))
            buf[:len(frame)] = frame
            conn.buffer_updated(len(frame))
            await transport.answered

    def pipelined(self, frames: list[bytes], burst: int = PIPELINED) -> None:
        """Delivers the frames `burst` at a time, each burst as one socket read (a client with
        requests in flight, as at a high request rate), and runs the loop until all are answered."""
        self.server.loop.run_until_complete(self._bursts(frames, burst))

    async def _bursts(self, frames, burst: int) -> None:
        conn, transport = self.conn, self.transport
        loop = asyncio.get_running_loop()
        for i in range(0, len(frames), burst):
            data = b"".join(frames[i:i + burst])
            buf = conn.get_buffer(len(data))
            buf[:len(data)] = data
            conn.buffer_updated(len(data))
            while not conn.idle:
                transport.answered = loop.create_future()
                await transport.answered

    def time_request(self, api):
        """200 requests, one at a time."""
        self.request(*self.frames)

    def time_pipelined(self, api):
        """200 requests, PIPELINED per socket read."""
        self.pipelined(self.frames)

    def track_cpu_us_per_request(self, api):
        frames = self._frames(api, 2000)
        start = time.process_time()
        self.request(*frames)
        return (time.process_time() - start) / len(frames) * 1e6

    track_cpu_us_per_request.unit = "us"

    def track_cpu_us_per_pipelined_request(self, api):
        """CPU per request when PIPELINED arrive per socket read: what a core spends per request
        when busy (hand-offs and wake-ups shared by the burst), which bounds its requests/s."""
        frames = self._frames(api, 2000)
        start = time.process_time()
        self.pipelined(frames)
        return (time.process_time() - start) / len(frames) * 1e6

    track_cpu_us_per_pipelined_request.unit = "us"


class FetchAtEnd:
    """Fetches that arrive at the end of the partition and wait (max_wait_ms 500) until a batch
    is appended behind them, as a consumer keeping up with a producer sees it: the long poll."""

    timeout = 120

    def setup(self):
        self.small = SmallRequests()
        self.small.setup("fetch")

    def teardown(self):
        self.small.teardown("fetch")

    def long_polls(self, count: int) -> None:
        self.small.server.loop.run_until_complete(self._long_polls(count))

    async def _long_polls(self, count: int) -> None:
        small = self.small
        conn, transport, part = small.conn, small.transport, small.part
        loop = asyncio.get_running_loop()
        for i in range(count):
            frame = fetch_frame(i, small.topic, part.log_end_offset)
            transport.answered = loop.create_future()
            buf = conn.get_buffer(len(frame))
            buf[:len(frame)] = frame
            conn.buffer_updated(len(frame))
            await asyncio.sleep(0)
            if transport.answered.done():
                raise RuntimeError("a fetch at the end of the partition was answered before any data came")
            part.submit_batch(small.batch, wait=False)
            await transport.answered

    def time_fetch_at_end(self):
        """100 fetches, each woken by an append."""
        self.long_polls(100)

    def track_cpu_us_per_fetch_at_end(self):
        """CPU per fetch woken by an append (the append's own cost included: compare with
        SmallRequests' produce figures)."""
        start = time.process_time()
        self.long_polls(1000)
        return (time.process_time() - start) / 1000 * 1e6

    track_cpu_us_per_fetch_at_end.unit = "us"
