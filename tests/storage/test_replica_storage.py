"""What a cluster's replicas need of storage: a follower stores its leader's batches exactly as
written (offsets, leader epoch, timestamps) and only at its log end; consumers see no further
than the replicated high watermark; a diverged follower's log is cut at a batch boundary while
the Log stays open."""

from __future__ import annotations

import asyncio
import os

import pytest

import pstream
from pstream import _core
from pstream.errors import ReplicaOffsetError
from pstream.storage.producer_state import SequenceCheck


def batches(data: bytes) -> list[bytes]:
    out, position = [], 0
    while position < len(data):
        size = _core.peek_batch(data, position).size
        out.append(data[position:position + size])
        position += size
    return out


@pytest.fixture
def pair(tmp_path):
    leader, follower = pstream.Log(str(tmp_path / "leader")), pstream.Log(str(tmp_path / "follower"))
    yield leader.topic("t"), follower.topic("t")
    leader.close()
    follower.close()


def test_a_replica_keeps_its_leaders_batches_byte_for_byte(pair):
    leader, follower = pair
    source = leader.partition(0)
    source.leader_epoch = 7
    for i in range(5):
        leader.append(b"v%d" % i, partition=0)
    copy = follower.partition(0)
    copy.leader_epoch = 1   # its own epoch must not be stamped on a copy
    for batch in batches(source.read_batches(0)):
        copy.submit_batch(batch, replica=True).wait()
    assert copy.read_batches(0) == source.read_batches(0)
    assert {_core.peek_batch(b).partition_leader_epoch for b in batches(copy.read_batches(0))} == {7}
    assert copy.log_end_offset == 5


def test_a_replica_batch_must_start_at_the_log_end(pair):
    leader, follower = pair
    for i in range(3):
        leader.append(b"v%d" % i, partition=0)
    first, second, third = batches(leader.partition(0).read_batches(0))
    copy = follower.partition(0)
    with pytest.raises(ReplicaOffsetError, match="must start at the log end offset"):
        copy.submit_batch(second, replica=True).wait()   # a gap
    copy.submit_batch(first, replica=True).wait()
    with pytest.raises(ReplicaOffsetError):
        copy.submit_batch(first, replica=True).wait()    # already there
    assert copy.log_end_offset == 1
    with pytest.raises(Exception):
        copy.submit_batch(third[:-1] + b"\0", replica=True).wait()   # the CRC is still checked
    assert copy.log_end_offset == 1


def test_consumers_see_no_further_than_the_replicated_high_watermark(tmp_path):
    async def scenario():
        log = pstream.Log(str(tmp_path / "d"))
        part = log.topic("t").partition(0)
        for i in range(4):
            part.append(b"x")
        assert part.high_watermark == 4 and part.replicated_high_watermark == -1
        part.replicated_high_watermark = 2
        assert part.high_watermark == 2
        waiting = part.visible_future(2)
        await asyncio.sleep(0)
        assert not waiting.done()
        part.replicated_high_watermark = 9   # past its own end: its own end bounds it
        part.high_watermark_moved()
        assert await asyncio.wait_for(waiting, 5) == 4
        with pytest.raises(ValueError):
            part.replicated_high_watermark = -2
        log.close()
    asyncio.run(scenario())


def test_a_partition_is_cut_while_the_log_stays_open(tmp_path):
    log = pstream.Log(str(tmp_path / "d"), segment_bytes=300)   # several segments
    topic = log.topic("t")
    for i in range(20):
        topic.append(b"value-%02d" % i, partition=0)
    before = topic.partition(0)
    assert len([n for n in os.listdir(before.path) if n.endswith(".log")]) > 2
    part = topic.truncate_partition(0, 7)
    assert part is topic.partition(0) and part is not before
    assert part.log_end_offset == 7
    assert [r.value for r in part.read(0)] == [b"value-%02d" % i for i in range(7)]
    assert topic.append(b"next", partition=0).offset == 7
    assert topic.truncate_partition(0, 99) is topic.partition(0)   # past the end: nothing to cut
    with pytest.raises(pstream.errors.PStreamError):
        topic.truncate_partition(0, -1)
    log.close()
    again = pstream.Log(str(tmp_path / "d"))
    assert [r.value for r in again.get_topic("t").partition(0).read(0)][-2:] == [b"value-06", b"next"]
    again.close()


