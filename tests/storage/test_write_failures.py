"""Failure paths of the write side: a failed write or fdatasync is fail-stop (reported to every
appender after it, nothing written later counted durable, close still returns); malformed raw
batches are refused; closing one partition while its shard serves another cannot deadlock."""

import subprocess
import sys
import textwrap

import pytest

from pstream import _core, errors
import pstream
from pstream.record import reference

SCRIPT = textwrap.dedent('''
    import os, resource, signal, sys
    import pstream
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # writes past the limit fail with EFBIG
    log = pstream.Log(sys.argv[1], shards=1, retention_check_ms=None, flush=sys.argv[2], flush_ms=5,
                      preallocate_bytes=0, write_buffer_bytes=64 << 10)
    part = log.topic("t").partition(0)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    for _ in range(100):
        part.append(b"a" * 100)
    part.flush()
    durable_before = part.durable_offset
    resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, hard))
    failed = 0
    for _ in range(300):
        try:
            part.append(b"b" * 100)
        except pstream.errors.StorageIOError:
            failed += 1
    try:
        part.flush()
        print("FLUSH-OK")
    except pstream.errors.StorageIOError:
        print("FLUSH-FAILED")
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    try:
        part.flush()
        print("FLUSH2-OK")
    except pstream.errors.StorageIOError:
        print("FLUSH2-FAILED")
    print("DURABLE", durable_before, part.durable_offset)
    try:
        log.close()
    except pstream.errors.StorageIOError:
        pass
    print("CLOSED")
''')


@pytest.mark.parametrize("flush", ["always", "interval"])
def test_a_failed_write_is_fail_stop_and_close_still_returns(tmp_path, flush):
    out = subprocess.run([sys.executable, "-P", "-c", SCRIPT, str(tmp_path / "data"), flush], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert "FLUSH-FAILED" in lines and "FLUSH2-FAILED" in lines, out.stdout
    assert "CLOSED" in lines, out.stdout
    durable = out.stdout.split("DURABLE")[1].split()
    assert int(durable[0]) == 100
    assert int(durable[1]) < 400, "bytes that never reached the file were counted durable"
    # Reopened, the log holds a valid prefix: every record read back is intact.
    with pstream.Log(tmp_path / "data", shards=1) as log:
        part = log.topic("t").partition(0)
        values = [r.value for r in part.read(0)]
        assert values[:100] == [b"a" * 100] * 100
        assert all(v == b"b" * 100 for v in values[100:])


def test_a_raw_batch_whose_last_offset_delta_disagrees_with_its_count_is_refused(tmp_path):
    good = _core.encode_batch([(None, b"v", [], 1)] * 5)
    header = reference.validate_batch(good)._replace(last_offset_delta=0)   # 0 for 5 records
    batch = reference.reseal(reference.HEADER.pack(*header) + good[reference.HEADER_SIZE:])
    with pstream.Log(tmp_path, shards=1) as log:
        part = log.topic("t").partition(0)
        with pytest.raises(errors.RecordCountMismatchError):
            part.append_batch(bytes(batch))
        with pytest.raises(errors.RecordCountMismatchError):
            part.submit_batch(bytes(batch)).wait()
        assert part.append(b"x") == 0


def test_closing_a_partition_while_another_thread_appends_on_its_shard_does_not_deadlock(tmp_path):
    import threading

    for trial in range(20):
        with pstream.Log(tmp_path / str(trial), shards=1, retention_check_ms=None, flush="interval",
                         flush_ms=5) as log:
            topic = log.topic("t", partitions=2)
            first, second = topic.partition(0), topic.partition(1)
            for _ in range(200):
                first.append(b"x" * 100)
            stop = threading.Event()

            def spin():
                while not stop.is_set():
                    second.append(b"y" * 50)

            appender = threading.Thread(target=spin)
            appender.start()
            try:
                first.close()
            finally:
                stop.set()
                appender.join()
            assert sum(1 for _ in second.read(0)) == second.log_end_offset
