"""The broker's request path: decoding a 1 MiB Produce request down to record views,
building a 1 MiB Fetch response, and ApiVersions / Metadata / Fetch round trips over TCP.

In process, with the broker's own functions (what pstream/broker/connection.py does with a
frame, then the handler):
- ProduceDecode: read_request_header, the registry's Api.read, then per partition
  produce.split_batches and the batch-header checks the produce handler makes before it
  hands a batch to the shard (no shard, no Log). `time_decode_and_crc` adds
  _core.validate_batch per batch: the CRC-32C the shard computes on receipt.
- FetchBuild: a real Broker (pstream.broker.broker.Broker on its own event loop, one shard,
  listening on 127.0.0.1 port 0 with the admin API off) whose partition holds 3 MiB of
  64 KiB batches; one request frame is decoded, answered by the registered Fetch handler
  through a RequestContext, and written into the response buffers as the connection
  writes them (nothing joined, nothing sent).
- Dispatch: the same, for ApiVersions and Metadata: the per-request cost without a socket.

Over a socket (RoundTrip): `python -P -m pstream serve` in a subprocess on 127.0.0.1 port 0,
driven by pstream.client.connection.BrokerConnection (blocking, one request at a time), so
the figure includes both sides' syscalls, the loopback, and the client's own decoding.

Sizes: the Produce frames carry 1 MiB (1,048,576 bytes) of batches of 1 KiB records, so
MB/s = 1.048576 / seconds; a Fetch answers exactly 1 MiB of batches (16 of 64 KiB).
Every broker and data directory is made in setup and removed in teardown.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import struct
import subprocess
import sys
import time

import pstream
from pstream import _core
from pstream._core import WireReader, WireWriter
from pstream.broker.broker import Broker
from pstream.broker.config import load_config
from pstream.broker.connection import RequestContext
from pstream.broker.dispatch import REGISTRY, load_handlers
from pstream.broker.handlers import produce
from pstream.client.connection import BrokerConnection
from pstream.client.wire import api_key, codec_classes, encode_request
from pstream.log import INLINE_READ_LAG
from pstream.protocol.headers import read_request_header, write_response_header

from . import IN_PLACE_ROOT
from .common import SEED, KiB, MiB, exact_batch, remove, temp_dir

load_handlers()

_TOPIC = "bench"
_FETCH_BATCH = 64 * KiB
_FETCH_BATCHES = 48            # 3 MiB in the partition; a fetch takes 16 batches = 1 MiB
_FETCH_TAIL_FROM = 32          # batch index where a consumer at the tail starts
_len = struct.Struct(">i")
_batches: dict[tuple[int, int], bytes] = {}


def _batch(total: int, seed: int) -> bytes:
    key = (total, seed)
    if key not in _batches:
        _batches[key] = exact_batch(total, 1024, seed=seed)
    return _batches[key]


def _highest(name: str) -> int:
    """The highest version of an API the broker serves (its registry entry)."""
    return REGISTRY[api_key(name)].max_version


def _received(frame: bytes) -> memoryview:
    """A frame as the connection hands it on: without its length prefix, a view of a
    receive buffer of the frame pool's size class (pstream/broker/frames.py)."""
    size = len(frame) - 4
    buf = bytearray(max(64 * KiB, 1 << (size - 1).bit_length()))
    buf[:size] = frame[4:]
    return memoryview(buf)[:size]


