"""pstream.record.compression: round trips, the exact bytes Kafka expects, and failures."""

from __future__ import annotations

import gzip
import io
import os
import random
import struct

import cramjam
import lz4.frame
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pstream.errors import CompressionError
from pstream.record import compression
from pstream.record.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
COMPRESSING = [GZIP, SNAPPY, LZ4, ZSTD]
XERIAL_HEADER = b"\x82SNAPPY\x00" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01"


def text_like(size: int, seed: int = 7) -> bytes:
    """Compressible but not trivial bytes, the same for a given seed."""
    rng = random.Random(seed)
    words = [bytes(rng.randrange(97, 123) for _ in range(rng.randrange(2, 10))) for _ in range(300)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


SAMPLES = {
    "empty": b"",
    "one byte": b"x",
    "text 1000": text_like(1000),
    "random 5000": random.Random(1).randbytes(5000),
    "exactly one xerial block": text_like(32 * 1024),
    "one byte over a block": text_like(32 * 1024 + 1),
    "text 200k": text_like(200_000),
    "zeros 1M": bytes(1 << 20),
}


# --- codec ids -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "number"), list(compression.NAMES.items()))
def test_codec_id_accepts_names_and_ids(name: str, number: int) -> None:
    assert compression.codec_id(name) == number
    assert compression.codec_id(name.upper()) == number
    assert compression.codec_id(number) == number


def test_codec_constants_are_kafkas_attribute_values() -> None:
    assert (NONE, GZIP, SNAPPY, LZ4, ZSTD) == (0, 1, 2, 3, 4)
    assert compression.NAMES == {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.mark.parametrize("bad", ["brotli", "", 5, -1, 7, True, None, 2.0])
def test_codec_id_rejects_unknown_values_naming_them(bad: object) -> None:
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(").replace(")", r"\)")):
        compression.codec_id(bad)  # type: ignore[arg-type]


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("sample", list(SAMPLES))
def test_round_trip(codec: int, sample: str) -> None:
    data = SAMPLES[sample]
    packed = compression.compress(codec, data)
    assert isinstance(packed, bytes)
    assert compression.decompress(codec, packed) == data
    assert compression.decompress(codec, packed, max_size=len(data)) == data


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_round_trip_accepts_any_bytes_like(codec: int, wrap: type) -> None:
    data = SAMPLES["text 200k"]
    packed = compression.compress(codec, wrap(data))
    assert compression.decompress(codec, wrap(packed)) == data


@settings(deadline=None, max_examples=200)
@given(codec=st.sampled_from(CODECS), data=st.binary(max_size=3000))
def test_round_trip_any_bytes(codec: int, data: bytes) -> None:
    assert compression.decompress(codec, compression.compress(codec, data)) == data


def test_none_is_the_identity() -> None:
    assert compression.compress(NONE, b"abc") == b"abc"
    assert compression.decompress(NONE, memoryview(b"abc")) == b"abc"


# --- gzip ----------------------------------------------------------------------------


def test_gzip_output_is_deterministic_with_mtime_zero() -> None:
    data = SAMPLES["text 1000"]
    first = compression.compress(GZIP, data)
    assert first == compression.compress(GZIP, data)
    assert first[:2] == b"\x1f\x8b"
    assert first[4:8] == b"\x00\x00\x00\x00"  # MTIME
    assert gzip.decompress(first) == data


def test_gzip_reads_several_members() -> None:
    first, second = b"first " * 100, b"second " * 100
    joined = gzip.compress(first) + gzip.compress(second)
    assert compression.decompress(GZIP, joined) == first + second


# --- snappy / xerial -------------------------------------------------------------------


def test_snappy_writes_xerial_header_and_32k_blocks() -> None:
    data = text_like(70_000)
    packed = compression.compress(SNAPPY, data)
    assert packed[:16] == XERIAL_HEADER
    pos, blocks = 16, []
    while pos < len(packed):
        (length,) = struct.unpack_from(">i", packed, pos)
        blocks.append(bytes(cramjam.snappy.decompress_raw(packed[pos + 4 : pos + 4 + length])))
        pos += 4 + length
    assert pos == len(packed)
    assert [len(block) for block in blocks] == [32768, 32768, 70_000 - 65536]
    assert b"".join(blocks) == data


def test_snappy_of_nothing_is_the_bare_xerial_header() -> None:
    assert compression.compress(SNAPPY, b"") == XERIAL_HEADER
    assert compression.decompress(SNAPPY, XERIAL_HEADER) == b""


def test_snappy_reads_raw_snappy_without_xerial_framing() -> None:
    data = SAMPLES["text 200k"]
    raw = bytes(cramjam.snappy.compress_raw(data))
    assert raw[:8] != XERIAL_HEADER[:8]
    assert compression.decompress(SNAPPY, raw) == data


def test_snappy_reads_concatenated_xerial_streams() -> None:
    first, second = text_like(40_000, seed=1), text_like(1000, seed=2)
    joined = compression.compress(SNAPPY, first) + compression.compress(SNAPPY, second)
    assert compression.decompress(SNAPPY, joined) == first + second


def test_snappy_ignores_xerial_version_fields_written_little_endian() -> None:
    data = SAMPLES["text 1000"]
    packed = compression.compress(SNAPPY, data)
    little_endian = packed[:8] + struct.pack("<ii", 1, 1) + packed[16:]
    assert compression.decompress(SNAPPY, little_endian) == data


@pytest.mark.parametrize(
    ("tail", "match"),
    [
        (b"\x00\x00", "block length at byte 16 is truncated"),
        (b"\x00\x00\x00\x10abc", "declares 16 bytes but 3 remain"),
        (b"\xff\xff\xff\xff", "declares -1 bytes"),
        (b"\x00\x00\x00\x03\x05ab", "corrupt input"),
    ],
)
def test_snappy_bad_xerial_blocks_raise(tail: bytes, match: str) -> None:
    with pytest.raises(CompressionError, match=f"snappy decompression failed: .*{match}"):
        compression.decompress(SNAPPY, XERIAL_HEADER + tail)


# --- lz4 -----------------------------------------------------------------------------


def test_lz4_writes_a_frame_with_independent_64k_blocks_and_no_extras() -> None:
    packed = compression.compress(LZ4, SAMPLES["text 200k"])
    assert packed[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic
    assert packed[4] == 0x60  # FLG: version 01, independent blocks, nothing else
    assert packed[5] == 0x40  # BD: 64 KiB maximum block size
    info = lz4.frame.get_frame_info(packed)
    assert info["block_linked"] is False
    assert info["content_checksum"] is False
    assert info["block_checksum"] is False
    assert info["content_size"] == 0
    assert info["block_size"] == 64 * 1024


def test_lz4_reads_frames_with_content_size_and_checksums() -> None:
    data = SAMPLES["text 200k"]
    packed = lz4.frame.compress(
        data, content_checksum=True, block_checksum=True, store_size=True, block_linked=True
    )
    assert compression.decompress(LZ4, packed) == data


def test_lz4_reads_concatenated_frames() -> None:
    first, second = text_like(100_000, seed=3), text_like(10, seed=4)
    joined = lz4.frame.compress(first) + lz4.frame.compress(second)
    assert compression.decompress(LZ4, joined) == first + second


# --- zstd ----------------------------------------------------------------------------


def _zstd_streamed_with_compressobj(data: bytes) -> bytes:
    compressor = zstandard.ZstdCompressor().compressobj()
    return compressor.compress(data) + compressor.flush()


def _zstd_streamed_with_stream_writer(data: bytes) -> bytes:
    sink = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(sink, closefd=False) as writer:
        for start in range(0, len(data), 10_000):
            writer.write(data[start : start + 10_000])
    return sink.getvalue()


@pytest.mark.parametrize("make", [_zstd_streamed_with_compressobj, _zstd_streamed_with_stream_writer])
def test_zstd_reads_streamed_frames_without_content_size(make) -> None:
    data = SAMPLES["text 200k"]
    packed = make(data)
    assert zstandard.get_frame_parameters(packed).content_size == zstandard.CONTENTSIZE_UNKNOWN
    with pytest.raises(zstandard.ZstdError):  # what a naive one-shot decode would hit
        zstandard.ZstdDecompressor().decompress(packed)
    assert compression.decompress(ZSTD, packed) == data
    assert compression.decompress(ZSTD, packed, max_size=len(data)) == data


def test_zstd_reads_concatenated_frames() -> None:
    first, second, third = text_like(50_000, seed=5), b"", text_like(777, seed=6)
    joined = (
        _zstd_streamed_with_compressobj(first)
        + zstandard.ZstdCompressor().compress(second)
        + zstandard.ZstdCompressor(level=19).compress(third)
    )
    assert compression.decompress(ZSTD, joined) == first + second + third
    assert compression.decompress(ZSTD, joined, max_size=len(first) + len(third)) == first + third


def test_zstd_skips_skippable_frames() -> None:
    data = SAMPLES["text 1000"]
    skippable = struct.pack("<II", 0x184D2A50, 5) + b"12345"
    packed = skippable + compression.compress(ZSTD, data) + skippable
    assert compression.decompress(ZSTD, packed) == data


# --- failures ------------------------------------------------------------------------


@pytest.mark.parametrize("codec", COMPRESSING)
@pytest.mark.parametrize(
    "damage",
    ["empty", "garbage", "first half", "all but the last byte", "flipped byte", "trailing garbage"],
)
def test_bad_input_raises_compression_error_naming_the_codec(codec: int, damage: str) -> None:
    data = SAMPLES["text 200k"]
    packed = compression.compress(codec, data)
    bad = {
        "empty": b"",
        "garbage": b"this is not compressed data at all",
        "first half": packed[: len(packed) // 2],
        "all but the last byte": packed[:-1],
        "flipped byte": packed[:40] + bytes([packed[40] ^ 0x5A]) + packed[41:],
        "trailing garbage": packed + b"\x01junk",
    }[damage]
    try:
        out = compression.decompress(codec, bad)
    except CompressionError as exc:
        assert exc.message.startswith(f"{compression.codec_name(codec)} decompression failed: ")
        assert exc.position is None
        return
    # Only gzip always carries a checksum of its output; the other formats as
    # written here have none, so a flipped byte can decode to different output.
    assert damage == "flipped byte" and codec != GZIP
    assert out != data


@pytest.mark.parametrize("bad_codec", [5, 6, 7, -1, 100])
def test_unknown_codec_id_raises_compression_error(bad_codec: int) -> None:
    with pytest.raises(CompressionError, match=f"unknown compression codec id {bad_codec}"):
        compression.decompress(bad_codec, b"abc")
    with pytest.raises(CompressionError, match=f"unknown compression codec id {bad_codec}"):
        compression.compress(bad_codec, b"abc")


@settings(deadline=None, max_examples=300)
@given(
    codec=st.sampled_from(COMPRESSING),
    data=st.binary(max_size=200),
    max_size=st.none() | st.just(1 << 20),
)
def test_arbitrary_bytes_never_raise_a_library_exception(
    codec: int, data: bytes, max_size: int | None
) -> None:
    try:
        compression.decompress(codec, data, max_size=max_size)
    except CompressionError:
        pass


@settings(deadline=None, max_examples=300)
@given(
    codec=st.sampled_from(COMPRESSING),
    where=st.integers(0, 10**6),
    xor=st.integers(1, 255),
    cut=st.booleans(),
)
def test_damaged_streams_never_raise_a_library_exception(codec: int, where: int, xor: int, cut: bool) -> None:
    packed = bytearray(compression.compress(codec, SAMPLES["text 1000"]))
    where %= len(packed)
    if cut:
        del packed[where:]
    else:
        packed[where] ^= xor
    try:
        compression.decompress(codec, packed)
    except CompressionError:
        pass


# --- decompression bombs -------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_max_size_refuses_output_one_byte_too_large(codec: int) -> None:
    data = SAMPLES["text 200k"]
    packed = compression.compress(codec, data)
    assert compression.decompress(codec, packed, max_size=len(data)) == data
    with pytest.raises(CompressionError, match=f"larger than the limit of {len(data) - 1} bytes"):
        compression.decompress(codec, packed, max_size=len(data) - 1)


@pytest.mark.parametrize("codec", COMPRESSING)
def test_max_size_stops_a_decompression_bomb(codec: int) -> None:
    bomb = compression.compress(codec, bytes(64 << 20))
    assert len(bomb) < (4 << 20)
    name = compression.codec_name(codec)
    with pytest.raises(CompressionError, match=f"{name} decompression failed: .*limit"):
        compression.decompress(codec, bomb, max_size=1 << 20)


def test_max_size_counts_every_concatenated_frame() -> None:
    part = os.urandom(1000)
    for codec, joined in [
        (GZIP, gzip.compress(part) * 3),
        (LZ4, lz4.frame.compress(part) * 3),
        (ZSTD, zstandard.ZstdCompressor().compress(part) * 3),
        (SNAPPY, compression.compress(SNAPPY, part) * 3),
    ]:
        assert compression.decompress(codec, joined, max_size=3000) == part * 3
        with pytest.raises(CompressionError, match="limit"):
            compression.decompress(codec, joined, max_size=2999)


# --- recompress_batch: Kafka's broker-side compression.type ---------------------------------

record_lists = st.lists(st.tuples(st.none() | st.binary(max_size=20), st.none() | st.binary(max_size=200),
                                  st.just([]), st.integers(0, 1 << 40)), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(records=record_lists, source=st.sampled_from(CODECS), target=st.sampled_from(CODECS),
       transactional=st.booleans())
def test_recompressing_a_batch_keeps_every_field_and_record(records, source, target, transactional) -> None:
    from pstream import _core

    batch = _core.encode_batch(records, compression=source, producer_id=5, producer_epoch=2, base_sequence=9,
                               base_offset=3, partition_leader_epoch=4, is_transactional=transactional)
    out = _core.recompress_batch(batch, target)
    assert _core.check_batch(out) is None           # sizes and a fresh CRC
    before, after = _core.peek_batch(batch), _core.peek_batch(out)
    assert after.compression == target
    for field in ("base_offset", "last_offset", "record_count", "producer_id", "producer_epoch", "base_sequence",
                  "is_transactional", "timestamp_type", "max_timestamp"):
        assert getattr(after, field) == getattr(before, field), field
    assert _core.decode_batch(out)[1] == _core.decode_batch(batch)[1]
    if source == target:
        assert out is batch


def test_a_control_batch_is_never_recompressed() -> None:
    from pstream import _core

    marker = _core.encode_batch([(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00", [], None)], producer_id=1,
                                producer_epoch=0, is_transactional=True, is_control=True)
    assert _core.recompress_batch(marker, ZSTD) is marker
