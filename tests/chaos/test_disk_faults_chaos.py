"""Disk faults under load: armed fault points fire while a real producer (confluent-kafka,
idempotent, acks=all) writes, then the broker is killed with SIGKILL and restarted: every
acknowledged record is there. And a real full filesystem (a size-limited tmpfs, mounted only
as root): ENOSPC answered with KAFKA_STORAGE_ERROR at once, acked records readable, the
partition resuming by itself when space is freed, the free-space threshold refusing Produce."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest



import kafka_wire  # noqa: E402
from broker_process import BrokerProcess  # noqa: E402
import pstream  # noqa: E402

KAFKA_STORAGE_ERROR = 56


def fetch_values(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    with kafka_wire.KafkaWire(bootstrap) as wire:
        return [r.value for p in range(partitions) for _h, recs in wire.fetch_all(topic, p) for r in recs]


def produce_under_faults(b: BrokerProcess, topic: str, count: int, timeout_ms: int) -> set[bytes]:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    acked: set[bytes] = set()

    def delivered(err, msg):
        if err is None:
            acked.add(msg.value())

    # Small batches: many writes, so the fault points (armed after N calls) fire mid-run.
    producer = confluent_kafka.Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True,
                                         "linger.ms": 2, "batch.num.messages": 10, "retry.backoff.ms": 50,
                                         "message.timeout.ms": timeout_ms})
    for i in range(count):
        producer.produce(topic, value=b"m%06d" % i, partition=i % 2, on_delivery=delivered)
        producer.poll(0)
    producer.flush(timeout_ms / 1000 + 30)
    return acked


def broker_log(b: BrokerProcess) -> str:
    with open(b.log_path, errors="replace") as f:
        return f.read()


# ENOSPC on both partitions (revived by the broker once writes succeed); the long version adds
# an EIO, which keeps the partition failed until the restart after the kill.
SHORT_FAULTS = "pwrite:ENOSPC:/chaos/0/:after=5:count=3; fdatasync:ENOSPC:/chaos/1/:after=8:count=2"
LONG_FAULTS = SHORT_FAULTS + "; pwrite:EIO:/chaos/0/:after=40:count=1"


@pytest.mark.parametrize("rounds, faults", [pytest.param(1, SHORT_FAULTS, id="short"),
                                            pytest.param(4, LONG_FAULTS, id="long", marks=pytest.mark.slow)])
def test_nothing_acked_is_lost_when_fault_points_fire_under_load_and_the_broker_is_killed(broker_factory,
                                                                                        rounds, faults):
    b = broker_factory("--storage-min-free-bytes", "0", "--segment-bytes", str(256 << 10),
                       env={"PSTREAM_ENABLE_FAULT_INJECTION": "1", "PSTREAM_FAULTS": faults})
    with kafka_wire.KafkaWire(b.bootstrap) as wire:
        wire.create_topic("chaos", partitions=2)
    acked: set[bytes] = set()
    for _ in range(rounds):
        acked |= produce_under_faults(b, "chaos", 3000, 30000 if rounds == 1 else 8000)
        b.kill()
        b.start()   # armed again from PSTREAM_FAULTS: every round fails anew
    assert acked, "no record was acknowledged"
    stored = fetch_values(b.bootstrap, "chaos", 2)
    assert acked <= set(stored), f"{len(acked - set(stored))} acknowledged records are missing"
    assert "No space left on device (errno 28)" in broker_log(b)
    assert "the partition takes appends again" in broker_log(b)


# --- a real small filesystem -----------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 12 MiB tmpfs, mounted for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_filesystem_answers_storage_error_and_resumes_when_space_is_freed(small_fs):
    ballast = small_fs / "ballast"
    ballast.write_bytes(b"\0" * (6 << 20))      # freed later, as an operator would
    b = BrokerProcess(str(small_fs / "data"), "--storage-min-free-bytes", "0",
                      "--segment-bytes", str(1 << 20)).start()
    try:
        with kafka_wire.KafkaWire(b.bootstrap) as wire:
            wire.create_topic("full")
            value = b"x" * 60_000
            acked, took = 0, None
            for i in range(400):
                batch = pstream._core.encode_batch([(None, b"%05d" % i + value, [], None)])
                t0 = time.monotonic()
                answer = wire.produce("full", 0, batch)
                if answer.error_code:
                    took = time.monotonic() - t0
                    assert answer.error_code == KAFKA_STORAGE_ERROR, answer
                    break
                assert answer.base_offset == acked
                acked += 1
            assert took is not None, "the filesystem never filled"
            assert took < 10, f"ENOSPC was answered after {took:.1f}s"
            assert acked > 10
            got = [r.value[:5] for _h, recs in wire.fetch_all("full", 0) for r in recs]
            assert got[:acked] == [b"%05d" % i for i in range(acked)]

            ballast.unlink()                    # space is freed: the partition resumes by itself
            deadline = time.monotonic() + 30
            batch = pstream._core.encode_batch([(None, b"after", [], None)])
            while (answer := wire.produce("full", 0, batch)).error_code and time.monotonic() < deadline:
                time.sleep(0.2)
            assert answer.error_code == 0, answer
            got = [r.value[:5] for _h, recs in wire.fetch_all("full", 0) for r in recs]
            assert got[:acked] == [b"%05d" % i for i in range(acked)] and got[-1] == b"after"
        assert b.stop() == 0, b.output()
        out = b.output()
        assert out.count("No space left on device (errno 28)") == 1, out
        b.start()
        assert fetch_values(b.bootstrap, "full", 1)[-1] == b"after"
    finally:
        b.stop()


def test_produce_is_refused_below_the_free_space_threshold_and_resumes_above_it(small_fs):
    b = BrokerProcess(str(small_fs / "data"), "--storage-min-free-bytes", str(4 << 20)).start()
    try:
        with kafka_wire.KafkaWire(b.bootstrap) as wire:
            wire.create_topic("thresh")
            batch = pstream._core.encode_batch([(None, b"v", [], None)])
            assert wire.produce("thresh", 0, batch).error_code == 0
            ballast = small_fs / "ballast"
            ballast.write_bytes(b"\0" * (9 << 20))   # leaves less than 4 MiB free
            deadline = time.monotonic() + 10
            while (answer := wire.produce("thresh", 0, batch)).error_code == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert answer.error_code == KAFKA_STORAGE_ERROR and "storage_min_free_bytes" in answer.error_message
            ready = json.load(urllib.request.urlopen(b.admin_url + "/v1/status/ready"))
            assert ready["status"] == "degraded" and ready["storage"]["degraded"]
            metrics = urllib.request.urlopen(b.admin_url + "/metrics").read().decode()
            assert "pstream_storage_degraded 1.0" in metrics and "pstream_storage_free_bytes" in metrics
            ballast.unlink()
            deadline = time.monotonic() + 10
            while (answer := wire.produce("thresh", 0, batch)).error_code and time.monotonic() < deadline:
                time.sleep(0.1)
            assert answer.error_code == 0
        assert b.stop() == 0
    finally:
        b.stop()
