"""Batches written by real Kafka client libraries decode here, and ours decode there.

Clients: kafka-python (`kafka.record.default_records`) and aiokafka
(`aiokafka.record.default_records`: its compiled classes, and its pure-Python ones).
A codec a client cannot use in this environment is skipped with the reason.
Tests take the `codec` fixture, so they hold for every codec implementation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pstream.record import compression

kafka_default_records = pytest.importorskip("kafka.record.default_records")
kafka_codec = pytest.importorskip("kafka.codec")
aiokafka_default_records = pytest.importorskip("aiokafka.record.default_records")
aiokafka_codec = pytest.importorskip("aiokafka.codec")


@dataclass(frozen=True)
class Client:
    name: str
    builder: type
    batch: type
    codec_module: object  # the client's own codec helpers (has_snappy, lz4_encode, ...)
    written_leader_epoch: int  # partitionLeaderEpoch its builder writes

    def missing(self, codec_id: int) -> str | None:
        """Why this client cannot use codec_id here, or None if it can."""
        if codec_id == compression.NONE:
            return None
        name = compression.codec_name(codec_id)
        if getattr(self.codec_module, f"has_{name}")():
            return None
        needs = {
            "kafka-python": {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"},
        }.get(self.name, {}).get(name, "cramjam")
        return f"{self.name} cannot use {name} here: its `{needs}` package is not installed"


CLIENTS = {
    "kafka-python": Client(
        "kafka-python",
        kafka_default_records.DefaultRecordBatchBuilder,
        kafka_default_records.DefaultRecordBatch,
        kafka_codec,
        written_leader_epoch=0,
    ),
    "aiokafka": Client(
        "aiokafka",
        aiokafka_default_records.DefaultRecordBatchBuilder,
        aiokafka_default_records.DefaultRecordBatch,
        aiokafka_codec,
        written_leader_epoch=-1,
    ),
    "aiokafka-pure-python": Client(
        "aiokafka-pure-python",
        aiokafka_default_records._DefaultRecordBatchBuilderPy,
        aiokafka_default_records._DefaultRecordBatchPy,
        aiokafka_codec,
        written_leader_epoch=-1,
    ),
}
CODEC_IDS = list(compression.NAMES.values())


@pytest.fixture(params=list(CLIENTS))
def client(request: pytest.FixtureRequest) -> Client:
    return CLIENTS[request.param]


@pytest.fixture(params=list(compression.NAMES))
def codec_id(request: pytest.FixtureRequest, client: Client) -> int:
    """A compression codec id, skipped where the client lacks the library for it."""
    number = compression.NAMES[request.param]
    reason = client.missing(number)
    if reason:
        pytest.skip(reason)
    return number


def sample_records(seed: int = 0, count: int = 40) -> list[tuple]:
    """Records with every shape Kafka allows, and values repetitive enough to compress."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        key = None if i % 7 == 3 else f"key-{i % 5}".encode()
        value = None if i % 11 == 5 else (f"value {i} " * rng.randrange(1, 30)).encode()
        headers = [("trace", f"t-{i}".encode()), ("empty", b""), ("null", None)][: i % 4]
        timestamp = 1_700_000_000_000 + rng.randrange(-5000, 5000)  # not in order
        records.append((key, value, headers, timestamp))
    records[0] = (b"", b"", [("\u00e9t\u00e9 \u2603", b"unicode key")], records[0][3])
    return records


def client_build(
    client: Client, records: list[tuple], codec_id: int, *, producer=(-1, -1, -1), transactional=False
) -> bytes:
    producer_id, producer_epoch, base_sequence = producer
    builder = client.builder(2, codec_id, transactional, producer_id, producer_epoch, base_sequence, 1 << 24)
    for offset, (key, value, headers, timestamp) in enumerate(records):
        assert builder.append(offset, timestamp, key, value, list(headers)) is not None
    return bytes(builder.build())


def client_read(client: Client, batch: bytes):
    read = client.batch(batch)
    assert read.validate_crc()
    return read, list(read)


def expected_records(records, base_offset: int = 0, log_append_time: bool = False) -> list[tuple]:
    max_ts = max(r[3] for r in records)
    return [
        (base_offset + i, max_ts if log_append_time else ts, key, value, [(hk, hv) for hk, hv in headers])
        for i, (key, value, headers, ts) in enumerate(records)
    ]


def as_tuple(record) -> tuple:
    return (record.offset, record.timestamp_ms, record.key, record.value, list(record.headers))


def client_tuple(record) -> tuple:
    return (record.offset, record.timestamp, record.key, record.value, list(record.headers))


# --- client writes, we read ---------------------------------------------------------


def test_client_batches_decode(codec, client: Client, codec_id: int) -> None:
    records = sample_records(seed=codec_id)
    batch = client_build(client, records, codec_id, producer=(4242, 3, 17))
    header = codec.validate_batch(batch)
    assert header.compression == codec_id, "the client sent it uncompressed: records must compress"
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (4242, 3, 17)
    assert header.partition_leader_epoch == client.written_leader_epoch
    assert header.size == len(batch)
    header_again, decoded = codec.decode_batch(batch)
    assert header_again.crc == header.crc
    assert [as_tuple(r) for r in decoded] == expected_records(records)
    assert header.max_timestamp == max(r[3] for r in records)
    assert header.base_timestamp == records[0][3]
    assert header.last_offset == len(records) - 1


