"""Every write-side error path of the core, driven by its fault points (include/ps_faults.h):
pwrite, fdatasync, open, rename and fallocate armed to fail with ENOSPC or EIO on one
partition, after N calls. A failure is reported at once and logged once with the partition and
the file; what was acknowledged stays readable; revive() writes again what failed, from memory,
and nothing acknowledged is lost across a reopen."""

from __future__ import annotations

import errno
import os

import pytest

import pstream
from pstream import _core, errors


@pytest.fixture(autouse=True)
def disarmed():
    _core.disarm_faults()
    yield
    _core.disarm_faults()


BIG = b"lost?" * 3000


def values(part) -> list[bytes]:
    return [r.value for r in part.read(0)]


def open_files_under(directory) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:     # the descriptor listdir used, closed meanwhile
            continue
        if target.startswith(str(directory) + "/"):
            out.append(target)
    return out


def failure_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pstream.storage" and "failed" in r.getMessage()]


@pytest.mark.parametrize("op", ["pwrite", "fdatasync"])
def test_enospc_is_reported_at_once_and_acked_records_stay_readable(open_log, caplog, op):
    log = open_log()
    part = log.topic("t", partitions=1).partition(0)
    for i in range(20):
        part.append(b"v%d" % i)
    _core.arm_fault(op, "ENOSPC", topic="t", partition=0, count=None)
    with pytest.raises(errors.StorageIOError) as info:
        part.append(BIG)   # pages past the acked tail: the failed write leaves a gap on disk
    assert info.value.partition == 0 and info.value.file.endswith("t/0/00000000000000000000.log")
    with pytest.raises(errors.StorageIOError):   # refused without touching the disk
        part.append(b"refused")
    assert values(part)[:20] == [b"v%d" % i for i in range(20)]
    assert part.durable_offset == 20
    assert part.storage_error == (errno.ENOSPC, info.value.file)
    assert not part.revive()                      # the disk is still full
    assert len(failure_logs(caplog)) == 1, failure_logs(caplog)
    assert "t-0" in failure_logs(caplog)[0] and "No space left on device" in failure_logs(caplog)[0]

    _core.disarm_faults()                         # space is freed
    assert part.revive()
    assert part.storage_error is None
    part.append(b"after")
    # The batch whose append failed was kept and written: at least once, never a hole.
    assert values(part) == [b"v%d" % i for i in range(20)] + [BIG, b"after"]
    log.close()
    reopened = open_log()
    assert values(reopened.topic("t").partition(0)) == [b"v%d" % i for i in range(20)] + [BIG, b"after"]


def test_a_fault_on_one_partition_after_n_calls_leaves_the_others_alone(open_log):
    log = open_log()
    topic = log.topic("t", partitions=2)
    _core.arm_fault("fdatasync", "EIO", topic="t", partition=1, after=3, count=1)
    for i in range(3):
        topic.partition(1).append(b"x%d" % i)
    with pytest.raises(errors.StorageIOError, match="Input/output error"):
        topic.partition(1).append(BIG)
    for i in range(10):
        topic.partition(0).append(b"y%d" % i)
    assert values(topic.partition(0)) == [b"y%d" % i for i in range(10)]
    assert _core.fault_hits() == 1
    assert topic.partition(1).revive()    # one-shot: the retry (written again from memory) succeeds
    topic.partition(1).append(b"next")
    assert values(topic.partition(1)) == [b"x0", b"x1", b"x2", BIG, b"next"]


def test_a_failed_open_at_a_roll_is_refused_and_the_next_append_rolls(open_log):
    log = open_log(segment_bytes=4096)
    part = log.topic("t").partition(0)
    part.append(b"r000" + b"." * 200)   # the write side is open now: the next open is the roll's
    _core.arm_fault("open", "ENOSPC", topic="t", partition=0, count=1)
    appended, refused = [0], 0
    for i in range(1, 100):
        try:
            part.append(b"r%03d" % i + b"." * 200)
            appended.append(i)
        except errors.StorageIOError as exc:
            assert "cannot create a new segment" in str(exc)
            refused += 1
    assert refused == 1 and _core.fault_hits() == 1
    assert len(part.segments()) > 1
    assert [v[:4] for v in values(part)] == [b"r%03d" % i for i in appended]


