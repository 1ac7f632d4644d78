"""Compression codecs of Kafka record batches (the low 3 bits of a batch's attributes).

Owns the mapping between Kafka codec ids and the libraries that implement them, and
the one wire detail Kafka adds on top of a library: snappy's xerial framing. It does
not parse batches and never reimplements a codec: gzip is the stdlib's zlib, snappy is
cramjam, lz4 is `lz4.frame`, zstd is `zstandard`.

What is written, codec by codec (what the Java client writes, so any Kafka reads it):

- gzip (1): one gzip member, mtime 0, so the same input always gives the same bytes.
  Read: one or more members (zero padding between them is skipped, as the stdlib's
  `gzip.decompress` does); anything else after a member is an error.
- snappy (2): xerial framing, as `org.xerial.snappy.SnappyOutputStream` writes it::

      magic     8 bytes  b"\\x82SNAPPY\\x00"
      version   int32 BE 1
      compat    int32 BE 1
      blocks    [int32 BE compressed length][raw snappy block] per 32 KiB of input

  Read: xerial framing when the data starts with the 8 magic bytes (version and compat
  are not checked: some producers write them little-endian), including several xerial
  streams back to back as xerial's reader accepts; otherwise one raw snappy block.
- lz4 (3): one LZ4 frame with independent 64 KiB blocks and no content size or
  checksums, the flags Kafka's `KafkaLZ4BlockOutputStream` writes. Read: any LZ4 frame,
  several frames back to back.
- zstd (4): one zstd frame. Read: one or more frames, with or without a content size
  in their header (the Java client streams frames without one); skippable frames are
  skipped.

Every failure to decode, and an unknown codec id, raises
`pstream.errors.CompressionError` naming the codec; a library's own exception never
escapes. `decompress(..., max_size=n)` refuses output larger than n bytes and bounds
the memory spent finding out: exactly for gzip, snappy and lz4; for zstd, which cannot
stop mid-block, by at most ~16 MiB past n.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import cramjam
import lz4.frame
import zstandard

from pstream.errors import CompressionError

__all__ = [
    "GZIP",
    "LZ4",
    "NAMES",
    "NONE",
    "OutputTooLargeError",
    "SNAPPY",
    "ZSTD",
    "codec_id",
    "codec_name",
    "compress",
    "decompress",
    "decompress_chunks",
]

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
NAMES = {"none": NONE, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}
_NAME_OF = {number: name for name, number in NAMES.items()}

# Default levels, Kafka's (KIP-390) where it has one: gzip 6 (java.util.zip's default),
# zstd 3. lz4 uses the library's fast mode rather than Kafka's HC level 9: pstream
# compresses only batches it makes itself, and lz4 is chosen for speed.
_GZIP_LEVEL = 6
_ZSTD_LEVEL = 3
_LZ4_LEVEL = 0

XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
XERIAL_BLOCK_SIZE = 32 * 1024
_XERIAL_BLOCK_LENGTH = struct.Struct(">i")

# zstd input is fed in pieces of this size when max_size is set: one piece can
# expand to at most ~16 MiB (4-byte RLE blocks of 128 KiB each), and costs ~0.2 ms
# per MiB of ordinary output.
_ZSTD_GUARDED_INPUT = 512

# Output pieces of decompress_chunks: large enough that the per-call cost vanishes, small
# enough that walking a bomb's output holds little memory.
CHUNK_BYTES = 1 << 20

Buffer = bytes | bytearray | memoryview


def codec_id(name_or_id: str | int) -> int:
    """The codec id (0..4) of a codec name ("none", "gzip", "snappy", "lz4", "zstd") or id."""
    if isinstance(name_or_id, str):
        number = NAMES.get(name_or_id.lower())
        if number is not None:
            return number
    elif isinstance(name_or_id, int) and not isinstance(name_or_id, bool):
        if name_or_id in _NAME_OF:
            return name_or_id
    raise ValueError(
        f"unknown compression codec {name_or_id!r}: expected one of "
        f"{', '.join(NAMES)} or their ids 0..4"
    )


def codec_name(codec: int) -> str:
    """The Kafka name of a codec id ("gzip"), or "codec <id>" for an unknown one."""
    return _NAME_OF.get(codec, f"codec {codec}")


def compress(codec: int, data: Buffer, *, level: int | None = None) -> bytes:
    """Compress `data` as the records section of a batch with codec id `codec`.

    `level` overrides the codec's default level (ignored by none and snappy).
    """
    if codec == NONE:
        return bytes(data)
    if codec == GZIP:
        return _gzip_compress(data, _GZIP_LEVEL if level is None else level)
    if codec == SNAPPY:
        return _xerial_compress(data)
    if codec == LZ4:
        return _lz4_compress(data, _LZ4_LEVEL if level is None else level)
    if codec == ZSTD:
        return _zstd_compress(data, _ZSTD_LEVEL if level is None else level)
    raise CompressionError(f"cannot compress with unknown compression codec id {codec!r}")


def decompress(codec: int, data: Buffer, max_size: int | None = None) -> bytes:
    """Decompress the records section `data` of a batch compressed with codec id `codec`.

    Raises CompressionError if the codec is unknown, the data cannot be decoded, or the
    output would be larger than `max_size` bytes (when given).
    """
    if codec == NONE:
        _check_size(codec, len(data), max_size)
        return bytes(data)
    return b"".join(decompress_chunks(codec, data, max_size))


def decompress_chunks(codec: int, data: Buffer, max_size: int | None = None, chunk_bytes: int = CHUNK_BYTES):
    """Decompress like `decompress`, yielding the output in pieces instead of whole.

    Pieces hold at most `chunk_bytes` for gzip and lz4, one xerial block (or the one raw
    block) for snappy, and what 512 bytes of input expand to for zstd (at most ~16 MiB), so a
    caller that walks the pieces never holds the whole output: a decompression bomb costs
    the time to reach `max_size`, not its memory. The same errors as `decompress`, raised
    when the generator reaches them.
    """
    if codec not in _DECOMPRESSORS:
        raise CompressionError(f"cannot decompress with unknown compression codec id {codec!r}")
    if len(data) == 0:
        raise _fail(codec, "the input is empty")
    try:
        yield from _DECOMPRESSORS[codec](data, max_size, chunk_bytes)
    except CompressionError:
        raise
    except (zlib.error, cramjam.DecompressionError, RuntimeError, zstandard.ZstdError) as exc:
        raise _fail(codec, f"corrupt input ({exc})") from exc
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise _fail(codec, f"{type(exc).__name__}: {exc}") from exc


# --- errors ------------------------------------------------------------------------


def _fail(codec: int, what: str) -> CompressionError:
    return CompressionError(f"{codec_name(codec)} decompression failed: {what}")


class OutputTooLargeError(CompressionError):
    """The output would pass the `max_size` limit: a decompression bomb, or a batch too large."""


def _check_size(codec: int, size: int, max_size: int | None) -> None:
    if max_size is not None and size > max_size:
        raise OutputTooLargeError(f"{codec_name(codec)} decompression failed: the output is larger than the "
                                  f"limit of {max_size} bytes")


def _limit(produced: int, max_size: int | None, chunk_bytes: int) -> int:
    """How much more output to ask for: a chunk, or one byte past the limit (to see it was passed)."""
    return chunk_bytes if max_size is None else min(chunk_bytes, max_size - produced + 1)


# --- gzip --------------------------------------------------------------------------


def _gzip_compress(data: Buffer, level: int) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


def _gzip_decompress(data: Buffer, max_size: int | None, chunk_bytes: int):
    produced = 0
    pending: Buffer = data
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip wrapper only
    while True:
        chunk = inflater.decompress(pending, _limit(produced, max_size, chunk_bytes))
        produced += len(chunk)
        _check_size(GZIP, produced, max_size)
        if chunk:
            yield chunk
        if inflater.eof:
            rest = inflater.unused_data.lstrip(b"\x00")
            if not rest:
                return
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            pending = rest
        elif inflater.unconsumed_tail:
            pending = inflater.unconsumed_tail
        elif not chunk or len(chunk) < _limit(produced - len(chunk), max_size, chunk_bytes):
            # All input was consumed and the output did not fill what was asked for,
            # so the member simply ends early.
            raise _fail(GZIP, "the input ends inside a gzip member (truncated)")
        else:
            pending = b""  # the output filled the chunk: more may wait inside the inflater


# --- snappy, xerial framing ----------------------------------------------------------


def _xerial_compress(data: Buffer) -> bytes:
    view = memoryview(data).cast("B")
    parts = [XERIAL_HEADER]
    for start in range(0, len(view), XERIAL_BLOCK_SIZE):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + XERIAL_BLOCK_SIZE]))
        parts.append(_XERIAL_BLOCK_LENGTH.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_decompress(data: Buffer, max_size: int | None, chunk_bytes: int):
    view = memoryview(data).cast("B")
    if len(view) >= len(XERIAL_HEADER) and view[: len(XERIAL_MAGIC)] == XERIAL_MAGIC:
        yield from _xerial_decompress(view, max_size)
    else:
        yield _snappy_block(view, 0, max_size, "the raw snappy block")


def _snappy_block(block: memoryview, produced: int, max_size: int | None, what: str) -> bytes:
    size = cramjam.snappy.decompress_raw_len(block)
    if max_size is not None and produced + size > max_size:
        raise OutputTooLargeError(
            f"snappy decompression failed: {what} holds {size} bytes: the output is larger than the "
            f"limit of {max_size} bytes"
        )
    return bytes(cramjam.snappy.decompress_raw(block))


def _xerial_decompress(view: memoryview, max_size: int | None):
    produced = 0
    pos = len(XERIAL_HEADER)
    block_number = 0
    while pos < len(view):
        if len(view) - pos < 4:
            raise _fail(SNAPPY, f"xerial block length at byte {pos} is truncated")
        if view[pos : pos + len(XERIAL_MAGIC)] == XERIAL_MAGIC:
            # Another xerial stream appended to this one, as xerial's reader allows.
            if len(view) - pos < len(XERIAL_HEADER):
                raise _fail(SNAPPY, f"xerial header at byte {pos} is truncated")
            pos += len(XERIAL_HEADER)
            continue
        (length,) = _XERIAL_BLOCK_LENGTH.unpack_from(view, pos)
        if length < 0 or length > len(view) - pos - 4:
            raise _fail(
                SNAPPY,
                f"xerial block {block_number} at byte {pos} declares {length} bytes "
                f"but {len(view) - pos - 4} remain",
            )
        pos += 4
        block = _snappy_block(
            view[pos : pos + length], produced, max_size, f"xerial block {block_number} at byte {pos - 4}"
        )
        produced += len(block)
        yield block
        pos += length
        block_number += 1


# --- lz4 ---------------------------------------------------------------------------


def _lz4_compress(data: Buffer, level: int) -> bytes:
    return lz4.frame.compress(
        data,
        compression_level=level,
        block_size=lz4.frame.BLOCKSIZE_MAX64KB,
        block_linked=False,
        block_checksum=False,
        content_checksum=False,
        store_size=False,
    )


def _lz4_decompress(data: Buffer, max_size: int | None, chunk_bytes: int):
    produced = 0
    pending: Buffer = data
    frames = 0
    decoder = lz4.frame.LZ4FrameDecompressor()
    while True:
        chunk = decoder.decompress(pending, max_length=_limit(produced, max_size, chunk_bytes))
        produced += len(chunk)
        _check_size(LZ4, produced, max_size)
        if chunk:
            yield chunk
        if decoder.eof:
            frames += 1
            rest = decoder.unused_data
            if not rest:
                return
            decoder = lz4.frame.LZ4FrameDecompressor()
            pending = rest
        elif decoder.needs_input:
            raise _fail(LZ4, f"the input ends inside LZ4 frame {frames} (truncated)")
        else:
            pending = b""  # more output is waiting for the same input


# --- zstd --------------------------------------------------------------------------


def _zstd_compress(data: Buffer, level: int) -> bytes:
    return zstandard.ZstdCompressor(level=level).compress(data)


def _zstd_decompress(data: Buffer, max_size: int | None, chunk_bytes: int):
    # One single-frame decompressobj per frame: it says where the frame ended
    # (unused_data) and whether it ended at all (eof), which a multi-frame reader
    # does not. Frames without a content size decode the same way. zstd cannot stop
    # mid-block, so the output is bounded by feeding the input in small pieces.
    view = memoryview(data).cast("B")
    step = len(view) if max_size is None else _ZSTD_GUARDED_INPUT
    dctx = zstandard.ZstdDecompressor()
    produced = 0
    pos = 0
    frames = 0
    while pos < len(view):
        decoder = dctx.decompressobj()
        while not decoder.eof:
            if pos >= len(view):
                raise _fail(ZSTD, f"the input ends inside zstd frame {frames} (truncated)")
            piece = view[pos : pos + step]
            chunk = decoder.decompress(piece)
            produced += len(chunk)
            _check_size(ZSTD, produced, max_size)
            if chunk:
                yield chunk
            pos += len(piece) - len(decoder.unused_data) if decoder.eof else len(piece)
        frames += 1


_DECOMPRESSORS = {
    GZIP: _gzip_decompress,
    SNAPPY: _snappy_decompress,
    LZ4: _lz4_decompress,
    ZSTD: _zstd_decompress,
}
