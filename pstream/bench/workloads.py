"""The workloads, driven through librdkafka (confluent-kafka) so they measure the broker.

Every loop is bounded in count and in time. Values are `seq (8 bytes, big-endian) + pad`,
so a consumer can check what it got: how many, no duplicate, no gap, and an order-free
checksum (the sum of the values' CRC-32s) against the one computed for what was sent.
"""

from __future__ import annotations

import json
import multiprocessing
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass

from pstream.client import KafkaClient

_seq = struct.Struct(">q")


def _confluent():
    try:
        import confluent_kafka
    except ImportError:
        raise RuntimeError("the load tool drives librdkafka: pip install confluent-kafka (the bench extra)") from None
    return confluent_kafka


@dataclass
class ProduceSpec:
    size: int = 1024
    partitions: int = 1
    compression: str = "none"
    messages: int = 500_000
    producers: int = 1
    transaction_records: int = 0   # > 0: a transactional producer committing every this many

    @property
    def name(self) -> str:
        size = f"{self.size // 1024}KiB" if self.size % 1024 == 0 else f"{self.size}B"
        many = f" x{self.producers} producers" if self.producers > 1 else ""
        txn = f" txn{self.transaction_records}" if self.transaction_records else ""
        return f"produce {size} {self.partitions}p {self.compression}{many}{txn}"


def payload_pad(size: int) -> bytes:
    return bytes((i * 31 + 7) & 0xFF for i in range(max(size - 8, 0)))


def expected_checksum(messages: int, size: int) -> int:
    pad = payload_pad(size)
    return sum(zlib.crc32(_seq.pack(i) + pad) for i in range(messages))


def create_topic(bootstrap: str, partitions: int, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with KafkaClient(bootstrap, client_id="pstream-bench") as client:
        client.create_topic(name, partitions)
        deadline = time.monotonic() + 30
        while True:   # until every partition has a leader
            info = client.metadata([name]).topics.get(name)
            if info and not info.error_code and len(info.partitions) == partitions and all(
                    p.leader >= 0 for p in info.partitions):
                return name
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} has no leaders after 30 s")
            time.sleep(0.05)


def producer_config(bootstrap: str, compression: str) -> dict:
    return {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20,
            "compression.type": compression, "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1 << 20, "delivery.report.only.error": True,
            "enable.idempotence": False}


