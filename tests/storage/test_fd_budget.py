"""The descriptor budget: partitions keep their segment descriptors open only while they are
appended to, at most max_open_files of them in all; idle partitions reopen on demand."""

from __future__ import annotations

import os
import time


def log_descriptors(directory) -> list[str]:
    """Targets of this process's descriptors that lie under directory."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory) + "/"):
            out.append(target)
    return out


def values(part) -> list[bytes]:
    return [r.value for r in part.read(0)]


def test_many_partitions_stay_within_max_open_files(open_log, data_dir):
    log = open_log(max_open_files=30)   # one shard: 10 partitions keep their files open at once
    topic = log.topic("t", partitions=60)
    for n in range(60):
        topic.partition(n).append(b"v%d" % n)
        assert len([t for t in log_descriptors(data_dir) if t.endswith(".log")]) <= 30
    assert log.memory_stats()["write_pool"][0]["holders"] <= 10
    for n in range(60):
        assert values(topic.partition(n)) == [b"v%d" % n]   # reads open and close their own
    assert len([t for t in log_descriptors(data_dir) if t.endswith(".log")]) <= 30
    for n in range(60):
        topic.partition(n).append(b"w%d" % n)              # every one reopens its write side
    log.close()
    assert log_descriptors(data_dir) == []
    topic = open_log().topic("t")
    assert [values(topic.partition(n)) for n in range(60)] == [[b"v%d" % n, b"w%d" % n] for n in range(60)]


def test_an_opened_log_holds_no_descriptor_until_appended_to(open_log, data_dir):
    with open_log() as log:
        topic = log.topic("t", partitions=5)
        for n in range(5):
            topic.partition(n).append(b"x")
    log = open_log()
    topic = log.topic("t")
    parts = [topic.partition(n) for n in range(5)]
    assert [t for t in log_descriptors(data_dir) if t.endswith(".log")] == []
    parts[0].append(b"y")
    assert len([t for t in log_descriptors(data_dir) if t.endswith(".log")]) >= 1
    assert values(parts[0]) == [b"x", b"y"]


def test_an_idle_segment_is_trimmed_to_its_data_at_close(open_log, data_dir):
    """The write side closed while idle still leaves no preallocated zeros behind at close."""
    log = open_log(preallocate_bytes=1 << 20)
    part = log.topic("t").partition(0)
    part.append(b"z" * 1000)
    path = part.segments()[-1][3]
    assert os.path.getsize(path) > 1100     # preallocated past the data
    deadline = time.monotonic() + 10
    while log.memory_stats()["write_pool"][0]["holders"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [t for t in log_descriptors(data_dir) if not t.endswith("@lock")] == []
    size = part.size_bytes()
    log.close()
    assert os.path.getsize(path) == size
