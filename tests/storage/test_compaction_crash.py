"""The cleaner's swap under failure: a fault point failing each file call of a pass, and a
kill -9 at each step of the swap (.cleaned written, renamed to .swap, installed, old files
unlinked, renamed to .log, indexed, checkpoint). After each, the log reopens with either the
old or the cleaned segments, never both: every offset read once, every record the one written
at that offset, every key's latest value there, no temporary file left; and the next pass
finishes the job.

Run as a script, this file is the process that gets killed:
    python test_compaction_crash.py DATA_DIR STEP PASS OCCURRENCE
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import pstream
from pstream import _core, errors

SETTINGS = dict(shards=1, segment_bytes=1536, retention_ms=None, cleaner=False, retention_check_ms=None)
STEPS = ["cleaned", "swap", "installed", "unlinked", "renamed", "indexed", "checkpoint"]


@pytest.fixture(autouse=True)
def disarmed():
    _core.disarm_faults()
    yield
    _core.disarm_faults()


def populate(log, first=0, last=240, keys=17) -> list[tuple[int, bytes | None, bytes | None]]:
    """Several segments of overwritten keys, tombstones, keyless and compressed batches."""
    part = log.topic("t", cleanup_policy="compact").partition(0)
    model = []
    for i in range(first, last):
        key = b"k%d" % (i % keys)
        value = None if i % 13 == 0 else b"value-%d-" % i + b"x" * (i % 40)
        if i % 5 == 0:
            base = part.append_many([(key, value), (None, b"keyless")], compression="zstd")
            model += [(base, key, value), (base + 1, None, b"keyless")]
        else:
            model.append((part.append(value, key=key), key, value))
    part.roll()
    part.flush()
    return model


def check(log, model) -> None:
    part = log.topic("t").partition(0)
    got = [(r.offset, r.key, r.value) for r in part.read(0)]
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(set(offsets)), "an offset is served twice: old and new segments mixed"
    segments = part.segments()
    for (base, nxt, _, path), (later, _, _, _) in zip(segments, segments[1:]):
        assert nxt <= later, f"{path} holds offsets up to {nxt - 1}, past the next segment's base {later}: " \
                             f"old and new segments mixed"
    by_offset = {o: (o, k, v) for o, k, v in model}
    for rec in got:
        assert by_offset[rec[0]] == rec
    latest = {}
    for _, key, value in model:
        if key is not None:
            latest[key] = value
    assert part.latest() == {k: v for k, v in latest.items() if v is not None}
    leftovers = [n for n in os.listdir(part.path) if n.endswith((".cleaned", ".swap", ".deleted"))]
    assert not leftovers


def settled(log, model) -> None:
    """After the crash or failure: the data checks out now, and again once a pass completes."""
    check(log, model)
    part = log.topic("t").partition(0)
    part.clean()
    check(log, model)
    keys = [r.key for r in part.read(0)]
    assert len(keys) == len(set(keys)), "a full pass left a key twice"


# --- fault points ------------------------------------------------------------------------

@pytest.mark.parametrize("op, match, after", [
    ("pwrite", ".log.cleaned", 0),
    ("fdatasync", ".log.cleaned", 0),
    ("open", ".log.cleaned", 0),
    ("rename", ".log.cleaned", 0),        # .cleaned -> .swap: the pass is abandoned, old segments stay
    ("rename", ".log.swap", 1),           # .swap -> .log: installed; the next open finishes the swap
    ("fdatasync", ".log.cleaned", 3),     # a later group
])
def test_a_failing_file_call_leaves_the_old_or_the_new_segments(open_log, data_dir, op, match, after):
    log = open_log(**SETTINGS)
    model = populate(log)
    part = log.topic("t").partition(0)
    _core.arm_fault(op, "EIO", path_contains=match, after=after, count=1)
    with pytest.raises(errors.StorageIOError):
        part.clean()
    assert _core.disarm_faults() == 1
    got = [(r.offset, r.key, r.value) for r in part.read(0)]
    assert [o for o, _, _ in got] == sorted({o for o, _, _ in got})
    log.close()
    settled(open_log(**SETTINGS), model)


def test_a_failed_pass_leaves_the_checkpoint_where_it_was(open_log):
    log = open_log(**SETTINGS)
    populate(log)
    part = log.topic("t").partition(0)
    _core.arm_fault("pwrite", "ENOSPC", path_contains=".log.cleaned", count=1)
    with pytest.raises(errors.StorageIOError):
        part.clean()
    assert part.cleaner_state()["first_dirty_offset"] == 0
    assert part.clean()["end_offset"] == part.high_watermark


# --- kill -9 -----------------------------------------------------------------------------

def _crash(data_dir: Path, step: str, pass_no: int, occurrence: int) -> None:
    proc = subprocess.run([sys.executable, "-P", __file__, str(data_dir), step, str(pass_no), str(occurrence)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _kill_test(open_log, data_dir, step, pass_no, occurrence):
    """Pass 1 rewrites the segments one by one (each fills a group); before pass 2 the child
    appends more and rolls, so pass 2 groups several small cleaned segments into one: a swap
    that replaces several files."""
    log = open_log(**SETTINGS)
    model = populate(log)
    log.close()
    _crash(data_dir, step, pass_no, occurrence)
    if pass_no == 2:
        model += [(o, k, v) for o, k, v in _second_batch_model(model)]
    settled(open_log(**SETTINGS), model)


def _second_batch_model(model):
    """What the child appends before pass 2: populate(240, 300, keys=3) at the next offsets (a few
    keys only, so the older groups keep records of the others)."""
    out, offset = [], model[-1][0] + 1
    for i in range(240, 300):
        key = b"k%d" % (i % 3)
        value = None if i % 13 == 0 else b"value-%d-" % i + b"x" * (i % 40)
        if i % 5 == 0:
            out += [(offset, key, value), (offset + 1, None, b"keyless")]
            offset += 2
        else:
            out.append((offset, key, value))
            offset += 1
    return out


@pytest.mark.parametrize("pass_no", [1, 2])
@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step_of_the_swap(open_log, data_dir, step, pass_no):
    _kill_test(open_log, data_dir, step, pass_no, 1)


@pytest.mark.slow
@pytest.mark.parametrize("occurrence", [2, 3, 5])
@pytest.mark.parametrize("step", STEPS[:-1])
def test_kill_9_at_each_step_of_a_later_group(open_log, data_dir, step, occurrence):
    _kill_test(open_log, data_dir, step, 1, occurrence)


def _main(data_dir: str, step: str, pass_no: int, occurrence: int) -> None:
    seen = [0]
    current = [1]

    def hook(at: str) -> None:
        if at == step and current[0] == pass_no:
            seen[0] += 1
            if seen[0] == occurrence:
                os.kill(os.getpid(), signal.SIGKILL)

    _core._cleaner_hook = hook
    log = pstream.Log(data_dir, **SETTINGS)
    part = log.topic("t").partition(0)
    part.clean()
    populate(log, 240, 300, keys=3)
    current[0] = 2
    result = part.clean()
    print(result, file=sys.stderr)
    os._exit(3)     # the step never came: the test fails on this exit code


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
