"""Columnar reads (Partition.read_columns, _core.columns_from_batches): the same records
as the pure-Python reference codec and as read(), in numpy arrays.

The reference decoder is the oracle for the codec-level properties (every codec, null
keys and values, headers, control batches, offsets inside a batch, corrupt bytes); a
real Log is the oracle's other half (read() over segments, compressed batches, limits,
empty ranges, a corrupt segment).
"""

from __future__ import annotations

import struct
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pstream
from pstream import _core, errors
from pstream.record import reference

import segment_files

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def rows(cols: _core.RecordColumns) -> list[tuple]:
    """(offset, timestamp, key, value, header count) per record, taken apart with numpy only."""
    assert cols.offsets.dtype == np.int64 and cols.timestamps.dtype == np.int64
    assert cols.key_lengths.dtype == np.int32 and cols.value_lengths.dtype == np.int32
    assert cols.header_counts.dtype == np.int32
    assert cols.key_offsets.dtype == np.int64 and cols.value_offsets.dtype == np.int64
    assert cols.keys.dtype == np.uint8 and cols.values.dtype == np.uint8
    n = len(cols)
    for lengths, starts, data in ((cols.key_lengths, cols.key_offsets, cols.keys),
                                  (cols.value_lengths, cols.value_offsets, cols.values)):
        assert len(lengths) == n and len(starts) == n + 1
        assert starts[0] == 0 and starts[-1] == len(data)
        assert np.array_equal(np.diff(starts), np.maximum(lengths, 0))  # a null takes no bytes
    out = []
    for i in range(n):
        key = None if cols.key_lengths[i] < 0 else cols.keys[cols.key_offsets[i]:cols.key_offsets[i + 1]].tobytes()
        value = (None if cols.value_lengths[i] < 0
                 else cols.values[cols.value_offsets[i]:cols.value_offsets[i + 1]].tobytes())
        assert cols.key(i) == key and cols.value(i) == value
        out.append((int(cols.offsets[i]), int(cols.timestamps[i]), key, value, int(cols.header_counts[i])))
    return out


def as_row(rec) -> tuple:
    return (rec.offset, rec.timestamp_ms, rec.key, rec.value, len(rec.headers))


# --- the codec against the reference decoder ---------------------------------------------------

nullable_bytes = st.none() | st.binary(max_size=40)
headers = st.lists(st.tuples(st.text(max_size=4), st.none() | st.binary(max_size=6)), max_size=3)
timestamps = st.integers(min_value=-1, max_value=1 << 45)
record_tuples = st.tuples(nullable_bytes, nullable_bytes, headers, timestamps)
batch_specs = st.tuples(st.lists(record_tuples, min_size=1, max_size=6),
                        st.sampled_from(CODECS),
                        st.sampled_from([0, 1]),                            # timestamp type
                        st.sampled_from([False, False, False, True]))       # control: one in four


def encode_log(specs: list[tuple], base: int) -> tuple[bytes, list[tuple]]:
    """Back-to-back batches from `base` (reference encoder), and what the reference decodes
    from them: (is_control, last_offset, [rows])."""
    data, decoded, offset = b"", [], base
    for records, codec, ts_type, control in specs:
        batch = reference.encode_batch(records, base_offset=offset, compression=codec, timestamp_type=ts_type,
                                       is_control=control, now_ms=0)
        header, recs = reference.decode_batch(batch)
        data += batch
        decoded.append((header.is_control, header.last_offset, [as_row(r) for r in recs]))
        offset = header.last_offset + 1
    return data, decoded


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(batch_specs, max_size=6), base=st.integers(0, 1 << 40), data=st.data())
def test_columns_are_the_records_the_reference_decodes(specs, base, data):
    encoded, decoded = encode_log(specs, base)
    end = decoded[-1][1] + 1 if decoded else base
    start = data.draw(st.integers(base, end), label="start")
    limit = data.draw(st.none() | st.integers(0, 12), label="max_records")
    wanted = [row for control, _, recs in decoded if not control for row in recs if row[0] >= start]

    cols = _core.columns_from_batches(encoded, offset=start, max_records=limit)

    got = rows(cols)
    assert got == wanted[:limit]
    # next_offset: every record in [start, next_offset) was returned; all of them when no limit cut the read
    assert got == [row for row in wanted if row[0] < cols.next_offset]
    assert (got[-1][0] if got else start - 1) < cols.next_offset <= end
    if limit is None or len(wanted) < limit:
        assert cols.next_offset == end


