"""Wire primitives: varints, lengths, strings, bytes, and that every malformed input is a
ProtocolError (which the connection answers by closing), never an IndexError or
struct.error that would escape as an internal error."""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


import _support as S  # noqa: E402  (tests/protocol is on sys.path: see conftest.py)

from pstream.protocol.messages.api_versions import ApiVersionsRequest
from pstream.protocol.messages.metadata import MetadataRequest, MetadataResponse
from pstream.protocol.primitives import ProtocolError, Reader, Writer


def written(method: str, value) -> bytes:
    w = Writer()
    getattr(w, method)(value)
    return w.getvalue()


# --- varints ---------------------------------------------------------------------------

UVARINTS = [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    (16383, b"\xff\x7f"), (16384, b"\x80\x80\x01"),
    (2**31 - 1, b"\xff\xff\xff\xff\x07"), (2**32 - 1, b"\xff\xff\xff\xff\x0f"),
]
# Zigzag: 0, -1, 1, -2, 2 ... map to 0, 1, 2, 3, 4 ...
VARINTS = [
    (0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (-2, b"\x03"), (63, b"\x7e"), (-64, b"\x7f"),
    (64, b"\x80\x01"), (-65, b"\x81\x01"),
    (2**31 - 1, b"\xfe\xff\xff\xff\x0f"), (-(2**31), b"\xff\xff\xff\xff\x0f"),
]


@pytest.mark.parametrize(("value", "encoded"), UVARINTS)
def test_uvarint_edges_encode_and_decode(value, encoded):
    assert written("uvarint", value) == encoded
    r = Reader(encoded)
    assert r.uvarint() == value and r.remaining() == 0


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_zigzag_varint_edges_encode_and_decode(value, encoded):
    assert written("varint", value) == encoded
    r = Reader(encoded)
    assert r.varint() == value and r.remaining() == 0


@given(st.integers(0, 2**32 - 1))
def test_uvarint_round_trips_every_uint32(value):
    data = written("uvarint", value)
    assert len(data) <= 5
    r = Reader(data)
    assert r.uvarint() == value and r.remaining() == 0


@given(st.integers(-(2**31), 2**31 - 1))
def test_varint_round_trips_every_int32(value):
    data = written("varint", value)
    assert len(data) <= 5
    r = Reader(data)
    assert r.varint() == value and r.remaining() == 0


def test_varint_longer_than_five_bytes_is_refused():
    for method in ("uvarint", "varint"):
        with pytest.raises(ProtocolError):
            getattr(Reader(b"\xff\xff\xff\xff\xff\x01"), method)()


# --- truncation ------------------------------------------------------------------------

# A complete encoding for each reader method; every proper prefix of it is truncated.
COMPLETE = {
    "int8": b"\x01", "int16": b"\x00\x01", "uint16": b"\xff\xff", "int32": b"\x00\x00\x00\x01",
    "uint32": b"\xff\xff\xff\xff", "int64": b"\x00" * 7 + b"\x01", "float64": b"\x3f\xf0" + b"\x00" * 6,
    "bool": b"\x01", "uuid": bytes(range(16)),
    "uvarint": b"\x80\x80\x01", "varint": b"\x80\x80\x01",
    "string": b"\x00\x02ab", "nstring": b"\x00\x02ab", "cstring": b"\x03ab", "ncstring": b"\x03ab",
    "bytes": b"\x00\x00\x00\x02ab", "nbytes": b"\x00\x00\x00\x02ab",
    "cbytes": b"\x03ab", "ncbytes": b"\x03ab",
    "array_len": b"\x00\x00\x00\x02", "carray_len": b"\x80\x01",
    "skip_tags": b"\x02" + b"\x05\x02ab" + b"\x80\x01\x01c",   # tags 5 and 128
}


@pytest.mark.parametrize("method", sorted(COMPLETE))
def test_complete_input_is_read_to_the_end(method):
    r = Reader(COMPLETE[method])
    getattr(r, method)()
    assert r.remaining() == 0


@pytest.mark.parametrize("method", sorted(COMPLETE))
def test_truncated_input_raises_protocol_error(method):
    full = COMPLETE[method]
    for n in range(len(full)):
        with pytest.raises(ProtocolError):
            getattr(Reader(full[:n]), method)()


@pytest.mark.parametrize("method", sorted(COMPLETE))
def test_reader_end_bounds_reads_inside_a_larger_buffer(method):
    full = COMPLETE[method]
    with pytest.raises(ProtocolError):
        getattr(Reader(b"\x00" + full + b"\x00" * 32, pos=1, end=len(full)), method)()


def test_skip_past_the_end_raises_protocol_error():
    r = Reader(b"ab")
    with pytest.raises(ProtocolError):
        r.skip(3)
    with pytest.raises(ProtocolError):
        r.skip(-1)


# --- array counts ----------------------------------------------------------------------

def test_array_count_larger_than_the_remaining_bytes_is_refused():
    r = Reader(b"\x00" * 4)
    assert r.count(4) == range(4)
    with pytest.raises(ProtocolError):
        r.count(5)
    with pytest.raises(ProtocolError):
        r.count(-1)


def test_huge_array_counts_in_messages_are_refused_before_allocating():
    with pytest.raises(ProtocolError):
        S.read(MetadataRequest, 1, b"\x7f\xff\xff\xff")
    with pytest.raises(ProtocolError):   # compact: uvarint 2**31 - 1, count 2**31 - 2
        S.read(MetadataRequest, 9, b"\xff\xff\xff\xff\x07")
    with pytest.raises(ProtocolError):   # tagged-field count
        S.read(ApiVersionsRequest, 3, b"\x01\x01\xff\xff\xff\xff\x07")


def test_null_for_a_non_nullable_array_is_refused():
    # MetadataRequest v0 topics are not nullable (v1+ are); MetadataResponse brokers never are.
    with pytest.raises(ProtocolError):
        S.read(MetadataRequest, 0, b"\xff\xff\xff\xff")
    with pytest.raises(ProtocolError):
        S.read(MetadataResponse, 0, b"\xff\xff\xff\xff" + b"\x00\x00\x00\x00")


# --- strings and bytes -----------------------------------------------------------------

@pytest.mark.parametrize(("method", "data"), [
    ("string", b"\x00\x02\xc3\x28"), ("nstring", b"\x00\x02\xc3\x28"),
    ("cstring", b"\x03\xc3\x28"), ("ncstring", b"\x03\xc3\x28"),
    ("string", b"\x00\x01\xff"), ("cstring", b"\x04\xed\xa0\x80"),   # a lone surrogate
])
def test_invalid_utf8_raises_protocol_error(method, data):
    with pytest.raises(ProtocolError):
        getattr(Reader(data), method)()


def test_invalid_utf8_in_a_message_raises_protocol_error():
    with pytest.raises(ProtocolError):
        S.read(MetadataRequest, 1, b"\x00\x00\x00\x01" + b"\x00\x01\xff")


@pytest.mark.parametrize(("method", "data"), [
    ("string", b"\xff\xff"), ("cstring", b"\x00"), ("bytes", b"\xff\xff\xff\xff"), ("cbytes", b"\x00"),
])
def test_null_where_a_value_is_required_raises_protocol_error(method, data):
    with pytest.raises(ProtocolError):
        getattr(Reader(data), method)()


@pytest.mark.parametrize(("method", "data"), [
    ("nstring", b"\xff\xff"), ("ncstring", b"\x00"), ("nbytes", b"\xff\xff\xff\xff"), ("ncbytes", b"\x00"),
])
def test_null_is_none_where_nullable(method, data):
    r = Reader(data)
    assert getattr(r, method)() is None and r.remaining() == 0


def test_null_topic_name_in_metadata_request_v1_is_refused():
    # Name is nullable only from v10.
    with pytest.raises(ProtocolError):
        S.read(MetadataRequest, 1, b"\x00\x00\x00\x01" + b"\xff\xff")


def test_string_lengths_count_utf8_bytes_not_characters():
    assert written("string", "é") == b"\x00\x02\xc3\xa9"
    assert written("cstring", "é") == b"\x03\xc3\xa9"
    assert Reader(b"\x00\x02\xc3\xa9").string() == "é"


def test_bytes_are_views_of_the_input_buffer():
    buf = bytearray(b"\x00\x00\x00\x03abc")
    view = Reader(buf).bytes()
    assert isinstance(view, memoryview) and bytes(view) == b"abc"
    buf[4] = ord("z")
    assert bytes(view) == b"zbc"


# --- writer chunks ---------------------------------------------------------------------

def test_writer_passes_large_bytes_through_as_separate_chunks():
    big = b"x" * 600
    w = Writer()
    w.int16(1)
    w.bytes(big)
    w.int8(2)
    assert any(c is big for c in w.chunks())
    assert w.getvalue() == b"\x00\x01" + b"\x00\x00\x02\x58" + big + b"\x02"
    assert w.total() == len(w.getvalue())


def test_writer_records_from_a_list_of_batches_are_one_length_prefixed_field():
    w = Writer()
    w.crecords([b"ab", b"c" * 600])
    # 602 bytes: compact length 602 + 1 = 603 = uvarint 0xdb 0x04
    assert w.getvalue() == b"\xdb\x04" + b"ab" + b"c" * 600
    w = Writer()
    w.nrecords(None)
    w.ncrecords(None)
    assert w.getvalue() == b"\xff\xff\xff\xff\x00"
    with pytest.raises(ValueError):
        Writer().records(None)


# --- fuzz ------------------------------------------------------------------------------

FUZZED = ["ProduceRequest", "FetchRequest", "MetadataRequest", "ApiVersionsRequest", "RequestHeader"]
FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_protocol_error(name: str, version: int, data: bytes) -> None:
    cls = S.message_class(name)
    try:
        S.read(cls, version, data)
    except ProtocolError:
        pass


@pytest.mark.parametrize("name", FUZZED)
@FUZZ
@given(data=st.data())
def test_random_bytes_decode_or_raise_protocol_error(name, data):
    cls = S.message_class(name)
    version = data.draw(st.integers(cls.MIN_VERSION, cls.MAX_VERSION), label="version")
    _decode_or_protocol_error(name, version, data.draw(st.binary(max_size=300), label="bytes"))


@pytest.mark.parametrize("name", FUZZED)
@FUZZ
@given(data=st.data())
def test_corrupted_valid_messages_decode_or_raise_protocol_error(name, data):
    # Random bytes rarely get past the first length; corrupting a valid encoding reaches
    # nested structs, compact lengths and tagged fields.
    cls = S.message_class(name)
    version = data.draw(st.integers(cls.MIN_VERSION, cls.MAX_VERSION), label="version")
    buf = bytearray(S.write(cls, version, data.draw(S.instance_strategy(name, version), label="message")))
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        if not buf:
            break
        i = data.draw(st.integers(0, len(buf) - 1), label="at")
        edit = data.draw(st.sampled_from(["set", "truncate", "insert"]), label="edit")
        if edit == "set":
            buf[i] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE]) | st.integers(0, 255))
        elif edit == "truncate":
            del buf[i:]
        else:
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=6))
    _decode_or_protocol_error(name, version, bytes(buf))
