"""GET /metrics on a real broker: the Prometheus exposition, parsed with prometheus-client's own
parser, counts what the test did (requests, bytes, records, fsyncs, offsets, lag), exactly
where the test controls it (the raw wire client sends one request per call)."""

from __future__ import annotations

import time

import kafka_wire
from admin_http import request
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from pstream import _core


def scrape(broker) -> dict:
    """{(sample name, ((label, value), ...)): value} of one scrape."""
    reply = request(broker.admin_url + "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not exposed; have {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


def total(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def batch(n: int, size: int = 100) -> bytes:
    return _core.encode_batch([(None, b"x" * size, [], None) for _ in range(n)])


def test_metrics_count_requests_bytes_records_fsyncs_and_offsets(broker):
    sent = [batch(5), batch(5), batch(5)]
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("metered", partitions=2)
        for b in sent:
            assert wire.produce("metered", 0, b).error_code == 0
        assert wire.produce("metered", 1, batch(2)).error_code == 0
        before = scrape(broker)
        assert value(before, "pstream_requests_total", api="Produce") == 4
        assert value(before, "pstream_request_errors_total", api="Produce") == 0
        assert value(before, "pstream_request_duration_seconds_count", api="Produce") == 4
        assert value(before, "pstream_request_duration_seconds_bucket", api="Produce", le="+Inf") == 4
        assert 0 < value(before, "pstream_request_duration_seconds_sum", api="Produce") < 30
        assert value(before, "pstream_requests_total", api="CreateTopics") == 1
        assert value(before, "pstream_produce_records_total", topic="metered") == 17
        assert value(before, "pstream_produce_bytes_total", topic="metered") == sum(map(len, sent)) + len(batch(2))
        assert value(before, "pstream_partition_high_watermark", topic="metered", partition="0") == 15
        assert value(before, "pstream_partition_high_watermark", topic="metered", partition="1") == 2
        assert value(before, "pstream_partition_log_start_offset", topic="metered", partition="0") == 0
        assert value(before, "pstream_partition_size_bytes", topic="metered", partition="0") == sum(map(len, sent))
        # flush=always: every acks=all produce waited for an fdatasync of its own (sent one at a time)
        fsyncs = total(before, "pstream_fsync_total")
        assert fsyncs >= 4
        assert total(before, "pstream_fsync_duration_seconds_count") == fsyncs
        assert total(before, "pstream_fsync_duration_seconds_sum") > 0
        assert total(before, "pstream_shard_busy_seconds_total") > 0
        assert total(before, "pstream_shard_queue_depth") == 0
        assert value(before, "pstream_connections") >= 1

        # A partition that does not exist: an error answer, counted as an error of Produce.
        assert wire.produce("metered", 7, batch(1)).error_code != 0
        data = wire.fetch("metered", 0, 0)
        assert data.error_code == 0
        after = scrape(broker)
        assert value(after, "pstream_requests_total", api="Produce") == 5
        assert value(after, "pstream_request_errors_total", api="Produce") == 1
        assert value(after, "pstream_produce_records_total", topic="metered") == 17
        assert value(after, "pstream_fetch_records_total", topic="metered") == 15
        assert value(after, "pstream_fetch_bytes_total", topic="metered") == len(data.records) == sum(map(len, sent))
        assert value(after, "pstream_requests_total", api="Fetch") == 1
        assert total(after, "pstream_fsync_total") >= fsyncs


def test_metrics_expose_group_lag_and_process_figures(broker):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("lagged", partitions=2)
        assert wire.produce("lagged", 0, batch(10)).error_code == 0
        assert wire.produce("lagged", 1, batch(3)).error_code == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "slow-readers",
                         "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition("lagged", 0, 4), TopicPartition("lagged", 1, 3)],
                        asynchronous=False)
    finally:
        consumer.close()
    samples = scrape(broker)
    assert value(samples, "pstream_group_lag", group="slow-readers", topic="lagged", partition="0") == 6
    assert value(samples, "pstream_group_lag", group="slow-readers", topic="lagged", partition="1") == 0
    assert value(samples, "process_resident_memory_bytes") > 10 << 20
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "pstream_uptime_seconds") > 0
    assert value(samples, "pstream_requests_total", api="OffsetCommit") >= 1


