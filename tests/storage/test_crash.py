"""SIGKILL a writer at random moments; every acknowledged record must survive, intact.

The writer (crash_writer.py) appends with flush="always" and prints each acknowledged
append. After most kills this test opens the log (running recovery), reads everything
and checks: every acknowledged record is there with its value; every record served is
intact (its value matches its own sequence number; a CRC error fails the test); offsets
are contiguous; the log ends right after the last record and the next append gets that
offset. Records seen once (after a clean close) must be there in every later round.
After the other kills the next writer recovers the crashed log itself (and may be
killed while doing so).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pstream
import crash_writer

WRITER = Path(crash_writer.__file__).resolve()
ROUNDS = 24


def _child_env() -> dict:
    root = str(Path(pstream.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
    return env


def _wait_for_line(path: Path, prefix: bytes, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().startswith(prefix):
            return True
        time.sleep(0.005)
    return False


def _acknowledged(out: Path) -> list[tuple[int, int, int, int]]:
    """(partition, first offset, first seq, count) of every complete `ack` line."""
    acks = []
    for line in out.read_bytes().split(b"\n")[:-1]:  # the last piece is empty or cut by the kill
        if line.startswith(b"ack "):
            number, offset, seq, count = map(int, line.split()[1:])
            acks.append((number, offset, seq, count))
    return acks


def _verify(data_dir: Path, known: list[dict[int, int]], parent_seq: int) -> None:
    """Recovers the log and checks it against `known` (partition -> {offset: seq}); extends `known`."""
    with pstream.Log(data_dir, **crash_writer.SETTINGS) as log:
        for number, part in enumerate(log.topic(crash_writer.TOPIC, partitions=crash_writer.PARTITIONS)):
            present = {}
            for rec in part.read(0):  # a CorruptSegmentError here fails the test
                seq = crash_writer.seq_of(rec.value)
                where = f"partition {number} offset {rec.offset}"
                assert rec.value == crash_writer.value_for(seq), f"{where}: damaged value"
                assert rec.key == crash_writer.key_for(seq), f"{where}: damaged key"
                present[rec.offset] = seq
            offsets = sorted(present)
            assert offsets == list(range(part.log_start_offset, part.log_start_offset + len(offsets)))
            assert part.log_start_offset == 0
            assert part.damage is None, f"p{number}: a crash was taken for damage: {part.damage}"
            lost = {o: s for o, s in known[number].items() if present.get(o) != s}
            assert not lost, f"p{number}: acknowledged records lost or changed: {sorted(lost.items())[:10]}"
            end = offsets[-1] + 1 if offsets else 0
            assert part.log_end_offset == end
            value = crash_writer.value_for(parent_seq + number)
            assert part.append(value, key=crash_writer.key_for(parent_seq + number)) == end
            present[end] = parent_seq + number
            known[number].update(present)


@pytest.mark.slow
def test_acknowledged_records_survive_sigkill_at_random_moments(tmp_path):
    kill_loop(tmp_path, ROUNDS, seed=20240611)


def kill_loop(tmp_path: Path, rounds: int, seed: int) -> tuple[int, int]:
    """`rounds` writers killed at random moments, the log verified after most; returns
    (records acknowledged, verifications). Shared with tests/chaos/test_kill9_embedded.py."""
    ROUNDS = rounds
    data_dir = tmp_path / "data"
    rng = random.Random(seed)
    known: list[dict[int, int]] = [{} for _ in range(crash_writer.PARTITIONS)]
    env = _child_env()
    acked_total = verified = 0
    for round_number in range(ROUNDS):
        out, err = tmp_path / f"round{round_number}.out", tmp_path / f"round{round_number}.err"
        first_seq = round_number * 1_000_000
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            child = subprocess.Popen([sys.executable, str(WRITER), str(data_dir), str(first_seq),
                                      str(round_number)], stdout=stdout, stderr=stderr, env=env)
        try:
            if rng.random() < 0.85:  # mostly kill while appending, sometimes during start or recovery
                assert _wait_for_line(out, b"ready", 20), f"writer did not start: {err.read_text()}"
                time.sleep(rng.uniform(0.0, 0.25))
            else:
                time.sleep(rng.uniform(0.0, 0.3))
            assert child.poll() is None, f"writer exited by itself ({child.returncode}): {err.read_text()}"
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=20) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

        acks = _acknowledged(out)
        for number, offset, seq, count in acks:
            for i in range(count):
                previous = known[number].setdefault(offset + i, seq + i)
                assert previous == seq + i, f"p{number} offset {offset + i} acknowledged twice"
        acked_total += sum(a[3] for a in acks)
        # Now and then the next writer recovers the crashed log itself (and may be killed doing it).
        if round_number == ROUNDS - 1 or rng.random() < 0.7:
            _verify(data_dir, known, parent_seq=first_seq + 900_000)
            verified += 1

    assert acked_total > 20 * ROUNDS, "the writer should have acknowledged records before most kills"
    assert verified >= ROUNDS // 2
    return acked_total, verified
