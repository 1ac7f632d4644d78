"""Transactions in a partition's producer state: open transactions and the last stable offset,
markers (Kafka's control batch bytes), the aborted-transaction list and its index, snapshots
that never cover a marker not yet applied, and recovery of all of it from a real log."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pstream
from pstream import _core
from pstream.errors import CoordinatorFencedError
from pstream.storage import txn_index
from pstream.storage.markers import decode_marker, encode_marker
from pstream.storage.producer_state import ProducerStateManager
from pstream.storage.txn_index import AbortedTxn

PID, OTHER = 7, 8


def txn_batch(m: ProducerStateManager, pid: int, seq: int, base_offset: int, count: int = 1, epoch: int = 0,
              log_end: int | None = None):
    token = m.begin(pid, epoch, seq, seq + count - 1, transactional=True,
                    log_end_offset=base_offset if log_end is None else log_end)
    m.complete(token, base_offset, base_offset + count - 1, 1000)


def marker(m: ProducerStateManager, pid: int, offset: int, commit: bool, epoch: int = 0):
    return m.complete_txn(m.begin_marker(pid, epoch), offset, commit, 0, 2000)


def test_marker_bytes_are_kafkas():
    batch = encode_marker(PID, 3, commit=True, coordinator_epoch=5, timestamp_ms=1234)
    assert len(batch) == 78
    header = _core.peek_batch(batch)
    assert (header.attributes, header.producer_id, header.producer_epoch, header.base_sequence,
            header.record_count) == (0x30, PID, 3, -1, 1)
    # The record as Kafka 3.9.2 wrote it (seen with xxd): key COMMIT, value coordinator epoch.
    assert batch[61:] == bytes.fromhex("20 00 00 00 08 00000001 0c 000000000005 00".replace(" ", ""))
    assert decode_marker(batch) == (PID, 3, True, 5, 1234)
    assert decode_marker(encode_marker(PID, 0, commit=False)).commit is False


def test_a_marker_from_an_older_coordinator_is_fenced(tmp_path):
    """Kafka's checkCoordinatorEpoch: once a coordinator at epoch 3 wrote a producer's marker,
    one at epoch 2 (deposed, a zombie) is refused; the same or a newer one is not."""
    m = ProducerStateManager(str(tmp_path))
    txn_batch(m, PID, 0, 0)
    assert m.complete_txn(m.begin_marker(PID, 0, 3), 1, True, 3, 2000) is None
    txn_batch(m, PID, 1, 2)
    with pytest.raises(CoordinatorFencedError, match=r"producerId 7: 2 \(zombie\), 3 \(current\)"):
        m.begin_marker(PID, 0, 2)
    assert m.open_txns == {PID: 2}   # still open: the current coordinator ends it
    assert m.complete_txn(m.begin_marker(PID, 0, 3), 3, False, 3, 2000) is not None
    m.begin_marker(OTHER, 0, 0)   # a producer no coordinator wrote for here yet


def test_open_transaction_holds_the_stable_offset(tmp_path):
    m = ProducerStateManager(str(tmp_path))
    assert m.first_unstable_offset() is None
    token = m.begin(PID, 0, 0, 0, transactional=True, log_end_offset=10)
    assert m.first_unstable_offset() == 10          # a bound until the offset is known
    m.complete(token, 12, 12, 1000)
    assert m.first_unstable_offset() == 12
    txn_batch(m, PID, 1, 20)
    assert m.first_unstable_offset() == 12          # later batches do not move it
    txn_batch(m, OTHER, 0, 15)
    assert m.first_unstable_offset() == 12
    assert marker(m, PID, 21, commit=True) is None
    assert m.first_unstable_offset() == 15
    assert m.producers()[1]["current_txn_start_offset"] == 15


def test_abort_is_listed_for_fetches_in_its_range(tmp_path):
    m = ProducerStateManager(str(tmp_path))
    txn_batch(m, PID, 0, 3)
    txn_batch(m, OTHER, 0, 5)
    aborted = marker(m, PID, 6, commit=False)
    assert aborted == AbortedTxn(PID, 3, 6, 5)      # the LSO then: OTHER's open transaction
    assert marker(m, OTHER, 7, commit=False) == AbortedTxn(OTHER, 5, 7, 8)
    assert m.aborted_between(0, 8) == [(PID, 3), (OTHER, 5)]
    assert m.aborted_between(7, 8) == [(OTHER, 5)]
    assert m.aborted_between(0, 4) == [(PID, 3)]    # stops at the entry whose LSO passes the bound
    assert m.aborted_between(8, 20) == []


def test_a_fencing_marker_raises_the_epoch(tmp_path):
    m = ProducerStateManager(str(tmp_path))
    txn_batch(m, PID, 0, 0, epoch=0)
    marker(m, PID, 1, commit=False, epoch=1)
    assert m.check(PID, 0, 1, 1)[0].name == "INVALID_EPOCH"
    assert m.check(PID, 2, 0, 0)[0].name == "OK"
    assert m.check(PID, 2, 5, 5)[0].name == "OUT_OF_ORDER"


def test_snapshot_never_covers_a_marker_in_flight(tmp_path):
    m = ProducerStateManager(str(tmp_path))
    txn_batch(m, PID, 0, 0, count=5)
    token = m.begin_marker(PID, 0)
    assert m.capture(100).next_offset == 5         # the marker's offset is not applied yet
    m.complete_txn(token, 5, False, 0, 2000)
    snap = m.capture(6)
    assert snap.next_offset == 6
    txn_batch(m, OTHER, 0, 6)
    m.snapshot(7)
    again = ProducerStateManager(str(tmp_path))
    assert again.load() == 7
    assert again.open_txns == {OTHER: 6}


@given(st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from(["data", "commit", "abort"])),
                max_size=40))
@settings(max_examples=100, deadline=None)
def test_stable_offset_against_a_model(tmp_path_factory, steps):
    """The first unstable offset is the first offset of the earliest transaction with no marker."""
    m = ProducerStateManager(str(tmp_path_factory.mktemp("state")))
    first: dict[int, int] = {}
    seqs: dict[int, int] = {}
    for offset, (pid, kind) in enumerate(steps):
        if kind == "data":
            txn_batch(m, pid, seqs.get(pid, 0), offset)
            seqs[pid] = seqs.get(pid, 0) + 1
            first.setdefault(pid, offset)
        else:
            marker(m, pid, offset, commit=kind == "commit")
            first.pop(pid, None)
        assert m.first_unstable_offset() == (min(first.values()) if first else None)


def test_recovery_rebuilds_open_and_aborted_transactions_from_the_log(tmp_path):
    def raw(pid, seq, value):
        return _core.encode_batch([(None, value, None, None)], producer_id=pid, producer_epoch=0,
                                  base_sequence=seq, is_transactional=True)

    async def write(part):
        part.note_transactions()                           # as AddPartitionsToTxn does
        part.append_batch(raw(PID, 0, b"a"))               # 0
        part.append_batch(raw(OTHER, 0, b"b"))             # 1
        state = await part.load_producer_state()
        state.open_txns.update({PID: 0, OTHER: 1})        # as the produce path records them
        await part.write_txn_marker(PID, 0, commit=False)  # 2
        part.append_batch(raw(OTHER, 1, b"c"))             # 3
        return state.aborted

    with pstream.Log(tmp_path / "log") as log:
        part = log.topic("t").partition(0)
        aborted = asyncio.run(write(part))
        assert aborted == [AbortedTxn(PID, 0, 2, 1)]
        assert part.last_stable_offset == 1
        directory = part.path
    for name in [n for n in os.listdir(directory) if n.endswith(".snapshot")]:
        os.unlink(f"{directory}/{name}")    # recover from the log alone
    with pstream.Log(tmp_path / "log") as log:
        part = log.topic("t").partition(0)
        state = part.producer_state
        assert state.open_txns == {OTHER: 1}
        assert state.aborted == [AbortedTxn(PID, 0, 2, 1)]
        assert part.last_stable_offset == 1
        assert part.aborted_transactions(0, 4) == [(PID, 0)]
    assert txn_index.read_all(directory) == [AbortedTxn(PID, 0, 2, 1)]


def test_the_last_marker_is_remembered_across_epochs_and_snapshots(tmp_path):
    """DescribeProducers as Kafka answers it: the coordinator epoch of the last marker stays
    after the producer's next epoch starts, and the marker's time survives a snapshot."""
    m = ProducerStateManager(str(tmp_path))
    txn_batch(m, PID, 0, 0, epoch=0)
    m.complete_txn(m.begin_marker(PID, 1), 1, False, 7, 5000)   # fenced: epoch 1
    txn_batch(m, PID, 0, 2, epoch=2)                              # the next incarnation
    [p] = m.producers()
    assert (p["producer_epoch"], p["coordinator_epoch"], p["last_timestamp"]) == (2, 7, 5000)
    m.snapshot(3)
    again = ProducerStateManager(str(tmp_path))
    again.load()
    assert again.producers() == [p]


def test_retention_takes_the_aborted_transactions_of_the_segments_it_deletes(tmp_path):
    with pstream.Log(tmp_path / "log", shards=1) as log:
        part = log.topic("t", segment_bytes=1 << 20).partition(0)
        with pytest.raises(RuntimeError):
            with log.transaction() as tx:
                tx.append("t", b"aborted")
                raise RuntimeError("abort")
        part.roll()
        part.append(b"later")
        assert txn_index.read_all(part.path) != []
        part.delete_records(part.log_end_offset - 1)   # the first segment goes
        asyncio.run(log.snapshot_producer_states())
        assert part.producer_state.aborted == []
        assert txn_index.read_all(part.path) == []
        assert [r.value for r in part.read(part.log_start_offset, isolation_level="read_committed")] == [b"later"]


def test_the_cleaner_drops_aborted_records_and_stops_at_the_stable_offset(tmp_path):
    """Kafka's cleaner rules: a key keeps its latest committed value (an aborted later one goes,
    and is not what wins), and nothing at or past the first unstable offset is cleaned."""
    with pstream.Log(tmp_path / "log", shards=1, cleaner=False) as log:
        topic = log.topic("t", cleanup_policy="compact", segment_bytes=1 << 20)
        part = topic.partition(0)
        part.append(b"v1", key=b"k")
        with pytest.raises(RuntimeError):
            with log.transaction("a") as tx:
                tx.append("t", b"v2-aborted", key=b"k")
                raise RuntimeError("abort")
        part.append(b"other", key=b"j")
        part.roll()
        part.append(b"j2", key=b"j")
        part.roll()
        part.append(b"j3", key=b"j")                 # the first dirty segments are closed now
        first_open = part.log_end_offset
        open_tx = log.transaction("b")
        open_tx.append("t", b"pending", key=b"j")
        part.roll()
        part.append(b"tail", key=b"z")
        topic.clean()
        kept = [(r.key, r.value) for r in part.read(0)]
        assert (b"k", b"v1") in kept and (b"k", b"v2-aborted") not in kept
        assert (b"j", b"pending") in kept and (b"j", b"j3") in kept   # at or past the LSO: untouched
        assert part.transaction_bounds()[0] == first_open
        open_tx.abort()


def test_a_partition_without_transactions_needs_no_producer_state(tmp_path):
    """Read-committed reads of partitions that never saw a transaction do not replay the log
    (librdkafka consumers read committed by default)."""
    with pstream.Log(tmp_path / "log", shards=1) as log:
        plain, txn = log.topic("plain").partition(0), log.topic("txn").partition(0)
        plain.append(b"a")
        assert not plain.has_transactions
        assert plain.last_stable_offset == plain.high_watermark == 1
        assert [r.value for r in plain.read(0, isolation_level="read_committed")] == [b"a"]
        assert plain.producer_state_ready is None and plain.transaction_bounds() == ((1 << 63) - 1, [])
        with log.transaction() as tx:
            tx.append("txn", b"b")
        assert txn.has_transactions and not plain.has_transactions
    with pstream.Log(tmp_path / "log", shards=1) as log:
        assert log.get_topic("txn").partition(0).has_transactions   # durable