def test_metrics_head_and_repeated_scrapes_are_stable(broker):
    first = request(broker.admin_url + "/metrics")
    head = request(broker.admin_url + "/metrics", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) > 0
    time.sleep(0.05)
    again = scrape(broker)
    assert first.status == 200 and ("pstream_connections", ()) in again


def test_metrics_expose_memory_by_owner_write_pools_and_descriptors(broker):
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("pooled", partitions=2)
        assert wire.produce("pooled", 0, batch(50)).error_code == 0
    samples = scrape(broker)
    shards = sorted({dict(labels)["shard"] for (name, labels) in samples if name == "pstream_write_pool_bytes"})
    assert shards and all(value(samples, "pstream_write_pool_bytes", shard=s) == 64 << 20 for s in shards)
    in_use = total(samples, "pstream_write_pool_in_use_bytes")
    assert value(samples, "pstream_memory_bytes", owner="write_pool") == in_use
    assert total(samples, "pstream_write_pool_peak_bytes") > 0     # the produce took a buffer
    for owner in ("indexes", "frames", "requests"):
        assert value(samples, "pstream_memory_bytes", owner=owner) >= 0
    assert ("pstream_memory_bytes", (("owner", "python"),)) not in samples   # tracemalloc is off
    assert 0 < value(samples, "pstream_open_files") < value(samples, "pstream_max_open_files") + 100
    assert value(samples, "pstream_max_open_files") == 600
    assert value(samples, "pstream_python_allocated_blocks") > 0
    assert total(samples, "pstream_write_pool_holders") <= 2
    for name in ("pstream_index_cache_bytes", "pstream_index_cache_loads_total", "pstream_index_cache_evictions_total"):
        assert sorted(dict(labels)["shard"] for (n, labels) in samples if n == name) == shards


def test_metrics_expose_the_log_cleaner(broker_factory):
    broker = broker_factory("--cleaner-backoff-ms", "50")
    with kafka_wire.KafkaWire(broker.bootstrap) as wire:
        wire.create_topic("table", configs={"cleanup.policy": "compact", "segment.bytes": "1024",
                                            "min.cleanable.dirty.ratio": "0.01"})
        wire.create_topic("plain")
        before = scrape(broker)
        assert value(before, "pstream_cleaner_runs_total") == 0
        assert value(before, "pstream_cleaner_last_clean_timestamp_seconds") == 0
        assert ("pstream_cleaner_dirty_ratio", (("partition", "0"), ("topic", "plain"))) not in before
        for i in range(40):   # 4 keys written over and over: most of the log is overwritten
            keyed = _core.encode_batch([(b"k%d" % (i % 4), b"v" * 100, [], None)])
            assert wire.produce("table", 0, keyed).error_code == 0
    started = time.time()

    def cleaned():
        # Between passes. Within one, a group swapped in may hold nothing yet (every key has a
        # newer record in the group still to come) while the first dirty offset has not moved:
        # the dirty ratio then reads 1.0 until the pass ends, as Kafka's would.
        samples = scrape(broker)
        if value(samples, "pstream_cleaner_runs_total") >= 1 and \
                value(samples, "pstream_cleaner_dirty_ratio", topic="table", partition="0") < 1:
            return samples
        return None

    deadline = time.monotonic() + 20
    while (after := cleaned()) is None:
        assert time.monotonic() < deadline, "the cleaner never ran"
        time.sleep(0.1)
    assert value(after, "pstream_cleaner_bytes_read_total") > value(after, "pstream_cleaner_bytes_written_total") > 0
    assert value(after, "pstream_cleaner_records_removed_total") > 0
    assert value(after, "pstream_cleaner_errors_total") == 0
    assert started - 60 < value(after, "pstream_cleaner_last_clean_timestamp_seconds") <= time.time() + 1
    assert value(after, "pstream_cleaner_partition_runs_total", topic="table", partition="0") >= 1
    assert 0 <= value(after, "pstream_cleaner_dirty_ratio", topic="table", partition="0") < 1
    assert value(after, "pstream_cleaner_max_dirty_ratio") < 1
