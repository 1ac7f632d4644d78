"""Transactions of the embedded log (Log.transaction): records over several partitions become
visible to read-committed reads at once on commit, never on abort or an exception; markers are
never records; a transaction cut by a crash is aborted, or finished if it was committing, when
the directory is opened again."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import pstream
from pstream.errors import TransactionError


def values(part, isolation_level: str) -> list[bytes]:
    return [r.value for r in part.read(0, isolation_level=isolation_level)]


@pytest.fixture
def log(tmp_path):
    with pstream.Log(tmp_path / "log", shards=2) as log:
        log.topic("orders", partitions=2)
        log.topic("payments", partitions=1)
        yield log


def test_commit_makes_every_partition_visible_at_once(log):
    orders0, orders1, payments = (log.get_topic("orders").partition(0), log.get_topic("orders").partition(1),
                                  log.get_topic("payments").partition(0))
    orders0.append(b"plain")
    with log.transaction() as tx:
        tx.append("orders", b"o-0", partition=0)
        tx.append_many("orders", [(None, b"o-1"), (b"k", b"o-2")], partition=1)
        tx.append("payments", b"p-0")
        assert values(orders0, "read_committed") == [b"plain"]
        assert values(orders1, "read_committed") == []
        assert values(orders1, "read_uncommitted") == [b"o-1", b"o-2"]
        assert orders1.last_stable_offset == 0
    assert tx.state == "committed"
    assert values(orders0, "read_committed") == [b"plain", b"o-0"]
    assert values(orders1, "read_committed") == [b"o-1", b"o-2"]
    assert values(payments, "read_committed") == [b"p-0"]
    assert payments.log_end_offset == 2 and payments.last_stable_offset == 2   # the record and its marker


def test_an_exception_aborts(log):
    part = log.get_topic("orders").partition(0)
    with pytest.raises(RuntimeError):
        with log.transaction() as tx:
            tx.append("orders", b"doomed")
            raise RuntimeError("the application failed")
    assert tx.state == "aborted"
    assert values(part, "read_committed") == []
    assert values(part, "read_uncommitted") == [b"doomed"]
    assert part.aborted_transactions(0, part.log_end_offset) == [(tx.producer_id, 0)]
    with log.transaction() as again:   # the same id goes on at the same producer
        again.append("orders", b"kept")
    assert values(part, "read_committed") == [b"kept"]
    with pytest.raises(TransactionError):
        again.append("orders", b"late")


def test_unknown_partition_is_refused_and_aborts(log):
    with pytest.raises(pstream.errors.UnknownPartitionError):
        with log.transaction() as tx:
            tx.append("orders", b"x", partition=0)
            tx.append("orders", b"y", partition=9)
    assert tx.state == "aborted"
    assert values(log.get_topic("orders").partition(0), "read_committed") == []


CRASH = textwrap.dedent("""
    import os, sys, pstream
    from pstream.coordinator.txn_log import TxnState
    with_prepare = sys.argv[2] == "prepare"
    log = pstream.Log(sys.argv[1], shards=1)
    tx = log.transaction()
    tx.append("orders", b"a", partition=0)
    tx.append("orders", b"b", partition=1)
    if with_prepare:   # the commit's first phase is durable, then the process dies
        manager = log.recover_transactions()
        manager._write(tx._meta.but(state=TxnState.PREPARE_COMMIT))
    os._exit(0)
""")


@pytest.mark.parametrize("phase, expected", [("open", []), ("prepare", [b"a", b"b"])])
def test_a_transaction_cut_by_a_crash_is_finished_or_aborted_at_the_next_open(tmp_path, phase, expected):
    directory = tmp_path / "log"
    with pstream.Log(directory, shards=1) as log:
        log.topic("orders", partitions=2)
    subprocess.run([sys.executable, "-P", "-c", CRASH, str(directory), phase], check=True, timeout=60)
    with pstream.Log(directory, shards=1) as log:
        parts = [log.get_topic("orders").partition(p) for p in range(2)]
        seen = [v for part in parts for v in values(part, "read_committed")]
        assert seen == expected
        assert all(part.last_stable_offset == part.log_end_offset for part in parts)
        assert [v for part in parts for v in values(part, "read_uncommitted")] == [b"a", b"b"]
