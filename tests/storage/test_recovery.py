"""Opening a damaged partition: torn tails, zero padding, bit rot, bad indexes; and the O_DIRECT writer.

A torn tail (a crash inside the last write) must be cut at the last whole batch with a
warning, and appends must go on from there. Damage anywhere else must never come back
as records: reading it raises CorruptSegmentError naming the file and position, and it
must not cost the intact data around it. Index files are disposable: whatever is in
them, reads stay right and the rebuilt files equal the ones a clean run writes.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import tempfile
from pathlib import Path

import pytest

from pstream import _core
from pstream.errors import CorruptSegmentError, StorageIOError
from segment_files import (
    HEADER_FIELDS,
    O_DIRECT,
    batch_spans,
    flip_byte,
    log_files,
    open_fd_flags,
    read_index,
)

SETTINGS = dict(segment_bytes=4096, retention_ms=None, retention_bytes=None)


def values_for(count: int, start: int = 0) -> list[bytes]:
    return [b"%06d|" % i + bytes([65 + i % 26]) * (40 + i % 50) for i in range(start, start + count)]


def write_partition(open_log, count: int = 120, **settings) -> tuple[list[bytes], Path]:
    """Appends `count` records (singles and batches of five) and closes the log."""
    log = open_log(**{**SETTINGS, **settings})
    part = log.topic("t").partition(0)
    values = values_for(count)
    i = 0
    while i < count:
        if i % 7 == 0 and i + 5 <= count:
            part.append_many([(None, v) for v in values[i:i + 5]])
            i += 5
        else:
            part.append(values[i])
            i += 1
    log.close()
    return values, Path(log.path) / "t" / "0"


def reopen(open_log, **settings):
    return open_log(**{**SETTINGS, **settings}).topic("t").partition(0)


def read_values(part, offset: int = 0) -> list[bytes]:
    return [r.value for r in part.read(offset)]


def assert_names_the_cut(message: str, offset: int, dropped: int) -> None:
    assert re.search(r"\bt-0\b|partition[ =]0\b", message), f"partition not named: {message}"
    assert re.search(rf"\boffset\D{{0,3}}{offset}\b", message), f"offset {offset} not named: {message}"
    assert re.search(rf"\b{dropped} bytes\b", message), f"{dropped} bytes dropped not named: {message}"
    assert "internal error" not in message, f"the reason for the cut is garbage: {message}"


# --- torn tails -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["cut_inside_records", "cut_inside_header", "cut_after_nine_bytes",
                                    "garbage_appended"])
def test_torn_tail_is_truncated_on_open_with_a_warning(open_log, storage_warnings, damage):
    values, part_dir = write_partition(open_log)
    last_file = log_files(part_dir)[-1]
    spans = batch_spans(last_file)
    last = spans[-1]
    assert last.end == last_file.stat().st_size
    if damage == "cut_inside_records":
        os.truncate(last_file, last.position + last.size // 2)
        expected_end, dropped = last.base_offset, last.size // 2
    elif damage == "cut_inside_header":
        os.truncate(last_file, last.position + 30)
        expected_end, dropped = last.base_offset, 30
    elif damage == "cut_after_nine_bytes":  # less than the 12 bytes of offset and length
        os.truncate(last_file, last.position + 9)
        expected_end, dropped = last.base_offset, 9
    else:
        garbage = b"\x7f" + random.Random(1).randbytes(776)
        with open(last_file, "ab") as f:
            f.write(garbage)
        expected_end, dropped = last.last_offset + 1, len(garbage)

    part = reopen(open_log)

    assert part.log_end_offset == expected_end
    assert read_values(part) == values[:expected_end]
    warnings = storage_warnings()
    assert len(warnings) == 1, warnings
    assert_names_the_cut(warnings[0], expected_end, dropped)
    assert part.append(b"after the cut") == expected_end
    part._log.close()
    tail = batch_spans(last_file)[-1]
    assert (tail.base_offset, tail.end) == (expected_end, last_file.stat().st_size), "bytes left past the cut"

    part = reopen(open_log)
    assert len(storage_warnings()) == 1, "the second open finds nothing to repair"
    assert read_values(part) == values[:expected_end] + [b"after the cut"]


def test_torn_tail_of_a_fresh_segment_leaves_it_empty_and_appends_at_its_base(open_log, storage_warnings):
    log = open_log(**SETTINGS)
    part = log.topic("t").partition(0)
    part.append(b"first")
    part.roll()
    part.append_many([(None, b"a"), (None, b"b")])
    log.close()
    last_file = log_files(Path(log.path) / "t" / "0")[-1]
    os.truncate(last_file, 20)

    part = reopen(open_log)
    assert part.log_end_offset == 1
    assert_names_the_cut(storage_warnings()[0], 1, 20)
    assert part.append(b"again") == 1
    assert read_values(part) == [b"first", b"again"]


def test_torn_batch_that_the_offset_index_points_at_is_cut_at_its_start(open_log, storage_warnings):
    """The last index entry names the torn batch itself: the log must still end before it."""
    log = open_log(**{**SETTINGS, "index_interval_bytes": 0})  # an index entry for (almost) every batch
    part = log.topic("t").partition(0)
    values = values_for(12)
    for v in values:
        part.append(v)
    log.close()
    last_file = log_files(Path(log.path) / "t" / "0")[-1]
    last = batch_spans(last_file)[-1]
    entries = read_index(last_file.with_suffix(".index"))
    assert entries[-1] == (last.last_offset - int(last_file.stem), last.position), "premise: indexed"
    os.truncate(last_file, last.end - 1)

    part = reopen(open_log)
    assert part.log_end_offset == last.base_offset == 11
    assert read_values(part) == values[:11]
    assert_names_the_cut(storage_warnings()[0], 11, last.size - 1)
    assert part.append(b"acknowledged") == 11
    part._log.close()
    part = reopen(open_log)
    assert read_values(part) == values[:11] + [b"acknowledged"]


def test_torn_tail_below_the_log_start_restarts_the_log_empty_at_the_log_start(open_log, storage_warnings):
    """delete_records up to the end, then a crash tears the tail below that log start.

    What is left is deleted data: as Kafka does, the log restarts empty at its start
    offset, hands out no offset twice, and what is appended then survives the next open.
    """
    log = open_log(**SETTINGS)
    part = log.topic("t").partition(0)
    for v in values_for(10):
        part.append(v)
    part.delete_records(10)
    log.close()
    last_file = log_files(Path(log.path) / "t" / "0")[-1]
    os.truncate(last_file, batch_spans(last_file)[-1].end - 3)  # offset 9 is torn

    part = reopen(open_log)
    assert (part.log_start_offset, part.log_end_offset) == (10, 10)
    assert storage_warnings(), "restarting the log must be reported"
    assert [part.append(b"new %d" % i) for i in range(3)] == [10, 11, 12]
    part._log.close()

    part = reopen(open_log)
    assert (part.log_start_offset, part.log_end_offset) == (10, 13)
    assert read_values(part, 10) == [b"new 0", b"new 1", b"new 2"]


def test_trailing_zero_padding_is_truncated_silently(open_log, storage_warnings):
    values, part_dir = write_partition(open_log)
    last_file = log_files(part_dir)[-1]
    end = last_file.stat().st_size
    with open(last_file, "ab") as f:
        f.write(bytes(3 * 4096 + 123))  # what O_DIRECT page padding and preallocation leave

    part = reopen(open_log)
    assert part.log_end_offset == len(values)
    assert read_values(part) == values
    assert storage_warnings() == []
    assert part.append(b"next") == len(values)
    part._log.close()
    assert batch_spans(last_file)[-1].end == last_file.stat().st_size > end


def test_zero_padding_after_an_older_segment_costs_no_later_segment(open_log, storage_warnings):
    """A crash between a roll and the old segment's final truncate leaves its preallocated zeros."""
    values, part_dir = write_partition(open_log)
    files = log_files(part_dir)
    assert len(files) > 3
    with open(files[1], "ab") as f:
        f.write(bytes(8192))

    part = reopen(open_log)
    assert [p.name for p in log_files(part_dir)] == [p.name for p in files]
    assert part.log_end_offset == len(values)
    assert read_values(part) == values
    assert storage_warnings() == []


