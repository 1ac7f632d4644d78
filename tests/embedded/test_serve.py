"""pstream.serve(log) / serve_in_thread(log): Kafka clients and the application share one open Log."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import pstream
from pstream.errors import ConfigError, TransactionError


def open_log(path):
    return pstream.Log(path, shards=2, retention_check_ms=None, cleaner=False)


@pytest.fixture
def served(tmp_path):
    with open_log(tmp_path / "data") as log:
        with pstream.serve_in_thread(log, listen="127.0.0.1:0", group_initial_rebalance_delay_ms=0) as handle:
            yield log, handle


def _consume(bootstrap, topic, n, group="reader", timeout=20.0):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                out.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
    finally:
        c.close()
    return out


def test_records_written_either_way_are_seen_both_ways(served):
    log, handle = served
    topic = log.topic("orders", partitions=3)
    placed = topic.append_many([(b"app-%d" % i, b"a%d" % i) for i in range(30)])
    producer = Producer({"bootstrap.servers": handle.bootstrap, "partitioner": "murmur2", "linger.ms": 0})
    for i in range(30):
        producer.produce("orders", b"k%d" % i, key=b"kafka-%d" % i)
    assert producer.flush(10) == 0
    seen_by_kafka = _consume(handle.bootstrap, "orders", 60)
    assert len(seen_by_kafka) == 60
    app = {(p, o) for p, o in placed}
    assert app <= {(p, o) for p, o, _, _ in seen_by_kafka}
    # Keys land on the same partition whichever door they came in by (murmur2 both ways).
    for p, _, key, _ in seen_by_kafka:
        assert p == pstream.partitioner.key_partition(key, 3)
    seen_in_app = list(topic.follow(start="earliest", timeout=0.1))
    assert sorted(r.value for r in seen_in_app) == sorted([b"a%d" % i for i in range(30)] + [b"k%d" % i for i in range(30)])


def test_an_embedded_consumers_commit_is_what_kafka_clients_fetch(served):
    log, handle = served
    log.topic("orders", partitions=2).append_many([(b"k%d" % i, b"v") for i in range(10)])
    with log.consumer("billing", ["orders"]) as c:
        assert len(c.poll(max_records=100)) == 10
        c.commit()
        expected = c.committed()
    kafka = Consumer({"bootstrap.servers": handle.bootstrap, "group.id": "billing"})
    try:
        got = kafka.committed([TopicPartition("orders", 0), TopicPartition("orders", 1)], timeout=10)
    finally:
        kafka.close()
    assert {("orders", tp.partition): tp.offset for tp in got} == expected
    assert sum(expected.values()) == 10


def test_a_group_kafka_clients_joined_refuses_an_embedded_commit(served):
    log, handle = served
    log.topic("orders").append(b"x")
    kafka = Consumer({"bootstrap.servers": handle.bootstrap, "group.id": "shared", "auto.offset.reset": "earliest",
                      "session.timeout.ms": 6000})
    kafka.subscribe(["orders"])
    deadline = time.monotonic() + 20
    while not kafka.assignment() and time.monotonic() < deadline:
        kafka.poll(0.2)
    try:
        with log.consumer("shared", ["orders"]) as c:
            c.poll(timeout=0.01)
            with pytest.raises(pstream.errors.CommitFailedError, match="UNKNOWN_MEMBER_ID"):
                c.commit()
    finally:
        kafka.close()


def test_offsets_committed_while_served_survive_into_the_unserved_log(tmp_path):
    with open_log(tmp_path / "d") as log:
        log.topic("orders").append_many([(None, b"v")] * 5)
        with pstream.serve_in_thread(log, listen="127.0.0.1:0"):
            with log.consumer("g", ["orders"]) as c:
                c.poll(max_records=3)
                c.commit()
        with log.consumer("g", ["orders"]) as c:      # served no more: from the Log's own store
            assert c.committed() == {("orders", 0): 3}
            assert [r.offset for r in c.poll(max_records=10)] == [3, 4]


def test_embedded_transactions_are_refused_while_served(served):
    log, _ = served
    with pytest.raises(TransactionError, match="a broker serves this Log"):
        log.transaction()


def test_log_settings_are_refused_by_serve(tmp_path):
    with open_log(tmp_path / "d") as log:
        with pytest.raises(ConfigError, match="setting shards belongs to the Log"):
            pstream.serve_in_thread(log, listen="127.0.0.1:0", shards=4)
        with pytest.raises(ConfigError, match="unknown setting"):
            pstream.serve_in_thread(log, listen="127.0.0.1:0", no_such_setting=1)


def test_closing_the_log_stops_the_server_first(tmp_path):
    log = open_log(tmp_path / "d")
    handle = pstream.serve_in_thread(log, listen="127.0.0.1:0")
    log.close()
    assert "stopped" in repr(handle)


def test_serve_runs_on_the_applications_loop_until_cancelled(tmp_path):
    with open_log(tmp_path / "d") as log:
        topic = log.topic("t")

        async def main():
            server = asyncio.ensure_future(pstream.serve(log, listen="127.0.0.1:0"))
            await asyncio.sleep(0.3)
            # The application's own awaits on the same loop: append on a thread, follow here.
            writer = asyncio.ensure_future(asyncio.to_thread(topic.append, b"x"))
            got = [r.value async for r in topic.follow(start="earliest", timeout=0.5)]
            await writer
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server
            return got

        assert asyncio.run(main()) == [b"x"]
        assert not log.served


def test_an_application_loop_and_the_servers_loop_await_the_same_log(served):
    """Each event loop has its own doorbell: the app's async follow and the broker's long-poll
    fetches both wake."""
    log, handle = served
    topic = log.topic("t")

    async def main():
        writer = asyncio.ensure_future(asyncio.to_thread(
            lambda: [topic.append(b"%d" % i) or time.sleep(0.01) for i in range(10)]))
        got = [r.value async for r in topic.follow(start="earliest", timeout=1.0)]
        await writer
        return got

    assert asyncio.run(main()) == [b"%d" % i for i in range(10)]
    assert len(_consume(handle.bootstrap, "t", 10)) == 10
