"""The idempotent producer: librdkafka (enable.idempotence=true), kafka-python and aiokafka
write many messages over several partitions with no duplicate and in order, also when the
broker restarts under them; and at the wire level (kafka_wire, batches from
pstream._core.encode_batch) a resent batch is answered with its original offset without
being appended again, a sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER, a fenced epoch gets
INVALID_PRODUCER_EPOCH, and all of that still holds after a clean restart or a SIGKILL
(the producer state is recovered from its snapshot and the log).
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time

import aiokafka
import kafka
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from pstream import _core

import kafka_wire  # noqa: E402  (tests/integration is on sys.path: see conftest.py)

TIMEOUT = 60.0
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
INVALID_RECORD = 87
MESSAGE_TOO_LARGE = 10
PARTITIONS = 4


def value_of(i: int) -> bytes:
    return b"idempotent %08d " % i + b"x" * 100


def index_of(value: bytes) -> int:
    return int(value.split()[1])


def consume_all(bootstrap: str, topic: str, partitions: int) -> dict[int, list[bytes]]:
    """{partition: [value, ...] in offset order} up to the current high watermarks."""
    with kafka_wire.KafkaWire(bootstrap) as wire:
        ends = [wire.list_offset(topic, p) for p in range(partitions)]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "pstream-tests",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    out: dict[int, list] = {p: [] for p in range(partitions)}
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + TIMEOUT
        while sum(map(len, out.values())) < sum(ends):
            assert time.monotonic() < deadline, "consuming took too long"
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    continue
                assert m.offset() == len(out[m.partition()]), "offsets out of order or with a gap"
                out[m.partition()].append(m.value())
    finally:
        consumer.close()
    return out


def assert_exactly_once_in_order(stored: dict[int, list[bytes]], expected: dict[int, list[int]]) -> None:
    """Each partition holds exactly the indexes sent to it, once each, in the order sent."""
    for p, want in expected.items():
        got = [index_of(v) for v in stored[p]]
        dupes = len(got) - len(set(got))
        assert dupes == 0, f"partition {p}: {dupes} duplicates"
        assert got == want, f"partition {p}: {len(got)} stored, {len(want)} sent, or out of order"


def assert_batches_idempotent(bootstrap: str, topic: str, partitions: int) -> None:
    """Every stored batch carries a producer id, and each producer's sequences per
    partition run on without a gap or overlap: what the client really sent was idempotent."""
    with kafka_wire.KafkaWire(bootstrap) as wire:
        for p in range(partitions):
            next_seq: dict[int, int] = {}
            for header, _ in wire.fetch_all(topic, p):
                assert header.producer_id >= 0, f"partition {p}: a batch without a producer id"
                pid = header.producer_id
                if pid in next_seq:
                    assert header.base_sequence == next_seq[pid], f"partition {p}: sequence gap or duplicate"
                else:
                    assert header.base_sequence == 0
                next_seq[pid] = header.base_sequence + header.record_count


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    with kafka_wire.KafkaWire(bootstrap) as wire:
        wire.create_topic(name, partitions)


# --- real clients -------------------------------------------------------------------------

N = 20_000


def test_librdkafka_idempotent_producer_writes_each_message_once_in_order(broker):
    create_topic(broker.bootstrap, "idem", PARTITIONS)
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 1,
            "batch.num.messages": 50,
            "max.in.flight.requests.per.connection": 5,
        }
    )
    failed = []
    for i in range(N):
        producer.produce(
            "idem",
            value_of(i),
            partition=i % PARTITIONS,
            on_delivery=lambda err, msg: err and failed.append(err),
        )
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0 and not failed, failed[:3]
    expected = {p: list(range(p, N, PARTITIONS)) for p in range(PARTITIONS)}
    assert_exactly_once_in_order(consume_all(broker.bootstrap, "idem", PARTITIONS), expected)
    assert_batches_idempotent(broker.bootstrap, "idem", PARTITIONS)


def test_kafka_python_idempotent_producer_writes_each_message_once_in_order(broker):
    assert kafka.KafkaProducer.DEFAULT_CONFIG["enable_idempotence"] is True  # kafka-python 3.x default
    create_topic(broker.bootstrap, "idem", PARTITIONS)
    producer = kafka.KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=1,
        batch_size=4096,
        max_in_flight_requests_per_connection=5,
    )
    try:
        futures = [producer.send("idem", value_of(i), partition=i % PARTITIONS) for i in range(5000)]
        producer.flush(TIMEOUT)
        for f in futures:
            f.get(timeout=TIMEOUT)
    finally:
        producer.close(timeout=10)
    expected = {p: list(range(p, 5000, PARTITIONS)) for p in range(PARTITIONS)}
    assert_exactly_once_in_order(consume_all(broker.bootstrap, "idem", PARTITIONS), expected)
    assert_batches_idempotent(broker.bootstrap, "idem", PARTITIONS)


def test_aiokafka_idempotent_producer_writes_each_message_once_in_order(broker):
    create_topic(broker.bootstrap, "idem", PARTITIONS)

    async def run():
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, enable_idempotence=True, linger_ms=1, max_batch_size=4096
        )
        await producer.start()
        try:
            futures = [
                await producer.send("idem", value_of(i), partition=i % PARTITIONS) for i in range(5000)
            ]
            await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
        finally:
            await producer.stop()

    asyncio.run(run())
    expected = {p: list(range(p, 5000, PARTITIONS)) for p in range(PARTITIONS)}
    assert_exactly_once_in_order(consume_all(broker.bootstrap, "idem", PARTITIONS), expected)
    assert_batches_idempotent(broker.bootstrap, "idem", PARTITIONS)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_librdkafka_idempotent_producer_has_no_duplicates_across_a_broker_restart(broker, sig):
    """The broker stops while batches are in flight; librdkafka resends them (same producer
    id and sequences) to the restarted broker, which must answer the ones it already wrote
    from its recovered producer state instead of appending them twice."""
    create_topic(broker.bootstrap, "idem", PARTITIONS)
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 1,
            "batch.num.messages": 100,
            "message.timeout.ms": 60000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
        }
    )
    acked = [0]
    failed = []

    def delivered(err, msg):
        if err:
            failed.append(err)
        else:
            acked[0] += 1

    stop = threading.Event()
    produced = [0]

    def stream():
        i = 0
        while not stop.is_set():  # bounded by the test's deadlines, and librdkafka's queue by BufferError
            try:
                producer.produce("idem", value_of(i), partition=i % PARTITIONS, on_delivery=delivered)
            except BufferError:
                producer.poll(0.01)
                continue
            i += 1
            producer.poll(0)
        produced[0] = i

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while acked[0] < 5000:
            assert time.monotonic() < deadline and thread.is_alive(), f"{acked[0]} acked, {failed[:3]}"
            time.sleep(0.005)
        broker.stop(sig)
        broker.start()
        more = acked[0] + 5000
        while acked[0] < more:  # the stream goes on into the restarted broker
            assert time.monotonic() < deadline + TIMEOUT and thread.is_alive(), (
                f"{acked[0]} acked, {failed[:3]}"
            )
            time.sleep(0.005)
    finally:
        stop.set()
        thread.join(TIMEOUT)
    assert producer.flush(TIMEOUT) == 0
    assert not failed, failed[:3]
    n = produced[0]
    expected = {p: list(range(p, n, PARTITIONS)) for p in range(PARTITIONS)}
    assert_exactly_once_in_order(consume_all(broker.bootstrap, "idem", PARTITIONS), expected)


# --- the wire -------------------------------------------------------------------------------


def batch(pid: int, epoch: int, seq: int, count: int = 3, tag: bytes = b"") -> bytes:
    return _core.encode_batch(
        [(b"k%d" % (seq + i), b"v%d" % (seq + i) + tag, [], None) for i in range(count)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


def test_resent_batch_gets_its_original_offset_and_is_not_appended_again(broker):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("w", 1)
        pid, epoch = wire.init_producer_id()
        assert pid >= 0 and epoch == 0
        first = batch(pid, epoch, 0)
        r1 = wire.produce("w", 0, first)
        assert (r1.error_code, r1.base_offset) == (0, 0)
        r2 = wire.produce("w", 0, batch(pid, epoch, 3))
        assert (r2.error_code, r2.base_offset) == (0, 3)
        again = wire.produce("w", 0, first)
        assert (again.error_code, again.base_offset) == (0, 0)
        assert wire.list_offset("w", 0) == 6, "the duplicate was appended"
        last_again = wire.produce("w", 0, batch(pid, epoch, 3))
        assert (last_again.error_code, last_again.base_offset) == (0, 3)
        assert wire.list_offset("w", 0) == 6
        assert [h.record_count for h, _ in wire.fetch_all("w", 0)] == [3, 3]


def test_duplicate_sent_while_the_original_is_still_being_appended_gets_the_same_offset(broker):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("w", 1)
        pid, epoch = wire.init_producer_id()
        req_cls, _ = kafka_wire.codec_classes("Produce")
        b = batch(pid, epoch, 0, count=50)

        def request():
            return req_cls(
                acks=-1,
                timeout_ms=30000,
                topic_data=[
                    req_cls.TopicProduceData(
                        name="w", partition_data=[req_cls.PartitionProduceData(index=0, records=b)]
                    )
                ],
            )

        ids = [wire.send("Produce", 9, request()) for _ in range(4)]  # pipelined: no wait in between
        answers = [wire.receive(i).responses[0].partition_responses[0] for i in ids]
        assert [(a.error_code, a.base_offset) for a in answers] == [(0, 0)] * 4
        assert wire.list_offset("w", 0) == 50


def test_sequence_gap_is_refused_with_out_of_order_sequence_number(broker):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("w", 1)
        pid, epoch = wire.init_producer_id()
        assert wire.produce("w", 0, batch(pid, epoch, 0)).error_code == 0
        gap = wire.produce("w", 0, batch(pid, epoch, 4))  # expected 3
        assert gap.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        overlap = wire.produce("w", 0, batch(pid, epoch, 2))  # neither the next nor a retry
        assert overlap.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert wire.list_offset("w", 0) == 3
        assert wire.produce("w", 0, batch(pid, epoch, 3)).error_code == 0  # the right one still goes in
        assert wire.list_offset("w", 0) == 6


def test_retry_older_than_the_last_five_batches_is_out_of_order(broker):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("w", 1)
        pid, epoch = wire.init_producer_id()
        for k in range(7):
            assert wire.produce("w", 0, batch(pid, epoch, 3 * k)).base_offset == 3 * k
        # Batches 2..6 are remembered (Kafka keeps 5 per producer); batch 1 is not.
        retry = wire.produce("w", 0, batch(pid, epoch, 6))
        assert (retry.error_code, retry.base_offset) == (0, 6)
        assert wire.produce("w", 0, batch(pid, epoch, 3)).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert wire.list_offset("w", 0) == 21


def test_older_producer_epoch_is_refused_with_invalid_producer_epoch(broker):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("w", 1)
        pid, epoch = wire.init_producer_id()
        assert wire.produce("w", 0, batch(pid, epoch, 0)).error_code == 0
        bumped = wire.produce("w", 0, batch(pid, epoch + 1, 0))  # a new epoch starts at sequence 0
        assert (bumped.error_code, bumped.base_offset) == (0, 3)
        fenced = wire.produce("w", 0, batch(pid, epoch, 3))
        assert fenced.error_code == INVALID_PRODUCER_EPOCH
        assert wire.produce("w", 0, batch(pid, epoch + 1, 5)).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert wire.list_offset("w", 0) == 6


def test_new_producer_ids_are_never_reused_across_restarts(broker):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        ids = {wire.init_producer_id()[0] for _ in range(5)}
    broker.kill()
    broker.start()
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        after = {wire.init_producer_id()[0] for _ in range(5)}
    assert len(ids) == len(after) == 5 and not ids & after


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_producer_state_survives_a_restart(broker, sig):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("w", 2)
        pid, epoch = wire.init_producer_id()
        other, _ = wire.init_producer_id()
        for k in range(4):
            assert wire.produce("w", 0, batch(pid, epoch, 3 * k)).error_code == 0
        assert wire.produce("w", 1, batch(pid, epoch + 1, 0)).error_code == 0
        assert wire.produce("w", 0, batch(other, 0, 0, count=2)).base_offset == 12
    broker.stop(sig)
    broker.start()
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        last = wire.produce("w", 0, batch(pid, epoch, 9))  # the last batch, resent
        assert (last.error_code, last.base_offset) == (0, 9)
        older = wire.produce("w", 0, batch(pid, epoch, 3))  # an older one, still remembered
        assert (older.error_code, older.base_offset) == (0, 3)
        assert wire.produce("w", 0, batch(other, 0, 0, count=2)).base_offset == 12
        assert wire.list_offset("w", 0) == 14, "a resent batch was appended again after the restart"
        assert wire.produce("w", 0, batch(pid, epoch, 13)).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert wire.produce("w", 1, batch(pid, epoch, 3)).error_code == INVALID_PRODUCER_EPOCH
        nxt = wire.produce("w", 0, batch(pid, epoch, 12))  # and the sequence goes on
        assert (nxt.error_code, nxt.base_offset) == (0, 14)
        assert wire.list_offset("w", 0) == 17
    # Twice: the state written or rebuilt at the first restart must itself survive the next.
    broker.stop(sig)
    broker.start()
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        again = wire.produce("w", 0, batch(pid, epoch, 12))
        assert (again.error_code, again.base_offset) == (0, 14)
        assert wire.list_offset("w", 0) == 17


def test_two_batches_for_one_partition_are_refused_whole(broker):
    """Kafka allows exactly one batch per partition in a Produce (v3+): INVALID_RECORD, and
    nothing of the request is appended, so the producer may simply send its batches again."""
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("w", 1)
        pid, epoch = wire.init_producer_id()
        first, gap = batch(pid, epoch, 0), batch(pid, epoch, 10)
        refused = wire.produce("w", 0, first + gap)
        assert (refused.error_code, refused.base_offset) == (INVALID_RECORD, -1)
        plain = _core.encode_batch([(None, b"a", [], None)])
        assert wire.produce("w", 0, plain + plain).error_code == INVALID_RECORD
        assert wire.list_offset("w", 0) == 0, "part of a refused request was appended"
        again = wire.produce("w", 0, first)  # the producer state did not keep it either
        assert (again.error_code, again.base_offset) == (0, 0)
        assert wire.produce("w", 0, batch(pid, epoch, 3)).base_offset == 3
        assert wire.list_offset("w", 0) == 6


def describe_producer(wire, topic: str, partition: int, producer_id: int):
    req_cls, _ = kafka_wire.codec_classes("DescribeProducers")
    resp = wire.request(
        "DescribeProducers",
        0,
        req_cls(topics=[req_cls.TopicRequest(name=topic, partition_indexes=[partition])]),
    )
    out = resp.topics[0].partitions[0]
    assert out.error_code == 0
    [state] = [p for p in out.active_producers if p.producer_id == producer_id]
    return state


def test_describe_producers_reports_the_last_batch_the_same_before_and_after_a_restart(broker):
    ts = 1_600_000_000_000
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("w", 1)
        pid, epoch = wire.init_producer_id()
        records = [(b"k", b"v%d" % i, [], ts + i) for i in range(4)]
        b = _core.encode_batch(records, producer_id=pid, producer_epoch=epoch, base_sequence=0)
        assert wire.produce("w", 0, b).error_code == 0
        live = describe_producer(wire, "w", 0, pid)
        assert (live.producer_epoch, live.last_sequence, live.last_timestamp) == (epoch, 3, ts + 3)
    broker.kill()  # no snapshot: the state is rebuilt from the log
    broker.start()
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        replayed = describe_producer(wire, "w", 0, pid)
        assert (replayed.producer_epoch, replayed.last_sequence, replayed.last_timestamp) == (
            epoch,
            3,
            ts + 3,
        )


@pytest.mark.parametrize("flush", ["always", "interval"])
def test_five_pipelined_requests_over_many_partitions_get_no_spurious_out_of_order(broker_factory, flush):
    """As the Java producer sends (idempotent, 5 requests in flight on one connection), each
    request carrying the next batch of every partition, listed in a different order each time
    so that the handlers finish their partitions out of order: every batch is accepted and
    stored once, in sequence."""
    server = broker_factory("--flush", flush)
    partitions, in_flight, rounds = 12, 5, 40
    rng = random.Random(11)
    req_cls, _ = kafka_wire.codec_classes("Produce")
    with kafka_wire.KafkaWire(server.bootstrap) as wire:
        wire.create_topic("pipelined", partitions)
        pid, epoch = wire.init_producer_id()
        sequence = [0] * partitions
        outstanding, errors = [], []

        def request():
            order = rng.sample(range(partitions), partitions)
            data = []
            for p in order:
                data.append(req_cls.PartitionProduceData(index=p, records=batch(pid, epoch, sequence[p], count=2)))
                sequence[p] += 2
            return req_cls(acks=-1, timeout_ms=30000,
                           topic_data=[req_cls.TopicProduceData(name="pipelined", partition_data=data)])

        for _ in range(rounds * in_flight):
            outstanding.append(wire.send("Produce", 9, request()))
            if len(outstanding) == in_flight:
                answer = wire.receive(outstanding.pop(0))
                errors += [p.error_code for p in answer.responses[0].partition_responses if p.error_code]
        for cid in outstanding:
            errors += [p.error_code for p in wire.receive(cid).responses[0].partition_responses if p.error_code]
        assert errors == [], f"{len(errors)} refusals, e.g. {errors[:5]}"
        assert [wire.list_offset("pipelined", p) for p in range(partitions)] == sequence


def test_oversized_idempotent_batch_is_refused_and_leaves_nothing_for_the_garbage_collector(broker_factory):
    """MESSAGE_TOO_LARGE for an idempotent batch; the refusal's traceback must not keep the
    request's buffer exported in a reference cycle (the collector then printed BufferError)."""
    server = broker_factory("--message-max-bytes", "10000")
    with kafka_wire.KafkaWire(server.bootstrap) as wire:
        wire.create_topic("big", 1)
        pid, epoch = wire.init_producer_id()
        for seq in range(0, 60, 3):
            big = _core.encode_batch([(None, b"x" * 20_000, [], None)] * 3, producer_id=pid,
                                     producer_epoch=epoch, base_sequence=seq)
            assert wire.produce("big", 0, big).error_code == MESSAGE_TOO_LARGE
        assert wire.produce("big", 0, batch(pid, epoch, 0)).error_code == 0
    server.stop()   # the fixture then reads the broker's output for lost exceptions