# --- bit rot in sealed segments ------------------------------------------------------------


def _sealed_segment_with_damage(open_log, where: str, reopen_first: bool):
    """Writes several segments, flips one byte in the records of a batch of the second one."""
    log = open_log(**SETTINGS)
    part = log.topic("t").partition(0)
    values = values_for(150)
    for v in values:
        part.append(v)
    part.flush()
    files = log_files(Path(log.path) / "t" / "0")
    assert len(files) >= 4
    target_file = files[1]
    spans = batch_spans(target_file)
    victim = {"first": spans[0], "middle": spans[len(spans) // 2], "last": spans[-1]}[where]
    if reopen_first:
        log.close()
    flip_byte(target_file, victim.position + 61 + 5)
    if reopen_first:
        part = reopen(open_log)
    return part, values, target_file, victim


def _assert_only_the_victim_fails(part, values, target_file, victim):
    with pytest.raises(CorruptSegmentError) as info:
        part.read_batches(victim.base_offset, 1)
    assert Path(info.value.file) == target_file
    assert info.value.position == victim.position
    served = []
    with pytest.raises(CorruptSegmentError):
        for rec in part.read(victim.base_offset):
            served.append(rec.offset)
    assert served == [], "a corrupt batch must not come back as records"
    for offset in range(part.log_start_offset, part.log_end_offset):
        if offset == victim.base_offset:
            continue
        (header, records), = _core.iter_batches(part.read_batches(offset, 1))  # just the batch holding it
        assert [(r.offset, r.value) for r in records] == [(offset, values[offset])]
    assert read_values(part, victim.last_offset + 1) == values[victim.last_offset + 1:]


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_byte_in_a_sealed_segment_fails_reads_of_that_batch_only(open_log, where):
    part, values, target_file, victim = _sealed_segment_with_damage(open_log, where, reopen_first=False)
    _assert_only_the_victim_fails(part, values, target_file, victim)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_byte_in_a_sealed_segment_is_kept_and_reported_after_reopen(open_log, where):
    """Only a torn tail of the active segment may be cut at open; older segments are not the tail."""
    part, values, target_file, victim = _sealed_segment_with_damage(open_log, where, reopen_first=True)
    assert part.log_end_offset == len(values), "recovery dropped intact data after a bit flip"
    _assert_only_the_victim_fails(part, values, target_file, victim)


def test_read_serves_the_intact_batches_before_a_corrupt_one(open_log):
    part, values, target_file, victim = _sealed_segment_with_damage(open_log, "middle", reopen_first=False)
    segment_base = int(target_file.stem)
    served = []
    with pytest.raises(CorruptSegmentError):
        for rec in part.read(segment_base):
            served.append(rec.value)
    assert served == values[segment_base:victim.base_offset]


def test_no_flipped_header_bit_in_a_sealed_segment_is_ever_served(open_log):
    """Flip each bit pattern of each header byte of one batch: every read either raises or is right.

    The CRC covers only bytes 21.. of a batch; base offset, length, leader epoch and magic
    must be checked another way (offsets contiguous, lengths consistent) before serving.
    """
    log = open_log(**SETTINGS)
    part = log.topic("t").partition(0)
    values = values_for(120)
    for i in range(0, 120, 3):
        part.append_many([(None, v) for v in values[i:i + 3]])
    part.flush()
    target_file = log_files(Path(log.path) / "t" / "0")[1]
    spans = batch_spans(target_file)
    victim = spans[len(spans) // 2]
    first, last = spans[0].base_offset, spans[-1].last_offset
    wrong = []
    for field, positions in HEADER_FIELDS.items():
        for position in positions:
            for mask in (0x01, 0x40):
                flip_byte(target_file, victim.position + position, mask)
                try:
                    for offset in range(first, last + 1):
                        try:
                            got = [(r.offset, r.value) for r in part.read(offset, max_records=2)]
                        except CorruptSegmentError:
                            continue
                        want = [(o, values[o]) for o in range(offset, min(offset + 2, len(values)))]
                        if got != want:
                            wrong.append(f"{field} byte {position} ^{mask:#x}: read({offset}) gave "
                                         f"{[o for o, _ in got]}, want {[o for o, _ in want]}")
                            break
                finally:
                    flip_byte(target_file, victim.position + position, mask)
    assert not wrong, "damaged headers served as records:\n" + "\n".join(wrong)


def test_recovery_cuts_a_tail_batch_whose_offsets_do_not_follow(open_log, storage_warnings):
    values, part_dir = write_partition(open_log)
    last_file = log_files(part_dir)[-1]
    last = batch_spans(last_file)[-1]
    flip_byte(last_file, last.position + 4, 0x01)  # base offset += 2**24 (the CRC does not cover it)

    part = reopen(open_log)
    assert part.log_end_offset == last.base_offset
    assert read_values(part) == values[:last.base_offset]
    assert part.append(b"x") == last.base_offset
    assert len(storage_warnings()) == 1


# --- index files --------------------------------------------------------------------------------


def _index_damage(kind: str, index: Path, timeindex: Path, log_size: int) -> None:
    rng = random.Random(kind)
    data = index.read_bytes()
    if kind == "garbage":
        index.write_bytes(rng.randbytes(len(data)))
    elif kind == "short_by_a_partial_entry":
        index.write_bytes(data[:-5])
    elif kind == "half_the_entries":
        index.write_bytes(data[:len(data) // 16 * 8])
    elif kind == "empty":
        index.write_bytes(b"")
    elif kind == "non_monotonic":
        entries = [data[i:i + 8] for i in range(0, len(data), 8)]
        entries[1], entries[2] = entries[2], entries[1]
        index.write_bytes(b"".join(entries))
    elif kind == "entry_past_the_log_end":
        rel, _ = struct.unpack(">II", data[-8:])
        index.write_bytes(data + struct.pack(">II", rel + 1, log_size + 4096))
    elif kind == "last_entry_inside_a_batch":
        rel, pos = struct.unpack(">II", data[-8:])
        index.write_bytes(data[:-8] + struct.pack(">II", rel, pos + 1))
    elif kind == "timeindex_garbage":
        timeindex.write_bytes(rng.randbytes(len(timeindex.read_bytes())))
    elif kind == "timeindex_one_entry_from_the_future":
        timeindex.write_bytes(struct.pack(">qI", 1 << 60, 0))
    else:
        raise AssertionError(kind)


INDEX_DAMAGE = ["garbage", "short_by_a_partial_entry", "half_the_entries", "empty", "non_monotonic",
                "entry_past_the_log_end", "last_entry_inside_a_batch", "timeindex_garbage",
                "timeindex_one_entry_from_the_future"]


@pytest.mark.parametrize("segment", ["sealed", "active"])
@pytest.mark.parametrize("kind", INDEX_DAMAGE)
def test_damaged_index_is_rebuilt_and_reads_stay_right(open_log, kind, segment):
    log = open_log(segment_bytes=16384, index_interval_bytes=150, retention_ms=None)
    part = log.topic("t").partition(0)
    rng = random.Random(5)
    for i in range(400):
        part.append(rng.randbytes(rng.randrange(10, 120)), timestamp_ms=1_700_000_000_000 + i)
    expected = [(r.offset, r.value, r.timestamp_ms) for r in part.read(0)]
    max_ts = part.max_timestamp()
    log.close()
    part_dir = Path(log.path) / "t" / "0"
    files = log_files(part_dir)
    assert len(files) >= 3
    saved = {p.name: p.read_bytes() for p in part_dir.iterdir() if p.suffix in (".index", ".timeindex")}
    target = files[1] if segment == "sealed" else files[-1]
    assert len(read_index(target.with_suffix(".index"))) >= 4
    _index_damage(kind, target.with_suffix(".index"), target.with_suffix(".timeindex"), target.stat().st_size)

    part = reopen(open_log)
    assert [(r.offset, r.value, r.timestamp_ms) for r in part.read(0)] == expected
    for offset, value, _ in expected[::7]:
        assert [r.value for r in part.read(offset, max_records=1)] == [value]
    assert part.max_timestamp() == max_ts
    part._log.close()
    rebuilt = {p.name: p.read_bytes() for p in part_dir.iterdir() if p.suffix in (".index", ".timeindex")}
    assert rebuilt == saved


# --- O_DIRECT -------------------------------------------------------------------------------------


BLOCK_FILESYSTEMS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "bcachefs"}


def _filesystem_of(path: Path) -> str:
    best, fstype = "", ""
    real = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, mount_point, kind = line.split()[:3]
            mount_point = mount_point.replace("\\040", " ")
            if (real == mount_point or real.startswith(mount_point.rstrip("/") + "/")) \
                    and len(mount_point) >= len(best):
                best, fstype = mount_point, kind
    return fstype


@pytest.fixture
def disk_dir(tmp_path: Path):
    """A directory on a real block-device filesystem (tmpfs refuses O_DIRECT), or skip."""
    if not os.path.exists("/proc/mounts") or not hasattr(os, "O_DIRECT"):
        pytest.skip("needs Linux /proc and O_DIRECT")
    candidates = [tmp_path, Path(__file__).resolve().parent]
    for base in candidates:
        if _filesystem_of(base) in BLOCK_FILESYSTEMS:
            path = Path(tempfile.mkdtemp(prefix=".pstream-direct-", dir=base))
            try:
                try:
                    os.close(os.open(path / "probe", os.O_CREAT | os.O_WRONLY | os.O_DIRECT))
                except OSError:
                    continue
                yield path
                return
            finally:
                shutil.rmtree(path, ignore_errors=True)
    pytest.skip(f"no directory on a block filesystem among {candidates} "
                f"({[_filesystem_of(c) for c in candidates]})")


def _write_fixed_records(part) -> None:
    rng = random.Random(9)
    for i in range(300):
        if i % 10 == 0:
            part.append_many([(b"k%d" % j, rng.randbytes(rng.randrange(1, 900)), [], 1_700_000_000_000 + i)
                              for j in range(4)])
        else:
            part.append(rng.randbytes(rng.randrange(1, 3000)), key=b"%d" % i,
                        timestamp_ms=1_700_000_000_000 + i)


@pytest.mark.parametrize("direct_io", [True, False])
def test_segment_writer_uses_o_direct_exactly_when_asked(disk_dir, open_log, direct_io):
    log = open_log(disk_dir / "data", direct_io=direct_io, segment_bytes=64 << 10)
    part = log.topic("t").partition(0)
    _write_fixed_records(part)
    assert len(part.segments()) > 2, "rolled segments must be checked too"
    active = part.segments()[-1][3]
    flags = open_fd_flags(active)
    assert flags, f"no descriptor open on {active}"
    assert part.direct_io is direct_io
    if direct_io:
        assert any(f & O_DIRECT for f in flags), f"no O_DIRECT descriptor on {active}: {list(map(oct, flags))}"
    else:
        assert not any(f & O_DIRECT for f in flags), [oct(f) for f in flags]
    log.close()


def test_reads_from_the_file_use_o_direct_and_return_its_exact_bytes(disk_dir, open_log):
    """Served bytes come from page-aligned O_DIRECT reads through a bounce buffer: every
    unaligned start and length, across 1 MiB chunks and up to a finalized (truncated,
    unaligned) segment's end, must give the file's own bytes."""
    log = open_log(disk_dir / "data", direct_io=True, segment_bytes=3 << 20)
    part = log.topic("t").partition(0)
    rng = random.Random(7)
    for _ in range(400):
        part.append_batch(_core.encode_batch([(None, rng.randbytes(rng.randint(1, 40_000)), [], None)
                                              for _ in range(rng.randint(1, 3))]))
    part.flush()
    log.close()
    part = open_log(disk_dir / "data", direct_io=True).topic("t").partition(0)
    paths = [seg[3] for seg in part.segments()]
    assert len(paths) > 2
    # Sealed segments hold no descriptors between reads, nor does an idle partition's active one.
    assert open_fd_flags(paths[0]) == [] and open_fd_flags(paths[-1]) == []
    for path in paths:
        data = Path(path).read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            header = _core.validate_batch(memoryview(data)[pos:])
            got = part.read_batches(header.base_offset, rng.choice([1, 4096, 70_000, 1 << 20, 3 << 20]))
            assert len(got) >= header.size and got == data[pos:pos + len(got)], (path, pos)
            pos += header.size
    assert pos > 0
    # Once appended to, the active segment keeps the O_DIRECT reader a read opens.
    part.append(b"wakes the active segment")
    part.read_batches(part.high_watermark - 1, 1)
    assert any(f & O_DIRECT and f & os.O_ACCMODE == os.O_RDONLY for f in open_fd_flags(paths[-1]))


def test_direct_and_buffered_writers_leave_identical_files(disk_dir, open_log):
    contents = {}
    for direct_io in (True, False):
        log = open_log(disk_dir / f"data-{direct_io}", direct_io=direct_io, segment_bytes=64 << 10,
                       retention_ms=None)
        part = log.topic("t").partition(0)
        _write_fixed_records(part)
        records = [(r.offset, r.key, r.value, r.timestamp_ms) for r in part.read(0)]
        log.close()
        part_dir = Path(log.path) / "t" / "0"
        contents[direct_io] = (records, {p.name: p.read_bytes() for p in sorted(part_dir.iterdir())})
        reopened = open_log(disk_dir / f"data-{direct_io}", direct_io=direct_io).topic("t").partition(0)
        assert [(r.offset, r.key, r.value, r.timestamp_ms) for r in reopened.read(0)] == records
        reopened._log.close()
    assert contents[True] == contents[False]


# --- damage inside the active segment -------------------------------------------------------


def _damage_inside_the_active_segment(open_log):
    """Acked, fsynced records in one segment; one byte of a batch in the middle flipped."""
    log = open_log(segment_bytes=1 << 20, retention_ms=None)
    part = log.topic("t").partition(0)
    values = values_for(60)
    for v in values:
        part.append(v)     # flush="always": each one acknowledged after its fdatasync
    log.close()
    files = log_files(Path(log.path) / "t" / "0")
    assert len(files) == 1
    victim = batch_spans(files[0])[30]
    flip_byte(files[0], victim.position + 61 + 3)
    for index in (files[0].with_suffix(".index"), files[0].with_suffix(".timeindex")):
        index.unlink()   # as after a crash: the index lags, recovery scans the whole segment
    return values, files[0], victim


def test_corrupt_batch_followed_by_valid_ones_is_not_cut_and_refuses_writes(open_log, caplog):
    values, log_file, victim = _damage_inside_the_active_segment(open_log)
    size = log_file.stat().st_size

    part = reopen(open_log, segment_bytes=1 << 20)

    assert log_file.stat().st_size == size, "recovery cut acknowledged, fsynced records"
    assert part.log_end_offset == victim.base_offset, "readable up to the damage"
    assert read_values(part) == values[:victim.base_offset]
    assert part.damage["file"] == str(log_file) and part.damage["position"] == victim.position
    errors = [r.getMessage() for r in caplog.records if r.name == "pstream.storage" and r.levelname == "ERROR"]
    assert any(str(log_file) in m and f"position {victim.position}" in m and "pstream log truncate" in m
               for m in errors), errors
    with pytest.raises(StorageIOError, match="pstream log truncate") as info:
        part.append(b"would reuse an offset")
    assert (info.value.file, info.value.position) == (str(log_file), victim.position)
    with pytest.raises(StorageIOError):
        part.submit_batch(_core.encode_batch([(None, b"x", [], None)])).wait()
    with pytest.raises(StorageIOError):
        part.roll()
    part._log.close()
    assert log_file.stat().st_size == size, "closing cut the damaged segment"

    part = reopen(open_log, segment_bytes=1 << 20)
    assert part.log_end_offset == victim.base_offset and part.damage is not None


def test_operator_truncate_drops_the_damage_and_writes_resume(open_log, capsys):
    from pstream.cli.main import main

    values, log_file, victim = _damage_inside_the_active_segment(open_log)
    part = reopen(open_log, segment_bytes=1 << 20)
    assert main(["log", "truncate", str(log_file.parent), "--to", str(victim.base_offset)]) == 1, \
        "truncating under an open Log must be refused"
    part._log.close()

    # past the valid batches (the damage): refused, naming where they end
    assert main(["log", "truncate", str(log_file.parent), "--to", str(victim.base_offset + 1)]) == 1
    assert main(["log", "truncate", str(log_file.parent), "--to", str(victim.base_offset)]) == 0
    assert f"ends at offset {victim.base_offset}" in capsys.readouterr().out
    assert log_file.stat().st_size == victim.position

    part = reopen(open_log, segment_bytes=1 << 20)
    assert part.damage is None
    assert part.append(b"after the repair") == victim.base_offset
    assert read_values(part) == values[:victim.base_offset] + [b"after the repair"]


def test_corrupt_read_is_logged_once_with_file_and_position_and_counted(open_log, caplog):
    part, values, target_file, victim = _sealed_segment_with_damage(open_log, "middle", reopen_first=False)
    for _ in range(3):
        with pytest.raises(CorruptSegmentError):
            part.read_batches(victim.base_offset, 1)
    assert part.corrupt_reads == 3
    logged = [r.getMessage() for r in caplog.records if r.name == "pstream.storage" and r.levelname == "ERROR"]
    assert len(logged) == 1, logged
    assert str(target_file) in logged[0] and f"position {victim.position}" in logged[0]


def test_corrupt_log_start_checkpoint_stops_the_open_naming_the_file(open_log, data_dir):
    from pstream.storage.metadata import CorruptMetadataError

    log = open_log(**SETTINGS)
    part = log.topic("t").partition(0)
    for v in values_for(10):
        part.append(v)
    part.delete_records(5)
    log.close()
    checkpoint = data_dir / "t" / "0" / "log-start-offset"
    checkpoint.write_bytes(b"\x00\x17garbage")
    with pytest.raises(CorruptMetadataError, match="log start offset") as info:
        open_log(**SETTINGS)
    assert info.value.file == str(checkpoint)
