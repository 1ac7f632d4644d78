"""log.consumer(...): named consumers with durable positions in __consumer_offsets."""

from __future__ import annotations

import threading
import time

import pytest

import pstream
from pstream.coordinator.offsets import OFFSETS_TOPIC, OffsetStore
from pstream.errors import LogClosedError, UnknownTopicError


def open_log(path):
    return pstream.Log(path, shards=2, retention_check_ms=None, cleaner=False)


@pytest.fixture
def log(tmp_path):
    with open_log(tmp_path / "data") as log:
        yield log


def _fill(log, name="orders", partitions=4, n=100):
    topic = log.topic(name, partitions=partitions)
    topic.append_many([(b"k%d" % i, b"v%d" % i) for i in range(n)])
    return topic


def _drain(consumer, timeout=0.05):
    out = []
    while batch := consumer.poll(max_records=7, timeout=timeout):
        out.extend(batch)
    return out


def test_a_consumer_reads_everything_from_earliest_then_only_what_is_new(log):
    topic = _fill(log)
    with log.consumer("billing", topics=["orders"]) as c:
        first = _drain(c)
        assert sorted(r.value for r in first) == sorted(b"v%d" % i for i in range(100))
        assert all(r.topic == "orders" and 0 <= r.partition < 4 for r in first)
        topic.append(b"new", key=b"k1")
        assert [r.value for r in c.poll(timeout=1.0)] == [b"new"]


def test_poll_waits_for_records_up_to_its_timeout(log):
    topic = log.topic("orders")
    with log.consumer("g", ["orders"]) as c:
        assert c.poll(timeout=0.05) == []
        threading.Timer(0.05, lambda: topic.append(b"late")).start()
        assert [r.value for r in c.poll(timeout=5.0)] == [b"late"]


def test_commit_is_durable_and_a_new_consumer_resumes_from_it(tmp_path):
    with open_log(tmp_path / "d") as log:
        _fill(log)
        with log.consumer("billing", "orders") as c:
            got = c.poll(max_records=30)
            c.commit()
            committed = c.committed()
        assert sum(committed.values()) == 30
    with open_log(tmp_path / "d") as log:      # a new process, as far as the data knows
        with log.consumer("billing", ["orders"]) as c:
            rest = _drain(c)
        assert len(got) + len(rest) == 100
        assert {(r.partition, r.offset) for r in got}.isdisjoint({(r.partition, r.offset) for r in rest})


def test_commits_are_kafka_records_in_consumer_offsets(log):
    _fill(log, partitions=2, n=10)
    with log.consumer("billing", ["orders"]) as c:
        _drain(c)
        c.commit()
    store = OffsetStore(log)
    state = store.open()   # the broker's own replay of the topic
    assert {tp: o.offset for tp, o in state.offsets["billing"].items()} == c.committed()
    assert OFFSETS_TOPIC in log.topics()


def test_consumers_of_one_group_split_the_partitions_as_the_range_assignor(log):
    _fill(log, partitions=5)
    a = log.consumer("g", ["orders"])
    b = log.consumer("g", ["orders"])
    assert a.assignment() == [("orders", 0), ("orders", 1), ("orders", 2)]
    assert b.assignment() == [("orders", 3), ("orders", 4)]
    got_a, got_b = _drain(a), _drain(b)
    assert len(got_a) + len(got_b) == 100
    assert {r.partition for r in got_a} == {0, 1, 2} and {r.partition for r in got_b} == {3, 4}
    b.close()
    assert a.assignment() == [("orders", p) for p in range(5)]
    a.close()


def test_a_partition_moved_by_a_rebalance_resumes_from_the_committed_offset(log):
    _fill(log, partitions=2, n=40)
    a = log.consumer("g", ["orders"])
    first = _drain(a)
    a.commit({("orders", 0): 5, ("orders", 1): 5})     # only part of what was read
    b = log.consumer("g", ["orders"])
    again = _drain(b)                                   # partition 1 moved to b: from 5 on
    assert {r.partition for r in again} == {1}
    assert min(r.offset for r in again) == 5
    assert len(first) == 40
    a.close()
    b.close()


