"""peek_batch, cut_batches and scan_segment: the core's in-place readers of batch headers,
boundaries and segment files, checked against the pure-Python reference codec."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pstream import _core
from pstream.errors import ShortBufferError
from pstream.record import reference

FIELDS = reference.BatchHeader._fields

records = st.lists(
    st.tuples(st.none() | st.binary(max_size=20), st.none() | st.binary(max_size=40), st.just([]),
              st.integers(0, 1 << 41)),
    min_size=1, max_size=5)
batch_specs = st.lists(
    st.fixed_dictionaries({
        "records": records,
        "compression": st.sampled_from(["none", "gzip", "zstd"]),
        "producer_id": st.integers(-1, 1 << 40),
        "producer_epoch": st.integers(-1, 100),
        "base_sequence": st.integers(-1, 1 << 20),
        "partition_leader_epoch": st.integers(-1, 10),
        "is_transactional": st.booleans(),
        "is_control": st.booleans(),
        "timestamp_type": st.sampled_from([0, 1]),
    }),
    min_size=1, max_size=6)


def encode_log(specs: list[dict], first_offset: int = 0) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """Back-to-back batches by the reference codec, and each one's (start, end, base, last)."""
    out, rows, offset = bytearray(), [], first_offset
    for spec in specs:
        batch = reference.encode_batch(base_offset=offset, **spec)
        last = offset + len(spec["records"]) - 1
        rows.append((len(out), len(out) + len(batch), offset, last))
        out += batch
        offset = last + 1
    return bytes(out), rows


def assert_same_header(fast, oracle: reference.BatchHeader) -> None:
    for name in FIELDS:
        assert getattr(fast, name) == getattr(oracle, name), name
    assert fast.last_offset == oracle.base_offset + oracle.last_offset_delta
    assert fast.size == oracle.batch_length + reference.LOG_OVERHEAD
    assert fast.compression == oracle.attributes & 0x07
    assert fast.timestamp_type == (1 if oracle.attributes & 0x08 else 0)
    assert fast.is_transactional == bool(oracle.attributes & 0x10)
    assert fast.is_control == bool(oracle.attributes & 0x20)


@settings(deadline=None, max_examples=150)
@given(specs=batch_specs, first=st.integers(0, 1 << 50))
def test_peek_reads_every_header_field_as_the_reference_does(specs, first) -> None:
    data, rows = encode_log(specs, first)
    for start, _end, _base, _last in rows:
        assert_same_header(_core.peek_batch(data, start), reference.validate_batch(data[start:]))


@settings(deadline=None, max_examples=100)
@given(header=st.binary(min_size=61, max_size=61))
def test_peek_reads_any_61_bytes_without_judging_them(header: bytes) -> None:
    fast = _core.peek_batch(memoryview(header))
    oracle = reference.BatchHeader(*reference.HEADER.unpack(header))
    for name in FIELDS:
        assert getattr(fast, name) == getattr(oracle, name), name


@pytest.mark.parametrize("size, position", [(0, 0), (60, 0), (100, 40), (100, 101), (100, -1)])
def test_peek_refuses_fewer_than_61_header_bytes(size: int, position: int) -> None:
    with pytest.raises(ShortBufferError):
        _core.peek_batch(bytes(size), position)


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(specs=batch_specs, cut=st.integers(0, 1 << 16))
def test_cut_finds_every_whole_batch_and_where_the_partial_tail_starts(specs, cut: int) -> None:
    data, rows = encode_log(specs)
    cut = min(cut, len(data))
    result = _core.cut_batches(memoryview(data)[:cut])
    whole = [row for row in rows if row[1] <= cut]
    assert result.count == len(whole) == len(result)
    assert result.bounds.tolist() == [[s, e] for s, e, _, _ in whole]
    assert result.offsets.tolist() == [[b, last] for _, _, b, last in whole]
    assert list(result) == [(s, e) for s, e, _, _ in whole]
    assert result.end == (whole[-1][1] if whole else 0)
    assert result.records == sum(last - b + 1 for _, _, b, last in whole)
    assert result.stop == (_core.CUT_END if result.end == cut else _core.CUT_PARTIAL)


