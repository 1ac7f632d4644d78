"""The compiled codecs (tools/gen_protocol.py's Cython back end, pstream._core.COMPILED_CODECS)
agree with the generated Python ones, their oracle, at every version: a request the Python
writer encodes reads back the same through the compiled reader, and a response the compiled
writer encodes is byte for byte the Python writer's."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _support as S  # noqa: E402  (tests/protocol is on sys.path: see conftest.py)

from pstream import _core
from pstream.protocol.primitives import ProtocolError, Reader, Writer

COMPILED = sorted(_core.COMPILED_CODECS)
PAIRS = [(n, v) for n, v in S.all_message_versions() if n in COMPILED]
PROPERTY = settings(max_examples=25, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_the_hot_apis_are_compiled():
    assert {"ProduceRequest", "ProduceResponse", "FetchRequest", "FetchResponse"} <= set(COMPILED)


def _python_bytes(cls, version, obj) -> bytes:
    w = Writer()
    cls.WRITERS[version - cls.MIN_VERSION](w, obj)
    return w.getvalue()


@pytest.mark.parametrize(("name", "version"), PAIRS, ids=[f"{n}-v{v}" for n, v in PAIRS])
@PROPERTY
@given(data=st.data())
def test_compiled_codec_agrees_with_the_python_one(name, version, data):
    cls = S.message_class(name)
    obj = data.draw(S.instance_strategy(name, version), label=name)
    encoded = _python_bytes(cls, version, obj)
    compiled = _core.COMPILED_CODECS[name]
    if name.endswith("Request"):
        r = _core.WireReader(encoded)
        back = compiled(version, r)
        assert r.remaining() == 0
        python = cls.READERS[version - cls.MIN_VERSION](Reader(encoded))
        assert S.normal(back) == S.normal(python) == S.normal(obj)
    else:
        w = _core.WireWriter()
        compiled(version, w, obj)
        assert w.getvalue() == encoded


@pytest.mark.parametrize("version", range(3, 12))
def test_compiled_produce_reader_refuses_truncation_as_the_python_one_does(version):
    cls = S.message_class("ProduceRequest")
    obj = cls(acks=-1, timeout_ms=1000, topic_data=[cls.TopicProduceData(
        name="t", partition_data=[cls.PartitionProduceData(index=0, records=b"x" * 100)])])
    encoded = _python_bytes(cls, version, obj)
    for cut in (1, 5, len(encoded) // 2, len(encoded) - 1):
        with pytest.raises(ProtocolError) as python:
            cls.READERS[version - cls.MIN_VERSION](Reader(encoded[:cut]))
        with pytest.raises(ProtocolError) as compiled:
            _core.COMPILED_CODECS["ProduceRequest"](version, _core.WireReader(encoded[:cut]))
        assert str(compiled.value) == str(python.value)


@pytest.mark.parametrize(("method", "value"), [("int8", 128), ("int16", -32769), ("uint16", 65536), ("int32", 2**31),
                                               ("uint32", -1), ("int64", 2**63), ("array_len", -(2**31) - 1)])
def test_a_value_out_of_its_fields_range_is_refused_by_both_writers_never_truncated(method, value):
    import struct

    with pytest.raises(struct.error):
        getattr(Writer(), method)(value)
    with pytest.raises(OverflowError):
        getattr(_core.WireWriter(), method)(value)
