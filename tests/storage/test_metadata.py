"""Metadata files (topic.json, broker.json, checkpoints): written atomically, read strictly; a
damaged one stops the start with a message naming the file and what to do, and
`verify_metadata_files` lists every one without opening the log."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import pstream
from pstream.storage import layout
from pstream.storage.metadata import CorruptMetadataError, verify_metadata_files


def make_data_dir(path) -> None:
    with pstream.Log(path, shards=1, retention_check_ms=None) as log:
        part = log.topic("t", partitions=2).partition(0)
        for i in range(10):
            part.append(b"%d" % i)
        part.delete_records(3)
    os.makedirs(path / layout.NODE_DIR, exist_ok=True)
    layout.write_json_atomic(str(path / layout.NODE_DIR / "broker.json"), {"cluster_id": "c", "node_id": 0})


DAMAGE = {
    "topic.json": ("t/topic.json", b'{"partitions": 2, "con'),
    "topic.json with a bad count": ("t/topic.json", json.dumps({"partitions": "two"}).encode()),
    "broker.json": ("@node/broker.json", b"\x00\x00\x00"),
    "log-start-offset": ("t/0/log-start-offset", b"three\n"),
}


def test_a_clean_data_directory_has_no_metadata_problem(tmp_path):
    make_data_dir(tmp_path / "data")
    assert verify_metadata_files(str(tmp_path / "data")) == []


@pytest.mark.parametrize("damage", DAMAGE)
def test_verify_names_each_damaged_metadata_file_and_what_to_do(tmp_path, damage):
    make_data_dir(tmp_path / "data")
    name, content = DAMAGE[damage]
    (tmp_path / "data" / name).write_bytes(content)
    problems = verify_metadata_files(str(tmp_path / "data"))
    assert [p.path for p in problems] == [str(tmp_path / "data" / name)]
    assert problems[0].advice and problems[0].reason


@pytest.mark.parametrize("damage", ["topic.json", "topic.json with a bad count", "log-start-offset"])
def test_a_damaged_metadata_file_stops_the_open_naming_it(tmp_path, damage):
    make_data_dir(tmp_path / "data")
    name, content = DAMAGE[damage]
    (tmp_path / "data" / name).write_bytes(content)
    with pytest.raises(CorruptMetadataError) as info:
        pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None)
    assert info.value.file == str(tmp_path / "data" / name)
    assert "to start," in str(info.value)
    # the directory lock went with the failed open: fixing the file lets the next open succeed
    (tmp_path / "data" / name).unlink()
    if damage.startswith("topic.json"):
        return
    pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None).close()


def test_a_broker_with_a_damaged_broker_json_stops_with_one_line_naming_it(tmp_path):
    make_data_dir(tmp_path / "data")
    path = tmp_path / "data" / "@node" / "broker.json"
    path.write_bytes(b'{"cluster_id": ')
    run = subprocess.run([sys.executable, "-P", "-m", "pstream", "serve", "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert str(path) in last and "delete it to start with a new cluster id" in last, run.stderr
    assert "Traceback" not in run.stderr


def test_write_json_atomic_fsyncs_the_file_and_its_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "m.json"
    layout.write_json_atomic(str(target), {"a": 1})
    assert synced == [str(target) + ".tmp", str(tmp_path)]
    assert json.loads(target.read_text()) == {"a": 1} and not (tmp_path / "m.json.tmp").exists()
