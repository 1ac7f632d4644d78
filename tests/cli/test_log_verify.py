"""`pstream log verify` checks records and indexes, not only CRCs.

A data directory is written with the embedded log (every batch indexed), then damaged the
ways a CRC cannot see: a batch whose valid CRC covers lying records (what the broker stored
before it validated batches), and .index/.timeindex entries that point at the wrong place
or go back. verify names the file and position of the first problem and exits 1.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

import pstream
from pstream.record import reference



def lying_batch() -> bytes:
    """One record, a header claiming 1000, a valid CRC (the issue's first example)."""
    body = b"\x00\x00\x00\x01\x02v\x00"   # attributes, ts delta 0, offset delta 0, null key, value b"v", 0 headers
    section = bytes([len(body) << 1]) + body
    return reference.frame_section(section, 1000)


def verify(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "pstream", "log", "verify", str(path)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture
def partition_dir(tmp_path):
    """A partition of 5 batches, each in the offset and time indexes."""
    with pstream.Log(str(tmp_path / "data"), shards=1) as log:
        part = log.topic("audit", partitions=1, index_interval_bytes=0).partition(0)
        for i in range(5):
            part.append_many([(None, b"record %d-%d" % (i, j), [], 1000 + 10 * i + j) for j in range(3)],
                              compression="lz4" if i % 2 else "none")
    path = tmp_path / "data" / "audit" / "0"
    assert os.path.getsize(path / "00000000000000000000.index") == 8 * 4   # every batch after the first
    return path


def test_a_healthy_partition_verifies(partition_dir):
    out = verify(partition_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 batches, 15 records" in out.stdout and "the indexes and metadata files agree" in out.stdout


def test_records_that_lie_under_a_valid_crc_are_reported(tmp_path):
    with pstream.Log(str(tmp_path / "data"), shards=1) as log:
        part = log.topic("lies", partitions=1).partition(0)
        part.append_many([(None, b"fine", [], 1000)])
        part.append_batch(lying_batch())   # the embedded API checks only the CRC: as the broker did
    segment = tmp_path / "data" / "lies" / "0" / "00000000000000000000.log"
    second = len(pstream._core.encode_batch([(None, b"fine", [], 1000)]))
    out = verify(segment.parent)
    assert out.returncode == 1, out.stdout
    assert f"CORRUPT {segment} at position {second}: batch at offset 1: the batch declares 1000 records " \
           f"but holds 1" in out.stdout
    assert "1 good batches before it" in out.stdout


def test_an_index_entry_off_a_batch_boundary_is_reported(partition_dir):
    index = partition_dir / "00000000000000000000.index"
    data = bytearray(index.read_bytes())
    relative, position = struct.unpack_from(">II", data, 8)
    struct.pack_into(">II", data, 8, relative, position + 1)
    index.write_bytes(bytes(data))
    out = verify(partition_dir)
    assert out.returncode == 1
    assert f"CORRUPT {index} at position 8: offset {relative} points at byte {position + 1}, which is not a " \
           f"batch boundary" in out.stdout


def test_an_index_entry_naming_the_wrong_offset_is_reported(partition_dir):
    index = partition_dir / "00000000000000000000.index"
    data = bytearray(index.read_bytes())
    relative, position = struct.unpack_from(">II", data, 16)
    struct.pack_into(">II", data, 16, relative - 1, position)
    index.write_bytes(bytes(data))
    out = verify(partition_dir)
    assert out.returncode == 1 and f"CORRUPT {index} at position 16: offset {relative - 1} points at byte " \
                                   f"{position}, the batch ending at offset {relative}" in out.stdout


def test_index_offsets_that_go_back_and_a_torn_entry_are_reported(partition_dir):
    index = partition_dir / "00000000000000000000.index"
    data = index.read_bytes()
    index.write_bytes(data[:16] + data[8:16] + data[24:])
    assert "at position 16: relative offset" in verify(partition_dir).stdout
    index.write_bytes(data + b"\x00\x00\x00")
    assert f"CORRUPT {index} at position 32: 35 bytes is not a whole number of entries" in verify(partition_dir).stdout


def test_time_index_entries_that_go_back_or_disagree_with_the_batch_are_reported(partition_dir):
    timeindex = partition_dir / "00000000000000000000.timeindex"
    data = bytearray(timeindex.read_bytes())
    assert len(data) == 12 * 4
    original = bytes(data)
    timestamp, relative = struct.unpack_from(">qI", data, 12)
    struct.pack_into(">qI", data, 12, timestamp - 100, relative)   # before the entry ahead of it
    timeindex.write_bytes(bytes(data))
    out = verify(partition_dir)
    assert out.returncode == 1 and f"CORRUPT {timeindex} at position 12: entry ({timestamp - 100}" in out.stdout
    data = bytearray(original)
    struct.pack_into(">qI", data, 36, 10**13, struct.unpack_from(">qI", data, 36)[1])
    timeindex.write_bytes(bytes(data))
    assert f"CORRUPT {timeindex} at position 36: timestamp {10**13} for offset 14, whose batch has max timestamp" \
        in verify(partition_dir).stdout


def test_a_missing_index_is_not_a_problem(partition_dir):
    os.unlink(partition_dir / "00000000000000000000.index")
    os.unlink(partition_dir / "00000000000000000000.timeindex")
    assert verify(partition_dir).returncode == 0


@pytest.mark.parametrize("name", ["topic.json", "log-start-offset"])
def test_a_damaged_metadata_file_is_reported(partition_dir, name):
    data_dir = partition_dir.parent.parent
    path = partition_dir.parent / name if name == "topic.json" else partition_dir / name
    path.write_bytes(b'{"not": json')
    out = verify(data_dir)
    assert out.returncode == 1, out.stdout
    assert f"CORRUPT {path}" in out.stdout and "1 corrupt file(s)" in out.stdout
