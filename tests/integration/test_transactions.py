"""Transactions with real clients: librdkafka's (and aiokafka's and kafka-python's) transactional
producer commits and aborts across partitions; a read_committed consumer sees every committed
record, no aborted one, and nothing of a transaction still open (its watermark stops at the last stable offset) while a
read_uncommitted one sees it all; a second producer with the same transactional.id fences the
first; a transaction older than its timeout is aborted by the broker; the state survives a
restart; offsets sent to a transaction (consume-transform-produce) count only once it commits.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

import aiokafka
import kafka
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import pstream

import raw_kafka  # noqa: E402  (tests/integration is on sys.path: see conftest.py)

TIMEOUT = 30.0
PARTITIONS = 2
UNSTABLE_OFFSET_COMMIT = 88


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(TIMEOUT)


def transactional_producer(bootstrap: str, txn_id: str, **extra) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5, **extra})
    producer.init_transactions(TIMEOUT)
    return producer


def consume(bootstrap: str, topic: str, isolation: str, partitions: int = PARTITIONS,
            settle_s: float = 1.0) -> list[bytes]:
    """Every value a consumer with that isolation level reads from the start, once nothing new
    arrived for settle_s (or it reached the end)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}-{isolation}",
                         "isolation.level": isolation, "enable.auto.commit": False,
                         "enable.partition.eof": True})
    values, at_end = [], set()
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + TIMEOUT
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is None:
                if len(at_end) == partitions and time.monotonic() - quiet_since > settle_s:
                    break
                continue
            if msg.error():
                if msg.error().code() == msg.error()._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                raise KafkaException(msg.error())
            at_end.discard(msg.partition())
            quiet_since = time.monotonic()
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def watermarks(bootstrap: str, topic: str, isolation: str, partition: int = 0) -> tuple[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm", "isolation.level": isolation})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), TIMEOUT)
    finally:
        consumer.close()


def produce_values(producer: Producer, topic: str, prefix: str, n: int) -> list[bytes]:
    values = [f"{prefix}-{i}".encode() for i in range(n)]
    for i, value in enumerate(values):
        producer.produce(topic, value, partition=i % PARTITIONS)
    producer.flush(TIMEOUT)
    return values


def run_transaction(producer: Producer, topic: str, prefix: str, n: int, commit: bool = True) -> list[bytes]:
    """One transaction of n values, committed or aborted; returns the values."""
    producer.begin_transaction()
    values = produce_values(producer, topic, prefix, n)
    (producer.commit_transaction if commit else producer.abort_transaction)(TIMEOUT)
    return values


def test_commit_and_abort_seen_by_read_committed(broker):
    create_topic(broker.bootstrap, "txn-basic")
    producer = transactional_producer(broker.bootstrap, "tx-basic")
    committed = run_transaction(producer, "txn-basic", "committed", 20)
    aborted = run_transaction(producer, "txn-basic", "aborted", 10, commit=False)
    committed += run_transaction(producer, "txn-basic", "after", 5)

    seen = consume(broker.bootstrap, "txn-basic", "read_committed")
    assert sorted(seen) == sorted(committed)
    everything = consume(broker.bootstrap, "txn-basic", "read_uncommitted")
    assert sorted(everything) == sorted(committed + aborted)


def test_open_transaction_is_invisible_to_read_committed(broker):
    create_topic(broker.bootstrap, "txn-open")
    producer = transactional_producer(broker.bootstrap, "tx-open")
    producer.begin_transaction()
    pending = produce_values(producer, "txn-open", "pending", 6)

    low, high = watermarks(broker.bootstrap, "txn-open", "read_committed")
    assert (low, high) == (0, 0)     # the LSO: the open transaction's first offset
    assert watermarks(broker.bootstrap, "txn-open", "read_uncommitted") == (0, 3)
    assert consume(broker.bootstrap, "txn-open", "read_committed", settle_s=0.5) == []
    assert sorted(consume(broker.bootstrap, "txn-open", "read_uncommitted")) == sorted(pending)

    producer.commit_transaction(TIMEOUT)
    assert sorted(consume(broker.bootstrap, "txn-open", "read_committed")) == sorted(pending)
    assert watermarks(broker.bootstrap, "txn-open", "read_committed")[1] == 4   # 3 records and the marker


def test_second_producer_fences_the_first(broker):
    create_topic(broker.bootstrap, "txn-fence")
    first = transactional_producer(broker.bootstrap, "tx-fence")
    first.begin_transaction()
    lost = produce_values(first, "txn-fence", "zombie", 4)

    second = transactional_producer(broker.bootstrap, "tx-fence")   # aborts the first's transaction
    second.begin_transaction()
    kept = produce_values(second, "txn-fence", "kept", 4)
    second.commit_transaction(TIMEOUT)

    first.produce("txn-fence", b"late", partition=0)
    with pytest.raises(KafkaException) as failure:
        first.commit_transaction(TIMEOUT)
    assert failure.value.args[0].fatal()
    seen = consume(broker.bootstrap, "txn-fence", "read_committed")
    assert sorted(seen) == sorted(kept) and not set(seen) & set(lost + [b"late"])


def test_timed_out_transaction_is_aborted(broker_factory):
    broker = broker_factory("--transaction-abort-timed-out-transaction-cleanup-interval-ms", "100")
    create_topic(broker.bootstrap, "txn-timeout")
    producer = transactional_producer(broker.bootstrap, "tx-timeout", **{"transaction.timeout.ms": 1000})
    producer.begin_transaction()
    produce_values(producer, "txn-timeout", "abandoned", 4)
    deadline = time.monotonic() + TIMEOUT
    while watermarks(broker.bootstrap, "txn-timeout", "read_committed")[1] < 3:   # the ABORT marker
        assert time.monotonic() < deadline, "the broker never aborted the transaction"
        time.sleep(0.2)
    assert consume(broker.bootstrap, "txn-timeout", "read_committed", settle_s=0.3) == []
    with pytest.raises(KafkaException):
        producer.commit_transaction(TIMEOUT)


def test_timeout_above_the_maximum_is_refused(broker_factory):
    broker = broker_factory("--transaction-max-timeout-ms", "5000")
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tx-long",
                         "transaction.timeout.ms": 60000})
    with pytest.raises(KafkaException) as failure:
        producer.init_transactions(TIMEOUT)
    assert failure.value.args[0].code() == 50   # INVALID_TRANSACTION_TIMEOUT