@settings(max_examples=400, deadline=None)
@given(records=st.lists(record_tuples, min_size=1, max_size=4), codec=st.sampled_from(CODECS),
       position=st.integers(0, 10_000), mask=st.integers(1, 255))
def test_a_damaged_records_section_raises_what_decode_batch_raises(records, codec, position, mask):
    """The CRC sealed again over a damaged byte: only the record parse can catch it, and it
    must fail (class and position) exactly as the decoder read() uses, or agree with it."""
    batch = bytearray(reference.encode_batch(records, compression=codec, now_ms=0))
    batch[61 + position % (len(batch) - 61)] ^= mask   # the records, or the compressed stream
    struct.pack_into(">I", batch, 17, reference.crc32c(batch[21:]))
    try:
        header, expected = reference.decode_batch(bytes(batch))
    except errors.CorruptBatchError as exc:
        with pytest.raises(type(exc)) as caught:
            _core.columns_from_batches(bytes(batch))
        assert type(caught.value) is type(exc) and caught.value.position == exc.position
        return
    assert rows(_core.columns_from_batches(bytes(batch))) == [as_row(r) for r in expected]


def test_a_crc_mismatch_raises_before_any_record_is_read():
    batch = bytearray(_core.encode_batch([(b"k", b"v" * 50, [], 1)] * 3))
    batch[-5] ^= 1
    with pytest.raises(errors.CrcMismatchError) as caught:
        _core.columns_from_batches(bytes(batch))
    assert caught.value.position == 17


def test_a_batch_cut_short_raises():
    batch = _core.encode_batch([(b"k", b"v", [], 1)])
    with pytest.raises(errors.ShortBufferError):
        _core.columns_from_batches(batch + batch[:30])


def test_a_header_key_that_is_not_utf8_is_refused():
    body = b"\x00" + reference.varint(0) + reference.varint(0) + reference.varint(-1) + reference.varint(-1)
    body += reference.varint(1) + reference.varint(1) + b"\xff" + reference.varint(-1)
    section = reference.varint(len(body)) + body
    batch = bytearray(reference.HEADER.pack(0, 49 + len(section), -1, 2, 0, 0, 0, 5, 5, -1, -1, -1, 1) + section)
    struct.pack_into(">I", batch, 17, reference.crc32c(batch[21:]))
    with pytest.raises(errors.BadRecordError) as caught:
        reference.decode_batch(bytes(batch))
    position = caught.value.position
    with pytest.raises(errors.BadRecordError) as caught:
        _core.columns_from_batches(bytes(batch))
    assert caught.value.position == position


def test_offsets_with_gaps_inside_a_batch_keep_their_own_offsets():
    """A compacted batch keeps its lastOffsetDelta and loses records in between."""
    def record(delta: int, value: bytes) -> bytes:
        body = (b"\x00" + reference.varint(delta) + reference.varint(delta) + reference.varint(-1)
                + reference.varint(len(value)) + value + reference.varint(0))
        return reference.varint(len(body)) + body

    section = record(0, b"a") + record(2, b"c") + record(5, b"f")
    batch = bytearray(reference.HEADER.pack(100, 49 + len(section), -1, 2, 0, 0, 5, 1000, 1005, -1, -1, -1, 3)
                      + section)
    struct.pack_into(">I", batch, 17, reference.crc32c(batch[21:]))
    cols = _core.columns_from_batches(bytes(batch), offset=101)
    assert rows(cols) == [(102, 1002, None, b"c", 0), (105, 1005, None, b"f", 0)]
    assert cols.next_offset == 106
    cols = _core.columns_from_batches(bytes(batch), offset=101, max_records=1)
    assert rows(cols) == [(102, 1002, None, b"c", 0)] and cols.next_offset == 105


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="max_records"):
        _core.columns_from_batches(b"", max_records=-2)
    with pytest.raises(ValueError, match="max_bytes"):
        _core.ColumnsBuilder(0, -1, -1)


