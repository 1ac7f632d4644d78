"""kill -9 of the broker at random moments during a stream of transactions (librdkafka's
transactional producer, committing or aborting at random, some with offsets sent to the
transaction). Afterwards, for read_committed: every transaction whose commit was acknowledged is
fully visible, no record of an acknowledged abort is, a transaction cut by the crash is all or
nothing, and the group's committed offsets are those of the last transaction that carried
offsets and committed (or one whose outcome the crash hid)."""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC, GROUP, TXN_ID = "kill9-txn", "kill9-group", "kill9-tx"
PARTITIONS = 3
RECORDS_PER_TXN = 20
TIMEOUT = 30.0


def _transactions(bootstrap: str, start: int, outcomes: dict, stop: threading.Event) -> None:
    """Runs transactions numbered from `start` until a call fails or stop is set; records each
    one's outcome: "committed", "aborted" (both acknowledged) or "unknown" (cut by the crash)."""
    # No re-bootstrap: when its only broker dies, librdkafka (2.10+) decommissions it, yet its
    # coordinator cache keeps the dead handle and send_offsets_to_transaction waits on it past
    # any timeout (librdkafka issues 5511 and 5456, open; Kafka's own broker sees the same).
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": TXN_ID, "linger.ms": 2,
                         "message.timeout.ms": 5000, "transaction.timeout.ms": 10000,
                         "metadata.recovery.strategy": "none"})
    txn = start
    try:
        outcomes["call"] = "init_transactions"
        producer.init_transactions(TIMEOUT)
        while not stop.is_set():
            outcomes[txn] = "unknown"
            producer.begin_transaction()
            for i in range(RECORDS_PER_TXN):
                producer.produce(TOPIC, b"%d:%d" % (txn, i), partition=(txn + i) % PARTITIONS)
            if txn % 3 == 0:
                offsets = [TopicPartition(TOPIC, p, txn) for p in range(PARTITIONS)]
                outcomes["call"] = "send_offsets_to_transaction"
                producer.send_offsets_to_transaction(offsets, _metadata(bootstrap), 5)
                outcomes[txn] = "unknown-offsets"
            commit = random.random() < 0.7
            outcomes["call"] = "commit_transaction" if commit else "abort_transaction"
            if commit:
                producer.commit_transaction(5)
            else:
                producer.abort_transaction(5)
            outcomes[txn] = ("committed" if commit else "aborted") + ("-offsets" if txn % 3 == 0 else "")
            txn += 1
    except (KafkaException, BufferError):
        pass   # the broker died under it
    except Exception as exc:   # anything else fails the test (not lost in a thread)
        outcomes["error"] = repr(exc)
    outcomes["call"] = "destroying the producer"   # where a hang would be librdkafka's, not a request


_group_metadata = {}


def _metadata(bootstrap: str):
    """A consumer group's metadata for send_offsets_to_transaction (an assigned consumer)."""
    if bootstrap not in _group_metadata:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
        _group_metadata[bootstrap] = consumer.consumer_group_metadata()
        consumer.close()
    return _group_metadata[bootstrap]


def _read_committed(bootstrap: str) -> tuple[dict[int, int], list[int]]:
    """({transaction: records of it a read_committed consumer sees}, the group's committed offsets)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify", "isolation.level": "read_committed",
                         "enable.partition.eof": True, "enable.auto.commit": False})
    counts: dict[int, int] = {}
    at_end: set[int] = set()
    try:
        consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 60
        while len(at_end) < PARTITIONS:
            assert time.monotonic() < deadline, "reading back took too long"
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                at_end.add(msg.partition())
                continue
            at_end.discard(msg.partition())
            txn = int(msg.value().split(b":")[0])
            counts[txn] = counts.get(txn, 0) + 1
    finally:
        consumer.close()
    group = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "isolation.level": "read_committed"})
    try:
        committed = group.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], TIMEOUT)
    finally:
        group.close()
    return counts, [tp.offset for tp in committed]


@pytest.mark.parametrize("kills", [2, pytest.param(10, id="long", marks=pytest.mark.slow)])
def test_sigkill_during_transactions_keeps_them_atomic(broker_factory, kills):
    broker = broker_factory("--group-initial-rebalance-delay-ms", "0")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(TIMEOUT)
    rng = random.Random(kills)
    outcomes: dict[int, str] = {}
    for round_no in range(kills + 1):
        stop = threading.Event()
        worker = threading.Thread(target=_transactions,
                                  args=(broker.bootstrap, round_no * 10_000, outcomes, stop),
                                  daemon=True)   # a hung client fails the test, not the whole run
        worker.start()
        if round_no < kills:
            time.sleep(rng.uniform(0.3, 1.5))
            broker.stop(signal.SIGKILL)
            stop.set()       # the transaction in flight ends (or fails) against the restarted broker:
            broker.start()   # with no broker at all, librdkafka's calls can outlast any join
            worker.join(120)
        else:
            time.sleep(1.0)
            stop.set()
            worker.join(120)
        assert not worker.is_alive(), f"round {round_no}: the producer hangs in {outcomes.get('call')}; last " \
            f"outcomes {sorted((k, v) for k, v in outcomes.items() if isinstance(k, int))[-3:]}; broker log:\n" \
            f"{broker.output(6000)}"
    # A new incarnation fences and aborts whatever the last crash left open.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": TXN_ID})
    producer.init_transactions(TIMEOUT)

    assert "error" not in outcomes, outcomes.get("error")
    counts, committed_offsets = _read_committed(broker.bootstrap)
    assert any(o.startswith("committed") for o in outcomes.values())
    outcomes.pop("call", None)
    for txn, outcome in outcomes.items():
        seen = counts.get(txn, 0)
        if outcome.startswith("committed"):
            assert seen == RECORDS_PER_TXN, f"committed transaction {txn}: {seen} records"
        elif outcome.startswith("aborted"):
            assert seen == 0, f"aborted transaction {txn}: {seen} records visible"
        else:
            assert seen in (0, RECORDS_PER_TXN), f"transaction {txn} cut by the crash is half visible: {seen}"
    assert not set(counts) - {k for k in outcomes if isinstance(k, int)}
    # Offsets: those of the last offset-carrying transaction that is visible (committed).
    with_offsets = [t for t, o in outcomes.items() if o.endswith("offsets") and counts.get(t) == RECORDS_PER_TXN]
    expected = [max(with_offsets)] * PARTITIONS if with_offsets else [-1001] * PARTITIONS
    assert committed_offsets == expected
