"""Kafka's wire primitives: fixed-width integers, varints, (compact) strings, bytes and
arrays, UUIDs and tagged fields. No I/O: a Reader walks one request buffer, a Writer
builds one response as a list of buffers.

Bytes and records fields come back as memoryviews of the request buffer (no copy); a
Writer passes large byte fields through as separate chunks, so a fetch response's records
are never copied into a joined buffer. Anything short, negative where a length must not
be, or past the end raises ProtocolError: the connection answers that by closing.
"""

from __future__ import annotations

import struct
import uuid

ZERO_UUID = uuid.UUID(int=0)
UNSET = object()   # a message constructor's "argument not given"

_i8 = struct.Struct(">b")
_i16 = struct.Struct(">h")
_u16 = struct.Struct(">H")
_i32 = struct.Struct(">i")
_u32 = struct.Struct(">I")
_i64 = struct.Struct(">q")
_f64 = struct.Struct(">d")

# Byte fields at least this long are passed through as their own chunk instead of copied.
_CHUNK_THRESHOLD = 512


class ProtocolError(ValueError):
    """A request that cannot be decoded: truncated, a bad length, invalid UTF-8."""


class Message:
    """Base of the generated message and struct classes: field-wise repr and equality."""

    __slots__ = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and all(getattr(self, a) == getattr(other, a) for a in self.__slots__)


class Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf, pos: int = 0, end: int | None = None):
        self.buf = buf if isinstance(buf, memoryview) else memoryview(buf)
        self.pos = pos
        self.end = len(self.buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, n: int) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise ProtocolError(f"truncated: need {n} bytes at position {pos}, {self.end - pos} left")
        self.pos = pos + n
        return pos

    def _fixed(self, s: struct.Struct):
        return s.unpack_from(self.buf, self._take(s.size))[0]

    def int8(self) -> int:
        return self._fixed(_i8)

    def int16(self) -> int:
        return self._fixed(_i16)

    def uint16(self) -> int:
        return self._fixed(_u16)

    def int32(self) -> int:
        return self._fixed(_i32)

    def uint32(self) -> int:
        return self._fixed(_u32)

    def int64(self) -> int:
        return self._fixed(_i64)

    def float64(self) -> float:
        return self._fixed(_f64)

    def bool(self) -> bool:
        return self._fixed(_i8) != 0

    def uuid(self) -> uuid.UUID:
        pos = self._take(16)
        return uuid.UUID(bytes=bytes(self.buf[pos:pos + 16]))

    def uvarint(self) -> int:
        value = shift = 0
        buf, pos, end = self.buf, self.pos, self.end
        while True:
            if pos >= end:
                raise ProtocolError(f"truncated varint at position {self.pos}")
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 28:
                raise ProtocolError(f"varint longer than 5 bytes at position {self.pos}")
        self.pos = pos
        return value

    def varint(self) -> int:
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def _text(self, n: int) -> str:
        pos = self._take(n)
        try:
            return str(self.buf[pos:pos + n], "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"invalid UTF-8 in a string at position {pos}: {exc.reason}") from None

    def string(self) -> str:
        n = self.int16()
        if n < 0:
            raise ProtocolError(f"null where a string is required at position {self.pos - 2}")
        return self._text(n)

    def nstring(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self._text(n)

    def cstring(self) -> str:
        n = self.uvarint() - 1
        if n < 0:
            raise ProtocolError(f"null where a string is required at position {self.pos}")
        return self._text(n)

    def ncstring(self) -> str | None:
        n = self.uvarint() - 1
        return None if n < 0 else self._text(n)

    def _view(self, n: int) -> memoryview:
        pos = self._take(n)
        return self.buf[pos:pos + n]

    def bytes(self) -> memoryview:
        n = self.int32()
        if n < 0:
            raise ProtocolError(f"null where bytes are required at position {self.pos - 4}")
        return self._view(n)

    def nbytes(self) -> memoryview | None:
        n = self.int32()
        return None if n < 0 else self._view(n)

    def cbytes(self) -> memoryview:
        n = self.uvarint() - 1
        if n < 0:
            raise ProtocolError(f"null where bytes are required at position {self.pos}")
        return self._view(n)

    def ncbytes(self) -> memoryview | None:
        n = self.uvarint() - 1
        return None if n < 0 else self._view(n)

    def array_len(self) -> int:
        return self.int32()

    def carray_len(self) -> int:
        return self.uvarint() - 1

    def count(self, n: int) -> range:
        """range(n) for an array's elements, refusing counts the buffer cannot hold."""
        if n < 0:
            raise ProtocolError(f"null or negative array length {n} before position {self.pos}")
        if n > self.end - self.pos:
            raise ProtocolError(f"array of {n} elements cannot fit in the {self.end - self.pos} bytes left")
        return range(n)

    def skip(self, n: int) -> None:
        self._take(n)

    def tags(self):
        """(tag, size) of each tagged field; the caller reads the field or skips size bytes."""
        for _ in self.count(self.uvarint()):
            tag = self.uvarint()
            size = self.uvarint()
            if size > self.end - self.pos:
                raise ProtocolError(f"tagged field {tag} of {size} bytes runs past the end")
            start = self.pos
            yield tag, size
            if self.pos != start + size and self.pos != start:
                raise ProtocolError(f"tagged field {tag} declared {size} bytes but held {self.pos - start}")

    def skip_tags(self) -> None:
        for _tag, size in self.tags():
            self._take(size)


class Writer:
    """Builds one message as a list of buffers: small fields in a bytearray, large byte
    fields (records) as their own chunks."""

    __slots__ = ("buf", "parts", "size")

    def __init__(self):
        self.buf = bytearray()
        self.parts: list = []
        self.size = 0   # bytes in parts (not counting buf)

    def chunks(self) -> list:
        if self.buf:
            return self.parts + [self.buf]
        return list(self.parts)

    def total(self) -> int:
        return self.size + len(self.buf)

    def getvalue(self) -> bytes:
        return b"".join(self.chunks())

    def int8(self, v: int) -> None:
        self.buf += _i8.pack(v)

    def int16(self, v: int) -> None:
        self.buf += _i16.pack(v)

    def uint16(self, v: int) -> None:
        self.buf += _u16.pack(v)

    def int32(self, v: int) -> None:
        self.buf += _i32.pack(v)

    def uint32(self, v: int) -> None:
        self.buf += _u32.pack(v)

    def int64(self, v: int) -> None:
        self.buf += _i64.pack(v)

    def float64(self, v: float) -> None:
        self.buf += _f64.pack(v)

    def bool(self, v: bool) -> None:
        self.buf.append(1 if v else 0)

    def uuid(self, v: uuid.UUID) -> None:
        self.buf += v.bytes

    def uvarint(self, v: int) -> None:
        buf = self.buf
        while v >= 0x80:
            buf.append((v & 0x7F) | 0x80)
            v >>= 7
        buf.append(v)

    def varint(self, v: int) -> None:
        self.uvarint((v << 1) ^ (v >> 63))

    def string(self, v: str) -> None:
        data = v.encode()
        self.buf += _i16.pack(len(data))
        self.buf += data

    def nstring(self, v: str | None) -> None:
        if v is None:
            self.buf += b"\xff\xff"
        else:
            self.string(v)

    def cstring(self, v: str) -> None:
        data = v.encode()
        self.uvarint(len(data) + 1)
        self.buf += data

    def ncstring(self, v: str | None) -> None:
        if v is None:
            self.buf.append(0)
        else:
            self.cstring(v)

    def _raw(self, data) -> None:
        if len(data) >= _CHUNK_THRESHOLD:
            if self.buf:
                self.parts.append(self.buf)
                self.size += len(self.buf)
                self.buf = bytearray()
            self.parts.append(data)
            self.size += len(data)
        else:
            self.buf += data

    def bytes(self, v) -> None:
        self.buf += _i32.pack(len(v))
        self._raw(v)

    def nbytes(self, v) -> None:
        if v is None:
            self.buf += b"\xff\xff\xff\xff"
        else:
            self.bytes(v)

    def cbytes(self, v) -> None:
        self.uvarint(len(v) + 1)
        self._raw(v)

    def ncbytes(self, v) -> None:
        if v is None:
            self.buf.append(0)
        else:
            self.cbytes(v)

    # Records are bytes on the wire; a list of batches is written without joining them.
    def _records(self, v, compact: bool, nullable: bool) -> None:
        if v is None:
            if not nullable:
                raise ValueError("records may not be null here")
            self.buf += b"\x00" if compact else b"\xff\xff\xff\xff"
            return
        parts = v if isinstance(v, (list, tuple)) else (v,)
        n = sum(len(p) for p in parts)
        if compact:
            self.uvarint(n + 1)
        else:
            self.buf += _i32.pack(n)
        for p in parts:
            self._raw(p)

    def records(self, v) -> None:
        self._records(v, False, False)

    def nrecords(self, v) -> None:
        self._records(v, False, True)

    def crecords(self, v) -> None:
        self._records(v, True, False)

    def ncrecords(self, v) -> None:
        self._records(v, True, True)

    def array_len(self, n: int) -> None:
        self.buf += _i32.pack(n)

    def carray_len(self, n: int) -> None:
        self.uvarint(n + 1)

    def sub(self) -> "Writer":
        return Writer()

    def tags(self, tagged: list) -> None:
        """Writes the tagged-field section: [(tag, Writer)] in ascending tag order."""
        self.uvarint(len(tagged))
        for tag, w in tagged:
            data = w.getvalue()
            self.uvarint(tag)
            self.uvarint(len(data))
            self.buf += data
