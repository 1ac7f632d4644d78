"""Topic.append / append_many: Kafka's partitioner, batches split at max.message.bytes."""

from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given, settings, strategies as st

import pstream
from pstream.errors import BatchTooLargeError, UnknownPartitionError
from pstream.partitioner import StickyPartitioner, key_partition


@pytest.fixture
def log(tmp_path):
    with pstream.Log(tmp_path / "data", shards=2, retention_check_ms=None, cleaner=False) as log:
        yield log


def test_keyed_records_go_where_kafkas_default_partitioner_puts_them(log):
    topic = log.topic("orders", partitions=7)
    keys = [b"user-%d" % i for i in range(200)]
    placed = [topic.append(b"v", key=k) for k in keys]
    for key, (partition, offset) in zip(keys, placed):
        assert partition == key_partition(key, 7)
        [rec] = topic.partition(partition).read(offset, max_records=1)
        assert rec.key == key


def test_unkeyed_records_stick_to_a_partition_for_a_batch_then_move(log):
    topic = log.topic("events", partitions=4)
    placed = [topic.append(b"x" * 1000).partition for _ in range(200)]   # 200 KB: about 12 switches
    runs = [p for i, p in enumerate(placed) if i == 0 or placed[i - 1] != p]
    assert all(a != b for a, b in zip(runs, runs[1:]))      # a switch always goes elsewhere
    assert 8 <= len(runs) <= 16                             # every ~16 KiB, not every record
    assert len(set(placed)) > 1


def test_sticky_partitioner_switches_after_batch_bytes():
    part = StickyPartitioner(batch_bytes=100)
    first = part.unkeyed(60, 3)
    assert part.unkeyed(39, 3) == first      # 99 bytes: still the same batch
    assert part.unkeyed(1, 3) == first       # 100 reached by this one
    assert part.unkeyed(1, 3) != first


def test_explicit_partition_wins_and_is_checked(log):
    topic = log.topic("t", partitions=2)
    assert topic.append(b"v", key=b"k", partition=1).partition == 1
    with pytest.raises(UnknownPartitionError, match="partition 5 does not exist"):
        topic.append(b"v", partition=5)
    with pytest.raises(UnknownPartitionError):
        topic.append_many([(None, b"v")], partition=-1)


def test_append_many_returns_each_records_place_in_input_order(log):
    topic = log.topic("t", partitions=3)
    records = [(b"k%d" % (i % 10), b"v%d" % i, [("h", b"1")]) for i in range(100)]
    placed = topic.append_many(records)
    assert len(placed) == 100
    by_partition = collections.defaultdict(list)
    for (key, value, _), (partition, offset) in zip(records, placed):
        assert partition == key_partition(key, 3)
        by_partition[partition].append((offset, value))
    for partition, expected in by_partition.items():
        got = [(r.offset, r.value) for r in topic.partition(partition).read(0)]
        assert got == expected                              # order kept within a partition
        assert [r.headers for r in topic.partition(partition).read(0)][0] == [("h", b"1")]


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_a_batch_over_max_message_bytes_is_split_not_refused(log, compression):
    topic = log.topic("t", partitions=1, max_message_bytes=10_000)
    values = [random.Random(i).randbytes(900) for i in range(100)]   # ~90 KB, incompressible
    placed = topic.append_many([(None, v) for v in values], compression=compression)
    assert [o for _, o in placed] == list(range(100))
    part = topic.partition(0)
    assert [r.value for r in part.read(0)] == values
    sizes = _batch_sizes(part)
    assert len(sizes) > 1 and max(sizes) <= 10_000


def test_a_single_record_over_the_limit_is_refused_with_its_size_and_the_limit(log):
    topic = log.topic("t", partitions=1, max_message_bytes=5_000)
    with pytest.raises(BatchTooLargeError, match=r"record 1 of 6\d\d\d bytes .* exceeds max_message_bytes 5000"):
        topic.append_many([(None, b"small"), (None, b"x" * 6000)])
    assert topic.partition(0).log_end_offset == 0          # nothing of the call was appended
    with pytest.raises(BatchTooLargeError, match="exceeds max_message_bytes 5000"):
        topic.append(b"x" * 6000)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=40), limit=st.integers(3200, 20_000))
def test_split_batches_hold_every_record_once_in_order_within_the_limit(tmp_path_factory, sizes, limit):
    with pstream.Log(tmp_path_factory.mktemp("split"), shards=1, retention_check_ms=None, cleaner=False) as log:
        part = log.topic("t", max_message_bytes=limit).partition(0)
        values = [bytes([n % 251]) * n for n in sizes]
        runs = part.append_runs([(None, v) for v in values])
        assert sum(n for _, n in runs) == len(values)
        assert [r.value for r in part.read(0)] == values
        assert max(_batch_sizes(part)) <= limit


def _batch_sizes(part) -> list[int]:
    out, offset = [], part.log_start_offset
    while offset < part.log_end_offset:
        for header, _ in pstream._core.iter_batches(part.read_batches(offset)):
            out.append(header.size)
            offset = header.last_offset + 1
    return out