def produce(bootstrap: str, spec: ProduceSpec, max_seconds: float = 120.0) -> dict:
    """Sends spec.messages values to a new topic; returns the figures and the topic."""
    ck = _confluent()
    topic = create_topic(bootstrap, spec.partitions, "bench")
    pad = payload_pad(spec.size)
    errors: list[str] = []
    share = [spec.messages // spec.producers + (1 if i < spec.messages % spec.producers else 0)
             for i in range(spec.producers)]
    firsts = [sum(share[:i]) for i in range(spec.producers)]
    sent = [0] * spec.producers
    deadline = time.monotonic() + max_seconds

    def on_error(err, msg) -> None:
        if err is not None and len(errors) < 10:
            errors.append(str(err))

    def run(index: int) -> None:
        config = {**producer_config(bootstrap, spec.compression), "on_delivery": on_error}
        every = spec.transaction_records
        if every:
            config.update({"transactional.id": f"bench-{topic}-{index}", "enable.idempotence": True})
        p = ck.Producer(config)
        if every:
            p.init_transactions(30)
            p.begin_transaction()
        seq, end = firsts[index], firsts[index] + share[index]
        while seq < end and time.monotonic() < deadline:
            try:
                p.produce(topic, _seq.pack(seq) + pad)
            except BufferError:
                p.poll(0.005)
                continue
            seq += 1
            if every and (seq - firsts[index]) % every == 0:
                p.commit_transaction(max(deadline - time.monotonic(), 1))   # flushes, then commits
                if seq < end:
                    p.begin_transaction()
            elif seq & 0x3FF == 0:
                p.poll(0)
        if every and (seq - firsts[index]) % every:
            p.commit_transaction(max(deadline - time.monotonic(), 1))
        left = p.flush(max(deadline - time.monotonic(), 1))
        if left:
            errors.append(f"{left} messages not delivered before the deadline")
        sent[index] = seq - firsts[index]

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(spec.producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    messages = sum(sent)
    nbytes = messages * spec.size
    return {"workload": spec.name, "topic": topic, "messages": messages, "bytes": nbytes,
            "seconds": round(seconds, 3), "mb_per_s": round(nbytes / seconds / 1e6, 1),
            "msgs_per_s": round(messages / seconds), "errors": errors, "complete": messages == spec.messages}


def consume(bootstrap: str, topic: str, partitions: int, messages: int, size: int, max_seconds: float = 120.0,
            isolation: str = "read_committed") -> dict:
    """Reads the topic from the start and checks every value (see the module doc), with
    librdkafka's default isolation level (read_committed) unless told otherwise."""
    ck = _confluent()
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                            "enable.auto.commit": False,   # librdkafka's default fetch sizes
                            "isolation.level": isolation})
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(partitions)])
    seen = bytearray(messages)   # indexing a bytearray costs a fraction of a numpy scalar's
    got = duplicates = foreign = 0
    checksum = 0
    crc32, unpack = zlib.crc32, _seq.unpack_from
    start = None   # the clock starts at the first message: connecting is not throughput
    deadline = time.monotonic() + max_seconds
    try:
        while got < messages and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=10_000, timeout=0.5)
            if start is None and batch:
                start = time.perf_counter()
            for m in batch:
                if m.error():
                    continue
                value = m.value()
                seq, = unpack(value)
                if not 0 <= seq < messages or len(value) != size:
                    foreign += 1
                    continue
                if seen[seq]:
                    duplicates += 1
                    continue
                seen[seq] = 1
                got += 1
                checksum += crc32(value)
        seconds = time.perf_counter() - (start or time.perf_counter())
    finally:
        consumer.close()
    missing = messages - got
    ok_sum = checksum == expected_checksum(messages, size) if missing == 0 else False
    nbytes = got * size
    return {"workload": f"consume {size // 1024 if size >= 1024 else size}{'KiB' if size >= 1024 else 'B'} "
                        f"{partitions}p{'' if isolation == 'read_committed' else ' ' + isolation}", "messages": got, "bytes": nbytes, "seconds": round(seconds, 3),
            "mb_per_s": round(nbytes / max(seconds, 1e-9) / 1e6, 1), "msgs_per_s": round(got / max(seconds, 1e-9)),
            "verified": missing == 0 and duplicates == 0 and foreign == 0 and ok_sum,
            "missing": missing, "duplicates": duplicates, "foreign": foreign, "checksum_ok": ok_sum}


def _sleep_until(due: float, step: float, wait=time.sleep) -> None:
    """Waits until time.perf_counter() reaches `due`, in steps of at most `step` seconds (a
    fixed-rate sender keeps its schedule; sleeping the whole delay at once overshoots it).
    `wait` may be a producer's poll, which serves delivery reports as they come meanwhile."""
    while (delay := due - time.perf_counter()) > 0:
        wait(min(delay, step))


