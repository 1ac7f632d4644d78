"""Chained write buffers: a batch that does not fit in what is left of the active buffer fills
it and goes on into a new one (segment_chain). Whatever the split (inside the batch header,
on a page, past it) the log holds exactly the batches appended, readable from memory before
the write-out, from the file after it, and after a reopen; a failed write of a chain keeps
every piece and writes it again."""

from __future__ import annotations

import random

import pytest

from pstream import _core, errors


def pool(log) -> dict:
    (only,) = log.memory_stats()["write_pool"]
    return only


def batch_of(size: int, fill: int) -> bytes:
    """A one-record batch of `size` bytes (size >= 80), or of size + 1 where a varint growing by
    a byte makes `size` itself unreachable."""
    n = size - 70
    n += size - len(_core.encode_batch([(None, bytes([fill]) * n, [], None)]))
    lengths = {}
    for near in range(n - 3, n + 4):
        for key in (None, b"k"):
            batch = _core.encode_batch([(key, bytes([fill]) * near, [], None)])
            lengths.setdefault(len(batch), batch)
    for want in (size, size + 1):
        if want in lengths:
            return lengths[want]
    raise AssertionError(f"no one-record batch of {size} bytes")


def sizes(seed: int, count: int) -> list[int]:
    """Mostly small batches (so that the split often falls inside a header), some bigger than a
    whole 64 KiB buffer."""
    rng = random.Random(seed)
    return [rng.choice((rng.randint(80, 400), rng.randint(80, 400), rng.randint(400, 20_000),
                        rng.randint(60_000, 150_000))) for _ in range(count)]


def stored(part) -> list[bytes]:
    """The log's batches as stored (base offsets and epochs assigned), each checked (CRC)."""
    out, offset = [], 0
    while True:
        data = part.read_batches(offset, 1 << 20)
        if not data:
            return out
        position = 0
        while position < len(data):
            header = _core.peek_batch(data, position)
            batch = bytes(data[position:position + header.size])
            _core.check_batch(batch)
            out.append(batch)
            position += header.size
        offset = header.last_offset + 1


def values(part) -> list[bytes]:
    return [r.value for r in part.read(0, max_records=1 << 30)]


@pytest.mark.parametrize("direct_io", [True, False])
@pytest.mark.parametrize("timestamps", ["create", "log_append"])
def test_raw_batches_split_across_chained_buffers_read_back_exactly(open_log, data_dir, direct_io, timestamps):
    log = open_log(flush="interval", flush_ms=60_000, direct_io=direct_io, max_message_bytes=1 << 20,
                   write_buffer_bytes=64 << 10)   # buffers stay one 64 KiB chunk: many chains
    topic = log.topic("t", message_timestamp_type="LogAppendTime" if timestamps == "log_append" else "CreateTime")
    part = topic.partition(0)
    plan = sizes(7, 600)
    batches = [batch_of(size, i % 251) for i, size in enumerate(plan)]
    for batch in batches:
        part.append_batch(batch, wait=False)
    assert pool(log)["chained"] > 20
    before = stored(part)          # much of it still in buffers, some being written
    part.flush()
    after = stored(part)
    assert before == after
    assert [len(b) for b in after] == [len(b) for b in batches]
    assert values(part) == [_core.decode_batch(b)[1][0].value for b in batches]
    if timestamps == "log_append":
        assert all(_core.peek_batch(b).attributes & 0x08 for b in after)
    log.close()
    assert stored(open_log(data_dir, direct_io=direct_io).topic("t").partition(0)) == after


@pytest.mark.parametrize("direct_io", [True, False])
def test_encoded_appends_split_across_chained_buffers_read_back_exactly(open_log, data_dir, direct_io):
    log = open_log(flush="interval", flush_ms=60_000, direct_io=direct_io, write_buffer_bytes=64 << 10)
    part = log.topic("t").partition(0)
    rng = random.Random(3)
    expected = []
    for i in range(800):
        if i % 3:
            value = bytes([i % 251]) * rng.randint(0, 300)
            part.append(value, key=b"k%d" % i)
            expected.append(value)
        else:
            chunk = [bytes([i % 251]) * rng.randint(0, 3000) for _ in range(rng.randint(1, 40))]
            part.append_many([(None, v) for v in chunk])
            expected.extend(chunk)
    assert pool(log)["chained"] > 10
    assert values(part) == expected
    part.flush()
    assert values(part) == expected
    log.close()
    assert values(open_log(data_dir, direct_io=direct_io).topic("t").partition(0)) == expected


def test_a_failed_write_of_a_chain_keeps_every_piece_and_writes_it_again(open_log, data_dir):
    log = open_log(flush="interval", flush_ms=60_000)
    part = log.topic("t").partition(0)
    # The first buffer is one 64 KiB chunk: 20 KB leave it under half full (no write-out asked),
    # 60 KB do not fit, go on into a chained buffer and ask for the write-out, which fails.
    batches = [batch_of(20_000, 1), batch_of(60_000, 2)]
    _core.arm_fault("pwrite", "ENOSPC", topic="t", partition=0, count=None)
    try:
        for batch in batches:
            part.append_batch(batch, wait=False)      # acknowledged once appended (flush=interval)
        assert pool(log)["chained"] == 1
        with pytest.raises(errors.StorageIOError):
            part.flush()
        kept = stored(part)                           # both pieces of the failed write are still served
        # as sent from the magic byte on (before it: the base offset and leader epoch the log assigns)
        assert [b[16:] for b in kept] == [b[16:] for b in batches]
    finally:
        _core.disarm_faults()
    assert part.revive()
    part.append_batch(batch_of(5000, 3))
    part.flush()
    log.close()
    again = stored(open_log(data_dir).topic("t").partition(0))
    assert again[:-1] == kept and len(again[-1]) == 5000


def test_a_chain_at_its_longest_waits_for_the_write_out_and_the_budget_holds(open_log):
    """Many batches each bigger than a buffer: the chain reaches its length and appends wait for
    the write-out; the pool never goes past its budget and nothing is lost."""
    budget = 2 << 20
    log = open_log(flush="interval", flush_ms=60_000, write_pool_bytes=budget, max_message_bytes=1 << 20)
    part = log.topic("t").partition(0)
    batches = [batch_of(100_000 + 517 * i, i) for i in range(60)]
    for batch in batches:
        part.append_batch(batch, wait=False)
    part.flush()
    assert pool(log)["peak_bytes"] <= budget
    assert [len(b) for b in stored(part)] == [len(b) for b in batches]
