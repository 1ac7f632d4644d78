"""The shards' write pools: buffers come from a per-shard budget, an idle partition gives its
buffers back, appenders wait when the budget is spent, and nothing written is lost on the way
(the last partial page is read back from the file when an idle partition wakes)."""

from __future__ import annotations

import threading
import time

import pytest

from pstream import _core


def values(part) -> list[bytes]:
    return [r.value for r in part.read(0)]


def pool(log) -> dict:
    (only,) = log.memory_stats()["write_pool"]
    return only


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("flush", ["always", "interval"])
def test_an_idle_partition_gives_its_buffer_back_and_wakes_without_losing_a_byte(open_log, flush):
    log = open_log(flush=flush, flush_ms=5)
    part = log.topic("t").partition(0)
    # Odd sizes: the log ends inside a page, which the woken buffer must read back.
    written = [bytes([65 + i % 26]) * (100 + 37 * i) for i in range(40)]
    for value in written[:20]:
        part.append(value)
    assert pool(log)["in_use_bytes"] > 0 and pool(log)["holders"] == 1
    wait_until(lambda: pool(log)["holders"] == 0)     # idle for a second: buffers and descriptors go
    assert pool(log)["in_use_bytes"] == 0 and pool(log)["released"] >= 1
    assert values(part) == written[:20]
    for value in written[20:]:
        part.append(value)
    part.flush()
    assert values(part) == written
    log.close()
    assert values(open_log().topic("t").partition(0)) == written


def test_the_budget_is_never_exceeded_and_appenders_wait_for_it(open_log):
    budget = 256 << 10   # four 64 KiB chunks for 16 partitions
    log = open_log(flush="interval", flush_ms=50, write_pool_bytes=budget)
    topic = log.topic("t", partitions=16)
    per_thread = 200
    errors = []

    def work(n):
        try:
            part = topic.partition(n)
            for i in range(per_thread):
                part.append(b"%02d-%04d-" % (n, i) + b"x" * 500)
        except BaseException as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = pool(log)
    assert stats["peak_bytes"] <= budget and stats["waits"] > 0 and stats["released"] > 0
    for n in range(16):
        part = topic.partition(n)
        part.flush()
        assert values(part) == [b"%02d-%04d-" % (n, i) + b"x" * 500 for i in range(per_thread)]


def test_one_busy_partition_in_a_small_budget_writes_from_a_single_buffer(open_log):
    """With the budget spent at a swap, the one buffer is written and reused: slower, never lost."""
    log = open_log(flush="interval", flush_ms=1000, write_pool_bytes=256 << 10, write_buffer_bytes=4 << 20)
    part = log.topic("t").partition(0)
    batches = [_core.encode_batch([(None, bytes([i % 251]) * 20_000, [], None)]) for i in range(200)]
    for batch in batches:
        part.append_batch(batch, wait=False)
    part.flush()
    assert pool(log)["peak_bytes"] <= 256 << 10
    assert values(part) == [bytes([i % 251]) * 20_000 for i in range(200)]


def test_a_batch_bigger_than_a_chunk_goes_on_into_a_chained_buffer_and_one_bigger_than_the_budget_fails(open_log):
    log = open_log(write_pool_bytes=512 << 10, write_buffer_bytes=64 << 10, max_message_bytes=2 << 20)
    part = log.topic("t").partition(0)
    part.append(b"small")
    big = _core.encode_batch([(None, b"B" * 300_000, [], None)])
    assert part.append_batch(big) == 1
    part.append(b"after")
    assert values(part) == [b"small", b"B" * 300_000, b"after"]
    with pytest.raises(MemoryError, match="write_pool_bytes"):
        part.append_batch(_core.encode_batch([(None, b"C" * 600_000, [], None)]))
    part.append(b"still writable")
    assert values(part)[-1] == b"still writable"
    assert pool(log)["peak_bytes"] <= 512 << 10


def test_pool_settings_are_checked(open_log):
    from pstream.errors import ConfigError

    with pytest.raises(ConfigError, match="write_pool_bytes"):
        open_log(write_pool_bytes=4096)
    with pytest.raises(ConfigError, match="max_open_files"):
        open_log(max_open_files=2)