@settings(deadline=None, max_examples=100)
@given(specs=batch_specs, below=st.integers(0, 40), max_bytes=st.integers(0, 3000), first_whole=st.booleans())
def test_cut_stops_at_an_offset_or_a_byte_budget(specs, below: int, max_bytes: int, first_whole: bool) -> None:
    data, rows = encode_log(specs)
    result = _core.cut_batches(data, below_offset=below, max_bytes=max_bytes, first_whole=first_whole)
    kept = []
    for start, end, base, last in rows:
        if base >= below or (end > max_bytes and not (first_whole and start == 0)):
            break
        kept.append((start, end))
    assert list(result) == kept
    if len(kept) < len(rows):
        assert result.stop == (_core.CUT_OFFSET if rows[len(kept)][2] >= below else _core.CUT_SIZE)


@pytest.mark.parametrize("length", [0, 48, -1])
def test_cut_stops_at_a_length_that_is_not_a_batch(length: int) -> None:
    good = reference.encode_batch([(b"k", b"v", [], 1)])
    bad = bytearray(good)
    bad[reference.POS_BATCH_LENGTH:reference.POS_BATCH_LENGTH + 4] = length.to_bytes(4, "big", signed=True)
    result = _core.cut_batches(good + bad + good)
    assert (list(result), result.end, result.stop) == ([(0, len(good))], len(good), _core.CUT_CORRUPT)


def test_cut_of_an_empty_buffer_is_empty() -> None:
    result = _core.cut_batches(b"")
    assert (result.count, result.end, result.records, result.stop) == (0, 0, 0, _core.CUT_END)
    assert result.bounds.shape == (0, 2)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=batch_specs, tail=st.sampled_from(["none", "zeros", "torn", "garbage"]), flip=st.integers(0, 1 << 16))
def test_scan_segment_yields_each_batch_with_its_crc_verdict(tmp_path, specs, tail: str, flip: int) -> None:
    data, rows = encode_log(specs)
    damaged = bytearray(data)
    hit = flip % len(rows)
    start, end = rows[hit][0], rows[hit][1]
    if flip & 1:   # a flipped byte inside the CRC'd range of one batch
        crc_start = reference.CRC_START
        damaged[start + crc_start + flip % (end - start - crc_start)] ^= 0x40
    extra = {"none": b"", "zeros": bytes(5000), "torn": data[rows[0][0]:rows[0][1] - 1],
             "garbage": b"\x00" * 8 + b"\x00\x00\x00\x05" + bytes(60)}[tail]
    path = tmp_path / f"{os.getpid()}-{flip}.log"
    path.write_bytes(bytes(damaged) + extra)
    with _core.scan_segment(path) as scan:
        seen = [(pos, header.base_offset, ok, bytes(scan.batch(pos, header))) for pos, header, ok in scan]
        assert (scan.end, scan.size) == (len(data), len(data) + len(extra))
        expected_stop = {"none": _core.SCAN_END, "zeros": _core.SCAN_ZEROS, "torn": _core.SCAN_PARTIAL,
                         "garbage": _core.SCAN_CORRUPT}[tail]
        assert scan.stop == expected_stop
    expected = []
    for start, end, base, _last in rows:
        piece = bytes(damaged[start:end])
        ok = reference.crc32c(piece[reference.CRC_START:]) == reference.BatchHeader(*reference.HEADER.unpack_from(piece)).crc
        expected.append((start, base, ok, piece))
    assert seen == expected


def test_scan_of_an_empty_segment_yields_nothing(tmp_path) -> None:
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(b"")
    scan = _core.scan_segment(path)
    assert list(scan) == [] and (scan.end, scan.size, scan.stop) == (0, 0, _core.SCAN_END)
    scan.close()


def test_scan_starts_at_a_given_position(tmp_path) -> None:
    data, rows = encode_log([{"records": [(b"k", b"v", [], 1)]}] * 3)
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(data)
    with _core.scan_segment(path, rows[1][0]) as scan:
        assert [pos for pos, _, _ in scan] == [rows[1][0], rows[2][0]]
