"""The classic group coordinator's state machine, driven directly on an asyncio loop with small
timeouts: joins (MEMBER_ID_REQUIRED, waiting for known members, the initial delay), protocol
votes, SyncGroup, heartbeats, session expiry, LeaveGroup, static membership, size and session
bounds, offset-commit rules, admin calls and lag."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

import pstream
from pstream.coordinator.groups import GroupCoordinator, GroupState, subscribed_topics
from pstream.coordinator.offsets import CommittedOffset
from pstream.protocol.error_codes import ErrorCode as E

TOPIC = "t"


def subscription(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v0 (what Kafka consumers put in JoinGroup metadata)."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


RANGE = [("range", subscription(TOPIC))]


@pytest.fixture
def log(tmp_path):
    with pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None) as log:
        topic = log.topic(TOPIC, partitions=4)
        topic.partition(0).append_many([(None, b"x")] * 10)
        yield log


def run(log, body, **settings):
    """Runs body(coordinator) on a fresh loop with a started coordinator (short timeouts)."""
    async def main():
        options = {"initial_rebalance_delay_ms": 0, "min_session_timeout_ms": 10, "max_session_timeout_ms": 60000}
        coordinator = GroupCoordinator(log, **{**options, **settings})
        coordinator.start()
        try:
            return await asyncio.wait_for(body(coordinator), 20)
        finally:
            coordinator.stop()
    return asyncio.run(main())


async def join(c, member="", group="g", protocols=RANGE, session=5000, rebalance=1000, instance=None,
               require_known_member_id=True, protocol_type="consumer", skip=False):
    return await c.join(group, member, instance, "client", "/127.0.0.1", session, rebalance, protocol_type,
                        list(protocols), require_known_member_id=require_known_member_id,
                        supports_skip_assignment=skip)


async def join_new(c, group="g", **kw):
    """The v4+ two-step join of a new member."""
    first = await join(c, group=group, **kw)
    assert first.error == E.MEMBER_ID_REQUIRED and first.member_id.startswith("client-")
    return await join(c, first.member_id, group=group, **kw)


async def stable_group(c, n, group="g", **kw):
    """n members joined and synced (the leader assigns b'<member id>'); returns their join results."""
    results = await asyncio.gather(*[join_new(c, group, **kw) for _ in range(n)])
    assert {r.error for r in results} == {E.NONE} and len({r.generation for r in results}) == 1
    leader = next(r for r in results if r.member_id == r.leader)
    syncs = [c.sync(group, r.generation, r.member_id, None, None, None,
                    {m: m.encode() for m, _, _ in leader.members} if r is leader else {}) for r in results]
    assert [s.assignment for s in await asyncio.gather(*syncs)] == [r.member_id.encode() for r in results]
    assert c.groups[group].state is GroupState.STABLE
    return results


# --- joining ----------------------------------------------------------------------------------------

def test_first_join_requires_a_member_id_then_the_member_leads_generation_one(log):
    async def body(c):
        r = await join_new(c)
        assert (r.error, r.generation, r.protocol_type, r.protocol_name, r.leader) == \
            (E.NONE, 1, "consumer", "range", r.member_id)
        assert r.members == [(r.member_id, None, RANGE[0][1])]
        assert c.groups["g"].state is GroupState.COMPLETING_REBALANCE
        s = await c.sync("g", 1, r.member_id, None, "consumer", "range", {r.member_id: b"mine"})
        assert (s.error, s.assignment, s.protocol_name) == (E.NONE, b"mine", "range")
        assert c.groups["g"].state is GroupState.STABLE
    run(log, body)


def test_join_before_v4_gets_a_member_id_at_once(log):
    async def body(c):
        r = await join(c, require_known_member_id=False)
        assert r.error == E.NONE and r.member_id and r.leader == r.member_id
    run(log, body)


def test_a_known_member_id_in_an_unknown_group_is_refused(log):
    async def body(c):
        assert (await join(c, "ghost-1")).error == E.UNKNOWN_MEMBER_ID
        assert "g" not in c.groups
    run(log, body)


def test_rebalance_waits_for_every_known_member_and_only_the_leader_gets_members(log):
    async def body(c):
        first = await stable_group(c, 2)
        newcomer = asyncio.ensure_future(join_new(c))
        await asyncio.sleep(0.05)
        assert c.groups["g"].state is GroupState.PREPARING_REBALANCE and not newcomer.done()
        for r in first:   # the others learn of the rebalance through their heartbeats
            assert c.heartbeat("g", r.generation, r.member_id) == E.REBALANCE_IN_PROGRESS
        rejoins = [asyncio.ensure_future(join(c, r.member_id)) for r in first]
        results = await asyncio.gather(newcomer, *rejoins)
        assert {r.generation for r in results} == {2} and {r.error for r in results} == {E.NONE}
        leaders = [r for r in results if r.members]
        assert len(leaders) == 1 and leaders[0].member_id == first[0].leader
        assert {m for m, _, _ in leaders[0].members} == {r.member_id for r in results}
    run(log, body)


def test_members_that_do_not_rejoin_within_the_rebalance_timeout_are_dropped(log):
    async def body(c):
        a, b = await stable_group(c, 2, rebalance=300)
        started = time.monotonic()
        r = await join(c, a.member_id, rebalance=300)   # b never rejoins
        assert time.monotonic() - started >= 0.25
        assert (r.error, r.generation, [m for m, _, _ in r.members]) == (E.NONE, 2, [a.member_id])
        assert b.member_id not in c.groups["g"].members
        assert c.heartbeat("g", 1, b.member_id) == E.UNKNOWN_MEMBER_ID
    run(log, body)


def test_initial_delay_extends_per_joining_member_up_to_the_rebalance_timeout(log):
    # delay 100 ms, rebalance timeout 350 ms: the first join waits 100 ms; each round in which a member
    # joined waits another 100 ms, until 350 ms have passed in all, when the join completes regardless.
    async def body(c):
        started = time.monotonic()
        joins = []
        for at in (0, 0.06, 0.16, 0.26, 0.32):
            await asyncio.sleep(max(at - (time.monotonic() - started), 0))
            joins.append(asyncio.ensure_future(join_new(c, rebalance=350)))
            if at == 0.26:
                assert not joins[0].done()   # 3 rounds of 100 ms so far, each with a newcomer
        results = await asyncio.gather(*joins)
        elapsed = time.monotonic() - started
        assert 0.34 <= elapsed < 0.5, elapsed
        assert {r.generation for r in results} == {1} and len(next(r for r in results if r.members).members) == 5
    run(log, body, initial_rebalance_delay_ms=100)


def test_initial_delay_ends_after_a_round_without_newcomers(log):
    async def body(c):
        started = time.monotonic()
        first = asyncio.ensure_future(join_new(c, rebalance=10000))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(join_new(c, rebalance=10000))
        await asyncio.gather(first, second)
        return time.monotonic() - started
    assert 0.19 <= run(log, body, initial_rebalance_delay_ms=100) < 0.3   # 100 ms, then 100 ms more


def test_a_lone_new_member_waits_exactly_the_initial_delay(log):
    async def body(c):
        started = time.monotonic()
        await join_new(c, rebalance=10000)
        return time.monotonic() - started
    assert 0.25 <= run(log, body, initial_rebalance_delay_ms=250) < 0.5


# --- protocols --------------------------------------------------------------------------------------

def test_protocol_is_chosen_by_vote_among_those_every_member_supports(log):
    async def body(c):
        a = asyncio.ensure_future(join_new(c, protocols=[("roundrobin", b"a"), ("range", b"a"), ("x", b"a")]))
        b = asyncio.ensure_future(join_new(c, protocols=[("sticky", b"b"), ("range", b"b"), ("roundrobin", b"b")]))
        d = asyncio.ensure_future(join_new(c, protocols=[("range", b"d"), ("roundrobin", b"d")]))
        results = await asyncio.gather(a, b, d)
        assert {r.protocol_name for r in results} == {"range"}   # 2 votes for range, 1 for roundrobin
        leader = next(r for r in results if r.members)
        assert sorted(md for _, _, md in leader.members) == [b"a", b"b", b"d"]   # range's metadata
    run(log, body, initial_rebalance_delay_ms=50)


def test_no_common_protocol_or_another_protocol_type_is_inconsistent(log):
    async def body(c):
        await stable_group(c, 1)
        assert (await join(c, protocols=[("other", b"")])).error == E.INCONSISTENT_GROUP_PROTOCOL
        assert (await join(c, protocol_type="connect")).error == E.INCONSISTENT_GROUP_PROTOCOL
        assert (await join(c, group="h", protocols=[])).error == E.INCONSISTENT_GROUP_PROTOCOL
        assert (await join(c, group="h", protocol_type="")).error == E.INCONSISTENT_GROUP_PROTOCOL
    run(log, body)


# --- SyncGroup ----------------------------------------------------------------------------------------

def test_followers_wait_for_the_leaders_assignment_and_missing_members_get_an_empty_one(log):
    async def body(c):
        results = await asyncio.gather(*[join_new(c) for _ in range(3)])
        leader = next(r for r in results if r.members)
        followers = [r for r in results if r is not leader]
        waiting = [asyncio.ensure_future(c.sync("g", 1, f.member_id, None, None, None, {})) for f in followers]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waiting)
        s = await c.sync("g", 1, leader.member_id, None, None, None,
                         {leader.member_id: b"L", followers[0].member_id: b"F0", "stranger": b"?"})
        assert s.assignment == b"L"
        assert [s.assignment for s in await asyncio.gather(*waiting)] == [b"F0", b""]
    run(log, body, initial_rebalance_delay_ms=50)


def test_sync_errors(log):
    async def body(c):
        (r,) = await stable_group(c, 1)
        assert (await c.sync("nope", 1, r.member_id, None, None, None, {})).error == E.UNKNOWN_MEMBER_ID
        assert (await c.sync("g", 1, "who", None, None, None, {})).error == E.UNKNOWN_MEMBER_ID
        assert (await c.sync("g", 7, r.member_id, None, None, None, {})).error == E.ILLEGAL_GENERATION
        assert (await c.sync("g", 1, r.member_id, None, "connect", None, {})).error == E.INCONSISTENT_GROUP_PROTOCOL
        assert (await c.sync("g", 1, r.member_id, None, None, "roundrobin", {})).error == \
            E.INCONSISTENT_GROUP_PROTOCOL
        assert (await c.sync("", 1, r.member_id, None, None, None, {})).error == E.INVALID_GROUP_ID
        # Stable: the current assignment again.
        assert (await c.sync("g", 1, r.member_id, None, None, None, {})).assignment == r.member_id.encode()
    run(log, body)


def test_members_that_never_sync_are_removed_and_the_group_rebalances(log):
    async def body(c):
        a, b = await asyncio.gather(join_new(c, rebalance=200), join_new(c, rebalance=200))
        leader = a if a.members else b
        other = b if leader is a else a
        s = await c.sync("g", 1, leader.member_id, None, None, None, {leader.member_id: b"x"})
        assert s.error == E.NONE
        await asyncio.sleep(0.3)   # the other never sends SyncGroup
        group = c.groups["g"]
        assert other.member_id not in group.members and group.state is GroupState.PREPARING_REBALANCE
        assert (await join(c, leader.member_id, rebalance=200)).generation == 2
    run(log, body, initial_rebalance_delay_ms=50)


# --- heartbeats, expiry, leaving ---------------------------------------------------------------------

def test_heartbeat_errors(log):
    async def body(c):
        (r,) = await stable_group(c, 1)
        assert c.heartbeat("g", 1, r.member_id) == E.NONE
        assert c.heartbeat("nope", 1, r.member_id) == E.UNKNOWN_MEMBER_ID
        assert c.heartbeat("g", 1, "stranger") == E.UNKNOWN_MEMBER_ID
        assert c.heartbeat("g", 0, r.member_id) == E.ILLEGAL_GENERATION
        assert c.heartbeat("", 1, r.member_id) == E.INVALID_GROUP_ID
    run(log, body)


def test_a_member_that_stops_heartbeating_is_removed_and_the_rest_rebalance(log):
    async def body(c):
        a, b = await stable_group(c, 2, session=200)
        for _ in range(6):   # a keeps its session alive, b goes quiet
            await asyncio.sleep(0.06)
            error = c.heartbeat("g", 1, a.member_id)
        assert error == E.REBALANCE_IN_PROGRESS
        assert b.member_id not in c.groups["g"].members
        r = await join(c, a.member_id, session=200)
        assert (r.generation, [m for m, _, _ in r.members]) == (2, [a.member_id])
    run(log, body)


def test_a_pending_member_that_never_rejoins_expires(log):
    async def body(c):
        first = await join(c, session=100)
        assert first.error == E.MEMBER_ID_REQUIRED and first.member_id in c.groups["g"].pending_members
        await asyncio.sleep(0.2)
        assert first.member_id not in c.groups["g"].pending_members
    run(log, body)


def test_leave_group_batched_with_an_error_per_member(log):
    async def body(c):
        a, b, d = await stable_group(c, 3)
        error, errors = c.leave("g", [(a.member_id, None), ("stranger", None), (b.member_id, None)])
        assert (error, errors) == (E.NONE, [E.NONE, E.UNKNOWN_MEMBER_ID, E.NONE])
        assert list(c.groups["g"].members) == [d.member_id]
        assert c.groups["g"].state is GroupState.PREPARING_REBALANCE
        assert c.leave("nope", [("x", None)]) == (E.NONE, [E.UNKNOWN_MEMBER_ID])
        assert c.leave("g", [(d.member_id, None)]) == (E.NONE, [E.NONE])
        await asyncio.sleep(0.05)
        assert c.groups["g"].state is GroupState.EMPTY and c.groups["g"].generation == 2
    run(log, body)


def test_a_leaving_member_waiting_in_a_join_is_answered(log):
    async def body(c):
        a, _ = await stable_group(c, 2)
        waiting = asyncio.ensure_future(join(c, a.member_id))   # rebalance: waits for the other
        await asyncio.sleep(0.02)
        assert c.leave("g", [(a.member_id, None)]) == (E.NONE, [E.NONE])
        assert (await waiting).error == E.UNKNOWN_MEMBER_ID
    run(log, body)


# --- static membership ---------------------------------------------------------------------------------

def test_static_member_rejoining_takes_over_without_a_rebalance(log):
    async def body(c):
        joins = await asyncio.gather(join(c, instance="i-1"), join(c, instance="i-2"))
        assert {r.error for r in joins} == {E.NONE}   # static members get their id at once
        leader = next(r for r in joins if r.members)
        follower = next(r for r in joins if r is not leader)
        instance = {leader.member_id: "i-1" if leader is joins[0] else "i-2"}
        instance[follower.member_id] = "i-2" if instance[leader.member_id] == "i-1" else "i-1"
        assert {i for _, i, _ in leader.members} == {"i-1", "i-2"}
        syncs = [c.sync("g", 1, r.member_id, instance[r.member_id], None, None,
                        {m: m.encode() for m, _, _ in leader.members} if r is leader else {}) for r in joins]
        await asyncio.gather(*syncs)
        # The follower restarts: same instance id, unknown member id, same protocols.
        fi = instance[follower.member_id]
        again = await join(c, instance=fi)
        assert again.error == E.NONE and again.member_id != follower.member_id
        assert again.generation == 1 and again.leader == leader.member_id and not again.members
        group = c.groups["g"]
        assert group.state is GroupState.STABLE and group.static_members[fi] == again.member_id
        s = await c.sync("g", 1, again.member_id, fi, None, None, {})
        assert s.assignment == follower.member_id.encode()   # what the old incarnation had
        # The old member id is fenced.
        assert c.heartbeat("g", 1, follower.member_id, fi) == E.FENCED_INSTANCE_ID
        assert await c.commit("g", 1, follower.member_id, fi, {(TOPIC, 0): CommittedOffset(1)}) == \
            {(TOPIC, 0): E.FENCED_INSTANCE_ID}
        assert c.heartbeat("g", 1, again.member_id, fi) == E.NONE
        # As in Kafka, only a change of the group's chosen protocol makes a static rejoin rebalance.
        third = await join(c, instance=fi, protocols=[("roundrobin", b"new")] + RANGE)
        assert (third.error, third.generation, group.state) == (E.NONE, 1, GroupState.STABLE)
    run(log, body)


def test_static_leader_rejoining_with_v9_is_told_to_skip_the_assignment(log):
    async def body(c):
        (r,) = await asyncio.gather(join(c, instance="solo"))
        await c.sync("g", 1, r.member_id, "solo", None, None, {r.member_id: b"a"})
        again = await join(c, instance="solo", skip=True)
        assert (again.error, again.leader, again.skip_assignment) == (E.NONE, again.member_id, True)
        assert c.groups["g"].state is GroupState.STABLE
    run(log, body)


def test_unknown_instance_id_with_a_member_id_is_unknown_member(log):
    async def body(c):
        (r,) = await stable_group(c, 1)
        assert c.heartbeat("g", 1, r.member_id, "never-joined") == E.UNKNOWN_MEMBER_ID
    run(log, body)


# --- bounds -------------------------------------------------------------------------------------------

def test_session_timeouts_outside_the_bounds_are_refused(log):
    async def body(c):
        assert (await join(c, session=99)).error == E.INVALID_SESSION_TIMEOUT
        assert (await join(c, session=1001)).error == E.INVALID_SESSION_TIMEOUT
        assert (await join(c, session=100)).error == E.MEMBER_ID_REQUIRED
        assert (await join(c, session=1000)).error == E.MEMBER_ID_REQUIRED
    run(log, body, min_session_timeout_ms=100, max_session_timeout_ms=1000)


def test_group_max_size(log):
    async def body(c):
        await stable_group(c, 2)
        r = await join(c, require_known_member_id=False)
        assert r.error == E.GROUP_MAX_SIZE_REACHED
    run(log, body, max_size=2)


def test_group_ids_must_not_be_empty_for_membership(log):
    async def body(c):
        assert (await join(c, group="")).error == E.INVALID_GROUP_ID
    run(log, body)


# --- offset commits ------------------------------------------------------------------------------------

def test_commit_rules_follow_generation_and_membership(log):
    async def body(c):
        tp = (TOPIC, 0)
        one = {tp: CommittedOffset(5, 3, "meta")}
        # Stand-alone commits (generation -1, no member id) create an Empty group.
        assert await c.commit("solo", -1, "", None, one) == {tp: E.NONE}
        assert c.groups["solo"].state is GroupState.EMPTY
        assert c.fetch_offsets("solo", [tp]) == (E.NONE, {tp: (CommittedOffset(5, 3, "meta", one[tp].commit_ms), E.NONE)})
        # An unknown group with a generation: an old generation.
        assert await c.commit("gone", 3, "m", None, one) == {tp: E.ILLEGAL_GENERATION}
        a, b = await stable_group(c, 2)
        assert await c.commit("g", 1, a.member_id, None, one) == {tp: E.NONE}
        assert await c.commit("g", 2, a.member_id, None, one) == {tp: E.ILLEGAL_GENERATION}
        assert await c.commit("g", 1, "stranger", None, one) == {tp: E.UNKNOWN_MEMBER_ID}
        assert await c.commit("g", -1, "", None, one) == {tp: E.UNKNOWN_MEMBER_ID}   # the group has members
        # PreparingRebalance still takes commits of the current generation...
        waiting = asyncio.ensure_future(join(c, a.member_id))
        await asyncio.sleep(0.01)
        assert await c.commit("g", 1, b.member_id, None, one) == {tp: E.NONE}
        await join(c, b.member_id)
        await waiting
        # ... CompletingRebalance does not.
        assert await c.commit("g", 2, b.member_id, None, one) == {tp: E.REBALANCE_IN_PROGRESS}
    run(log, body)


def test_commit_checks_each_partition(log):
    async def body(c):
        offsets = {(TOPIC, 1): CommittedOffset(1, metadata="m" * 4096), (TOPIC, 2): CommittedOffset(2, metadata="m" * 4097),
                   (TOPIC, 4): CommittedOffset(3), ("nope", 0): CommittedOffset(4)}
        assert await c.commit("solo", -1, "", None, offsets) == {
            (TOPIC, 1): E.NONE, (TOPIC, 2): E.OFFSET_METADATA_TOO_LARGE, (TOPIC, 4): E.UNKNOWN_TOPIC_OR_PARTITION,
            ("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
        _, found = c.fetch_offsets("solo", None)
        assert list(found) == [(TOPIC, 1)] and found[(TOPIC, 1)][0].metadata == "m" * 4096
        _, found = c.fetch_offsets("solo", [(TOPIC, 3)])
        assert found == {(TOPIC, 3): (None, E.NONE)}
    run(log, body)


def test_lag_is_the_end_offset_minus_the_committed_offset(log):
    async def body(c):
        await c.commit("solo", -1, "", None, {(TOPIC, 0): CommittedOffset(4), (TOPIC, 1): CommittedOffset(0)})
        assert c.lag("solo") == {(TOPIC, 0): 6, (TOPIC, 1): 0}
        assert c.lag("nobody") == {}
    run(log, body)


# --- admin ----------------------------------------------------------------------------------------------

def test_describe_and_list_groups(log):
    async def body(c):
        a, b = await stable_group(c, 2)
        await c.commit("solo", -1, "", None, {(TOPIC, 0): CommittedOffset(1)})
        s = c.describe("g")
        assert (s.error, s.state, s.protocol_type, s.protocol) == (E.NONE, "Stable", "consumer", "range")
        assert {(m.member_id, m.assignment, m.metadata, m.client_host) for m in s.members} == \
            {(r.member_id, r.member_id.encode(), RANGE[0][1], "/127.0.0.1") for r in (a, b)}
        assert c.describe("unknown").state == "Dead"
        assert c.list_groups() == (E.NONE, [("g", "consumer", "Stable", "classic"), ("solo", "", "Empty", "classic")])
        assert c.list_groups(["empty"]) == (E.NONE, [("solo", "", "Empty", "classic")])
        assert c.list_groups(["Stable", "Dead"], ["Classic"])[1] == [("g", "consumer", "Stable", "classic")]
        assert c.list_groups(None, ["consumer"]) == (E.NONE, [])
    run(log, body)


def test_delete_groups_only_when_empty(log):
    async def body(c):
        await stable_group(c, 1)
        await c.commit("solo", -1, "", None, {(TOPIC, 0): CommittedOffset(1)})
        assert await c.delete_groups(["g", "solo", "nope"]) == {
            "g": E.NON_EMPTY_GROUP, "solo": E.NONE, "nope": E.GROUP_ID_NOT_FOUND}
        assert "solo" not in c.groups and c.fetch_offsets("solo", None) == (E.NONE, {})
    run(log, body)


def test_offset_delete_refuses_topics_the_group_reads(log):
    async def body(c):
        log.topic("other", partitions=1)
        (r,) = await stable_group(c, 1)
        offsets = {(TOPIC, 0): CommittedOffset(1), ("other", 0): CommittedOffset(2)}
        assert await c.commit("g", 1, r.member_id, None, offsets) == {tp: E.NONE for tp in offsets}
        error, results = await c.delete_offsets("g", [(TOPIC, 0), ("other", 0), ("missing", 0)])
        assert error == E.NONE and results == {(TOPIC, 0): E.GROUP_SUBSCRIBED_TO_TOPIC, ("other", 0): E.NONE,
                                               ("missing", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
        assert list(c.fetch_offsets("g", None)[1]) == [(TOPIC, 0)]
        assert (await c.delete_offsets("nope", [(TOPIC, 0)]))[0] == E.GROUP_ID_NOT_FOUND
    run(log, body)


def test_subscribed_topics_of_consumer_metadata():
    assert subscribed_topics(subscription("a", "bb")) == {"a", "bb"}
    for garbage in (b"", b"\x00", b"\x00\x00\x00\x00\x00\x05\x00", b"\xff\xff\x00\x00\x00\x00"):
        with pytest.raises(ValueError):
            subscribed_topics(garbage)


def test_garbage_subscriptions_make_every_topic_count_as_subscribed(log):
    async def body(c):
        (r,) = await asyncio.gather(join_new(c, protocols=[("range", b"\x01garbage")]))
        await c.sync("g", 1, r.member_id, None, None, None, {r.member_id: b"\xff" * 3})
        await c.commit("g", 1, r.member_id, None, {(TOPIC, 0): CommittedOffset(1)})
        assert (await c.delete_offsets("g", [(TOPIC, 0)]))[1] == {(TOPIC, 0): E.GROUP_SUBSCRIBED_TO_TOPIC}
    run(log, body)


def test_stop_answers_waiting_requests(log):
    async def body(c):
        a, b = await stable_group(c, 2)
        waiting = asyncio.ensure_future(join(c, a.member_id))
        await asyncio.sleep(0.01)
        c.stop()
        assert (await waiting).error == E.NOT_COORDINATOR
        assert c.heartbeat("g", 1, b.member_id) == E.COORDINATOR_NOT_AVAILABLE
    run(log, body)


@pytest.mark.parametrize("protocols", [RANGE, [("range", subscription(TOPIC, "other"))]])
def test_the_leader_of_a_stable_one_member_group_rejoining_gets_a_new_generation(log, protocols):
    """Every member has joined as soon as the leader rejoins, so the join completes at once
    (a consumer whose regex subscription changed, or that re-subscribes)."""
    async def body(c):
        (first,) = await stable_group(c, 1)
        again = await join(c, first.member_id, protocols=protocols)
        assert (again.error, again.member_id, again.generation, again.leader) == \
            (E.NONE, first.member_id, first.generation + 1, first.member_id)
        assert again.members == [(first.member_id, None, protocols[0][1])]
        assert c.groups["g"].state is GroupState.COMPLETING_REBALANCE
    run(log, body)
