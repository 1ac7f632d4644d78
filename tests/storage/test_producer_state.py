"""Idempotent producer state: Kafka's sequence rules, pending appends, snapshots, recovery
from a real partition log, and producer ids that are never reused."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pstream
from pstream import _core
from pstream.storage import producer_state
from pstream.storage.producer_state import (
    INT32_MAX,
    ProducerIds,
    ProducerStateManager,
    SequenceCheck,
    last_sequence_of,
)
from pstream.errors import PStreamError

OK, DUPLICATE, OUT_OF_ORDER = SequenceCheck.OK, SequenceCheck.DUPLICATE, SequenceCheck.OUT_OF_ORDER
INVALID_EPOCH, UNKNOWN_PRODUCER = SequenceCheck.INVALID_EPOCH, SequenceCheck.UNKNOWN_PRODUCER
PID = 42


def append(m: ProducerStateManager, pid, epoch, base_seq, count, base_offset, ts=1000):
    """begin + complete one batch of `count` records after checking it is accepted."""
    last = last_sequence_of(base_seq, count)
    assert m.check(pid, epoch, base_seq, last) == (OK, None)
    m.complete(m.begin(pid, epoch, base_seq, last), base_offset, base_offset + count - 1, ts)


@pytest.fixture
def manager(tmp_path) -> ProducerStateManager:
    return ProducerStateManager(str(tmp_path / "t" / "0"))


# --- sequence rules ------------------------------------------------------------------------


def test_unknown_producer_is_accepted_at_any_sequence(manager):
    assert manager.check(PID, 0, 0, 4) == (OK, None)
    assert manager.check(PID, 3, 17, 20) == (OK, None)


def test_unknown_producer_must_start_at_zero_when_strict(tmp_path):
    m = ProducerStateManager(str(tmp_path), accept_unknown_sequence=False)
    assert m.check(PID, 0, 0, 4) == (OK, None)
    assert m.check(PID, 0, 5, 9) == (UNKNOWN_PRODUCER, None)


def test_next_batch_in_sequence_is_ok_and_a_gap_or_overlap_is_out_of_order(manager):
    append(manager, PID, 0, 0, 5, base_offset=0)
    assert manager.check(PID, 0, 5, 9) == (OK, None)
    assert manager.check(PID, 0, 6, 9) == (OUT_OF_ORDER, None)
    assert manager.check(PID, 0, 3, 7) == (OUT_OF_ORDER, None)


def test_older_epoch_is_fenced(manager):
    append(manager, PID, 3, 0, 1, base_offset=0)
    assert manager.check(PID, 2, 1, 1) == (INVALID_EPOCH, None)
    assert manager.check(PID, 2, 0, 0) == (INVALID_EPOCH, None)


def test_new_epoch_resets_sequences(manager):
    append(manager, PID, 0, 0, 10, base_offset=0)
    assert manager.check(PID, 1, 10, 10) == (OUT_OF_ORDER, None)
    append(manager, PID, 1, 0, 2, base_offset=10)
    assert manager.check(PID, 1, 2, 2) == (OK, None)
    # The old epoch's batches are gone: its sequences are not duplicates any more.
    assert manager.check(PID, 1, 0, 9) == (OUT_OF_ORDER, None)
    assert manager.check(PID, 0, 0, 9) == (INVALID_EPOCH, None)


def test_each_of_the_last_five_batches_is_a_duplicate_with_its_offset(manager):
    for i in range(6):
        append(manager, PID, 0, 2 * i, 2, base_offset=100 + 2 * i)
    for i in range(1, 6):
        assert manager.check(PID, 0, 2 * i, 2 * i + 1) == (DUPLICATE, 100 + 2 * i)
    # The sixth-oldest fell out of the window: it is now just out of order.
    assert manager.check(PID, 0, 0, 1) == (OUT_OF_ORDER, None)
    # A duplicate needs the same sequence range, not just the same base.
    assert manager.check(PID, 0, 4, 4) == (OUT_OF_ORDER, None)
    # Nor is a retry from another epoch a duplicate.
    assert manager.check(PID, 1, 10, 11) == (OUT_OF_ORDER, None)


def test_sequences_wrap_around_after_int32_max(manager):
    assert last_sequence_of(INT32_MAX - 1, 4) == 1
    append(manager, PID, 0, INT32_MAX - 2, 3, base_offset=0)
    assert manager.check(PID, 0, 0, 3) == (OK, None)
    append(manager, PID, 0, 0, 4, base_offset=3)
    assert manager.check(PID, 0, INT32_MAX - 2, INT32_MAX) == (DUPLICATE, 0)
    assert manager.check(PID, 0, 4, 4) == (OK, None)
    m = ProducerStateManager(manager.directory)
    append(m, PID, 0, INT32_MAX - 1, 4, base_offset=0)  # one batch across the wrap
    assert m.check(PID, 0, 2, 2) == (OK, None)
    assert m.check(PID, 0, INT32_MAX - 1, 1) == (DUPLICATE, 0)


def test_producers_are_tracked_independently(manager):
    append(manager, 1, 0, 0, 3, base_offset=0)
    append(manager, 2, 5, 0, 1, base_offset=3)
    assert manager.check(1, 0, 3, 3) == (OK, None)
    assert manager.check(2, 5, 1, 1) == (OK, None)
    assert manager.check(2, 5, 0, 0) == (DUPLICATE, 3)


# --- pending appends -------------------------------------------------------------------------


def test_pending_batch_counts_for_the_next_check_and_is_a_pending_duplicate(manager):
    append(manager, PID, 0, 0, 2, base_offset=0)
    token = manager.begin(PID, 0, 2, 3)
    assert token.base_offset is None
    assert manager.check(PID, 0, 4, 4) == (OK, None)
    assert manager.check(PID, 0, 2, 3) == (DUPLICATE, None)
    assert manager.pending_duplicate(PID, 2, 3) is token
    assert manager.pending_duplicate(PID, 0, 1) is None
    manager.complete(token, 2, 3, 2000)
    assert (token.base_offset, token.last_offset, token.max_timestamp) == (2, 3, 2000)
    assert manager.check(PID, 0, 2, 3) == (DUPLICATE, 2)
    assert manager.pending_duplicate(PID, 2, 3) is None
    assert manager.producers()[0]["last_timestamp"] == 2000


def test_abort_of_the_last_pending_restores_the_expected_sequence(manager):
    append(manager, PID, 0, 0, 2, base_offset=0)
    first = manager.begin(PID, 0, 2, 3)
    second = manager.begin(PID, 0, 4, 5)
    manager.abort(second)
    assert manager.check(PID, 0, 4, 5) == (OK, None)
    assert manager.check(PID, 0, 6, 6) == (OUT_OF_ORDER, None)
    manager.abort(first)
    assert manager.check(PID, 0, 2, 3) == (OK, None)
    with pytest.raises(ValueError, match="not pending"):
        manager.complete(first, 2, 3, 0)


def test_abort_of_a_new_producers_only_batch_forgets_the_producer(manager):
    token = manager.begin(PID, 4, 0, 0)
    assert manager.check(PID, 3, 0, 0) == (INVALID_EPOCH, None)
    manager.abort(token)
    assert manager.check(PID, 3, 7, 7) == (OK, None)
    assert manager.producers() == []


def test_abort_of_a_new_epochs_batch_restores_the_old_epoch(manager):
    append(manager, PID, 0, 0, 2, base_offset=0)
    token = manager.begin(PID, 1, 0, 0)
    assert manager.check(PID, 0, 2, 2) == (INVALID_EPOCH, None)
    manager.abort(token)
    assert manager.check(PID, 0, 2, 2) == (OK, None)
    assert manager.check(PID, 0, 0, 1) == (DUPLICATE, 0)


class Oracle:
    """The rules restated over each producer's whole history of batches still alive
    (completed or pending, in the order begun)."""

    def __init__(self):
        self.history: dict[int, list[dict]] = {}

    def check(self, pid, epoch, base, last):
        batches = self.history.get(pid, [])
        if not batches:
            return OK, None
        known = batches[-1]["epoch"]
        if epoch != known:
            return (INVALID_EPOCH, None) if epoch < known else ((OK if base == 0 else OUT_OF_ORDER), None)
        same_epoch = [b for b in batches if b["epoch"] == epoch][-5:]
        for b in same_epoch:
            if (b["base"], b["last"]) == (base, last):
                return DUPLICATE, b["offset"]
        return (OK if base == (batches[-1]["last"] + 1) % 2**31 else OUT_OF_ORDER), None


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_manager_agrees_with_a_model(tmp_path_factory, data):
    m = ProducerStateManager(str(tmp_path_factory.mktemp("p")))
    oracle = Oracle()
    pending: list[tuple[object, int, dict]] = []
    next_offset = 0
    for _ in range(data.draw(st.integers(1, 60))):
        op = data.draw(st.sampled_from(["send", "send", "send", "complete", "abort"]))
        if op == "send":
            pid = data.draw(st.sampled_from([1, 2]))
            known = oracle.history.get(pid, [])
            # Mostly the producer's own epoch and next sequence, so long runs build up.
            epoch = data.draw(st.sampled_from([0, 1, 2] + [known[-1]["epoch"]] * 6 if known else [0, 1, 2]))
            count = data.draw(st.integers(1, 3))
            choices = [0, INT32_MAX - 1, data.draw(st.integers(0, 12))]
            if known:
                choices += [(known[-1]["last"] + 1) % 2**31] * 4
                old = data.draw(st.sampled_from(known))
                choices.append(old["base"])
                count = data.draw(st.sampled_from([count, (old["last"] - old["base"]) % 2**31 + 1]))
            base = data.draw(st.sampled_from(choices))
            last = last_sequence_of(base, count)
            expected = oracle.check(pid, epoch, base, last)
            assert m.check(pid, epoch, base, last) == expected
            if expected[0] == OK:
                # The shard assigns offsets in the order batches are submitted ...
                batch = {"epoch": epoch, "base": base, "last": last, "offset": None, "count": count,
                         "assigned": next_offset}
                next_offset += count
                oracle.history.setdefault(pid, []).append(batch)
                pending.append((m.begin(pid, epoch, base, last), pid, batch))
        elif op == "complete" and pending:
            # ... but the handlers awaiting them may resume in any order (pipelined requests
            # over several partitions).
            token, _, batch = pending.pop(data.draw(st.integers(0, len(pending) - 1)))
            m.complete(token, batch["assigned"], batch["assigned"] + batch["count"] - 1, 0)
            batch["offset"] = batch["assigned"]
        elif op == "abort" and pending:
            token, pid, batch = pending.pop(data.draw(st.integers(0, len(pending) - 1)))
            m.abort(token)
            history = oracle.history[pid]
            del history[next(i for i, b in enumerate(history) if b is batch)]


# --- snapshots --------------------------------------------------------------------------------


def test_snapshot_round_trip(manager):
    for i in range(7):
        append(manager, 1, 0, i, 1, base_offset=i, ts=10 + i)
    append(manager, 2, 3, 100, 5, base_offset=7, ts=99)
    manager.snapshot(12)
    assert os.listdir(manager.directory) == ["00000000000000000012.snapshot"]
    loaded = ProducerStateManager(manager.directory)
    assert loaded.load() == 12
    assert loaded.producers() == manager.producers() == [
        {"producer_id": 1, "producer_epoch": 0, "last_sequence": 6, "last_timestamp": 16,
         "coordinator_epoch": -1, "current_txn_start_offset": -1},
        {"producer_id": 2, "producer_epoch": 3, "last_sequence": 104, "last_timestamp": 99,
         "coordinator_epoch": -1, "current_txn_start_offset": -1}]
    assert loaded.check(1, 0, 2, 2) == (DUPLICATE, 2)
    assert loaded.check(1, 0, 1, 1) == (OUT_OF_ORDER, None)
    assert loaded.check(2, 3, 100, 104) == (DUPLICATE, 7)
    assert loaded.check(1, 0, 7, 7) == (OK, None)


def test_a_new_snapshot_replaces_the_older_ones(manager):
    append(manager, 1, 0, 0, 1, base_offset=0)
    manager.snapshot(1)
    append(manager, 1, 0, 1, 1, base_offset=1)
    manager.snapshot(2)
    assert sorted(os.listdir(manager.directory)) == ["00000000000000000002.snapshot"]


def test_snapshot_with_appends_pending_covers_only_the_completed_ones(manager):
    append(manager, 1, 0, 0, 1, base_offset=0)
    append(manager, 1, 0, 1, 1, base_offset=1)
    manager.begin(1, 0, 2, 2)
    manager.snapshot(3)  # the pending batch may already be below 3, but is not in the state
    assert os.listdir(manager.directory) == ["00000000000000000002.snapshot"]


def test_load_without_a_snapshot_is_empty(manager):
    assert manager.load() == 0
    assert manager.producers() == []


@pytest.mark.parametrize("damage", ["truncate", "flip_digit", "not_json"])
def test_corrupt_snapshot_is_ignored_with_a_warning(manager, caplog, damage):
    append(manager, 1, 0, 0, 3, base_offset=0)
    manager.snapshot(3)
    path = os.path.join(manager.directory, "00000000000000000003.snapshot")
    with open(path) as f:
        text = f.read()
    if damage == "truncate":
        text = text[: len(text) // 2]
    elif damage == "flip_digit":
        data = json.loads(text)
        data["producers"][0]["batches"][0][2] = 1  # a wrong offset, still valid JSON
        text = json.dumps(data)
    else:
        text = "\x00" * 40
    with open(path, "w") as f:
        f.write(text)
    fresh = ProducerStateManager(manager.directory)
    with caplog.at_level(logging.WARNING, logger="pstream.producer_state"):
        assert fresh.load() == 0
    assert fresh.producers() == []
    assert path in caplog.text


# --- recovery from a real partition ----------------------------------------------------------


@pytest.fixture
def log(tmp_path):
    log = pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None)
    yield log
    log.close()


NOW_MS = int(time.time() * 1000)  # record timestamps the log's time retention keeps


def produce(part, pid, epoch, base_seq, count, ts=NOW_MS):
    batch = _core.encode_batch([(None, b"v%d" % i, [], ts + i) for i in range(count)],
                               producer_id=pid, producer_epoch=epoch, base_sequence=base_seq)
    return part.append_batch(batch)


def test_recover_rebuilds_the_state_from_the_log(log, monkeypatch):
    monkeypatch.setattr(producer_state, "READ_BYTES", 200)  # many read_batches calls
    part = log.topic("t").partition(0)
    offsets = {}
    for i in range(7):
        offsets[i] = produce(part, 7, 0, 2 * i, 2)
        part.append(b"plain")  # a non-idempotent record between them
    first_epoch1 = produce(part, 8, 1, INT32_MAX, 2)  # wraps to 0
    m = ProducerStateManager(part.path)
    m.recover(part)
    for i in range(2, 7):
        assert m.check(7, 0, 2 * i, 2 * i + 1) == (DUPLICATE, offsets[i])
    assert m.check(7, 0, 2, 3) == (OUT_OF_ORDER, None)
    assert m.check(7, 0, 14, 14) == (OK, None)
    assert m.check(8, 1, INT32_MAX, 0) == (DUPLICATE, first_epoch1)
    assert m.check(8, 1, 1, 1) == (OK, None)
    assert m.check(8, 0, 1, 1) == (INVALID_EPOCH, None)
    assert {p["producer_id"]: p["last_timestamp"] for p in m.producers()} == {7: NOW_MS + 1, 8: NOW_MS + 1}


def test_recover_replays_only_past_the_snapshot(log):
    part = log.topic("t").partition(0)
    before = [produce(part, 7, 0, i, 1) for i in range(3)]
    m = ProducerStateManager(part.path)
    m.recover(part)
    m.snapshot(part.log_end_offset)
    after = [produce(part, 7, 0, i, 1) for i in range(3, 6)]
    produce(part, 9, 0, 0, 1)
    fresh = ProducerStateManager(part.path)
    fresh.recover(part)
    assert fresh.check(7, 0, 1, 1) == (DUPLICATE, before[1])
    assert fresh.check(7, 0, 5, 5) == (DUPLICATE, after[2])
    assert fresh.check(7, 0, 6, 6) == (OK, None)
    assert fresh.check(9, 0, 0, 0) == (DUPLICATE, 6)
    # Replaying batches the state already holds changes nothing.
    again = ProducerStateManager(part.path)
    again.recover(part)
    again.recover(part)
    assert again.producers() == fresh.producers()


def test_snapshot_past_the_log_end_is_rebuilt_from_the_log(log, caplog):
    part = log.topic("t").partition(0)
    produce(part, 7, 0, 0, 2)
    stale = ProducerStateManager(part.path)
    append(stale, 7, 0, 0, 50, base_offset=0)
    stale.snapshot(50)  # as if the log had lost its tail after this snapshot
    m = ProducerStateManager(part.path)
    with caplog.at_level(logging.WARNING, logger="pstream.producer_state"):
        m.recover(part)
    assert "past the log end" in caplog.text
    assert m.check(7, 0, 0, 1) == (DUPLICATE, 0)
    assert m.check(7, 0, 2, 2) == (OK, None)


def test_recover_starts_at_the_log_start_offset(log):
    part = log.topic("t").partition(0)
    produce(part, 7, 0, 0, 2)
    part.roll()
    produce(part, 7, 0, 2, 2)
    part.delete_records(2)
    m = ProducerStateManager(part.path)
    m.recover(part)
    assert m.check(7, 0, 2, 3) == (DUPLICATE, 2)
    assert m.check(7, 0, 0, 1) == (OUT_OF_ORDER, None)


def test_snapshot_files_do_not_disturb_the_partition_log(tmp_path):
    with pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None) as log:
        part = log.topic("t").partition(0)
        produce(part, 7, 0, 0, 3)
        m = ProducerStateManager(part.path)
        m.recover(part)
        m.snapshot(part.log_end_offset)
    with pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None) as log:
        part = log.topic("t").partition(0)
        assert _core.segment_bases(part.path) == [0]
        assert part.log_end_offset == 3
        assert produce(part, 7, 0, 3, 1) == 3
        m = ProducerStateManager(part.path)
        m.recover(part)
        assert m.check(7, 0, 3, 3) == (DUPLICATE, 3)


def test_snapshot_creates_a_missing_partition_directory(tmp_path):
    m = ProducerStateManager(str(tmp_path / "no" / "such" / "dir"))
    m.snapshot(0)
    assert os.listdir(m.directory) == ["00000000000000000000.snapshot"]


# --- expiry ---------------------------------------------------------------------------------------


def test_expire_drops_idle_producers_but_not_those_with_appends_pending(manager):
    append(manager, 1, 0, 0, 1, base_offset=0, ts=1_000)
    append(manager, 2, 0, 0, 1, base_offset=1, ts=1_000)
    append(manager, 3, 0, 0, 1, base_offset=2, ts=50_000)
    manager.begin(2, 0, 1, 1)
    assert manager.expire(now_ms=61_000, max_idle_ms=60_000) == 1
    assert [p["producer_id"] for p in manager.producers()] == [2, 3]
    assert manager.check(1, 0, 5, 5) == (OK, None)  # forgotten: accepted as new


# --- producer ids ------------------------------------------------------------------------------------


def test_producer_ids_are_never_reused_across_reopens_and_crashes(tmp_path):
    data_dir = str(tmp_path / "data")
    seen = set()
    for _ in range(3):
        ids = ProducerIds(data_dir)  # the previous instance is simply dropped, as in a crash
        got = [ids.allocate() for _ in range(1500)]
        assert all(i > 0 for i in got)
        assert len(set(got)) == len(got) and not seen & set(got)
        seen.update(got)
    crashed = ProducerIds(data_dir)
    one = crashed.allocate()
    assert one not in seen and ProducerIds(data_dir).allocate() not in seen | {one}


def test_producer_ids_are_reserved_in_blocks(tmp_path, monkeypatch):
    writes = []
    real = producer_state.layout.write_json_atomic
    monkeypatch.setattr(producer_state.layout, "write_json_atomic",
                        lambda path, data: (writes.append(data), real(path, data)))
    ids = ProducerIds(str(tmp_path))
    for _ in range(producer_state.ID_BLOCK + 1):
        ids.allocate()
    assert len(writes) == 2


def test_unreadable_producer_id_file_is_an_error_not_a_restart_from_one(tmp_path):
    (tmp_path / "producer_ids.json").write_text('{"reserved_up_to": 10')
    with pytest.raises(PStreamError, match="producer id"):
        ProducerIds(str(tmp_path))


def test_allocate_reserved_never_writes_and_never_waits(tmp_path, monkeypatch):
    ids = ProducerIds(str(tmp_path))
    assert ids.allocate_reserved() is None   # nothing reserved yet: that needs the disk
    first = ids.allocate()
    with ids._lock:   # another thread is reserving a block: no waiting for it
        assert ids.allocate_reserved() is None
    writes = []
    monkeypatch.setattr(producer_state.layout, "write_json_atomic", lambda *a: writes.append(a))
    taken = [ids.allocate_reserved() for _ in range(producer_state.ID_BLOCK - 1)]
    assert taken == list(range(first + 1, first + producer_state.ID_BLOCK)) and not writes
    assert ids.allocate_reserved() is None   # the block is used up
