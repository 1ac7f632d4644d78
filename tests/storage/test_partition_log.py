"""The embedded log's partition API: appends, reads, segments, retention, config, threads.

Drives pstream.Log -> Topic -> Partition the way an application does and checks every
result against what was appended. Files are looked at only to prove what the API
promises about them (segment names and sizes, index files, deleted data).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from pathlib import Path

import pytest

import pstream
from pstream import _core
from pstream.errors import (
    BatchTooLargeError,
    ConfigError,
    CrcMismatchError,
    InvalidTopicError,
    LogClosedError,
    OffsetOutOfRangeError,
    UnknownPartitionError,
    UnknownTopicError,
)
from pstream.storage import layout
from segment_files import (
    batch_spans,
    expected_after_bytes_retention,
    log_files,
    read_index,
    read_time_index,
)

NO_RETENTION = dict(retention_ms=None, retention_bytes=None)


def dump(part, offset: int | None = None, max_records: int | None = None) -> list[tuple]:
    """(offset, key, value, headers, timestamp_ms) of every record from offset on."""
    start = part.log_start_offset if offset is None else offset
    return [(r.offset, r.key, r.value, r.headers, r.timestamp_ms)
            for r in part.read(start, max_records=max_records)]


def segment_table(part) -> list[tuple[int, int, int]]:
    return [(base, nxt, size) for base, nxt, size, _ in part.segments()]


def fill(part, count: int, size: int = 100, ts: int | None = None, start: int = 0) -> list[bytes]:
    values = [b"%06d:" % (start + i) + b"x" * size for i in range(count)]
    for value in values:
        part.append(value, key=value[:6], timestamp_ms=ts)
    return values


# --- appending and reading back ------------------------------------------------------------


def test_append_paths_round_trip_every_field_with_contiguous_offsets(open_log):
    part = open_log().topic("t").partition(0)
    assert (part.log_end_offset, part.log_start_offset) == (0, 0)

    assert part.append(b"v0", key=b"k0", headers=[("h", b"x"), ("empty", b""), ("null", None)],
                       timestamp_ms=1_700_000_000_000) == 0
    assert part.append(b"no key") == 1
    assert part.append(None, key=b"tombstone", timestamp_ms=1_700_000_000_001) == 2
    assert part.append(b"", key=b"") == 3
    first = part.append_many([(b"a", b"1"), (None, None), (b"c", b"3", [("h", b"y")]),
                              (b"d", b"4", [], 1_700_000_000_005)])
    assert first == 4
    raw = _core.encode_batch([(b"rk", b"rv", [("rh", b"1")], 1_700_000_000_010),
                              (None, b"rv2", [], 1_700_000_000_011)], base_offset=12345)
    assert part.append_batch(raw) == 8
    assert part.append(b"last") == 10
    assert part.log_end_offset == 11

    got = dump(part, 0)
    assert [r[0] for r in got] == list(range(11))
    assert [(r[1], r[2], r[3]) for r in got] == [
        (b"k0", b"v0", [("h", b"x"), ("empty", b""), ("null", None)]),
        (None, b"no key", []),
        (b"tombstone", None, []),
        (b"", b"", []),
        (b"a", b"1", []),
        (None, None, []),
        (b"c", b"3", [("h", b"y")]),
        (b"d", b"4", []),
        (b"rk", b"rv", [("rh", b"1")]),
        (None, b"rv2", []),
        (None, b"last", []),
    ]
    assert got[0][4] == 1_700_000_000_000
    assert got[2][4] == 1_700_000_000_001
    assert got[7][4] == 1_700_000_000_005
    assert (got[8][4], got[9][4]) == (1_700_000_000_010, 1_700_000_000_011)
    now = time.time() * 1000
    assert abs(got[1][4] - now) < 60_000, "a record without a timestamp gets the append time"


def test_append_many_of_nothing_appends_nothing(open_log):
    part = open_log().topic("t").partition(0)
    part.append(b"x")
    assert part.append_many([]) is None
    assert part.log_end_offset == 1


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_append_many_round_trips(open_log, codec):
    part = open_log().topic("t").partition(0)
    part.append(b"before")
    records = [(b"k%d" % i, b"value %d " % i * 20, [("i", b"%d" % i)]) for i in range(50)]
    assert part.append_many(records, compression=codec) == 1
    assert part.append(b"after") == 51
    got = dump(part, 0)
    assert [r[0] for r in got] == list(range(52))
    assert [(r[1], r[2], r[3]) for r in got[1:51]] == [(k, v, h) for k, v, h in records]
    header, _ = next(_core.iter_batches(part.read_batches(1, 1)))
    assert header.compression != 0


def test_append_batch_stores_the_batch_as_given_with_the_assigned_offset(open_log):
    part = open_log().topic("t").partition(0)
    part.append(b"first")
    raw = _core.encode_batch([(b"k", b"v%d" % i, [], 1_700_000_000_000 + i) for i in range(5)],
                             base_offset=777, producer_id=42, producer_epoch=3, base_sequence=9)
    assert part.append_batch(memoryview(raw)) == 1
    stored = part.read_batches(1, 1)
    header = _core.validate_batch(stored)
    assert (header.base_offset, header.last_offset, header.record_count) == (1, 5, 5)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (42, 3, 9)
    # Only base offset (bytes 0-7) and leader epoch (12-15) differ; the CRC covers neither.
    assert stored[8:12] == raw[8:12] and stored[16:] == raw[16:]


def test_append_batch_rejects_a_corrupt_batch_and_appends_nothing(open_log):
    part = open_log().topic("t").partition(0)
    raw = bytearray(_core.encode_batch([(b"k", b"value", [], None)]))
    raw[-1] ^= 0x01
    with pytest.raises(CrcMismatchError):
        part.append_batch(bytes(raw))
    assert part.log_end_offset == 0
    assert part.append(b"ok") == 0


def test_record_above_max_message_bytes_is_refused(open_log):
    part = open_log().topic("t", max_message_bytes=1000).partition(0)
    with pytest.raises(BatchTooLargeError):
        part.append(b"x" * 2000)
    with pytest.raises(BatchTooLargeError):
        part.append_many([(None, b"x" * 600), (None, b"y" * 1200)])
    assert part.log_end_offset == 0


def test_records_over_max_message_bytes_together_are_appended_as_several_batches(open_log):
    part = open_log().topic("t", max_message_bytes=1000).partition(0)
    assert part.append_runs([(None, b"x" * 600), (None, b"y" * 600)]) == [(0, 1), (1, 1)]
    assert [r.value for r in part.read(0)] == [b"x" * 600, b"y" * 600]


def test_read_from_the_middle_of_a_batch_returns_the_whole_batch_then_read_filters(open_log):
    part = open_log().topic("t").partition(0)
    part.append_many([(None, b"a%d" % i) for i in range(10)])     # 0..9
    part.append_many([(None, b"b%d" % i) for i in range(10)])     # 10..19
    data = part.read_batches(5, 1)  # max_bytes below one batch: the first batch still comes whole
    batches = list(_core.iter_batches(data))
    assert len(batches) == 1
    header, records = batches[0]
    assert (header.base_offset, header.last_offset) == (0, 9)
    assert [r.offset for r in records] == list(range(10))

    both = list(_core.iter_batches(part.read_batches(5, 1 << 20)))
    assert [h.base_offset for h, _ in both] == [0, 10]

    assert [r.offset for r in part.read(5)] == list(range(5, 20))
    assert [r.value for r in part.read(5, max_records=3)] == [b"a5", b"a6", b"a7"]
    assert [r.offset for r in part.read(12, max_records=100)] == list(range(12, 20))


def test_read_at_the_log_end_is_empty_and_past_it_raises(open_log):
    part = open_log().topic("t").partition(0)
    part.append(b"x")
    assert part.read_batches(1, 1 << 20) == b""
    assert list(part.read(1)) == []
    with pytest.raises(OffsetOutOfRangeError) as info:
        part.read_batches(2, 1 << 20)
    assert (info.value.topic, info.value.partition, info.value.offset) == ("t", 0, 2)
    with pytest.raises(OffsetOutOfRangeError):
        list(part.read(2))


def test_reads_cross_segment_boundaries(open_log):
    part = open_log().topic("t", segment_bytes=1024, **NO_RETENTION).partition(0)
    values = []
    for i in range(70):
        if i % 3:
            values.append(b"single %d " % i + b"s" * (i % 17))
            part.append(values[-1])
        else:
            batch = [b"many %d.%d" % (i, j) for j in range(4)]
            values.extend(batch)
            part.append_many([(None, v) for v in batch])
    segments = segment_table(part)
    assert len(segments) >= 5
    assert part.log_end_offset == len(values)
    assert [r.value for r in part.read(0)] == values
    for offset in range(len(values)):
        got = list(part.read(offset, max_records=7))
        assert [r.offset for r in got] == list(range(offset, min(offset + 7, len(values))))
        assert [r.value for r in got] == values[offset:offset + 7]
    # read_batches at a segment's first offset starts with that segment's first batch
    for base, nxt, _ in segments[1:]:
        header, _ = next(_core.iter_batches(part.read_batches(base, 1)))
        assert header.base_offset == base


# --- segments -------------------------------------------------------------------------------


def test_segment_rolls_before_segment_bytes_would_be_exceeded(open_log):
    log = open_log()
    part = log.topic("t", segment_bytes=1024, **NO_RETENTION).partition(0)
    values = fill(part, 50, size=90)
    segments = part.segments()
    assert len(segments) > 3
    for (base, nxt, size, path), following in zip(segments, segments[1:] + [None]):
        assert size <= 1024
        assert Path(path).name == layout.segment_file_name(base)   # the engine's C names agree with layout
        assert Path(path).parent == Path(log.path) / "t" / "0"
        if following is not None:
            assert nxt == following[0], "segments must be contiguous"
            next_batch = batch_spans(following[3])[0]
            assert size + next_batch.size > 1024, "a segment rolled although the next batch fitted"
    assert segments[-1][1] == part.log_end_offset == 50
    assert [r.value for r in part.read(0)] == values


def test_a_batch_larger_than_segment_bytes_gets_a_segment_of_its_own(open_log):
    part = open_log().topic("t", segment_bytes=1024, **NO_RETENTION).partition(0)
    part.append(b"small")
    big = os.urandom(5000)
    assert part.append(big) == 1
    part.append(b"after")
    table = segment_table(part)
    assert [(base, nxt) for base, nxt, _ in table] == [(0, 1), (1, 2), (2, 3)]
    assert table[1][2] > 5000
    assert [r.value for r in part.read(0)] == [b"small", big, b"after"]


def test_segment_rolls_after_segment_ms(open_log):
    part = open_log().topic("t", segment_ms=100, **NO_RETENTION).partition(0)
    part.append(b"a")
    part.append(b"b")
    assert len(part.segments()) == 1
    time.sleep(0.25)
    part.append(b"c")
    assert [(base, nxt) for base, nxt, _ in segment_table(part)] == [(0, 2), (2, 3)]
    assert [r.value for r in part.read(0)] == [b"a", b"b", b"c"]


def test_roll_starts_a_new_segment_and_rolling_an_empty_one_does_nothing(open_log):
    part = open_log().topic("t", **NO_RETENTION).partition(0)
    part.roll()
    assert segment_table(part) == [(0, 0, 0)]
    part.append(b"a")
    part.roll()
    part.roll()
    assert [(base, nxt) for base, nxt, _ in segment_table(part)] == [(0, 1), (1, 1)]
    assert part.append(b"b") == 1
    assert [r.value for r in part.read(0)] == [b"a", b"b"]


# --- retention --------------------------------------------------------------------------------


def test_retention_bytes_deletes_whole_oldest_segments_only(open_log):
    part = open_log().topic("t", segment_bytes=1024, retention_bytes=2500, retention_ms=None).partition(0)
    values = fill(part, 60, size=90)
    part.flush()
    before = part.segments()
    table = [(b, n, s) for b, n, s, _ in before]
    expected = expected_after_bytes_retention(table, 0, 2500)
    assert len(expected) < len(table), "the test must make retention delete something"

    deleted = part.apply_retention()

    assert deleted == len(table) - len(expected)
    assert segment_table(part) == expected
    first_kept = expected[0][0]
    assert part.log_start_offset == first_kept
    assert sum(s for _, _, s in expected) - expected[0][2] < 2500
    for base, _, _, path in before[:deleted]:
        assert not os.path.exists(path)
        assert not os.path.exists(layout.sibling_file(path, ".index"))
        assert not os.path.exists(layout.sibling_file(path, ".timeindex"))
    assert [r.value for r in part.read(first_kept)] == values[first_kept:]
    with pytest.raises(OffsetOutOfRangeError):
        part.read_batches(first_kept - 1, 1 << 20)
    assert part.apply_retention() == 0, "a second pass has nothing left to delete"


def test_retention_ms_deletes_only_segments_whose_newest_record_expired(open_log):
    t0 = 1_600_000_000_000
    part = open_log().topic("t", segment_bytes=1024, retention_ms=60_000, retention_bytes=None).partition(0)
    old = fill(part, 20, size=90, ts=t0)
    part.roll()
    new = fill(part, 20, size=90, ts=t0 + 120_000, start=20)
    part.flush()
    old_segments = [s for s in segment_table(part) if s[1] <= 20]

    assert part.apply_retention(now_ms=t0 + 121_000) == len(old_segments)
    assert part.log_start_offset == 20
    assert segment_table(part)[0][0] == 20
    assert [r.value for r in part.read(20)] == new
    assert len(old) == 20

    # Everything expired, the active segment too: it is rolled, then deleted.
    assert part.apply_retention(now_ms=t0 + 10_000_000) >= 1
    assert part.log_start_offset == part.log_end_offset == 40
    assert segment_table(part) == [(40, 40, 0)]
    assert list(part.read(40)) == []
    assert part.append(b"fresh") == 40


def test_log_start_offset_after_retention_survives_reopen(open_log):
    log = open_log()
    part = log.topic("t", segment_bytes=1024, retention_bytes=2000, retention_ms=None).partition(0)
    values = fill(part, 40, size=90)
    part.flush()
    assert part.apply_retention() > 0
    start = part.log_start_offset
    log.close()
    part = open_log().topic("t").partition(0)
    assert part.log_start_offset == start
    assert [r.value for r in part.read(start)] == values[start:]


def test_delete_records_moves_the_log_start_and_survives_reopen(open_log):
    log = open_log()
    part = log.topic("t", **NO_RETENTION).partition(0)
    for b in range(3):
        part.append_many([(None, b"%d.%d" % (b, i)) for i in range(5)])   # 0..14, batches of 5
    assert part.delete_records(7) == 7
    assert part.log_start_offset == 7
    assert [r.offset for r in part.read(7)] == list(range(7, 15))
    header, _ = next(_core.iter_batches(part.read_batches(7, 1)))
    assert header.base_offset == 5, "reads still return the whole batch holding the log start"
    with pytest.raises(OffsetOutOfRangeError) as info:
        part.read_batches(6, 1 << 20)
    assert info.value.offset == 6
    assert part.delete_records(3) == 7, "deleting below the log start moves nothing"
    with pytest.raises(OffsetOutOfRangeError):
        part.delete_records(16)
    log.close()

    part = open_log().topic("t").partition(0)
    assert part.log_start_offset == 7
    assert [r.value for r in part.read(7, max_records=1)] == [b"1.2"]
    assert part.delete_records(15) == 15
    assert list(part.read(15)) == []
    assert part.append(b"next") == 15
    assert [r.offset for r in part.read(15)] == [15]


def test_delete_records_removes_segments_wholly_below_the_new_start(open_log):
    part = open_log().topic("t", segment_bytes=1024, **NO_RETENTION).partition(0)
    values = fill(part, 40, size=90)
    before = part.segments()
    cut = before[2][0] + 1  # inside the third segment
    part.delete_records(cut)
    assert part.log_start_offset == cut
    assert [s[0] for s in part.segments()] == [s[0] for s in before[2:]]
    for segment in before[:2]:
        assert not os.path.exists(segment[3])
    assert [r.value for r in part.read(cut)] == values[cut:]


def test_reading_below_the_log_start_raises_offset_out_of_range(open_log):
    part = open_log().topic("t", **NO_RETENTION).partition(0)
    fill(part, 10)
    part.delete_records(4)
    for offset in (0, 3):
        with pytest.raises(OffsetOutOfRangeError) as info:
            list(part.read(offset))
        assert (info.value.topic, info.value.partition, info.value.offset) == ("t", 0, offset)
    assert next(part.read(4)).offset == 4


# --- timestamps --------------------------------------------------------------------------------


def _timestamped_partition(open_log, **settings):
    rng = random.Random(7)
    part = open_log().topic("t", segment_bytes=2048, index_interval_bytes=100, **NO_RETENTION,
                            **settings).partition(0)
    t0 = 1_700_000_000_000
    stamps = []
    for i in range(120):
        ts = t0 + 10 * i + rng.choice([0, 0, 0, -35, 25])  # mostly increasing, some out of order
        if i % 5 == 0:
            batch = [ts + j for j in range(3)]
            part.append_many([(None, b"%d" % i, [], t) for t in batch])
            stamps.extend(batch)
        else:
            part.append(b"%d" % i, timestamp_ms=ts)
            stamps.append(ts)
    return part, stamps


def _first_at_or_after(stamps, target, start=0):
    return next((o for o, t in enumerate(stamps) if o >= start and t >= target), None)


def test_offset_for_timestamp_is_the_first_offset_at_or_after_the_timestamp(open_log):
    part, stamps = _timestamped_partition(open_log)
    assert len(part.segments()) > 2
    for target in range(min(stamps) - 50, max(stamps) + 50, 7):
        assert part.offset_for_timestamp(target) == _first_at_or_after(stamps, target), target
    assert part.offset_for_timestamp(max(stamps) + 1) is None


def test_offset_for_timestamp_after_reopen_and_delete_records(open_log):
    part, stamps = _timestamped_partition(open_log)
    part.delete_records(37)
    part._log.close()
    part = open_log().topic("t").partition(0)
    assert part.log_start_offset == 37
    for target in range(min(stamps) - 50, max(stamps) + 50, 11):
        assert part.offset_for_timestamp(target) == _first_at_or_after(stamps, target, 37), target


def test_max_timestamp_is_the_greatest_timestamp_and_its_offset(open_log):
    part = open_log().topic("t", segment_bytes=1024, **NO_RETENTION).partition(0)
    assert part.max_timestamp() == (-1, -1)
    stamps = [5000, 9000, 7000, 9500, 100, 9400]
    for ts in stamps:
        part.append(b"x" * 200, timestamp_ms=ts)
    assert part.max_timestamp() == (9500, 3)


# --- indexes ----------------------------------------------------------------------------------


def _indexed_log(open_log):
    rng = random.Random(3)
    log = open_log()
    part = log.topic("t", segment_bytes=8192, index_interval_bytes=200, **NO_RETENTION).partition(0)
    t0 = 1_700_000_000_000
    for i in range(300):
        if i % 4 == 0:
            part.append_many([(b"k", rng.randbytes(rng.randrange(1, 120)), [], t0 + i) for _ in range(3)])
        else:
            part.append(rng.randbytes(rng.randrange(1, 300)), timestamp_ms=t0 + i)
    expected = dump(part, 0)
    log.close()
    return expected


def test_index_files_are_written_on_close_and_point_at_batch_starts(open_log, data_dir):
    expected = _indexed_log(open_log)
    logs = log_files(data_dir / "t" / "0")
    assert len(logs) > 3
    for path in logs:
        index, timeindex = path.with_suffix(".index"), path.with_suffix(".timeindex")
        assert index.stat().st_size % 8 == 0 and timeindex.stat().st_size % 12 == 0
        entries = read_index(index)
        assert entries, f"{index} has no entries although the segment is 8 KiB"
        base = int(path.stem)
        spans = {span.position: span for span in batch_spans(path)}
        for rel, position in entries:
            assert position in spans, f"{index}: entry points inside a batch"
            assert spans[position].last_offset == base + rel
        assert [e[0] for e in entries] == sorted({e[0] for e in entries})
        stamps = read_time_index(timeindex)
        assert [t for t, _ in stamps] == sorted({t for t, _ in stamps})
    assert len(expected) > 300


def test_deleted_index_files_are_rebuilt_identically_and_reads_stay_right(open_log, data_dir):
    expected = _indexed_log(open_log)
    part_dir = data_dir / "t" / "0"
    saved = {p.name: p.read_bytes() for p in part_dir.iterdir() if p.suffix in (".index", ".timeindex")}
    for name in saved:
        (part_dir / name).unlink()

    part = open_log().topic("t").partition(0)
    rebuilt = {p.name: p.read_bytes() for p in part_dir.iterdir() if p.suffix in (".index", ".timeindex")}
    assert rebuilt == saved
    assert dump(part, 0) == expected
    for offset, *_ in expected:
        assert dump(part, offset, max_records=1)[0][0] == offset


# --- topics and settings ------------------------------------------------------------------------


def test_topic_config_is_kept_on_reopen_and_not_replaced_by_new_settings(open_log, data_dir):
    log = open_log(segment_bytes=4096)
    topic = log.topic("t", partitions=2, segment_bytes=2048, retention_bytes=100_000)
    topic_id = topic.topic_id
    log.close()

    log = open_log(segment_bytes=8192, retention_bytes=5)
    topic = log.topic("t", partitions=5, segment_bytes=1 << 20, retention_bytes=7)
    assert topic.partitions == 2
    assert topic.topic_id == topic_id
    assert (topic.config.segment_bytes, topic.config.retention_bytes) == (2048, 100_000)
    meta = json.loads((data_dir / "t" / "topic.json").read_text())
    assert meta["config"]["segment_bytes"] == 2048 and meta["partitions"] == 2
    part = topic.partition(1)
    fill(part, 60, size=90)
    assert all(size <= 2048 for _, _, size in segment_table(part)), "the stored segment_bytes applies"
    other = log.topic("u")
    assert other.config.segment_bytes == 8192, "new topics take the log's current defaults"


def test_set_config_is_stored_and_applies_on_next_open(open_log):
    log = open_log()
    log.topic("t").set_config(retention_bytes=1234, **{"segment.bytes": 4096})
    log.close()
    config = open_log().topic("t").config
    assert (config.retention_bytes, config.segment_bytes) == (1234, 4096)


def test_delete_topic_removes_its_data_and_its_name(open_log, data_dir):
    log = open_log()
    part = log.topic("t", partitions=2).partition(1)
    part.append(b"x")
    log.topic("keep").partition(0).append(b"kept")
    log.delete_topic("t")

    assert "t" not in log and log.topics() == ["keep"]
    assert not (data_dir / "t").exists()
    assert not any(name.startswith("t.") for name in os.listdir(data_dir)), "no leftover directory"
    with pytest.raises(UnknownTopicError):
        log.get_topic("t")
    with pytest.raises(UnknownTopicError):
        log.delete_topic("t")
    with pytest.raises(LogClosedError):
        part.append(b"y")
    assert log.topic("t").partition(0).log_end_offset == 0, "a new topic of that name starts empty"
    log.delete_topic("t")
    log.close()

    log = open_log()
    assert log.topics() == ["keep"]
    assert [r.value for r in log.topic("keep").partition(0).read(0)] == [b"kept"]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../escape", "x" * 250, "with space", "ümlaut",
                                  "nul\x00byte", "semi;colon"])
def test_invalid_topic_names_are_refused_naming_them(open_log, data_dir, name):
    log = open_log()
    with pytest.raises(InvalidTopicError) as info:
        log.topic(name)
    if name:
        assert info.value.topic == name
        assert name in str(info.value) or len(name) > 200
    assert log.topics() == []
    assert sorted(os.listdir(data_dir)) == ["@lock", "@readable"]  # the directory lock, the readers' page


def test_longest_legal_topic_name_is_accepted(open_log):
    name = "a.b_c-" + "x" * 243
    assert len(name) == 249
    open_log().topic(name).partition(0).append(b"x")


@pytest.mark.parametrize("make", [
    lambda log: log.topic("t", retention_foo=1),
    lambda log: log.topic("t", **{"retention.foo": 1}),
])
def test_unknown_topic_setting_is_refused_naming_it(open_log, make):
    log = open_log()
    with pytest.raises(ConfigError) as info:
        make(log)
    assert "retention" in str(info.value) and "foo" in str(info.value)
    assert log.topics() == []


def test_unknown_log_setting_is_refused_naming_it(data_dir):
    with pytest.raises(ConfigError, match="segmentbytes"):
        pstream.Log(data_dir, segmentbytes=1)


@pytest.mark.parametrize("setting, value", [
    ("flush", "sometimes"), ("segment_bytes", 10), ("segment_bytes", 1 << 33), ("retention_ms", -5),
    ("write_buffer_bytes", 100), ("message_timestamp_type", "Whenever"), ("flush_ms", "10"),
    ("index_interval_bytes", True),
])
def test_invalid_setting_value_is_refused_naming_the_setting(open_log, setting, value):
    log = open_log()
    with pytest.raises(ConfigError, match=setting):
        log.topic("t", **{setting: value})
    assert log.topics() == []


def test_kafka_dotted_setting_names_are_accepted(open_log):
    config = open_log().topic("t", **{"retention.ms": 1000, "segment.bytes": 4096}).config
    assert (config.retention_ms, config.segment_bytes) == (1000, 4096)


def test_unknown_partition_number_is_refused(open_log):
    topic = open_log().topic("t", partitions=2)
    for number in (-1, 2):
        with pytest.raises(UnknownPartitionError) as info:
            topic.partition(number)
        assert (info.value.topic, info.value.partition) == ("t", number)


def test_appending_after_close_raises_log_closed(open_log):
    log = open_log()
    part = log.topic("t").partition(0)
    part.append(b"x")
    log.close()
    with pytest.raises(LogClosedError):
        part.append(b"y")
    with pytest.raises(LogClosedError):
        log.topic("u")


# --- durability -----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [
    dict(flush="always"),
    dict(flush="interval", flush_ms=60_000),
    dict(flush="bytes", flush_bytes=1 << 30),
])
def test_every_flush_policy_is_durable_after_close(open_log, policy):
    log = open_log(**policy)
    part = log.topic("t").partition(0)
    values = fill(part, 200, size=50)
    part.append_many([(None, b"many %d" % i) for i in range(20)])
    if policy["flush"] == "always":
        assert part.durable_offset == part.log_end_offset
    assert part.durable_offset <= part.log_end_offset
    log.close()
    assert part.durable_offset == part.log_end_offset == 220

    part = open_log().topic("t").partition(0)
    assert [r.value for r in part.read(0, max_records=200)] == values
    assert part.log_end_offset == 220


def _wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_interval_flush_syncs_without_being_asked(open_log):
    part = open_log(flush="interval", flush_ms=20).topic("t").partition(0)
    fill(part, 50)
    assert _wait_until(lambda: part.durable_offset == 50)


def test_bytes_flush_syncs_once_the_threshold_is_reached(open_log):
    part = open_log(flush="bytes", flush_bytes=16384).topic("t").partition(0)
    part.append(b"small")
    time.sleep(0.05)
    assert part.durable_offset == 0, "below flush_bytes nothing forces a sync"
    fill(part, 100, size=200)
    assert _wait_until(lambda: part.durable_offset > 1)
    part.flush()
    assert part.durable_offset == part.log_end_offset == 101


def test_batches_larger_than_the_write_buffer_round_trip(open_log):
    log = open_log(write_buffer_bytes=8192, max_message_bytes=4 << 20, segment_bytes=1 << 20)
    part = log.topic("t").partition(0)
    rng = random.Random(11)
    expected = []
    for i in range(12):
        kind = i % 3
        if kind == 0:
            value = rng.randbytes(rng.randrange(9000, 300_000))
            part.append(value)
            expected.append(value)
        elif kind == 1:
            batch = [rng.randbytes(rng.randrange(500, 20_000)) for _ in range(20)]
            part.append_many([(None, v) for v in batch])
            expected.extend(batch)
        else:
            value = rng.randbytes(700_000)
            part.append_batch(_core.encode_batch([(None, value, [], None)]))
            expected.append(value)
        part.append(b"small %d" % i)
        expected.append(b"small %d" % i)
    assert [r.value for r in part.read(0)] == expected
    log.close()
    assert [r.value for r in open_log().topic("t").partition(0).read(0)] == expected


# --- threads and asyncio ----------------------------------------------------------------------


def _append_from_threads(parts, threads=4, per_thread=150):
    """Each thread appends (singly and in batches) to random partitions; returns what was acknowledged."""
    acked: list[list[tuple[int, int, bytes]]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(n):
        rng = random.Random(n)
        try:
            start.wait()
            for i in range(per_thread):
                which = rng.randrange(len(parts))
                if rng.random() < 0.3:
                    values = [b"t%d-%d.%d" % (n, i, j) for j in range(rng.randrange(1, 6))]
                    first = parts[which].append_many([(None, v) for v in values])
                    acked[n].extend((which, first + j, v) for j, v in enumerate(values))
                else:
                    value = b"t%d-%d" % (n, i) + b"." * rng.randrange(200)
                    acked[n].append((which, parts[which].append(value), value))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors, errors
    return acked


def _check_thread_results(parts, acked):
    for n, entries in enumerate(acked):
        per_part = {}
        for which, offset, _ in entries:
            per_part.setdefault(which, []).append(offset)
        for offsets in per_part.values():
            assert offsets == sorted(offsets), f"thread {n} saw its own appends out of order"
    for which, part in enumerate(parts):
        mine = {offset: value for entries in acked for w, offset, value in entries if w == which}
        count = sum(1 for entries in acked for w, _, _ in entries if w == which)
        assert len(mine) == count, "two appends got the same offset"
        assert sorted(mine) == list(range(part.log_end_offset)), "offsets are not contiguous"
        assert {r.offset: r.value for r in part.read(0)} == mine


@pytest.mark.parametrize("flush", ["always", "interval"])
def test_threads_appending_to_one_partition_get_unique_contiguous_offsets(open_log, flush):
    part = open_log(flush=flush, segment_bytes=16384).topic("t").partition(0)
    acked = _append_from_threads([part])
    _check_thread_results([part], acked)
    assert len(part.segments()) > 1


def test_threads_appending_to_several_partitions_get_unique_contiguous_offsets(open_log):
    log = open_log(shards=2, flush="always", segment_bytes=16384)
    parts = list(log.topic("t", partitions=4))
    acked = _append_from_threads(parts)
    _check_thread_results(parts, acked)


def test_reader_thread_sees_every_record_while_writers_append(open_log):
    part = open_log(flush="interval", flush_ms=1, segment_bytes=8192).topic("t").partition(0)
    stop = threading.Event()
    seen: list[tuple[int, bytes]] = []
    failures: list[BaseException] = []

    def tail():
        offset = 0
        try:
            while not stop.is_set() or offset < part.log_end_offset:
                for rec in part.read(offset):
                    seen.append((rec.offset, rec.value))
                    offset = rec.offset + 1
        except BaseException as exc:
            failures.append(exc)

    reader = threading.Thread(target=tail)
    reader.start()
    try:
        acked = _append_from_threads([part], threads=3, per_thread=200)
    finally:
        stop.set()
        reader.join(30)
    assert not failures, failures
    expected = sorted((offset, value) for entries in acked for _, offset, value in entries)
    assert seen == expected


def test_wait_for_wakes_an_asyncio_waiter_when_another_thread_appends(open_log):
    part = open_log().topic("t").partition(0)
    part.append(b"existing")

    async def scenario():
        waiter = asyncio.ensure_future(part.wait_for(1))
        await asyncio.sleep(0.05)
        assert not waiter.done(), "nothing was appended yet"
        threading.Timer(0.05, part.append, args=(b"new",)).start()
        return await asyncio.wait_for(waiter, 10)

    assert asyncio.run(scenario()) == 2


def test_wait_for_returns_at_once_when_the_offset_exists(open_log):
    part = open_log().topic("t").partition(0)
    part.append(b"a")
    part.append(b"b")
    coroutine = part.wait_for(1)
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)  # completes without ever suspending
    assert done.value.value == 2


def test_wait_for_wakes_several_waiters_on_several_partitions(open_log):
    log = open_log(shards=2)
    parts = list(log.topic("t", partitions=3))

    async def scenario():
        waiters = [asyncio.ensure_future(p.wait_for(i)) for i, p in enumerate(parts)]
        await asyncio.sleep(0.02)

        def produce():
            for i, p in enumerate(parts):
                for _ in range(i + 1):
                    p.append(b"x")

        threading.Thread(target=produce).start()
        return await asyncio.wait_for(asyncio.gather(*waiters), 10)

    assert asyncio.run(scenario()) == [1, 2, 3]
