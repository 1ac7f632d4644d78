"""Disk faults on the real broker: armed fault points (PSTREAM_FAULTS) make a partition's
writes fail as a full or broken disk would. Producers get KAFKA_STORAGE_ERROR at once, what
was acknowledged stays readable, the failure is logged once, a partition whose disk filled
resumes by itself once writes succeed again, and SIGTERM still stops the broker."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import kafka_wire
import pstream

KAFKA_STORAGE_ERROR = 56


def fault_env(spec: str) -> dict:
    return {"PSTREAM_ENABLE_FAULT_INJECTION": "1", "PSTREAM_FAULTS": spec}


def value(i: int) -> bytes:
    """Record i's value; record 5 spans pages, so a failed write of it leaves a gap on disk."""
    return b"v%d" % i * (3000 if i == 5 else 1)


def batch(i: int, pid: int = -1, epoch: int = -1) -> bytes:
    return pstream._core.encode_batch([(b"k%d" % i, value(i), [], None)], producer_id=pid,
                                      producer_epoch=epoch, base_sequence=i if pid >= 0 else -1)


def values(wire, topic: str) -> list[bytes]:
    return [r.value for _h, records in wire.fetch_all(topic, 0) for r in records]


def test_enospc_answers_at_once_keeps_acked_readable_and_resumes(broker_factory):
    # The 6th write of the partition fails with ENOSPC, and the next two retries too: the fourth try
    # (the broker's once-a-second revive) succeeds, as when space is freed.
    b = broker_factory("--storage-min-free-bytes", "0",
                       env=fault_env("pwrite:ENOSPC:/diskfull/0/:after=5:count=3"))
    with kafka_wire.KafkaWire(b.bootstrap) as wire:
        wire.create_topic("diskfull")
        pid, epoch = wire.init_producer_id()
        for i in range(5):
            assert wire.produce("diskfull", 0, batch(i, pid, epoch)).error_code == 0
        t0 = time.monotonic()
        failed = wire.produce("diskfull", 0, batch(5, pid, epoch))
        took = time.monotonic() - t0
        assert failed.error_code == KAFKA_STORAGE_ERROR, failed
        assert took < 10, f"the error came after {took:.1f}s: a timeout, not an answer"
        assert wire.produce("diskfull", 0, batch(99)).error_code == KAFKA_STORAGE_ERROR   # refused at once too
        assert values(wire, "diskfull") == [b"v%d" % i for i in range(5)]    # every acked record
        ready = json.load(urllib.request.urlopen(b.admin_url + "/v1/status/ready"))
        assert ready["status"] == "degraded" and ready["storage"]["failed_partitions"][0]["topic"] == "diskfull"

        deadline = time.monotonic() + 30
        while True:   # the producer's retry of sequence 5: refused until the partition resumes
            retry = wire.produce("diskfull", 0, batch(5, pid, epoch))
            if retry.error_code == 0 or time.monotonic() > deadline:
                break
            assert retry.error_code == KAFKA_STORAGE_ERROR
            time.sleep(0.2)
        # The failed batch was written when the partition resumed: its retry is a duplicate.
        assert retry.error_code == 0 and retry.base_offset == 5, retry
        assert wire.produce("diskfull", 0, batch(6, pid, epoch)).base_offset == 6
        assert values(wire, "diskfull") == [value(i) for i in range(7)]
        ready = json.load(urllib.request.urlopen(b.admin_url + "/v1/status/ready"))
        assert ready["status"] == "ready"
    assert b.stop() == 0
    out = b.output()
    assert out.count("No space left on device (errno 28)") == 1, out
    assert "diskfull/0/00000000000000000000.log failed" in out
    b.start()   # everything is on disk
    with kafka_wire.KafkaWire(b.bootstrap) as wire:
        assert values(wire, "diskfull") == [value(i) for i in range(7)]


def test_sigterm_stops_the_broker_after_a_storage_error(broker_factory):
    b = broker_factory(env=fault_env("fdatasync:EIO:/brokendisk/0/:after=2:count=-1"))
    with kafka_wire.KafkaWire(b.bootstrap) as wire:
        wire.create_topic("brokendisk")
        codes = [wire.produce("brokendisk", 0, batch(i)).error_code for i in range(4)]
        assert KAFKA_STORAGE_ERROR in codes, codes
        acked = codes.index(KAFKA_STORAGE_ERROR)
        assert values(wire, "brokendisk") == [b"v%d" % i for i in range(acked)]
    code = b.stop(signal.SIGTERM, timeout=20)   # raises if the broker ignores it
    assert code == 1, b.output()
    assert "closing the log failed" in b.output()
    b.start()
    with kafka_wire.KafkaWire(b.bootstrap) as wire:
        got = values(wire, "brokendisk")
        assert got[:acked] == [b"v%d" % i for i in range(acked)]


def test_produce_is_refused_below_storage_min_free_bytes(broker_factory):
    b = broker_factory("--storage-min-free-bytes", str(1 << 60))   # more than any disk here has
    with kafka_wire.KafkaWire(b.bootstrap) as wire:
        wire.create_topic("lowspace")
        refused = wire.produce("lowspace", 0, batch(0))
        assert refused.error_code == KAFKA_STORAGE_ERROR
        assert "storage_min_free_bytes" in refused.error_message
        assert wire.fetch("lowspace", 0, 0).error_code == 0            # reads go on
    ready = json.load(urllib.request.urlopen(b.admin_url + "/v1/status/ready"))
    assert ready["status"] == "degraded" and ready["storage"]["degraded"] is True
    metrics = urllib.request.urlopen(b.admin_url + "/metrics").read().decode()
    assert "pstream_storage_degraded 1.0" in metrics
    assert f"pstream_storage_min_free_bytes {float(1 << 60)!r}" in metrics
