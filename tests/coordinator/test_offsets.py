"""Committed offsets and group metadata in __consumer_offsets: durable before answered, rebuilt
by replay after a restart, compacted by snapshots so the log stays bounded, expired as Kafka
expires them (KIP-211), and removed with deleted topics and groups."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

import pstream
from pstream.coordinator.groups import GroupCoordinator, GroupState
from pstream.coordinator.offsets import OFFSETS_TOPIC, CommittedOffset, OffsetStore, offset_key, offset_value
from pstream.protocol.error_codes import ErrorCode as E

TOPIC = "t"
RETENTION = 60_000
SUBSCRIPTION = b"\x00\x00\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff"   # ConsumerProtocolSubscription v0: ["t"]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data"
    with pstream.Log(path, shards=1, retention_check_ms=None) as log:
        log.topic(TOPIC, partitions=3)
        log.topic("other", partitions=1)
    return path


def session(data, body, store_options=None, **settings):
    """Opens the Log, runs body(coordinator) on a fresh loop, stops and closes everything: one
    broker lifetime."""
    async def main(log):
        options = {"initial_rebalance_delay_ms": 0, "min_session_timeout_ms": 10, "offsets_retention_ms": RETENTION}
        store = OffsetStore(log, **(store_options or {}))
        coordinator = GroupCoordinator(log, store=store, **{**options, **settings})
        coordinator.start()
        try:
            return await asyncio.wait_for(body(coordinator), 30)
        finally:
            coordinator.stop()
    with pstream.Log(data, shards=1, retention_check_ms=None) as log:
        return asyncio.run(main(log))


async def stable_member(c, group="g", session_ms=5000):
    first = await c.join(group, "", None, "cli", "/h", session_ms, 1000, "consumer", [("range", SUBSCRIPTION)])
    r = await c.join(group, first.member_id, None, "cli", "/h", session_ms, 1000, "consumer", [("range", SUBSCRIPTION)])
    s = await c.sync(group, r.generation, r.member_id, None, None, None, {r.member_id: b"assigned"})
    assert s.error == E.NONE
    return r


def test_commits_are_durable_when_answered_and_survive_a_restart(data):
    async def first(c):
        offsets = {(TOPIC, 0): CommittedOffset(10, 2, "a \u00e9 metadata \x00"), (TOPIC, 2): CommittedOffset(7)}
        assert await c.commit("solo", -1, "", None, offsets) == {tp: E.NONE for tp in offsets}
        part = c.store.part
        assert part.durable_offset == part.log_end_offset   # answered only after the fdatasync
        return {tp: found for tp, (found, _) in c.fetch_offsets("solo", None)[1].items()}

    async def second(c):
        return {tp: found for tp, (found, _) in c.fetch_offsets("solo", None)[1].items()}

    before = session(data, first)
    assert session(data, second) == before
    assert before[(TOPIC, 0)].metadata == "a \u00e9 metadata \x00" and before[(TOPIC, 0)].leader_epoch == 2


def test_group_metadata_is_restored_and_members_can_carry_on(data):
    async def first(c):
        r = await stable_member(c, session_ms=300)
        await c.commit("g", 1, r.member_id, None, {(TOPIC, 1): CommittedOffset(3)})
        return r

    async def second(c):
        group = c.groups["g"]
        assert (group.state, group.generation, group.protocol_type, group.protocol_name, group.leader_id) == \
            (GroupState.STABLE, 1, "consumer", "range", r.member_id)
        assert group.members[r.member_id].assignment == b"assigned"
        assert c.heartbeat("g", 1, r.member_id) == E.NONE   # no rebalance after the restart
        assert (await c.sync("g", 1, r.member_id, None, None, None, {})).assignment == b"assigned"
        await asyncio.sleep(0.45)   # it stops heartbeating: its restored session expires
        assert r.member_id not in group.members
        return c.fetch_offsets("g", [(TOPIC, 1)])[1][(TOPIC, 1)][0].offset

    r = session(data, first)
    assert session(data, second) == 3


def test_deleted_groups_stay_deleted_after_replay(data):
    async def first(c):
        await c.commit("a", -1, "", None, {(TOPIC, 0): CommittedOffset(1)})
        await c.commit("b", -1, "", None, {(TOPIC, 0): CommittedOffset(2)})
        assert await c.delete_groups(["a"]) == {"a": E.NONE}

    async def second(c):
        return sorted(c.groups), c.fetch_offsets("a", None)

    session(data, first)
    assert session(data, second) == (["b"], (E.NONE, {}))


def test_snapshots_keep_the_log_bounded_and_the_state_unchanged(data):
    options = {"compact_bytes": 64 << 10, "segment_bytes": 32 << 10}

    async def first(c):
        for round_ in range(300):
            offsets = {(TOPIC, p): CommittedOffset(round_ * 10 + p, metadata="x" * 50) for p in range(3)}
            await c.commit(f"g{round_ % 7}", -1, "", None, offsets)
        await asyncio.sleep(0.1)   # a compaction started by the last writes finishes
        part = c.store.part
        assert part.log_start_offset > 0
        assert part.size_bytes() < 300 * 3 * 150 / 2   # far less than everything ever written
        return {g: c.fetch_offsets(g, None)[1] for g in sorted(c.groups)}

    async def second(c):
        return {g: c.fetch_offsets(g, None)[1] for g in sorted(c.groups)}

    before = session(data, first, options)
    assert len(before) == 7 and session(data, second, options) == before


def test_a_crash_between_snapshot_and_deletion_replays_to_the_same_state(data):
    async def first(c):
        await c.commit("g", -1, "", None, {(TOPIC, 0): CommittedOffset(1), (TOPIC, 1): CommittedOffset(2)})
        await c.commit("g", -1, "", None, {(TOPIC, 0): CommittedOffset(5)})
        await c.delete_offsets("g", [(TOPIC, 1)])
        await c.store.write(c.store._image())   # the snapshot was written, the deletion never happened
        return c.fetch_offsets("g", None)

    async def second(c):
        assert c.store.part.log_start_offset == 0
        return c.fetch_offsets("g", None)

    before = session(data, first)
    assert list(before[1]) == [(TOPIC, 0)] and session(data, second) == before


def test_explicit_compaction_of_an_empty_state_empties_the_log(data):
    async def body(c):
        await c.commit("g", -1, "", None, {(TOPIC, 0): CommittedOffset(1)})
        await c.delete_groups(["g"])
        await c.store.compact()
        part = c.store.part
        return part.log_start_offset == part.log_end_offset > 0

    assert session(data, body)


def test_pending_commits_are_unstable_for_require_stable(data):
    async def body(c):
        last = c.store.append([(offset_key("g", TOPIC, 0), offset_value(CommittedOffset(9)))])
        assert c.fetch_offsets("g", [(TOPIC, 0)], require_stable=True)[1] == {(TOPIC, 0): (None, E.UNSTABLE_OFFSET_COMMIT)}
        assert c.fetch_offsets("g", [(TOPIC, 0)])[1] == {(TOPIC, 0): (None, E.NONE)}   # not visible before durable
        await c.store.durable(last)
        found, error = c.fetch_offsets("g", [(TOPIC, 0)], require_stable=True)[1][(TOPIC, 0)]
        return found.offset, error

    assert session(data, body) == (9, E.NONE)


def test_records_that_are_not_group_records_are_skipped(data, caplog):
    with pstream.Log(data, shards=1, retention_check_ms=None) as log:
        part = log.topic(OFFSETS_TOPIC, partitions=1).partition(0)
        part.append_many([(b"junk", b"junk"), (None, b"no key"), (b'["what", 1]', b"{}"),
                          (offset_key("g", TOPIC, 0), json.dumps({"offset": 4}).encode())])

    async def body(c):
        return c.fetch_offsets("g", [(TOPIC, 0)])[1][(TOPIC, 0)][0].offset

    with caplog.at_level(logging.WARNING, logger="pstream.offsets"):
        assert session(data, body) == 4
    assert "skipped 2 records" in caplog.text


# --- expiration --------------------------------------------------------------------------------------

def test_stand_alone_offsets_expire_from_their_commit_time_and_the_group_goes(data):
    async def body(c):
        await c.commit("solo", -1, "", None, {(TOPIC, 0): CommittedOffset(1, commit_ms=1000)})
        assert await c.expire_offsets(now=1000 + RETENTION - 1) == 0 and "solo" in c.groups
        assert await c.expire_offsets(now=1000 + RETENTION) == 1
        return "solo" in c.groups, c.fetch_offsets("solo", None)

    assert session(data, body) == (False, (E.NONE, {}))


def test_an_empty_groups_offsets_expire_from_when_it_became_empty(data):
    async def body(c):
        r = await stable_member(c)
        await c.commit("g", 1, r.member_id, None, {(TOPIC, 0): CommittedOffset(1, commit_ms=0)})
        assert await c.expire_offsets(now=10 ** 13) == 0   # the group has members: kept, however old
        c.leave("g", [(r.member_id, None)])
        await asyncio.sleep(0.02)
        group = c.groups["g"]
        assert group.state is GroupState.EMPTY
        assert await c.expire_offsets(now=group.state_ms + RETENTION - 1) == 0
        assert await c.expire_offsets(now=group.state_ms + RETENTION) == 1
        return "g" in c.groups

    assert session(data, body) is False


def test_a_stable_group_keeps_offsets_of_topics_it_reads_and_loses_the_others(data):
    async def body(c):
        r = await stable_member(c)
        offsets = {(TOPIC, 0): CommittedOffset(1, commit_ms=0), ("other", 0): CommittedOffset(2, commit_ms=0)}
        await c.commit("g", 1, r.member_id, None, offsets)
        assert await c.expire_offsets(now=RETENTION) == 1
        return list(c.fetch_offsets("g", None)[1])

    assert session(data, body) == [(TOPIC, 0)]


def test_a_retention_time_given_with_the_commit_wins(data):
    async def body(c):
        await c.commit("solo", -1, "", None, {(TOPIC, 0): CommittedOffset(1, commit_ms=0, expire_ms=500)})
        assert await c.expire_offsets(now=499) == 0
        return await c.expire_offsets(now=500)

    assert session(data, body) == 1


def test_offsets_of_a_deleted_topic_are_removed_now_and_at_start(data):
    async def first(c):
        await c.commit("a", -1, "", None, {(TOPIC, 0): CommittedOffset(1), ("other", 0): CommittedOffset(2)})
        await c.commit("b", -1, "", None, {("other", 0): CommittedOffset(3)})
        c.log.delete_topic("other")
        c.on_topic_deleted("other")
        await asyncio.sleep(0.05)
        return sorted(c.groups), list(c.fetch_offsets("a", None)[1])

    assert session(data, first) == (["a"], [(TOPIC, 0)])   # "b" had nothing else: gone

    async def offline_commit(c):
        await c.commit("a", -1, "", None, {(TOPIC, 2): CommittedOffset(5)})

    session(data, offline_commit)
    with pstream.Log(data, shards=1, retention_check_ms=None) as log:
        log.delete_topic(TOPIC)   # deleted while the coordinator was not running

    async def second(c):
        await asyncio.sleep(0.05)
        return sorted(c.groups)

    assert session(data, second) == []


def test_unreadable_group_metadata_restores_the_group_without_members(data):
    with pstream.Log(data, shards=1, retention_check_ms=None) as log:
        part = log.topic(OFFSETS_TOPIC, partitions=1).partition(0)
        part.append_many([(b'["group","g"]', b'{"generation": 2, "members": [{"member_id": "m"}]}')])

    async def body(c):
        group = c.groups["g"]
        return group.state, group.members

    assert session(data, body) == (GroupState.EMPTY, {})