def test_transactions_survive_a_restart(broker):
    create_topic(broker.bootstrap, "txn-restart")
    producer = transactional_producer(broker.bootstrap, "tx-restart")
    committed = run_transaction(producer, "txn-restart", "before", 6)
    aborted = run_transaction(producer, "txn-restart", "aborted", 6, commit=False)
    producer.begin_transaction()
    open_values = produce_values(producer, "txn-restart", "open", 4)
    broker.restart()

    seen = consume(broker.bootstrap, "txn-restart", "read_committed", settle_s=0.5)
    assert sorted(seen) == sorted(committed)
    assert not set(seen) & set(aborted + open_values)
    again = transactional_producer(broker.bootstrap, "tx-restart")   # fences and aborts the open one
    committed += run_transaction(again, "txn-restart", "after", 4)
    assert sorted(consume(broker.bootstrap, "txn-restart", "read_committed")) == sorted(committed)


def committed_offsets(bootstrap: str, group: str, topic: str) -> list[int]:
    """The group's committed offsets as OffsetFetch answers without require_stable (a pending
    transactional commit shows the offset before it)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_uncommitted"})
    try:
        return [tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)],
                                                       TIMEOUT)]
    finally:
        consumer.close()


def stable_fetch_errors(bootstrap: str, group: str, topic: str) -> list[int]:
    """OffsetFetch v7 with require_stable: the error of each partition."""
    req_cls, _ = raw_kafka.codecs("OffsetFetch")
    with raw_kafka.RawConnection(bootstrap) as conn:
        resp = conn.call("OffsetFetch", 7, req_cls(group_id=group, require_stable=True, topics=[
            req_cls.OffsetFetchRequestTopic(name=topic, partition_indexes=list(range(PARTITIONS)))]))
    return [p.error_code for t in resp.topics for p in t.partitions]


def test_consume_transform_produce_commits_offsets_with_the_transaction(broker):
    create_topic(broker.bootstrap, "ctp-in")
    create_topic(broker.bootstrap, "ctp-out")
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        plain.produce("ctp-in", b"in-%d" % i, partition=i % PARTITIONS)
    plain.flush(TIMEOUT)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ctp", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.assign([TopicPartition("ctp-in", p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    producer = transactional_producer(broker.bootstrap, "tx-ctp")
    try:
        def round_trip(count: int, commit: bool) -> tuple[list[int], list[int]]:
            """(committed offsets while the transaction is open, the positions it sent)"""
            got = []
            deadline = time.monotonic() + TIMEOUT
            while len(got) < count:
                assert time.monotonic() < deadline
                msg = consumer.poll(0.2)
                if msg is not None and not msg.error():
                    got.append(msg)
            producer.begin_transaction()
            for msg in got:
                producer.produce("ctp-out", msg.value().replace(b"in", b"out"), partition=msg.partition())
            positions = consumer.position([TopicPartition("ctp-in", p) for p in range(PARTITIONS)])
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), TIMEOUT)
            before = committed_offsets(broker.bootstrap, "ctp", "ctp-in")
            assert stable_fetch_errors(broker.bootstrap, "ctp", "ctp-in") == \
                [UNSTABLE_OFFSET_COMMIT if tp.offset >= 0 else 0 for tp in positions]   # pending in the transaction
            if commit:
                producer.commit_transaction(TIMEOUT)
            else:
                producer.abort_transaction(TIMEOUT)
            return before, [tp.offset for tp in positions]

        before, sent = round_trip(4, commit=True)
        assert before == [-1001, -1001]   # nothing is committed before the transaction is
        assert committed_offsets(broker.bootstrap, "ctp", "ctp-in") == sent
        before, aborted = round_trip(6, commit=False)
        assert before == sent and aborted != sent
        assert committed_offsets(broker.bootstrap, "ctp", "ctp-in") == sent   # the abort dropped them
        assert stable_fetch_errors(broker.bootstrap, "ctp", "ctp-in") == [0] * PARTITIONS
        outputs = sorted(consume(broker.bootstrap, "ctp-out", "read_committed"))
        assert outputs == sorted(b"out-%d" % i for i in range(10) if i // PARTITIONS < sent[i % PARTITIONS])
    finally:
        consumer.close()
    broker.restart()
    assert committed_offsets(broker.bootstrap, "ctp", "ctp-in") == sent


def test_aiokafka_transactions(broker):
    """aiokafka speaks v0 of the transaction APIs: its fenced producer hears INVALID_PRODUCER_EPOCH."""
    create_topic(broker.bootstrap, "txn-aio")

    async def run() -> tuple[list[bytes], list[bytes]]:
        first = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="tx-aio")
        await first.start()
        try:
            committed, aborted = [], []
            async with first.transaction():
                for i in range(6):
                    committed.append(b"aio-c-%d" % i)
                    await first.send_and_wait("txn-aio", committed[-1], partition=i % PARTITIONS)
            await first.begin_transaction()
            for i in range(4):
                aborted.append(b"aio-a-%d" % i)
                await first.send_and_wait("txn-aio", aborted[-1], partition=i % PARTITIONS)
            await first.abort_transaction()
            await first.begin_transaction()
            await first.send_and_wait("txn-aio", b"zombie", partition=0)
            second = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="tx-aio")
            await second.start()   # fences the first
            await second.stop()
            with pytest.raises((aiokafka.errors.ProducerFenced, aiokafka.errors.InvalidProducerEpoch)):
                await first.commit_transaction()
            return committed, aborted + [b"zombie"]
        finally:
            await first.stop()

    committed, aborted = asyncio.run(run())
    seen = consume(broker.bootstrap, "txn-aio", "read_committed")
    assert sorted(seen) == sorted(committed)


def test_kafka_python_transactions(broker):
    create_topic(broker.bootstrap, "txn-kp")
    producer = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="tx-kp")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        committed = [b"kp-c-%d" % i for i in range(6)]
        for i, value in enumerate(committed):
            producer.send("txn-kp", value, partition=i % PARTITIONS)
        producer.commit_transaction()
        producer.begin_transaction()
        for i in range(3):
            producer.send("txn-kp", b"kp-a-%d" % i, partition=i % PARTITIONS)
        producer.flush()   # written, then aborted (unsent records kafka-python would just drop)
        producer.abort_transaction()
    finally:
        producer.close(timeout=5)
    assert sorted(consume(broker.bootstrap, "txn-kp", "read_committed")) == sorted(committed)
    assert len(consume(broker.bootstrap, "txn-kp", "read_uncommitted")) == 9


def test_cli_admin_api_and_metrics_show_transactions(broker):
    create_topic(broker.bootstrap, "txn-ops")
    producer = transactional_producer(broker.bootstrap, "tx-ops")
    producer.begin_transaction()
    produce_values(producer, "txn-ops", "ops", 2)

    env = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
    env["PSTREAM_BROKERS"] = broker.bootstrap

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-P", "-m", "pstream", *args], capture_output=True, text=True,
                              env=env, timeout=60)
        assert proc.returncode == 0 or not check, proc.stderr
        return proc

    listed = cli("txn", "list").stdout.split("\n")
    assert any(line.split()[:1] == ["tx-ops"] and line.split()[-1] == "Ongoing" for line in listed)
    described = cli("txn", "describe", "tx-ops").stdout
    assert "state Ongoing" in described and "txn-ops" in described
    missing = cli("txn", "describe", "nobody", check=False)
    assert missing.returncode == 1 and "TRANSACTIONAL_ID_NOT_FOUND" in missing.stderr + missing.stdout

    with urllib.request.urlopen(f"{broker.admin_url}/v1/transactions", timeout=10) as answer:
        [txn] = json.load(answer)
    assert (txn["transactional_id"], txn["state"], txn["partitions"]) == \
        ("tx-ops", "Ongoing", [{"topic": "txn-ops", "partition": 0}, {"topic": "txn-ops", "partition": 1}])
    producer.commit_transaction(TIMEOUT)   # answered once PrepareCommit is durable: the markers follow
    deadline = time.monotonic() + TIMEOUT
    while True:
        with urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=10) as answer:
            metrics = answer.read().decode()
        if 'pstream_transactions{state="CompleteCommit"} 1.0' in metrics:
            break
        assert time.monotonic() < deadline, "the commit never completed"
        time.sleep(0.05)
    assert 'pstream_transactions_ended_total{outcome="committed"} 1.0' in metrics


def test_embedded_transactions_are_served_to_kafka_clients(broker_factory, tmp_path):
    """An application's in-process transactions, then a broker on its directory: a Kafka
    read_committed consumer sees what in-process read-committed reads saw."""
    data = str(tmp_path / "embedded")
    with pstream.Log(data, shards=1) as log:
        log.topic("embedded-txn", partitions=PARTITIONS)
        with log.transaction("app") as tx:
            for i in range(4):
                tx.append("embedded-txn", b"kept-%d" % i, partition=i % PARTITIONS)
        tx = log.transaction("app")
        tx.append("embedded-txn", b"dropped", partition=0)
        tx.abort()
    broker = broker_factory(data_dir=data)
    assert sorted(consume(broker.bootstrap, "embedded-txn", "read_committed")) == [b"kept-%d" % i for i in range(4)]
    # The broker's coordinator knows the application's transactional id and goes on from it.
    producer = transactional_producer(broker.bootstrap, "app")
    producer.begin_transaction()
    produce_values(producer, "embedded-txn", "broker", 2)
    producer.commit_transaction(TIMEOUT)
    assert len(consume(broker.bootstrap, "embedded-txn", "read_committed")) == 6
