# Kafka's wire primitives compiled: WireReader and WireWriter are drop-in replacements for
# pstream.protocol.primitives.Reader and Writer (same methods, same errors and messages, the
# same chunking of large byte fields), so the generated Python codecs run on them unchanged
# and the compiled codecs (codecs.pxi) call their methods as C functions. The Python classes
# stay the reference: tests/protocol run the same cases against both.

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.unicode cimport PyUnicode_DecodeUTF8

import uuid as _uuid_module
from pstream.protocol.primitives import ProtocolError as _ProtocolError

cdef Py_ssize_t _WIRE_CHUNK_THRESHOLD = 512   # byte fields at least this long become chunks of their own


cdef class WireReader:
    """Walks one request buffer (a contiguous bytes-like object); views, never copies, of
    byte fields."""

    cdef public object buf
    cdef public Py_ssize_t pos
    cdef public Py_ssize_t end
    cdef const unsigned char[::1] _data

    def __init__(self, buf, Py_ssize_t pos=0, end=None):
        self.buf = buf if isinstance(buf, memoryview) else memoryview(buf)
        self._data = self.buf.cast("B") if self.buf.format != "B" or self.buf.ndim != 1 else self.buf
        self.pos = pos
        self.end = len(self._data) if end is None else end

    cpdef Py_ssize_t remaining(self):
        return self.end - self.pos

    cdef inline Py_ssize_t _take(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t pos = self.pos
        if n < 0 or pos + n > self.end:
            raise _ProtocolError(f"truncated: need {n} bytes at position {pos}, {self.end - pos} left")
        self.pos = pos + n
        return pos

    cpdef int int8(self) except? -999:
        return <int8_t>self._data[self._take(1)]

    cpdef int int16(self) except? -99999:
        return <int16_t>ps_load_be16(&self._data[self._take(2)])

    cpdef int uint16(self) except -1:
        return ps_load_be16(&self._data[self._take(2)])

    cpdef int32_t int32(self) except? -2147483647:
        return <int32_t>ps_load_be32(&self._data[self._take(4)])

    cpdef int64_t uint32(self) except -1:
        return ps_load_be32(&self._data[self._take(4)])

    cpdef int64_t int64(self) except? -9223372036854775807:
        return <int64_t>ps_load_be64(&self._data[self._take(8)])

    cpdef double float64(self) except? -1.5:
        cdef uint64_t bits = ps_load_be64(&self._data[self._take(8)])
        cdef double value
        memcpy(&value, &bits, 8)
        return value

    cpdef bint bool(self) except -1:
        return self._data[self._take(1)] != 0

    cpdef object uuid(self):
        cdef Py_ssize_t pos = self._take(16)
        return _uuid_module.UUID(bytes=bytes(self._data[pos:pos + 16]))

    cpdef int64_t uvarint(self) except -1:
        cdef uint64_t value = 0
        cdef int shift = 0
        cdef Py_ssize_t pos = self.pos
        cdef unsigned char b
        while True:
            if pos >= self.end:
                raise _ProtocolError(f"truncated varint at position {self.pos}")
            b = self._data[pos]
            pos += 1
            value |= (<uint64_t>(b & 0x7F)) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 28:
                raise _ProtocolError(f"varint longer than 5 bytes at position {self.pos}")
        self.pos = pos
        return <int64_t>value

    cpdef int64_t varint(self) except? -9223372036854775807:
        cdef int64_t v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    cdef object _text(self, Py_ssize_t n):
        cdef Py_ssize_t pos = self._take(n)
        if n == 0:
            return ""
        try:
            return PyUnicode_DecodeUTF8(<const char *>&self._data[pos], n, NULL)
        except UnicodeDecodeError as exc:
            raise _ProtocolError(f"invalid UTF-8 in a string at position {pos}: {exc.reason}") from None

    cpdef str string(self):
        cdef int n = self.int16()
        if n < 0:
            raise _ProtocolError(f"null where a string is required at position {self.pos - 2}")
        return self._text(n)

    cpdef object nstring(self):
        cdef int n = self.int16()
        return None if n < 0 else self._text(n)

    cpdef str cstring(self):
        cdef int64_t n = self.uvarint() - 1
        if n < 0:
            raise _ProtocolError(f"null where a string is required at position {self.pos}")
        return self._text(n)

    cpdef object ncstring(self):
        cdef int64_t n = self.uvarint() - 1
        return None if n < 0 else self._text(n)

    cdef object _view(self, Py_ssize_t n):
        cdef Py_ssize_t pos = self._take(n)
        return self.buf[pos:pos + n]

    cpdef object bytes(self):
        cdef int32_t n = self.int32()
        if n < 0:
            raise _ProtocolError(f"null where bytes are required at position {self.pos - 4}")
        return self._view(n)

    cpdef object nbytes(self):
        cdef int32_t n = self.int32()
        return None if n < 0 else self._view(n)

    cpdef object cbytes(self):
        cdef int64_t n = self.uvarint() - 1
        if n < 0:
            raise _ProtocolError(f"null where bytes are required at position {self.pos}")
        return self._view(n)

    cpdef object ncbytes(self):
        cdef int64_t n = self.uvarint() - 1
        return None if n < 0 else self._view(n)

    cpdef int32_t array_len(self) except? -2147483647:
        return self.int32()

    cpdef int64_t carray_len(self) except? -2:
        return self.uvarint() - 1

    cpdef object count(self, int64_t n):
        """range(n) for an array's elements, refusing counts the buffer cannot hold."""
        if n < 0:
            raise _ProtocolError(f"null or negative array length {n} before position {self.pos}")
        if n > self.end - self.pos:
            raise _ProtocolError(f"array of {n} elements cannot fit in the {self.end - self.pos} bytes left")
        return range(n)

    cpdef int64_t checked_count(self, int64_t n) except -1:
        """count() without the range: the compiled codecs loop over range(n) in C."""
        if n < 0:
            raise _ProtocolError(f"null or negative array length {n} before position {self.pos}")
        if n > self.end - self.pos:
            raise _ProtocolError(f"array of {n} elements cannot fit in the {self.end - self.pos} bytes left")
        return n

    cpdef skip(self, Py_ssize_t n):
        self._take(n)

    def tags(self):
        """(tag, size) of each tagged field; the caller reads the field or skips size bytes."""
        cdef int64_t count = self.uvarint()
        cdef int64_t i, tag, size
        cdef Py_ssize_t start
        self.checked_count(count)
        for i in range(count):
            tag = self.uvarint()
            size = self.uvarint()
            if size > self.end - self.pos:
                raise _ProtocolError(f"tagged field {tag} of {size} bytes runs past the end")
            start = self.pos
            yield tag, size
            if self.pos != start + size and self.pos != start:
                raise _ProtocolError(f"tagged field {tag} declared {size} bytes but held {self.pos - start}")

    cpdef skip_tags(self):
        cdef int64_t count = self.uvarint()
        cdef int64_t i, tag, size
        self.checked_count(count)
        for i in range(count):
            tag = self.uvarint()
            size = self.uvarint()
            if size > self.end - self.pos:
                raise _ProtocolError(f"tagged field {tag} of {size} bytes runs past the end")
            self._take(size)


cdef inline int32_t _int32_length(Py_ssize_t n) except? -1:
    if n > 2147483647:
        raise OverflowError(f"{n} bytes do not fit an int32 length")
    return <int32_t>n


cdef class WireWriter:
    """Builds one message as a list of buffers: small fields in a bytearray (`buf`), large
    byte fields (records) as chunks of their own, never copied. A value out of its field's
    range raises OverflowError (as struct.error from the Python Writer): never truncated."""

    cdef public bytearray buf
    cdef public list parts
    cdef public Py_ssize_t size    # bytes in parts (not counting buf)

    def __init__(self):
        self.buf = bytearray()
        self.parts = []
        self.size = 0

    cpdef list chunks(self):
        if PyByteArray_GET_SIZE(self.buf):
            return self.parts + [self.buf]
        return list(self.parts)

    cpdef Py_ssize_t total(self):
        return self.size + PyByteArray_GET_SIZE(self.buf)

    def getvalue(self):
        return b"".join(self.chunks())

    cdef inline unsigned char *_grow(self, Py_ssize_t n) except NULL:
        cdef Py_ssize_t have = PyByteArray_GET_SIZE(self.buf)
        PyByteArray_Resize(self.buf, have + n)
        return <unsigned char *>PyByteArray_AS_STRING(self.buf) + have

    cpdef int8(self, int8_t v):
        self._grow(1)[0] = <uint8_t>v

    cpdef int16(self, int16_t v):
        ps_store_be16(self._grow(2), <uint16_t>v)

    cpdef uint16(self, uint16_t v):
        ps_store_be16(self._grow(2), v)

    cpdef int32(self, int32_t v):
        ps_store_be32(self._grow(4), <uint32_t>v)

    cpdef uint32(self, uint32_t v):
        ps_store_be32(self._grow(4), v)

    cpdef int64(self, int64_t v):
        ps_store_be64(self._grow(8), <uint64_t>v)

    cpdef float64(self, double v):
        cdef uint64_t bits
        memcpy(&bits, &v, 8)
        ps_store_be64(self._grow(8), bits)

    cpdef bool(self, v):
        self._grow(1)[0] = 1 if v else 0

    cpdef uuid(self, v):
        self._put(v.bytes)

    cpdef uvarint(self, uint64_t v):
        cdef unsigned char tmp[10]
        cdef Py_ssize_t n = 0
        while v >= 0x80:
            tmp[n] = (v & 0x7F) | 0x80
            v >>= 7
            n += 1
        tmp[n] = <unsigned char>v
        memcpy(self._grow(n + 1), tmp, n + 1)

    cpdef varint(self, int64_t v):
        self.uvarint(<uint64_t>((v << 1) ^ (v >> 63)))

    cdef inline _put(self, data):
        cdef const unsigned char[::1] view = data
        cdef Py_ssize_t n = view.shape[0]
        if n:
            memcpy(self._grow(n), &view[0], n)

    cpdef string(self, str v):
        data = v.encode()
        if len(data) > 32767:
            raise OverflowError(f"a string of {len(data)} bytes does not fit an int16 length")
        self.int16(len(data))
        self._put(data)

    cpdef nstring(self, v):
        if v is None:
            self.int16(-1)
        else:
            self.string(v)

    cpdef cstring(self, str v):
        data = v.encode()
        self.uvarint(len(data) + 1)
        self._put(data)

    cpdef ncstring(self, v):
        if v is None:
            self.int8(0)
        else:
            self.cstring(v)

    cdef _raw(self, data):
        if len(data) >= _WIRE_CHUNK_THRESHOLD:
            if PyByteArray_GET_SIZE(self.buf):
                self.parts.append(self.buf)
                self.size += PyByteArray_GET_SIZE(self.buf)
                self.buf = bytearray()
            self.parts.append(data)
            self.size += len(data)
        else:
            self._put(data)

    cpdef bytes(self, v):
        self.int32(_int32_length(len(v)))
        self._raw(v)

    cpdef nbytes(self, v):
        if v is None:
            self.int32(-1)
        else:
            self.bytes(v)

    cpdef cbytes(self, v):
        self.uvarint(len(v) + 1)
        self._raw(v)

    cpdef ncbytes(self, v):
        if v is None:
            self.int8(0)
        else:
            self.cbytes(v)

    cdef _records(self, v, bint compact, bint nullable):
        if v is None:
            if not nullable:
                raise ValueError("records may not be null here")
            if compact:
                self.int8(0)
            else:
                self.int32(-1)
            return
        parts = v if isinstance(v, (list, tuple)) else (v,)
        cdef Py_ssize_t n = 0
        for p in parts:
            n += len(p)
        if compact:
            self.uvarint(n + 1)
        else:
            self.int32(_int32_length(n))
        for p in parts:
            self._raw(p)

    cpdef records(self, v):
        self._records(v, False, False)

    cpdef nrecords(self, v):
        self._records(v, False, True)

    cpdef crecords(self, v):
        self._records(v, True, False)

    cpdef ncrecords(self, v):
        self._records(v, True, True)

    cpdef array_len(self, int32_t n):
        self.int32(n)

    cpdef carray_len(self, int64_t n):
        self.uvarint(<uint64_t>(n + 1))

    cpdef WireWriter sub(self):
        return WireWriter()

    cpdef tags(self, list tagged):
        """Writes the tagged-field section: [(tag, writer)] in ascending tag order."""
        self.uvarint(len(tagged))
        for tag, w in tagged:
            data = w.getvalue()
            self.uvarint(tag)
            self.uvarint(len(data))
            self._put(data)