def test_a_failed_sync_while_finalizing_a_rolled_segment_revives(open_log):
    log = open_log(flush="interval", flush_ms=3_600_000)
    part = log.topic("t").partition(0)
    for i in range(10):
        part.append(b"a%d" % i)
    _core.arm_fault("fdatasync", "ENOSPC", topic="t", partition=0, count=None)
    part.roll()             # the shard finalizes the sealed segment: its fdatasync fails
    with pytest.raises(errors.StorageIOError):
        part.flush()
    assert _core.fault_hits() >= 1
    assert values(part) == [b"a%d" % i for i in range(10)]
    with pytest.raises(errors.StorageIOError):
        part.append(b"refused")
    _core.disarm_faults()
    assert part.revive()
    part.append(b"a10")
    part.flush()
    assert len(part.segments()) == 2
    log.close()
    assert values(open_log().topic("t").partition(0)) == [b"a%d" % i for i in range(11)]


def test_appended_records_of_the_interval_policy_survive_a_failed_write(open_log):
    log = open_log(flush="interval", flush_ms=5)
    part = log.topic("t").partition(0)
    _core.arm_fault("pwrite", "ENOSPC", topic="t", partition=0, count=None)
    for i in range(50):   # acknowledged once appended (flush=interval), before any write
        part.append(b"i%d" % i)
    with pytest.raises(errors.StorageIOError):
        part.flush()
    assert values(part) == [b"i%d" % i for i in range(50)]   # kept in memory, still served
    _core.disarm_faults()
    assert part.revive()
    part.flush()
    log.close()
    assert values(open_log().topic("t").partition(0)) == [b"i%d" % i for i in range(50)]


def test_a_failed_fallocate_is_not_an_error(open_log):
    log = open_log()
    part = log.topic("t").partition(0)
    _core.arm_fault("fallocate", "ENOSPC", topic="t", partition=0, count=None)
    for i in range(10):
        part.append(b"f%d" % i)
    assert _core.fault_hits() >= 1
    assert values(part) == [b"f%d" % i for i in range(10)]


def test_a_segment_preallocates_at_most_segment_bytes(open_log, data_dir):
    log = open_log(segment_bytes=1 << 20, preallocate_bytes=32 << 20)
    part = log.topic("t").partition(0)
    part.append(b"x" * 100)
    path = part.segments()[-1][3]
    assert os.stat(path).st_size <= 1 << 20


def test_rename_fault_point(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_text("1")
    _core.arm_fault("rename", "EIO", path_contains=str(tmp_path / "a"))
    with pytest.raises(errors.StorageIOError):
        _core.rename_file(src, dst)
    _core.rename_file(src, dst)     # one-shot
    assert dst.read_text() == "1" and not src.exists()


def test_close_of_a_failed_partition_raises_and_releases(open_log, data_dir):
    log = open_log()
    part = log.topic("t").partition(0)
    part.append(b"kept")
    _core.arm_fault("pwrite", "EIO", topic="t", partition=0, count=None)
    with pytest.raises(errors.StorageIOError):
        part.append(b"unacked")
    with pytest.raises(errors.StorageIOError):
        log.close()
    _core.disarm_faults()
    assert values(open_log().topic("t").partition(0))[0] == b"kept"


def test_fault_specs_parse_as_the_broker_reads_them():
    assert _core.arm_faults_from_spec("pwrite:ENOSPC:/t/0/:after=3:count=-1; fdatasync:EIO") == 2
    with pytest.raises(ValueError):
        _core.arm_faults_from_spec("pwrite:ENOPE")
    with pytest.raises(ValueError):
        _core.arm_faults_from_spec("chmod:EIO")


@pytest.mark.parametrize("trial", range(4))
def test_a_failed_fdatasync_loses_nothing_acknowledged_and_close_releases(open_log, data_dir, trial):
    """The unsynced bytes are written again from the buffer still holding them; when they are
    gone (several writes since the last sync), the partition stays failed. Either way close()
    raises, releases the partition's descriptors, and every durable record survives a reopen
    (after a successful revive: every appended one)."""
    log = open_log(flush="interval", flush_ms=60_000, write_buffer_bytes=64 << 10)
    part = log.topic("t").partition(0)
    rows = [b"%06d:" % i + b"x" * 1000 for i in range(300 * (trial + 1))]
    for row in rows[:100]:
        part.append(row)
    part.flush()
    durable = part.durable_offset
    for row in rows[100:]:
        part.append(row)
    _core.arm_fault("fdatasync", "EIO", topic="t", partition=0, count=1)
    with pytest.raises(errors.StorageIOError):
        part.flush()
    _core.disarm_faults()
    assert part.durable_offset == durable == 100
    assert values(part) == rows      # still served, from memory where need be
    revived = part.revive()
    if revived:
        part.flush()
    try:
        log.close()
    except errors.StorageIOError:
        assert not revived
    assert open_files_under(data_dir) == []
    kept = values(open_log().topic("t").partition(0))
    assert kept[:durable] == rows[:durable]
    assert kept == (rows if revived else rows[:len(kept)])