def _new_loop() -> asyncio.AbstractEventLoop:
    """The loop the broker runs on (pstream.broker.broker.run): uvloop when installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# --- Produce ---------------------------------------------------------------------------------

def decode_produce(frame: memoryview, check_crc: bool = False) -> list[memoryview]:
    """What the broker does with a Produce frame before any shard sees it: the header and body
    (connection._request), then per partition the one batch and its header (produce.split_batches,
    _core.peek_batch), its attributes checked and records counted as produce._submit does.
    Returns the batches, views of `frame`."""
    r = WireReader(frame)
    header = read_request_header(r)
    api = REGISTRY[header.api_key]
    request = api.read(header.api_version, r)
    version = header.api_version
    views = []
    records = 0
    for topic in request.topic_data:
        for pd in topic.partition_data:
            for batch, batch_header in produce.split_batches(pd.records, version):
                if batch_header.is_transactional or batch_header.is_control:
                    raise RuntimeError("the benchmark's batches must not be transactional")
                records += batch_header.record_count
                if check_crc:
                    _core.validate_batch(batch)
                views.append(batch)
    if records <= 0:
        raise RuntimeError("no records decoded")
    return views


def produce_frame(partitions: int, total: int = MiB) -> bytes:
    """A whole Produce request (acks=-1, highest version served) carrying `total` bytes of
    1 KiB-record batches split evenly over `partitions` partitions of one topic."""
    request_cls, _ = codec_classes("Produce")
    share = total // partitions
    sizes = [share] * (partitions - 1) + [total - share * (partitions - 1)]
    data = [request_cls.PartitionProduceData(index=n, records=_batch(size, SEED + n))
            for n, size in enumerate(sizes)]
    request = request_cls(transactional_id=None, acks=-1, timeout_ms=30_000,
                          topic_data=[request_cls.TopicProduceData(name=_TOPIC, partition_data=data)])
    return encode_request(api_key("Produce"), _highest("Produce"), 1, request, "pstream-asv")


class ProduceDecode:
    """A Produce request of 1 MiB of batches (1 KiB records; one batch per partition, so 1 MiB
    or 6 x 171 KiB) decoded down to record views, as the broker does on receipt."""

    params = [1, 6]
    param_names = ["partitions"]
    timeout = 120

    def setup(self, partitions):
        self.frame = _received(produce_frame(partitions))
        views = decode_produce(self.frame, check_crc=True)
        if len(views) != partitions or sum(len(v) for v in views) != MiB:
            raise RuntimeError(f"decoded {len(views)} batches of {sum(len(v) for v in views)} bytes, "
                               f"expected {partitions} of {MiB} in all")
        if views[0].obj is not self.frame.obj:
            raise RuntimeError("the records were copied out of the frame: they should be views of it")

    def time_decode(self, partitions):
        """Header, body, batches split and their headers checked: 1 MiB of records."""
        decode_produce(self.frame)

    def time_decode_and_crc(self, partitions):
        """time_decode plus validate_batch per batch (the shard's CRC-32C of 1 MiB)."""
        decode_produce(self.frame, check_crc=True)

    def track_decode_mb_per_s(self, partitions):
        """MB/s (1e6 bytes) of request decoded, best of 20 passes."""
        return len(self.frame) / _best_of(20, decode_produce, self.frame) / 1e6

    track_decode_mb_per_s.unit = "MB/s"


def _best_of(passes: int, fn, *args) -> float:
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


# --- in-process broker -----------------------------------------------------------------------

class InProcessBroker:
    """A real Broker on a loop of this thread, started here: 127.0.0.1 port 0, admin API
    off, one shard, data in a temp dir. The loop runs only while a request is answered."""

    def __init__(self, name: str, **settings):
        self.folder = temp_dir(name)
        self.loop = _new_loop()
        config = load_config({"listen": "127.0.0.1:0", "admin_listen": "off", "data_dir": self.folder,
                              "shards": 1, "log_level": "WARNING", **settings}, env={})
        self.broker = Broker(config)
        try:
            self.loop.run_until_complete(self.broker.start())
        except BaseException:
            self.loop.close()
            remove(self.folder)
            raise

    def answer(self, frame: memoryview) -> list:
        """One request frame answered as KafkaConnection does (_request, then _complete): the
        response as the list of buffers the connection would write."""
        r = WireReader(frame)
        header = read_request_header(r)
        api = REGISTRY[header.api_key]
        request = api.read(header.api_version, r)
        result = self.loop.run_until_complete(_handled(api, RequestContext(self.broker, header, None), request))
        w = WireWriter()
        w.int32(0)
        head = w.buf
        write_response_header(w, api.key, header.api_version, header.correlation_id)
        api.write(header.api_version, w, result)
        _len.pack_into(head, 0, w.total() - 4)
        return w.chunks()

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.broker.stop())
            self.loop.run_until_complete(_cancel_the_rest())
        finally:
            self.loop.close()
            remove(self.folder)


async def _handled(api, ctx, request):
    """The handler's answer, awaited if it is a coroutine or a future (on the broker's loop)."""
    result = api.handler(ctx, request)
    return await result if asyncio.isfuture(result) or asyncio.iscoroutine(result) else result