def test_different_groups_are_independent(log):
    _fill(log, partitions=3, n=30)
    with log.consumer("one", ["orders"]) as one, log.consumer("two", ["orders"]) as two:
        assert len(_drain(one)) == 30 and len(_drain(two)) == 30


def test_more_consumers_than_partitions_leaves_some_idle(log):
    _fill(log, partitions=1, n=5)
    a, b = log.consumer("g", ["orders"]), log.consumer("g", ["orders"])
    assert b.assignment() == [] and b.poll(timeout=0.01) == []
    threading.Timer(0.2, a.close).start()
    assert len(b.poll(max_records=10, timeout=None)) == 5   # waits for a partition, then reads it
    b.close()


def test_a_topic_created_later_is_picked_up(log):
    with log.consumer("g", ["later"]) as c:
        assert c.assignment() == [] and c.poll(timeout=0.01) == []
        log.topic("later", partitions=2).append(b"x", partition=1)
        assert c.assignment() == [("later", 0), ("later", 1)]
        assert [r.value for r in c.poll(timeout=1.0)] == [b"x"]


def test_commit_of_an_unknown_partition_and_use_after_close_are_refused(log):
    _fill(log, partitions=1, n=1)
    c = log.consumer("g", ["orders"])
    with pytest.raises(UnknownTopicError):
        c.commit({("nope", 0): 1})
    c.close()
    with pytest.raises(LogClosedError, match="consumer of group 'g' is closed"):
        c.poll()
    with pytest.raises(ValueError, match="non-empty string"):
        log.consumer("", ["orders"])


def test_read_committed_consumer_skips_aborted_transactions(log):
    log.topic("orders")
    with log.transaction() as txn:
        txn.append("orders", b"kept")
    txn = log.transaction()
    txn.append("orders", b"dropped")
    txn.abort()
    with log.consumer("g", ["orders"], isolation_level="read_committed") as c:
        assert [r.value for r in _drain(c)] == [b"kept"]


def test_async_poll_and_commit(log):
    import asyncio
    _fill(log, partitions=2, n=20)

    async def main():
        with log.consumer("g", ["orders"]) as c:
            got = []
            while batch := await c.poll_async(max_records=6, timeout=0.05):
                got.extend(batch)
            await c.commit_async()
            return got, c.committed()

    got, committed = asyncio.run(main())
    assert len(got) == 20 and sum(committed.values()) == 20


def test_a_broker_started_on_the_directory_continues_from_embedded_commits(tmp_path):
    """`pstream group describe` shows the embedded group's offsets, and a Kafka consumer of the
    group resumes from them."""
    import subprocess
    import sys

    from confluent_kafka import Consumer

    from pstream.testing import BrokerProcess, stop_broker

    data = tmp_path / "data"
    with open_log(data) as log:
        log.topic("orders", partitions=2).append_many([(b"k%d" % i, b"v%d" % i) for i in range(20)])
        with log.consumer("billing", ["orders"]) as c:
            first = c.poll(max_records=12)
            c.commit()
            committed = c.committed()
    broker = BrokerProcess(str(data), group_initial_rebalance_delay_ms=0).start()
    try:
        out = subprocess.run([sys.executable, "-P", "-m", "pstream", "group", "describe", "billing",
                              "--brokers", broker.bootstrap], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        for (topic, partition), offset in committed.items():
            assert any(line.split()[:3] == [topic, str(partition), str(offset)] for line in out.stdout.splitlines()), \
                out.stdout
        kafka = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "billing",
                          "auto.offset.reset": "earliest", "enable.auto.commit": False})
        kafka.subscribe(["orders"])
        rest, deadline = [], time.monotonic() + 30
        while len(rest) < 8 and time.monotonic() < deadline:
            msg = kafka.poll(0.2)
            if msg is not None and not msg.error():
                rest.append((msg.partition(), msg.offset()))
        kafka.close()
    finally:
        stop_broker(broker)
    assert len(first) == 12 and len(rest) == 8
    assert {(r.partition, r.offset) for r in first}.isdisjoint(rest)