# --- a real log: read_columns against read() --------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(appends=st.lists(st.tuples(st.lists(record_tuples, min_size=1, max_size=20), st.sampled_from(CODECS)),
                        min_size=1, max_size=12),
       data=st.data())
def test_read_columns_returns_what_read_returns(appends, data):
    with tempfile.TemporaryDirectory() as folder, pstream.Log(folder, shards=1, retention_check_ms=None) as log:
        part = log.topic("t", segment_bytes=2048).partition(0)
        for records, codec in appends:
            part.append_many(records, compression=codec)
        end = part.high_watermark
        start = data.draw(st.integers(0, end), label="start")
        limit = data.draw(st.none() | st.integers(0, 50), label="max_records")
        cols = part.read_columns(start, max_records=limit, max_bytes=1 << 30)
        expected = [as_row(r) for r in part.read(start, max_records=limit)]
        assert rows(cols) == expected
        if limit is not None and len(expected) == limit:
            assert cols.next_offset == (expected[-1][0] + 1 if expected else start)
        else:
            assert cols.next_offset == end
        # Pages of at most `budget` stored bytes (the first batch of each whatever its size)
        # add up to the same records.
        budget = data.draw(st.integers(1, 3000), label="max_bytes")
        paged, offset = [], start
        while offset < end:
            page = part.read_columns(offset, max_bytes=budget)
            assert len(page) > 0 and page.next_offset > offset
            paged += rows(page)
            offset = page.next_offset
        assert paged == [as_row(r) for r in part.read(start)]


@pytest.fixture
def part(open_log):
    return open_log(retention_check_ms=None).topic("t", segment_bytes=4096).partition(0)


def test_paging_with_next_offset_sees_every_record_once(part):
    for i in range(300):
        headers = [("i", b"%d" % i)] if i % 5 == 0 else None
        part.append(b"v%d" % i, key=None if i % 3 else b"k%d" % i, headers=headers)
    part.append_many([(b"z", b"compressed %d" % i) for i in range(40)], compression="zstd")
    seen, offset = [], 7
    while offset < part.high_watermark:
        cols = part.read_columns(offset, max_records=9, max_bytes=600)
        assert 0 < len(cols) <= 9
        seen += rows(cols)
        offset = cols.next_offset
    assert len(part.segments()) > 3
    assert seen == [as_row(r) for r in part.read(7)]
    assert len(seen) == 333


def test_max_bytes_takes_whole_batches_that_fit_and_always_the_first(part):
    sizes = []
    for i in range(10):
        sizes.append(len(_core.encode_batch([(None, b"x" * 200, [], 0)] * (i + 1))))
        part.append_many([(None, b"x" * 200)] * (i + 1))
    starts = np.cumsum([0] + [i + 1 for i in range(10)])
    # the first batch alone is larger than max_bytes: it comes back whole
    cols = part.read_columns(0, max_bytes=10)
    assert len(cols) == 1 and cols.next_offset == 1
    # exactly the first three batches fit; a byte less and only two do
    budget = sum(sizes[:3])
    assert part.read_columns(0, max_bytes=budget).next_offset == starts[3]
    assert part.read_columns(0, max_bytes=budget - 1).next_offset == starts[2]
    # from inside a batch, that batch counts whole
    cols = part.read_columns(int(starts[4]) + 2, max_bytes=sizes[4] + sizes[5])
    assert cols.offsets.tolist() == list(range(int(starts[4]) + 2, int(starts[6])))