async def _cancel_the_rest() -> None:
    """Cancels the tasks still on the running loop (the broker's leftovers) and awaits them."""
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def fill_partition(part) -> list[int]:
    """Appends _FETCH_BATCHES batches of 64 KiB (1 KiB records); returns their base offsets."""
    batch = _batch(_FETCH_BATCH, SEED)
    bases = [part.append_batch(batch) for _ in range(_FETCH_BATCHES)]
    part.flush()
    return bases


def fetch_request(topic, offset: int, version: int):
    """A FetchRequest for one partition from `offset`, at most 1 MiB, answered at once."""
    request_cls, _ = codec_classes("Fetch")
    wanted = request_cls.FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=MiB)
    return request_cls(replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=MiB, isolation_level=0,
                       session_id=0, session_epoch=-1,
                       topics=[request_cls.FetchTopic(topic=topic.name, topic_id=topic.topic_id,
                                                      partitions=[wanted])])


def _response_bytes(chunks) -> int:
    return sum(len(c) for c in chunks)


class FetchBuild:
    """A Fetch of 1 MiB (16 batches of 64 KiB, 1 KiB records) answered by the broker's Fetch
    handler and written into response buffers, in process. `tail`: a consumer less than
    INLINE_READ_LAG records behind (read inline, as at the end of the log); `behind`: 3 MiB
    behind (read on a reader thread, as a consumer catching up)."""

    params = ["tail", "behind"]
    param_names = ["position"]
    timeout = 120

    def setup(self, position):
        self.server = InProcessBroker("fetch")
        try:
            log = self.server.broker.log
            topic = log.topic(_TOPIC, partitions=1)
            part = topic.partition(0)
            bases = fill_partition(part)
            offset = bases[_FETCH_TAIL_FROM] if position == "tail" else bases[0]
            lag = part.log_end_offset - offset
            if (lag <= INLINE_READ_LAG) != (position == "tail"):
                raise RuntimeError(f"{position}: {lag} records behind, INLINE_READ_LAG is {INLINE_READ_LAG}")
            version = _highest("Fetch")
            self.frame = _received(encode_request(api_key("Fetch"), version, 7,
                                                  fetch_request(topic, offset, version), "pstream-asv"))
            part.read_batches(0, 4 * MiB)   # into the page cache: the broker is timed, not the disk
            chunks = self.server.answer(self.frame)
            size = _response_bytes(chunks)
            if not MiB < size < MiB + KiB:
                raise RuntimeError(f"the Fetch response is {size} bytes, expected 1 MiB and its headers")
        except BaseException:
            self.server.close()
            raise

    def teardown(self, position):
        self.server.close()

    def time_fetch_1mib(self, position):
        """From the request frame to the response buffers (1 MiB of records)."""
        self.server.answer(self.frame)

    def track_fetch_mb_per_s(self, position):
        """MB/s (1e6 bytes) of response built, best of 20 passes."""
        size = _response_bytes(self.server.answer(self.frame))
        return size / _best_of(20, self.server.answer, self.frame) / 1e6

    track_fetch_mb_per_s.unit = "MB/s"


def metadata_request():
    """Metadata for the one 6-partition topic the benchmarks create (no auto-creation)."""
    request_cls, _ = codec_classes("Metadata")
    return request_cls(topics=[request_cls.MetadataRequestTopic(name=_TOPIC)],
                       allow_auto_topic_creation=False)


def api_versions_request():
    request_cls, _ = codec_classes("ApiVersions")
    return request_cls(client_software_name="pstream-asv", client_software_version="1")


_SMALL_REQUESTS = {"ApiVersions": api_versions_request, "Metadata": metadata_request}


class Dispatch:
    """One ApiVersions (all of pstream's API ranges) or Metadata (one topic of 6 partitions)
    request answered in process, frame to response buffers: the broker's cost per request
    without the socket (compare RoundTrip)."""

    params = ["ApiVersions", "Metadata"]
    param_names = ["api"]
    timeout = 120

    def setup(self, api):
        self.server = InProcessBroker("dispatch")
        self.server.broker.log.topic(_TOPIC, partitions=6)
        request = _SMALL_REQUESTS[api]()
        self.frame = _received(encode_request(api_key(api), _highest(api), 3, request, "pstream-asv"))
        self.server.answer(self.frame)

    def teardown(self, api):
        self.server.close()

    def time_answer(self, api):
        self.server.answer(self.frame)


