"""pstream.crc32c against known vectors and the crc32c package, at every size and alignment."""

import random

import crc32c as crc32c_package
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pstream


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0), (b"123456789", 0xE3069283), (bytes(32), 0x8A9136AA), (b"\xff" * 32, 0x62A8AB43)],
)
def test_known_vectors(data, expected):
    assert pstream.crc32c(data) == expected


def test_every_length_and_alignment_matches_the_crc32c_package():
    rng = random.Random(1)
    block = rng.randbytes(1 << 16)
    for n in range(0, 2100):
        start = rng.randrange(0, 64)
        data = memoryview(block)[start:start + n]
        assert pstream.crc32c(data) == crc32c_package.crc32c(bytes(data)), (n, start)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5000), st.binary(max_size=5000))
def test_continuation_equals_one_pass(a, b):
    assert pstream.crc32c(b, pstream.crc32c(a)) == pstream.crc32c(a + b) == crc32c_package.crc32c(a + b)


def test_large_buffers_release_the_gil_and_agree():
    data = random.Random(2).randbytes(3 << 20)
    assert pstream.crc32c(data) == crc32c_package.crc32c(data)
    assert pstream.crc32c(bytearray(data), 12345) == crc32c_package.crc32c(data, 12345)


def test_rejects_non_buffers():
    with pytest.raises(TypeError):
        pstream.crc32c("text")
