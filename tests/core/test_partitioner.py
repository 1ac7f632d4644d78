"""Keyed records (`pstream produce`, Topic.append) go where Kafka's default partitioner puts them."""

import ctypes

import pytest

from pstream.partitioner import key_partition, murmur2


# Apache Kafka's UtilsTest.testMurmur2 vectors (Java ints).
@pytest.mark.parametrize("data, expected", [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
def test_murmur2_matches_kafkas_vectors(data, expected):
    assert ctypes.c_int32(murmur2(data)).value == expected


def test_key_partition_is_positive_murmur2_modulo_partitions():
    for key in (b"", b"a", b"user-17", bytes(range(256))):
        assert key_partition(key, 7) == (murmur2(key) & 0x7FFFFFFF) % 7
        assert 0 <= key_partition(key, 7) < 7