def test_client_transactional_batches_decode(codec, client: Client) -> None:
    records = sample_records(count=3)
    batch = client_build(client, records, 0, producer=(9, 0, 0), transactional=True)
    header, decoded = codec.decode_batch(batch)
    assert header.is_transactional and not header.is_control
    assert [as_tuple(r) for r in decoded] == expected_records(records)


def test_single_record_client_batch_decodes(codec, client: Client) -> None:
    records = [(None, b"only", [], 123)]
    _, decoded = codec.decode_batch(client_build(client, records, 0))
    assert [as_tuple(r) for r in decoded] == [(0, 123, None, b"only", [])]


# --- we write, client reads ---------------------------------------------------------


@pytest.mark.parametrize("log_append_time", [False, True])
def test_our_batches_decode_in_the_client(
    codec, client: Client, codec_id: int, log_append_time: bool
) -> None:
    records = sample_records(seed=10 + codec_id)
    batch = codec.encode_batch(
        records,
        base_offset=1_000_000,
        compression=codec_id,
        timestamp_type=int(log_append_time),
        producer_id=77,
        producer_epoch=2,
        base_sequence=500,
        partition_leader_epoch=12,
        is_transactional=True,
    )
    read, got = client_read(client, batch)
    assert read.compression_type == codec_id
    assert read.timestamp_type == int(log_append_time)
    assert read.is_transactional and not read.is_control_batch
    assert (read.base_offset, read.magic, read.last_offset_delta) == (1_000_000, 2, len(records) - 1)
    assert (read.producer_id, read.producer_epoch, read.base_sequence) == (77, 2, 500)
    assert read.first_timestamp == records[0][3]
    assert read.max_timestamp == max(r[3] for r in records)
    assert read.next_offset == 1_000_000 + len(records)
    assert [client_tuple(r) for r in got] == expected_records(records, 1_000_000, log_append_time)


@settings(deadline=None, max_examples=100)
@given(
    records=st.lists(
        st.tuples(
            st.none() | st.binary(max_size=30),
            st.none() | st.binary(max_size=30),
            st.lists(st.tuples(st.text(max_size=6), st.none() | st.binary(max_size=10)), max_size=3),
            st.integers(0, 1 << 50),
        ),
        min_size=1,
        max_size=10,
    ),
    client_name=st.sampled_from(list(CLIENTS)),
    base_offset=st.integers(0, 1 << 62),
)
def test_any_uncompressed_batch_of_ours_reads_the_same_in_the_client(
    codec, records, client_name, base_offset
) -> None:
    client = CLIENTS[client_name]
    _, got = client_read(client, codec.encode_batch(records, base_offset=base_offset))
    assert [client_tuple(r) for r in got] == expected_records(records, base_offset)


def test_empty_batch_of_ours_reads_in_the_client(codec, client: Client) -> None:
    read, got = client_read(client, codec.encode_batch([]))
    assert got == []
    assert read.last_offset_delta == -1


# --- byte for byte -----------------------------------------------------------------


def test_uncompressed_batches_are_byte_identical_to_the_clients(codec, client: Client) -> None:
    records = sample_records(seed=99)
    ours = codec.encode_batch(records, compression=0, partition_leader_epoch=client.written_leader_epoch)
    assert ours == client_build(client, records, 0)


def test_snappy_batches_are_byte_identical_to_aiokafkas(codec) -> None:
    # aiokafka writes xerial framing with cramjam and 32 KiB blocks, as we do.
    client = CLIENTS["aiokafka"]
    records = sample_records(seed=5, count=400)  # more than one 32 KiB xerial block
    theirs = client_build(client, records, compression.SNAPPY)
    assert len(theirs) > 16 + 4 * 2 and theirs[61:77] == compression.XERIAL_HEADER
    ours = codec.encode_batch(records, compression="snappy", partition_leader_epoch=-1)
    assert ours == theirs


# --- the codec functions alone -------------------------------------------------------

CLIENT_CODEC_FUNCTIONS: dict[str, dict[int, tuple[str, str]]] = {
    "kafka-python": {
        compression.GZIP: ("gzip_encode", "gzip_decode"),
        compression.SNAPPY: ("snappy_encode", "snappy_decode"),
        compression.LZ4: ("lz4_encode", "lz4_decode"),
        compression.ZSTD: ("zstd_encode", "zstd_decode"),
    },
}
CLIENT_CODEC_FUNCTIONS["aiokafka"] = CLIENT_CODEC_FUNCTIONS["kafka-python"]


@pytest.mark.parametrize("client_name", list(CLIENT_CODEC_FUNCTIONS))
@pytest.mark.parametrize("codec_number", [1, 2, 3, 4])
def test_compressed_payloads_cross_decode(client_name: str, codec_number: int) -> None:
    client = CLIENTS[client_name]
    reason = client.missing(codec_number)
    if reason:
        pytest.skip(reason)
    encode_name, decode_name = CLIENT_CODEC_FUNCTIONS[client_name][codec_number]
    encode: Callable[[bytes], bytes] = getattr(client.codec_module, encode_name)
    decode: Callable[[bytes], bytes] = getattr(client.codec_module, decode_name)
    data = b"".join(f"payload line {i}\n".encode() for i in range(20_000))  # > 32 KiB
    assert compression.decompress(codec_number, bytes(encode(data))) == data
    assert bytes(decode(compression.compress(codec_number, data))) == data