def _latency_consumer(bootstrap: str, topic: str, total: int, warm: int, max_seconds: float, ready, out) -> None:
    """The latency workload's consumer, in a process of its own: in the producer's process it
    would wait for the GIL (5 ms switch interval) and measure Python, not the broker.
    time.perf_counter_ns is CLOCK_MONOTONIC, shared by both processes on Linux."""
    ck = _confluent()
    from hdrh.histogram import HdrHistogram

    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"latency-{uuid.uuid4().hex[:8]}",
                            "enable.auto.commit": False})
    consumer.assign([ck.TopicPartition(topic, 0, 0)])
    hist = HdrHistogram(1, 60_000_000, 3)
    consumer.poll(0.5)   # connected, and the first fetch is waiting at the broker
    ready.set()
    received, end = 0, time.monotonic() + max_seconds
    while received < total and time.monotonic() < end:
        m = consumer.poll(0.1)
        if m is not None and not m.error():
            now = time.perf_counter_ns()
            sent, index = struct.unpack_from(">qq", m.value())
            if index >= warm:
                hist.record_value(max((now - sent) // 1000, 1))
            received += 1
    consumer.close()
    out.put((received, hist.encode()))


def latency(bootstrap: str, rate: int = 5000, size: int = 1024, seconds: float = 20.0, warmup: float = 2.0,
            transaction_records: int = 0) -> dict:
    """End-to-end latency at a fixed rate: produce (acks=all, librdkafka's default linger) and
    consume with librdkafka's default consumer settings (read_committed) on the same host, in
    another process; each value carries its send time. p50..max from an HDR histogram (1 µs, 3
    significant digits). The first `warmup` seconds are sent but not counted. With
    transaction_records, a transactional producer commits every that many records: the latency
    of a committed record, its wait for the commit included."""
    ck = _confluent()
    from hdrh.histogram import HdrHistogram

    topic = create_topic(bootstrap, 1, "latency")
    warm, total = int(rate * warmup), int(rate * (seconds + warmup))
    spawn = multiprocessing.get_context("spawn")   # no fork of a process running librdkafka threads
    ready, out = spawn.Event(), spawn.Queue()
    reader = spawn.Process(target=_latency_consumer, args=(bootstrap, topic, total, warm, seconds + warmup + 30,
                                                           ready, out), daemon=True)
    reader.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the latency consumer did not start within 60 s")
        config = {"bootstrap.servers": bootstrap, "acks": "all"}
        if transaction_records:
            config["transactional.id"] = f"latency-{topic}"
        producer = ck.Producer(config)
        if transaction_records:
            producer.init_transactions(30)
            producer.begin_transaction()
        pad = b"x" * max(size - 16, 0)
        start = time.perf_counter()
        for i in range(total):
            _sleep_until(start + i / rate, 0.001)
            producer.produce(topic, struct.pack(">qq", time.perf_counter_ns(), i) + pad)
            producer.poll(0)
            if transaction_records and (i + 1) % transaction_records == 0:
                producer.commit_transaction(30)
                producer.begin_transaction()
        if transaction_records:
            producer.commit_transaction(30)
        producer.flush(30)
        received, encoded = out.get(timeout=seconds + warmup + 60)
    finally:
        reader.join(5)
        if reader.is_alive():
            reader.kill()
    hist = HdrHistogram.decode(encoded)
    pct = {f"p{str(q).replace('.0', '')}_ms": round(hist.get_value_at_percentile(q) / 1000, 2)
           for q in (50.0, 90.0, 99.0, 99.9)}
    txn = f" txn{transaction_records}" if transaction_records else ""
    return {"workload": f"latency {rate}/s {size}B{txn}", "messages": hist.get_total_count(), **pct,
            "max_ms": round(hist.get_max_value() / 1000, 2), "complete": received == total}


def group_join(bootstrap: str, max_seconds: float = 60.0) -> dict:
    """Seconds from subscribe to the first assignment of a new consumer group."""
    ck = _confluent()
    topic = create_topic(bootstrap, 1, "join")
    assigned = threading.Event()
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"join-{uuid.uuid4().hex[:8]}",
                            "enable.auto.commit": False})
    start = time.perf_counter()
    consumer.subscribe([topic], on_assign=lambda c, parts: assigned.set())
    deadline = time.monotonic() + max_seconds
    while not assigned.is_set() and time.monotonic() < deadline:
        consumer.poll(0.05)
    seconds = time.perf_counter() - start
    consumer.close()
    return {"workload": "first group join", "seconds": round(seconds, 3), "complete": assigned.is_set()}


def _request_counts(stats_json: str, kind: str) -> int:
    """Requests of `kind` ("Produce", "Fetch") this librdkafka client sent to the brokers, from
    its statistics (the `req` counters of every broker connection)."""
    stats = json.loads(stats_json)
    return sum(b.get("req", {}).get(kind, 0) for name, b in stats.get("brokers", {}).items()
               if not name.startswith("GroupCoordinator"))


class _LastStats:
    def __init__(self):
        self.json = "{}"

    def __call__(self, stats_json: str) -> None:
        self.json = stats_json