def test_empty_ranges(part):
    cols = part.read_columns(0)
    assert len(cols) == 0 and cols.next_offset == 0
    assert cols.key_offsets.tolist() == [0] and cols.values.size == 0
    for i in range(5):
        part.append(b"v", key=b"k")
    assert len(part.read_columns(5)) == 0 and part.read_columns(5).next_offset == 5
    cols = part.read_columns(2, max_records=0)
    assert len(cols) == 0 and cols.next_offset == 2
    with pytest.raises(errors.OffsetOutOfRangeError):
        part.read_columns(6)
    part.delete_records(3)
    with pytest.raises(errors.OffsetOutOfRangeError):
        part.read_columns(2)
    assert part.read_columns(3).offsets.tolist() == [3, 4]


def test_control_batches_are_skipped(part):
    part.append(b"before")
    # a COMMIT marker: key = version 0, type 1; value = version 0, coordinator epoch 0
    commit_marker = (b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00", [], 5)
    part.append_batch(_core.encode_batch([commit_marker], is_control=True, is_transactional=True, producer_id=7,
                                         producer_epoch=0))
    part.append(b"after")
    cols = part.read_columns(0)
    assert cols.offsets.tolist() == [0, 2] and cols.next_offset == 3
    assert [cols.value(i) for i in range(len(cols))] == [b"before", b"after"]
    # a range holding only the control batch is empty, and next_offset steps over it
    cols = part.read_columns(1, max_bytes=1)
    assert len(cols) == 0 and cols.next_offset == 2


def test_log_append_time_records_carry_the_append_time(open_log):
    part = open_log().topic("t", message_timestamp_type="LogAppendTime").partition(0)
    part.append_many([(None, b"a", [], 5), (None, b"b", [], 6)], compression="lz4")
    cols = part.read_columns(0)
    assert cols.timestamps.tolist() == [r.timestamp_ms for r in part.read(0)]
    assert cols.timestamps[0] > 10 ** 12


def test_a_corrupt_segment_raises_and_is_never_served(open_log, data_dir):
    log = open_log(retention_check_ms=None)
    part = log.topic("t", segment_bytes=2048).partition(0)
    for i in range(100):
        part.append(b"value %d" % i)
    part.flush()
    sealed = segment_files.log_files(data_dir / "t" / "0")[0]
    spans = segment_files.batch_spans(sealed)
    segment_files.flip_byte(sealed, spans[3].position + 70)   # inside the fourth batch's records
    assert part.read_columns(0, max_records=3).offsets.tolist() == [0, 1, 2]
    with pytest.raises(errors.CorruptSegmentError) as caught:
        part.read_columns(0)
    assert caught.value.offset is not None and str(sealed) in str(caught.value)
    with pytest.raises(errors.CorruptSegmentError):
        part.read_columns(spans[3].base_offset)


def test_topic_read_columns_reads_every_partition(open_log):
    topic = open_log().topic("t", partitions=3)
    for number in range(3):
        for i in range(number * 4):
            topic.partition(number).append(b"%d-%d" % (number, i))
    got = topic.read_columns({2: 5})
    assert sorted(got) == [0, 1, 2]
    assert [len(got[n]) for n in range(3)] == [0, 4, 3]
    assert got[2].value(0) == b"2-5"


def test_decoding_many_records_releases_the_gil():
    """One batch of 200,000 records: the header walk is one step, the decode pass runs
    with the GIL released (measured as test_gil measures the other calls)."""
    from test_gil import RELEASED, pace_meter

    batch = _core.encode_batch([(b"key-%06d" % i, b"v" * 100, [], i) for i in range(200_000)])
    assert len(_core.columns_from_batches(batch, check_crc=False)) == 200_000
    with pace_meter() as meter:
        rate = meter.solo_rate()
        share = meter.share_during(lambda: _core.columns_from_batches(batch, check_crc=False), repeat=7, rate=rate)
    assert share > RELEASED, f"the counter ran at only {share:.0%} of its pace while 200,000 records were decoded"