def test_a_partition_is_emptied_to_start_at_a_leaders_log_start(tmp_path):
    """A follower behind its leader's log start (or a broker that stops replicating) drops its
    whole copy and starts where it is told; the start survives a reopen, and so does a crash
    between the new start and the deletions (segments below the start then open as deleted)."""
    log = pstream.Log(str(tmp_path / "d"), segment_bytes=200)
    topic = log.topic("t")
    for i in range(10):
        topic.append(b"value-%02d" % i, partition=0)
    before = topic.partition(0)
    part = topic.reset_partition(0, 42)
    assert part is topic.partition(0) and part is not before
    assert (part.log_start_offset, part.log_end_offset) == (42, 42)
    assert sorted(os.listdir(part.path)) == sorted(n for n in os.listdir(part.path)
                                                   if n in ("log-start-offset", _core.PUBLISHED_FILE)
                                                   or n.startswith("%020d" % 42))
    batch = _core.encode_batch([(None, b"from-the-leader", None, None)], base_offset=42)
    part.submit_batch(batch, replica=True).wait()
    assert [(r.offset, r.value) for r in part.read(42)] == [(42, b"from-the-leader")]
    log.close()
    again = pstream.Log(str(tmp_path / "d"))
    part = again.get_topic("t").partition(0)
    assert (part.log_start_offset, part.log_end_offset) == (42, 43)
    assert again.get_topic("t").reset_partition(0, 0).log_end_offset == 0   # a dropped copy starts over
    again.close()
    crashed = pstream.Log(str(tmp_path / "crashed"), segment_bytes=200)
    for i in range(10):
        crashed.topic("t").append(b"value-%02d" % i, partition=0)
    path = crashed.get_topic("t").partition(0).path
    crashed.close()
    with open(os.path.join(path, "log-start-offset"), "w") as f:   # reset_partition's first step, then a crash
        f.write("42\n")
    reopened = pstream.Log(str(tmp_path / "crashed"))
    part = reopened.get_topic("t").partition(0)
    assert (part.log_start_offset, part.log_end_offset) == (42, 42)
    reopened.close()


def test_a_followers_producer_state_is_never_snapshotted_stale(tmp_path):
    """A follower's replica appends skip the producer state: a state recovered while it led
    goes stale, and a snapshot of it stamped at the high watermark would hide the batches it
    missed from the state it recovers when it leads again (a producer's retry of one of them
    then went in twice). Such a state is not snapshotted, periodically or at close."""
    path = str(tmp_path / "follower")
    log = pstream.Log(path)
    copy = log.topic("t").partition(0)
    for sequence in range(3):
        batch = _core.encode_batch([(None, b"v%d" % sequence, None, None)], base_offset=sequence, producer_id=9,
                                   producer_epoch=0, base_sequence=sequence)
        copy.submit_batch(batch, replica=True).wait()
        if sequence == 0:   # led then: its state was recovered, with the producer's first batch
            assert copy.producer_state.check(9, 0, 0, 0)[0] == SequenceCheck.DUPLICATE
            copy.follows_leader = True
    assert log.producer_states() == []
    asyncio.run(log.snapshot_producer_states())
    log.close()
    again = pstream.Log(path)
    try:
        state = again.get_topic("t").partition(0).producer_state
        assert state.check(9, 0, 2, 2) == (SequenceCheck.DUPLICATE, 2)   # the retry of the last batch
        assert state.check(9, 0, 3, 3)[0] == SequenceCheck.OK
    finally:
        again.close()