def small_produce_requests(bootstrap: str, rate: int = 20_000, size: int = 1024, seconds: float = 10.0,
                           warmup: float = 1.0, tail: bool = False) -> dict:
    """One-record produce requests at a fixed rate (acks=all, linger.ms=0: librdkafka sends each
    message as it comes unless requests are already in flight). Latency is the producer's:
    from produce() to the delivery report. `requests` is what librdkafka counted, so the broker's
    CPU divided by it is the cost of one small request (cpu_us_per_request). Each latency is
    librdkafka's (Message.latency: produce() to the report's arrival), so the time a report
    waits for the next poll() is not counted. With `tail`, a
    consumer in another process reads the topic as it is written (librdkafka's defaults: each
    Fetch returns what arrived, typically one batch), and `fetch_requests` is what it sent."""
    ck = _confluent()
    from hdrh.histogram import HdrHistogram

    topic = create_topic(bootstrap, 1, "requests")
    reader = None
    if tail:
        spawn = multiprocessing.get_context("spawn")   # no fork of a process running librdkafka threads
        ready, out = spawn.Event(), spawn.Queue()
        reader = spawn.Process(target=_tail_consumer, args=(bootstrap, topic, int(rate * (seconds + warmup)),
                                                            seconds + warmup + 30, ready, out), daemon=True)
        reader.start()
        if not ready.wait(60):
            reader.kill()
            raise RuntimeError("the tailing consumer did not start within 60 s")
    stats = _LastStats()
    producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                            "statistics.interval.ms": 200, "stats_cb": stats})
    producer.list_topics(topic, 10)
    hist = HdrHistogram(1, 60_000_000, 3)
    warm, total = int(rate * warmup), int(rate * (seconds + warmup))
    errors = []
    counted_from = [0]

    def delivered(err, msg, index: int) -> None:
        if err is not None:
            errors.append(str(err))
        elif index >= warm:   # librdkafka's own produce()-to-report time, not when poll() served it
            hist.record_value(max(int(msg.latency() * 1e6), 1))

    pad = b"x" * max(size - 16, 0)
    start = time.perf_counter()
    for i in range(total):
        _sleep_until(start + i / rate, 0.0005)
        if i == warm:
            _sleep_until(time.perf_counter() + 0.3, 0.05, producer.poll)   # a fresh stats document
            counted_from[0] = _request_counts(stats.json, "Produce")      # requests count from here
            start = time.perf_counter() - i / rate
        producer.produce(topic, pad + struct.pack(">qq", time.perf_counter_ns(), i),
                         on_delivery=lambda err, msg, n=i: delivered(err, msg, n))
        producer.poll(0)
    producer.flush(30)
    time.sleep(0.3)
    producer.poll(0.1)
    requests = _request_counts(stats.json, "Produce") - counted_from[0]
    fetched = {}
    if reader is not None:
        try:
            received, fetches = out.get(timeout=seconds + warmup + 60)
        finally:
            reader.join(5)
            if reader.is_alive():
                reader.kill()
        fetched = {"fetch_requests": fetches, "fetched_messages": received}
        if received < total:
            errors.append(f"the tailing consumer got {received} of {total} records")
    pct = {f"p{str(q).replace('.0', '')}_ms": round(hist.get_value_at_percentile(q) / 1000, 2)
           for q in (50.0, 90.0, 99.0, 99.9)}
    label = " with a tailing consumer" if tail else ""
    return {"workload": f"small produce requests {rate}/s {size}B{label}", "messages": hist.get_total_count(),
            "requests": requests, "topic": topic, **pct, "max_ms": round(hist.get_max_value() / 1000, 2),
            **fetched, "complete": not errors and hist.get_total_count() == total - warm, "errors": errors[:3]}


def request_capacity(bootstrap: str, clients: int = 8, seconds: float = 10.0, size: int = 1024,
                     warmup: float = 1.0) -> dict:
    """How many small requests the broker answers when it is the bottleneck: `clients` producer
    processes, each on a partition of its own (which spreads them over the cores of a
    `--cores N` broker), each sending one-record produce requests (1 KiB, acks=all) in a closed
    loop, the next as soon as the last is acknowledged. `requests` is the acknowledged total;
    latency is librdkafka's per record."""
    topic = create_topic(bootstrap, clients, "capacity")
    spawn = multiprocessing.get_context("spawn")   # no fork of a process running librdkafka threads
    go, out = spawn.Event(), spawn.Queue()
    procs = [spawn.Process(target=_closed_loop_producer, args=(bootstrap, topic, k, size, warmup, seconds, go, out),
                           daemon=True) for k in range(clients)]
    for proc in procs:
        proc.start()
    go.set()
    done = [out.get(timeout=seconds + warmup + 60) for _ in procs]
    for proc in procs:
        proc.join(5)
    latencies = sorted(lat for _all, _count, lats, _errors in done for lat in lats)
    measured = sum(count for _all, count, _lats, _errors in done)
    requests = sum(acked for acked, _count, _lats, _errors in done)   # the broker's CPU covers all of them
    errors = [e for _a, _c, _l, errs in done for e in errs]
    pct = {f"p{str(q).replace('.0', '')}_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * q / 100))]
                                                    * 1000, 2) if latencies else None for q in (50.0, 90.0, 99.0, 99.9)}
    pct["max_ms"] = round(latencies[-1] * 1000, 2) if latencies else None
    return {"workload": f"request capacity {clients} clients {size}B", "messages": requests, "requests": requests,
            "seconds": seconds, "requests_per_s": round(measured / seconds), "msgs_per_s": round(measured / seconds),
            "topic": topic, **pct,
            "complete": not errors, "errors": errors[:3]}