# --- broker process --------------------------------------------------------------------------

_SERVING = re.compile(rb"serving Kafka on (\S+):(\d+) ")


class BrokerProcess:
    """`python -P -m pstream serve` on 127.0.0.1 port 0 with the admin API off, over a data
    directory of its own; the port is read from the broker's "serving Kafka on" log line.
    Runs the pstream these benchmarks measure (the in-place build, see __init__.py)."""

    def __init__(self, data_dir: str, timeout: float = 60.0):
        self.data_dir = data_dir
        self.log_path = data_dir.rstrip("/") + ".log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
        if IN_PLACE_ROOT:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (IN_PLACE_ROOT, env.get("PYTHONPATH")) if p)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "pstream", "serve", "--listen", "127.0.0.1:0",
                 "--data-dir", data_dir, "--admin-listen", "off", "--shards", "1"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=os.path.dirname(data_dir))
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as f:
                found = _SERVING.search(f.read())
            if found:
                self.host, self.port = found.group(1).decode(), int(found.group(2))
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(self.log_path, "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"the broker did not start (exit {self.proc.returncode}):\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RoundTrip:
    """Sequential request/response round trips with a blocking client against a broker
    process (no pipelining: one request in flight). ApiVersions and Metadata: 200 round
    trips per timed call (seconds / 200 = one round trip); Fetch: one round trip carrying
    1 MiB (16 batches of 64 KiB from a consumer at the tail), client decoding included."""

    timeout = 180
    trips = 200   # per timed call (not `rounds`: asv reads that as its own setting)

    def setup(self):
        self.folder = temp_dir("broker-rt")
        data = os.path.join(self.folder, "data")
        self.broker = None
        self.conn = None
        try:
            with pstream.Log(data, shards=1) as log:   # written before the broker opens the directory
                topic = log.topic(_TOPIC, partitions=6)
                bases = fill_partition(topic.partition(0))
            self.broker = BrokerProcess(data)
            self.conn = BrokerConnection(self.broker.host, self.broker.port, client_id="pstream-asv")
            self.calls = {api: (self.conn.version(api, _highest(api)), make())
                          for api, make in _SMALL_REQUESTS.items()}
            fetch_version = self.conn.version("Fetch", _highest("Fetch"))
            self.fetch = (fetch_version, fetch_request(topic, bases[_FETCH_TAIL_FROM], fetch_version))
            got = self._fetch_once()
            if got != MiB:
                raise RuntimeError(f"the Fetch round trip brought {got} bytes of records, expected {MiB}")
            if self._round_trips("Metadata", 1).topics[0].error_code:
                raise RuntimeError("Metadata answered an error for the benchmark topic")
        except BaseException:
            self.teardown()
            raise

    def teardown(self):
        if self.conn is not None:
            self.conn.close()
        if self.broker is not None:
            self.broker.stop()
        remove(self.folder)

    def _round_trips(self, api: str, count: int):
        call = self.conn.call
        version, request = self.calls[api]
        for _ in range(count):
            response = call(api, version, request)
        return response

    def _fetch_once(self) -> int:
        version, request = self.fetch
        response = self.conn.call("Fetch", version, request)
        partition = response.responses[0].partitions[0]
        if partition.error_code:
            raise RuntimeError(f"Fetch answered error {partition.error_code}")
        return len(partition.records)

    def time_api_versions_200(self):
        self._round_trips("ApiVersions", self.trips)

    def time_metadata_200(self):
        self._round_trips("Metadata", self.trips)

    def time_fetch_1mib(self):
        self._fetch_once()

    def track_api_versions_per_s(self):
        """ApiVersions round trips per second, best of 3 passes of 200."""
        return self.trips / _best_of(3, self._round_trips, "ApiVersions", self.trips)

    track_api_versions_per_s.unit = "round trips/s"

    def track_metadata_per_s(self):
        """Metadata round trips per second, best of 3 passes of 200."""
        return self.trips / _best_of(3, self._round_trips, "Metadata", self.trips)

    track_metadata_per_s.unit = "round trips/s"
