"""The aborted-transaction index: Kafka's byte format, idempotent appends for replay, torn tails,
collect_aborted against Kafka's rule (and a brute-force model), truncation."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pstream.errors import PStreamError
from pstream.storage import layout, txn_index
from pstream.storage.txn_index import ENTRY_SIZE, AbortedTxn


def make_segments(directory, *bases: int) -> None:
    """Empty .log files: collect_aborted finds segments by them."""
    for base in bases:
        open(os.path.join(directory, layout.segment_file_name(base)), "wb").close()


def index_bytes(directory, base: int) -> bytes:
    with open(txn_index.index_path(str(directory), base), "rb") as f:
        return f.read()


def write_raw(directory, base: int, data: bytes) -> None:
    with open(txn_index.index_path(str(directory), base), "wb") as f:
        f.write(data)


def test_entries_round_trip_in_order(tmp_path):
    txns = [AbortedTxn(7, 0, 4, 5), AbortedTxn(2**40, 3, 9, 6), AbortedTxn(7, 10, 12, 13)]
    for txn in txns:
        txn_index.append(str(tmp_path), 0, txn)
    assert txn_index.read(str(tmp_path), 0) == txns
    assert os.listdir(tmp_path) == ["00000000000000000000.txnindex"]


def test_appended_entry_is_kafkas_34_bytes(tmp_path):
    txn_index.append(str(tmp_path), 100, AbortedTxn(0, 3, 4, 5), sync=False)
    assert index_bytes(tmp_path, 100) == bytes.fromhex(
        "0000" "0000000000000000" "0000000000000003" "0000000000000004" "0000000000000005")
    assert os.path.exists(tmp_path / "00000000000000000100.txnindex")


def test_file_is_created_only_at_first_entry(tmp_path):
    assert txn_index.read(str(tmp_path), 0) == []
    assert txn_index.collect_aborted(str(tmp_path), 0, 100) == []
    assert os.listdir(tmp_path) == []


def test_reappending_an_entry_it_holds_is_a_no_op(tmp_path):
    txns = [AbortedTxn(1, 0, 4, 5), AbortedTxn(2, 3, 9, 10)]
    for txn in txns:
        txn_index.append(str(tmp_path), 0, txn)
    before = index_bytes(tmp_path, 0)
    for txn in txns:   # producer-state replay after a crash adds them again
        txn_index.append(str(tmp_path), 0, txn)
    assert index_bytes(tmp_path, 0) == before
    txn_index.append(str(tmp_path), 0, AbortedTxn(3, 11, 12, 13))
    assert txn_index.read(str(tmp_path), 0) == [*txns, AbortedTxn(3, 11, 12, 13)]


@pytest.mark.parametrize("txn", [AbortedTxn(1, 0, 9, 10),    # same last offset, another entry
                                 AbortedTxn(2, 0, 3, 4)])    # below the last one, not held
def test_non_increasing_last_offset_raises(tmp_path, txn):
    txn_index.append(str(tmp_path), 0, AbortedTxn(2, 3, 9, 10))
    with pytest.raises(ValueError, match="does not follow last offset 9"):
        txn_index.append(str(tmp_path), 0, txn)
    assert txn_index.read(str(tmp_path), 0) == [AbortedTxn(2, 3, 9, 10)]


def test_torn_tail_is_ignored_and_overwritten_by_the_next_append(tmp_path):
    txn_index.append(str(tmp_path), 0, AbortedTxn(1, 0, 4, 5))
    whole = index_bytes(tmp_path, 0)
    with open(txn_index.index_path(str(tmp_path), 0), "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x02\x00")   # a crash mid-write
    assert txn_index.read(str(tmp_path), 0) == [AbortedTxn(1, 0, 4, 5)]
    txn_index.append(str(tmp_path), 0, AbortedTxn(2, 6, 8, 9))
    assert txn_index.read(str(tmp_path), 0) == [AbortedTxn(1, 0, 4, 5), AbortedTxn(2, 6, 8, 9)]
    assert len(index_bytes(tmp_path, 0)) == 2 * ENTRY_SIZE
    assert index_bytes(tmp_path, 0).startswith(whole)


def test_unknown_version_raises_naming_file_and_position(tmp_path):
    good = bytes.fromhex("0000" "0000000000000000" "0000000000000003" "0000000000000004" "0000000000000005")
    write_raw(tmp_path, 0, good + b"\x00\x01" + good[2:])
    with pytest.raises(PStreamError, match="version 1") as e:
        txn_index.read(str(tmp_path), 0)
    assert e.value.file == txn_index.index_path(str(tmp_path), 0) and e.value.position == ENTRY_SIZE


def test_non_increasing_entries_on_disk_raise(tmp_path):
    txn_index.append(str(tmp_path), 0, AbortedTxn(1, 0, 4, 5))
    data = index_bytes(tmp_path, 0)
    write_raw(tmp_path, 0, data + data)
    with pytest.raises(PStreamError, match="last offset 4 does not follow 4") as e:
        txn_index.read(str(tmp_path), 0)
    assert e.value.position == ENTRY_SIZE and e.value.offset == 4


@pytest.fixture
def three_segments(tmp_path) -> str:
    """Segments at 0, 100, 200, each with aborted transactions; one spans 100 -> 200."""
    d = str(tmp_path)
    make_segments(d, 0, 100, 200)
    txn_index.append(d, 0, AbortedTxn(1, 10, 20, 21))
    txn_index.append(d, 0, AbortedTxn(2, 30, 50, 51))
    txn_index.append(d, 100, AbortedTxn(3, 110, 120, 121))
    txn_index.append(d, 100, AbortedTxn(4, 130, 140, 141))
    txn_index.append(d, 200, AbortedTxn(5, 150, 210, 211))   # began in segment 100
    txn_index.append(d, 200, AbortedTxn(6, 220, 230, 231))
    return d


def test_collect_starts_at_the_segment_holding_fetch_offset(three_segments):
    assert txn_index.collect_aborted(three_segments, 125, 1000) == [(4, 130), (5, 150), (6, 220)]
    assert txn_index.collect_aborted(three_segments, 0, 1000) == [(1, 10), (2, 30), (3, 110), (4, 130),
                                                                   (5, 150), (6, 220)]
    # A transaction whose ABORT sits in a later segment is found from an earlier fetch offset.
    assert txn_index.collect_aborted(three_segments, 145, 160) == [(5, 150)]


def test_collect_does_not_read_indexes_of_earlier_segments(three_segments):
    write_raw(three_segments, 0, b"\xff" * (3 * ENTRY_SIZE))
    with pytest.raises(PStreamError):
        txn_index.read(three_segments, 0)
    assert txn_index.collect_aborted(three_segments, 100, 1000) == [(3, 110), (4, 130), (5, 150), (6, 220)]


def test_collect_stops_at_the_first_entry_whose_lso_reaches_upper_bound(tmp_path):
    d = str(tmp_path)
    make_segments(d, 0, 100)
    # Kafka's rule, literally: the entry that reaches the bound is kept, then the search ends,
    # even though the next entry (an impossible one, for the test) also overlaps the range.
    txn_index.append(d, 0, AbortedTxn(1, 10, 12, 13))
    txn_index.append(d, 0, AbortedTxn(2, 11, 20, 21))
    assert txn_index.collect_aborted(d, 10, 13) == [(1, 10)]
    assert txn_index.collect_aborted(d, 10, 14) == [(1, 10), (2, 11)]
    # ... and later segments' indexes are not opened at all.
    write_raw(tmp_path, 100, b"\xff" * ENTRY_SIZE)
    assert txn_index.collect_aborted(d, 10, 13) == [(1, 10)]
    with pytest.raises(PStreamError):
        txn_index.collect_aborted(d, 10, 1000)


def test_collect_ignores_an_index_without_its_segment(three_segments):
    os.unlink(os.path.join(three_segments, layout.segment_file_name(200)))
    assert txn_index.collect_aborted(three_segments, 100, 1000) == [(3, 110), (4, 130)]


def test_truncate_drops_entries_at_and_past_the_offset(three_segments):
    txn_index.truncate(three_segments, 140)
    assert txn_index.read(three_segments, 0) == [AbortedTxn(1, 10, 20, 21), AbortedTxn(2, 30, 50, 51)]
    assert txn_index.read(three_segments, 100) == [AbortedTxn(3, 110, 120, 121)]
    assert len(index_bytes(three_segments, 100)) == ENTRY_SIZE
    assert not os.path.exists(txn_index.index_path(three_segments, 200))


def test_truncate_deletes_an_index_left_empty(three_segments):
    txn_index.truncate(three_segments, 110)
    assert sorted(os.listdir(three_segments)) == [layout.segment_file_name(0),
                                                  layout.segment_file_name(0, ".txnindex"),
                                                  layout.segment_file_name(100),
                                                  layout.segment_file_name(200)]
    txn_index.truncate(three_segments, 0)
    assert txn_index.read(three_segments, 0) == []
    assert not os.path.exists(txn_index.index_path(three_segments, 0))


def test_truncate_past_the_end_changes_nothing(three_segments):
    before = {b: index_bytes(three_segments, b) for b in (0, 100, 200)}
    txn_index.truncate(three_segments, 231)
    assert {b: index_bytes(three_segments, b) for b in (0, 100, 200)} == before


def test_delete_removes_a_segments_index(three_segments):
    txn_index.delete(three_segments, 100)
    txn_index.delete(three_segments, 100)   # absent: nothing to do
    assert txn_index.read(three_segments, 100) == []
    assert txn_index.read(three_segments, 0) != []


# --- collect_aborted against a brute-force model --------------------------------------------

@st.composite
def transactional_logs(draw):
    """A partition log written by a few transactional producers, one offset per step: data
    (opening a transaction if none is open), COMMIT or ABORT. The aborted transactions carry the
    LSO as Kafka's ProducerStateManager computes it: the first offset of the oldest transaction
    still open, else the marker's offset + 1. Also random segment boundaries."""
    steps = draw(st.lists(st.tuples(st.integers(0, 3), st.sampled_from("dddca")), max_size=120))
    open_txns: dict[int, int] = {}   # producer -> first offset
    aborted = []
    for offset, (producer, action) in enumerate(steps):
        if producer not in open_txns:
            open_txns[producer] = offset   # a marker with nothing open is written as data
        elif action in "ca":
            first = open_txns.pop(producer)
            if action == "a":
                lso = min(open_txns.values(), default=offset + 1)
                aborted.append(AbortedTxn(producer, first, offset, lso))
    end = len(steps)
    bases = sorted({0} | set(draw(st.lists(st.integers(1, max(1, end)), max_size=8))))
    return end, bases, aborted


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log=transactional_logs(), data=st.data())
def test_collect_matches_brute_force(tmp_path_factory, log, data):
    end, bases, aborted = log
    d = str(tmp_path_factory.mktemp("txn"))
    make_segments(d, *bases)
    for txn in aborted:
        holder = max(b for b in bases if b <= txn.last_offset)
        txn_index.append(d, holder, txn, sync=False)
    fetch_offset = data.draw(st.integers(0, end + 1), label="fetch_offset")
    upper_bound = data.draw(st.integers(fetch_offset, end + 2), label="upper_bound")
    expected = [(t.producer_id, t.first_offset) for t in aborted
                if t.last_offset >= fetch_offset and t.first_offset < upper_bound]
    assert txn_index.collect_aborted(d, fetch_offset, upper_bound) == expected
    truncate_at = data.draw(st.integers(0, end + 1), label="truncate_at")
    txn_index.truncate(d, truncate_at)
    kept = [t for t in aborted if t.last_offset < truncate_at]
    assert [t for b in bases for t in txn_index.read(d, b)] == kept
