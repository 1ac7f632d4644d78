"""What the broker acknowledged survives it stopping: a clean restart (SIGTERM), a crash
(SIGKILL) right after the producer's flush() returned, a crash in the middle of a stream of
produces, and a crash while idle. With acks=all and the default flush policy ("always") a
produce is answered only after the fdatasync that covers it, so every acknowledged message
must be there after the restart, at the offset its acknowledgement gave; unacknowledged ones
may or may not be.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_wire  # noqa: E402  (tests/integration is on sys.path: see conftest.py)

TIMEOUT = 60.0
FILLER = b"-durable-" * 40


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=30
    )
    futures[name].result(timeout=30)


def new_producer(bootstrap: str, **conf) -> Producer:
    return Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2, "compression.type": "zstd", **conf}
    )


def value_of(i: int) -> bytes:
    return b"message %08d " % i + FILLER


def produce_all(bootstrap: str, topic: str, partitions: int, first: int, count: int) -> dict:
    """Produces values first..first+count-1 round-robin over the partitions; returns
    {(partition, offset): value} as the delivery reports gave them (all must succeed)."""
    producer = new_producer(bootstrap)
    acked: dict = {}
    failed: list = []

    def delivered(err, msg):
        if err is None:
            acked[(msg.partition(), msg.offset())] = msg.value()
        else:
            failed.append(err)

    for i in range(first, first + count):
        producer.produce(topic, value_of(i), key=b"%d" % i, partition=i % partitions, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0
    assert not failed, failed[:3]
    assert len(acked) == count
    return acked


def consume_all(bootstrap: str, topic: str, partitions: int) -> dict:
    """Every message in the topic, {(partition, offset): value}, read to the high watermarks
    as they are now; asserts the offsets have no gaps."""
    ends = high_watermarks(bootstrap, topic, partitions)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "pstream-tests",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    out: dict = {}
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + TIMEOUT
        while len(out) < sum(ends):
            assert time.monotonic() < deadline, f"consumed {len(out)} of {sum(ends)} messages in {TIMEOUT}s"
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    continue
                assert (m.partition(), m.offset()) not in out, "the same offset delivered twice"
                out[(m.partition(), m.offset())] = m.value()
    finally:
        consumer.close()
    for p in range(partitions):
        assert sorted(o for q, o in out if q == p) == list(range(ends[p])), (
            f"partition {p}: offsets with gaps"
        )
    return out


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> list[int]:
    with kafka_wire.KafkaWire(bootstrap) as wire:
        return [wire.list_offset(topic, p, kafka_wire.LATEST) for p in range(partitions)]


def assert_all_acked_present(acked: dict, stored: dict) -> None:
    missing = [k for k in acked if k not in stored]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
    wrong = [k for k, v in acked.items() if stored[k] != v]
    assert not wrong, f"{len(wrong)} acknowledged offsets hold other data, e.g. {sorted(wrong)[:5]}"


@pytest.mark.parametrize(
    "flags",
    [(), ("--flush", "interval", "--flush-ms", "200"), ("--flush", "bytes")],
    ids=["flush-always", "flush-interval", "flush-bytes"],
)
def test_every_acknowledged_message_survives_a_clean_restart(broker_factory, flags):
    """Whatever the flush policy, a clean shutdown syncs everything it acknowledged."""
    broker = broker_factory(*flags)
    create_topic(broker.bootstrap, "durable", 3)
    acked = produce_all(broker.bootstrap, "durable", 3, 0, 3000)
    broker.restart()
    stored = consume_all(broker.bootstrap, "durable", 3)
    assert stored == acked
    assert high_watermarks(broker.bootstrap, "durable", 3) == [1000, 1000, 1000]
    # The log goes on where it was: new appends get the next offsets.
    more = produce_all(broker.bootstrap, "durable", 3, 3000, 30)
    assert sorted(o for _, o in more) == sorted([o for o in range(1000, 1010)] * 3)
    assert consume_all(broker.bootstrap, "durable", 3) == {**acked, **more}


def test_every_acknowledged_message_survives_sigkill_right_after_flush(broker):
    create_topic(broker.bootstrap, "crash", 4)
    acked = produce_all(broker.bootstrap, "crash", 4, 0, 4000)  # returns when flush() did
    broker.kill()
    broker.start()
    stored = consume_all(broker.bootstrap, "crash", 4)
    assert_all_acked_present(acked, stored)
    assert stored == acked, "the log holds messages that were never produced"
    assert high_watermarks(broker.bootstrap, "crash", 4) == [1000] * 4


class BackgroundProducer:
    """Produces value_of(first), value_of(first + 1), ... as fast as librdkafka takes them,
    in a thread, until stopped; remembers what each delivery report said."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, first: int):
        self.producer = new_producer(
            bootstrap, **{"message.timeout.ms": 20000, "linger.ms": 1, "queue.buffering.max.messages": 20000}
        )
        self.topic, self.partitions, self.next = topic, partitions, first
        self.acked: dict = {}
        self.failed = 0
        self.sent: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def _delivered(self, err, msg) -> None:
        if err is None:
            self.acked[(msg.partition(), msg.offset())] = msg.value()
        else:
            self.failed += 1

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                v = value_of(self.next)
                try:
                    self.producer.produce(
                        self.topic, v, partition=self.next % self.partitions, on_delivery=self._delivered
                    )
                except BufferError:
                    self.producer.poll(0.01)
                    continue
                self.sent.add(v)
                self.next += 1
                self.producer.poll(0)
        except BaseException as exc:  # reported by stop()
            self._error = exc

    def start(self) -> BackgroundProducer:
        self._thread.start()
        return self

    def wait_acked(self, count: int, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, (
                f"only {len(self.acked)} of {count} acknowledged in {timeout}s"
            )
            assert self._thread.is_alive(), f"the producer thread died: {self._error!r}"
            time.sleep(0.005)

    def stop(self) -> None:
        """Stops producing and drops what is not yet acknowledged (the broker is gone)."""
        self._stop.set()
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()
        if self._error is not None:
            raise self._error
        self.producer.purge(in_queue=True, in_flight=True)
        self.producer.flush(10)
        self.producer.close()


def test_every_acknowledged_message_survives_sigkill_in_the_middle_of_a_stream(broker):
    """Three crash cycles on one topic: each SIGKILLs the broker while a producer streams into
    it, restarts it, checks every acknowledged message so far, and streams on."""
    parts = 4
    create_topic(broker.bootstrap, "stream", parts)
    acked: dict = {}
    sent: set[bytes] = set()
    first = 0
    for cycle in range(3):
        stream = BackgroundProducer(broker.bootstrap, "stream", parts, first).start()
        stream.wait_acked(3000)
        broker.kill()  # mid-stream: produces in flight, some written but not yet answered
        stream.stop()
        acked.update(stream.acked)
        sent |= stream.sent
        first = stream.next
        broker.start()
        stored = consume_all(broker.bootstrap, "stream", parts)
        assert_all_acked_present(acked, stored)
        unknown = [k for k, v in stored.items() if v not in sent]
        assert not unknown, f"cycle {cycle}: offsets {unknown[:5]} hold data never produced"
        ends = high_watermarks(broker.bootstrap, "stream", parts)
        for p in range(parts):
            assert ends[p] > max((o for q, o in acked if q == p), default=-1)
        print(
            f"cycle {cycle}: {len(stream.acked)} acknowledged this cycle, {stream.failed} not; "
            f"{len(stored)} in the log after the restart"
        )


def test_sigkill_while_idle_recovers_to_the_acknowledged_high_watermark(broker):
    create_topic(broker.bootstrap, "idle", 3)
    acked = produce_all(broker.bootstrap, "idle", 3, 0, 1500)
    # Idle: every produce answered, and a consumer has read everything back.
    assert consume_all(broker.bootstrap, "idle", 3) == acked
    broker.kill()
    broker.start()
    assert high_watermarks(broker.bootstrap, "idle", 3) == [500, 500, 500]
    assert consume_all(broker.bootstrap, "idle", 3) == acked
    more = produce_all(broker.bootstrap, "idle", 3, 1500, 3)
    assert sorted(more) == [(0, 500), (1, 500), (2, 500)]
