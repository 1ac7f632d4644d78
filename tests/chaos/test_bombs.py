"""Decompression bombs against the real broker: each is refused (MESSAGE_TOO_LARGE) without the
broker allocating what it expands to, nothing of it is stored, and a good producer on another
connection keeps getting acks throughout.

A bomb is one valid-looking compressed batch (correct CRC, one record) whose records section
expands to hundreds of MiB of zeros; snappy expands at most ~21x, so its bomb is smaller.
"""

from __future__ import annotations

import threading
import time
import zlib

import lz4.frame
import pytest
import zstandard


import raw_kafka  # noqa: E402

import pstream  # noqa: E402
from pstream.protocol.error_codes import ErrorCode  # noqa: E402
from pstream.record import compression, reference  # noqa: E402

MAX_MESSAGE_BYTES = 8 << 20          # room for a snappy bomb; gzip, lz4 and zstd bombs are far smaller
PEAK_GROWTH_BOUND = 64 << 20         # the broker's peak RSS may not grow by this much: each bomb expands to more

varint = reference.varint   # zigzag varlong


def bomb(codec: int, expands_to: int, records: int = 1) -> bytes:
    """A batch of `records` records of zeros, `expands_to` bytes decompressed, built a MiB at a time."""
    each = expands_to // records
    pieces = []
    for i in range(records):
        head = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(each)
        pieces.append(varint(len(head) + each + 1) + head)
        pieces += [None] * (each >> 20)   # None: 1 MiB of zeros
        pieces.append(bytes(each & ((1 << 20) - 1)) + varint(0))
    zeros = bytes(1 << 20)
    if codec == compression.SNAPPY:
        block = compression.compress(codec, zeros[:compression.XERIAL_BLOCK_SIZE])[len(compression.XERIAL_HEADER):]
        parts = [compression.XERIAL_HEADER]
        for p in pieces:
            if p is None:
                parts.append(block * ((1 << 20) // compression.XERIAL_BLOCK_SIZE))
            else:
                parts.append(compression.compress(codec, p)[len(compression.XERIAL_HEADER):])
        section = b"".join(parts)
    else:
        if codec == compression.GZIP:
            packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            begin = b""
        elif codec == compression.LZ4:
            packer = lz4.frame.LZ4FrameCompressor(block_linked=False)
            begin = packer.begin()
        else:
            packer = zstandard.ZstdCompressor().compressobj()
            begin = b""
        section = begin + b"".join(packer.compress(zeros if p is None else p) for p in pieces) + packer.flush()
    out = reference.frame_section(section, records, attributes=codec)
    assert len(out) <= MAX_MESSAGE_BYTES
    return out


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def produce(conn, topic, records):
    return conn.call("Produce", 9, raw_kafka.produce_request(topic, 0, records)).responses[0].partition_responses[0]


def create_topic(conn, name):
    resp = conn.call("CreateTopics", 7, raw_kafka.create_topics_request(
        {name: (1, -1, {"max.message.bytes": str(MAX_MESSAGE_BYTES)})}))
    assert resp.topics[0].error_code == 0, resp.topics[0]


class GoodProducer(threading.Thread):
    """Produces small batches on its own connection until stopped; counts acks and failures."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.stop = threading.Event()
        self.acked = 0
        self.failures: list = []

    def run(self):
        batch = pstream._core.encode_batch([(None, b"good", [], None)])
        with raw_kafka.RawConnection(self.bootstrap) as conn:
            while not self.stop.is_set():
                part = produce(conn, self.topic, batch)
                if part.error_code:
                    self.failures.append(part)
                else:
                    self.acked += 1


BOMBS = {   # name: (codec, bytes it expands to, records)
    "gzip": (compression.GZIP, 512 << 20, 1),
    "lz4": (compression.LZ4, 512 << 20, 1),
    "zstd": (compression.ZSTD, 1 << 30, 1),
    "snappy": (compression.SNAPPY, 160 << 20, 1),
    "zstd-many-records": (compression.ZSTD, 512 << 20, 4096),
}


def run_bombs(broker, names, rounds: int) -> None:
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        create_topic(conn, "bombs")
        create_topic(conn, "good")
        bombs = {name: bomb(*BOMBS[name]) for name in names}
        producer = GoodProducer(broker.bootstrap, "good")
        producer.start()
        start_peak = peak_rss(broker.proc.pid)
        acked_before = 0
        try:
            for _ in range(rounds):
                for name, payload in bombs.items():
                    part = produce(conn, "bombs", payload)
                    assert (part.error_code, part.base_offset) == (ErrorCode.MESSAGE_TOO_LARGE, -1), (name, part)
                    assert "limit of 67108864 bytes" in part.error_message
            growth = peak_rss(broker.proc.pid) - start_peak
            acked_before = producer.acked
            deadline = time.monotonic() + 10
            while producer.acked < acked_before + 10 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            producer.stop.set()
            producer.join(30)
        assert producer.failures == []
        assert producer.acked >= acked_before + 10, "the good producer stopped getting acks"
        assert growth < PEAK_GROWTH_BOUND, f"the broker's peak RSS grew by {growth >> 20} MiB"
        # Nothing of any bomb was stored.
        ok = pstream._core.encode_batch([(None, b"after", [], None)])
        assert produce(conn, "bombs", ok).base_offset == 0


def test_bombs_of_every_codec_are_refused_while_a_good_producer_is_served(broker):
    run_bombs(broker, list(BOMBS), rounds=1)


@pytest.mark.slow
def test_bombs_again_and_again(broker):
    run_bombs(broker, list(BOMBS), rounds=20)