def _closed_loop_producer(bootstrap: str, topic: str, partition: int, size: int, warmup: float, seconds: float,
                          go, out) -> None:
    """request_capacity's client: one request in flight, always; sends (requests acknowledged,
    of them in the measured `seconds` after `warmup`, their latencies)."""
    ck = _confluent()
    producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                            "max.in.flight.requests.per.connection": 1})
    producer.list_topics(topic, 10)
    go.wait(60)
    value = b"x" * size
    latencies, errors, acked = [], [], [0]

    def delivered(err, msg) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            acked[0] += 1
            latencies.append(msg.latency())

    start = time.monotonic()
    measured_from, end = start + warmup, start + warmup + seconds
    counted = 0
    while (now := time.monotonic()) < end:
        before = acked[0]
        producer.produce(topic, value, partition=partition, on_delivery=delivered)
        while acked[0] == before and not errors:
            producer.poll(0.05)
        if now < measured_from:
            latencies.clear()
        else:
            counted += 1
    producer.flush(10)
    out.put((acked[0], counted, latencies, errors[:3]))


def _tail_consumer(bootstrap: str, topic: str, total: int, max_seconds: float, ready, out) -> None:
    """small_produce_requests' tailing consumer, in a process of its own: (records received,
    Fetch requests sent) go back through `out`."""
    ck = _confluent()
    stats = _LastStats()
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"tail-{uuid.uuid4().hex[:8]}",
                            "enable.auto.commit": False, "statistics.interval.ms": 200, "stats_cb": stats})
    consumer.assign([ck.TopicPartition(topic, 0, 0)])
    consumer.poll(0.5)
    ready.set()
    received, end = 0, time.monotonic() + max_seconds
    while received < total and time.monotonic() < end:
        received += sum(1 for m in consumer.consume(1000, 0.1) if not m.error())
    time.sleep(0.3)
    consumer.poll(0.1)
    out.put((received, _request_counts(stats.json, "Fetch")))
    consumer.close()


def small_fetch_requests(bootstrap: str, topic: str, messages: int, max_seconds: float = 60.0) -> dict:
    """Reads a topic from its start (a consumer far behind: reads from disk, on reader threads),
    written one record per batch, with fetches of one batch each
    (max.partition.fetch.bytes=1: a fetch returns the first batch, whatever its size), so the
    broker answers one small Fetch per record; `requests` as librdkafka counted them."""
    ck = _confluent()
    stats = _LastStats()
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"requests-{uuid.uuid4().hex[:8]}",
                            "enable.auto.commit": False, "max.partition.fetch.bytes": 1,
                            "fetch.wait.max.ms": 100, "statistics.interval.ms": 200, "stats_cb": stats})
    consumer.assign([ck.TopicPartition(topic, 0, 0)])
    received, start = 0, time.perf_counter()
    end = time.monotonic() + max_seconds
    while received < messages and time.monotonic() < end:
        batch = consumer.consume(1000, 0.2)
        received += sum(1 for m in batch if not m.error())
    seconds = time.perf_counter() - start
    time.sleep(0.3)
    consumer.poll(0.1)
    requests = _request_counts(stats.json, "Fetch")
    consumer.close()
    return {"workload": "small fetch requests from the start", "messages": received, "requests": requests,
            "seconds": round(seconds, 3), "requests_per_s": round(requests / max(seconds, 1e-9)),
            "complete": received >= messages}
