"""The consumer group protocol (KIP-848) as the coordinator runs it, driven directly on an asyncio
loop: joining, Kafka's request validation and messages, the revoke-then-assign reconciliation,
epochs and fencing, session and rebalance timeouts, static membership, regex subscriptions,
server assignors, topic changes, offsets shared with classic groups, and groups changing kind."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import pstream
from pstream.coordinator.consumer_groups import ConsumerGroup, MemberState
from pstream.coordinator.groups import GroupCoordinator, GroupState
from pstream.coordinator.offsets import CommittedOffset
from pstream.protocol.error_codes import ErrorCode as E

TOPIC = "t"
HELD = object()   # a heartbeat reports what the member holds


@pytest.fixture
def log(tmp_path):
    with pstream.Log(tmp_path / "data", shards=1, retention_check_ms=None) as log:
        log.topic(TOPIC, partitions=4)
        yield log


def run(log, body, **settings):
    async def main():
        coordinator = GroupCoordinator(log, **{"initial_rebalance_delay_ms": 0, "min_session_timeout_ms": 10,
                                               **settings})
        coordinator.start()
        try:
            return await asyncio.wait_for(body(coordinator), 20)
        finally:
            coordinator.stop()
    return asyncio.run(main())


class Member:
    """A well-behaved client: it reports what it holds and gives up revoked partitions at once
    (unless told to hold on), as librdkafka and the Java consumer do between heartbeats."""

    def __init__(self, c: GroupCoordinator, group="g", names=(TOPIC,), regex=None, instance=None, assignor=None,
                 rebalance_ms=1000, member_id=None):
        self.c, self.group, self.names, self.regex = c, group, names, regex
        self.instance, self.assignor, self.rebalance_ms = instance, assignor, rebalance_ms
        self.member_id = member_id or str(uuid.uuid4())
        self.epoch = 0
        self.held: dict = {}
        self.last = None

    def join(self, **overrides):
        overrides.setdefault("owned", [])
        return self.beat(epoch=overrides.pop("epoch", 0), full=True, **overrides)

    def beat(self, epoch=None, owned=HELD, full=False, version=1, **overrides):
        epoch = self.epoch if epoch is None else epoch
        owned = [(t, sorted(p)) for t, p in self.held.items()] if owned is HELD else owned
        args = dict(version=version, group_id=self.group, member_id=self.member_id, epoch=epoch,
                    instance_id=self.instance, rack_id=None, rebalance_timeout_ms=self.rebalance_ms if full else -1,
                    names=list(self.names) if full and self.names is not None else None,
                    regex=self.regex if full else None, assignor=self.assignor if full else None, owned=owned,
                    client_id="client", client_host="/127.0.0.1")
        args.update(overrides)
        result = self.c.consumer.heartbeat(**args)
        self.last = result
        if result.error == E.NONE:
            self.member_id, self.epoch = result.member_id, result.epoch
            if result.assignment is not None:
                self.held = {t: set(p) for t, p in result.assignment.items() if p}
        return result

    def leave(self, epoch=-1):
        return self.beat(epoch=epoch, owned=None)   # a leaving member sends no partitions

    def partitions(self, log, topic=TOPIC) -> set[int]:
        return set(self.held.get(log.get_topic(topic).topic_id, set()))


def settle(members, rounds=6):
    for _ in range(rounds):
        for m in members:
            assert m.beat().error == E.NONE, m.last.message


def group_of(c, group="g") -> ConsumerGroup:
    return c.groups[group]


# --- joining -------------------------------------------------------------------------------------------


def test_first_member_gets_every_partition_at_the_first_group_epoch(log):
    async def body(c):
        a = Member(c)
        r = a.join()
        assert (r.error, r.epoch, r.interval_ms) == (E.NONE, 1, 5000)
        assert a.partitions(log) == {0, 1, 2, 3}
        g = group_of(c)
        assert (g.epoch, g.assignment_epoch, g.state.value) == (1, 1, "Stable")
        quiet = a.beat()   # nothing changed: no assignment in the answer
        assert quiet.error == E.NONE and quiet.assignment is None and quiet.epoch == 1
    run(log, body)


def test_a_v0_member_without_an_id_is_given_one(log):
    async def body(c):
        a = Member(c, member_id="")
        a.member_id = ""
        r = a.join(version=0)
        assert r.error == E.NONE and len(r.member_id) >= 20
        assert group_of(c).members.keys() == {r.member_id}
    run(log, body)


@pytest.mark.parametrize("overrides,code,message", [
    ({"member_id": ""}, E.INVALID_REQUEST, "MemberId can't be empty."),
    ({"group_id": " "}, E.INVALID_REQUEST, "GroupId can't be empty."),
    ({"instance_id": ""}, E.INVALID_REQUEST, "InstanceId can't be empty."),
    ({"rack_id": ""}, E.INVALID_REQUEST, "RackId can't be empty."),
    ({"rebalance_timeout_ms": -1}, E.INVALID_REQUEST, "RebalanceTimeoutMs must be provided in first request."),
    ({"owned": None}, E.INVALID_REQUEST, "TopicPartitions must be empty when (re-)joining."),
    ({"owned": [(uuid.uuid4(), [0])]}, E.INVALID_REQUEST, "TopicPartitions must be empty when (re-)joining."),
    ({"names": None}, E.INVALID_REQUEST,
     "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining."),
    ({"epoch": -3}, E.INVALID_REQUEST, "MemberEpoch is invalid."),
    ({"epoch": -2}, E.INVALID_REQUEST, "InstanceId can't be null."),
    ({"assignor": "sticky"}, E.UNSUPPORTED_ASSIGNOR,
     "ServerAssignor sticky is not supported. Supported assignors: uniform, range."),
    ({"names": None, "regex": "a(b"}, E.INVALID_REGULAR_EXPRESSION, None),
])
def test_invalid_heartbeats_get_kafkas_error_and_message(log, overrides, code, message):
    async def body(c):
        r = Member(c).join(**overrides)
        assert r.error == code
        if message is not None:
            assert r.message == message
        else:
            assert "a(b" in r.message
        assert "g" not in c.groups or not group_of(c).members
    run(log, body)


def test_unknown_member_and_unknown_group_get_unknown_member_id(log):
    async def body(c):
        lost = Member(c)
        lost.epoch = 3
        assert lost.beat().error == E.UNKNOWN_MEMBER_ID   # no such group (a restarted coordinator)
        Member(c).join()
        assert lost.beat().error == E.UNKNOWN_MEMBER_ID
        assert "is not a member of group g" in lost.last.message
        rejoined = lost.join()
        assert rejoined.error == E.NONE and rejoined.epoch == 2
    run(log, body)


# --- reconciliation ----------------------------------------------------------------------------------


def test_a_second_member_gets_partitions_only_after_the_first_revokes_them(log):
    async def body(c):
        a, b = Member(c), Member(c)
        a.join()
        held_by_a = {t: set(p) for t, p in a.held.items()}
        rb = b.join()
        assert rb.epoch == 2 and b.partitions(log) == set()   # the target's partitions are still a's
        assert group_of(c).members[b.member_id].state is MemberState.UNRELEASED_PARTITIONS
        # a still reports all four: it must revoke two, at its old epoch
        ra = a.beat(owned=[(t, sorted(p)) for t, p in held_by_a.items()])
        assert ra.epoch == 1 and len(a.partitions(log)) == 2
        assert group_of(c).members[a.member_id].state is MemberState.UNREVOKED_PARTITIONS
        assert group_of(c).state.value == "Reconciling"
        assert b.beat().assignment is None   # not released yet
        ra = a.beat()   # now reports only the two it kept
        assert ra.epoch == 2 and ra.assignment is None
        rb = b.beat()
        assert rb.epoch == 2 and b.partitions(log) == {0, 1, 2, 3} - a.partitions(log)
        assert group_of(c).state.value == "Stable"
    run(log, body)


def test_partitions_are_spread_evenly_and_move_back_when_members_leave(log):
    async def body(c):
        members = [Member(c) for _ in range(3)]
        for m in members:
            m.join()
        settle(members)
        sizes = sorted(len(m.partitions(log)) for m in members)
        assert sizes == [1, 1, 2]
        assert set().union(*(m.partitions(log) for m in members)) == {0, 1, 2, 3}
        before = {m.member_id: m.partitions(log) for m in members}
        assert members[2].leave().epoch == -1
        settle(members[:2])
        assert sorted(len(m.partitions(log)) for m in members[:2]) == [2, 2]
        for m in members[:2]:   # sticky: nobody lost what it had
            assert before[m.member_id] <= m.partitions(log)
        assert group_of(c).state.value == "Stable" and group_of(c).epoch == 4
    run(log, body)


def test_a_stale_epoch_is_fenced_but_the_previous_one_with_a_subset_is_accepted(log):
    async def body(c):
        a, b = Member(c), Member(c)
        a.join()
        b.join()
        settle([a, b])
        assert a.epoch == 2
        member = group_of(c).members[a.member_id]
        assert member.previous_epoch == 1
        # the answer that moved a to epoch 2 was lost: epoch 1 with what it holds is fine
        assert a.beat(epoch=1).error == E.NONE
        assert a.beat(epoch=1, owned=[(log.get_topic(TOPIC).topic_id, [0, 1, 2, 3])]).error == E.FENCED_MEMBER_EPOCH
        assert "smaller member epoch (1)" in a.last.message
        assert a.beat(epoch=7).error == E.FENCED_MEMBER_EPOCH
        assert "greater member epoch (7)" in a.last.message
    run(log, body)


def test_a_silent_member_is_fenced_after_its_session_timeout(log):
    async def body(c):
        a, b = Member(c), Member(c)
        a.join()
        b.join()
        settle([a, b])
        for _ in range(10):   # only a keeps heartbeating
            await asyncio.sleep(0.03)
            a.beat()
        assert b.member_id not in group_of(c).members
        assert a.partitions(log) == {0, 1, 2, 3}
        assert b.beat().error == E.UNKNOWN_MEMBER_ID
    run(log, body, consumer_session_timeout_ms=150)


def test_a_member_that_does_not_revoke_in_time_is_fenced(log):
    async def body(c):
        a, b = Member(c, rebalance_ms=100), Member(c)
        a.join()
        everything = [(t, sorted(p)) for t, p in a.held.items()]
        b.join()
        a.beat(owned=everything)
        assert group_of(c).members[a.member_id].state is MemberState.UNREVOKED_PARTITIONS
        await asyncio.sleep(0.3)
        assert a.member_id not in group_of(c).members
        settle([b])
        assert b.partitions(log) == {0, 1, 2, 3}
    run(log, body)


# --- static membership -------------------------------------------------------------------------------


def test_a_static_member_that_leaves_for_now_is_replaced_by_its_next_instance(log):
    async def body(c):
        a, b = Member(c, instance="i-a"), Member(c, instance="i-b")
        a.join()
        b.join()
        settle([a, b])
        kept = a.partitions(log)
        epoch = group_of(c).epoch
        assert a.leave(epoch=-2).epoch == -2
        assert group_of(c).members[a.member_id].epoch == -2
        settle([b])
        assert b.partitions(log) == {0, 1, 2, 3} - kept   # a's partitions wait for its instance
        a2 = Member(c, instance="i-a")
        r = a2.join()
        assert r.error == E.NONE and a2.partitions(log) == kept
        assert group_of(c).epoch == epoch   # same subscription: no rebalance
        assert a.member_id not in group_of(c).members
        assert group_of(c).static_members["i-a"] == a2.member_id
        assert a.beat().error == E.FENCED_INSTANCE_ID
    run(log, body)


def test_an_instance_id_in_use_cannot_join_again(log):
    async def body(c):
        Member(c, instance="i").join()
        r = Member(c, instance="i").join()
        assert r.error == E.UNRELEASED_INSTANCE_ID and "cannot join the group" in r.message
        ghost = Member(c, instance="nobody")
        ghost.epoch = 1
        assert ghost.beat().error == E.UNKNOWN_MEMBER_ID
        assert ghost.last.message == "Instance id nobody is unknown."
    run(log, body)


def test_a_static_member_away_longer_than_its_session_loses_its_place(log):
    async def body(c):
        a, b = Member(c, instance="i-a"), Member(c)
        a.join()
        b.join()
        settle([a, b])
        a.leave(epoch=-2)
        for _ in range(10):
            await asyncio.sleep(0.03)
            b.beat()
        assert a.member_id not in group_of(c).members and "i-a" not in group_of(c).static_members
        assert b.partitions(log) == {0, 1, 2, 3}
    run(log, body, consumer_session_timeout_ms=150)


# --- subscriptions, topics and assignors ------------------------------------------------------------------


def test_a_regex_subscription_follows_topics_as_they_are_created(log):
    async def body(c):
        log.topic("orders-eu", partitions=2)
        log.topic("payments", partitions=2)
        a = Member(c, names=None, regex="orders-.*")
        assert a.join().error == E.NONE
        assert a.partitions(log, "orders-eu") == {0, 1} and a.partitions(log, "payments") == set()
        log.topic("orders-us", partitions=3)
        settle([a], rounds=2)
        assert a.partitions(log, "orders-us") == {0, 1, 2}
        assert group_of(c).is_subscribed_to("orders-us") and not group_of(c).is_subscribed_to("payments")
    run(log, body)


def test_a_regex_does_not_select_internal_topics(log):
    async def body(c):
        a = Member(c, names=None, regex=".*")
        a.join()
        topics = {log.get_topic(n).topic_id: n for n in log.topics()}
        assert {topics[t] for t in a.held} == {TOPIC}
    run(log, body)


def test_more_partitions_move_the_group_epoch_and_are_assigned(log):
    async def body(c):
        a = Member(c)
        a.join()
        log.get_topic(TOPIC).add_partitions(6)
        settle([a], rounds=2)
        assert a.partitions(log) == set(range(6)) and group_of(c).epoch == 2
    run(log, body)


def test_a_deleted_topic_leaves_the_assignment(log):
    async def body(c):
        log.topic("gone", partitions=2)
        a = Member(c, names=(TOPIC, "gone"))
        a.join()
        assert a.partitions(log, "gone") == {0, 1}
        gone_id = log.get_topic("gone").topic_id
        log.delete_topic("gone")
        settle([a], rounds=3)
        assert gone_id not in a.held and a.partitions(log) == {0, 1, 2, 3}
    run(log, body)


def test_the_range_assignor_gives_co_partitioned_ranges(log):
    async def body(c):
        log.topic("u", partitions=4)
        members = [Member(c, names=(TOPIC, "u"), assignor="range") for _ in range(2)]
        for m in members:
            m.join()
        settle(members)
        assert group_of(c).assignor == "range"
        for m in members:
            assert m.partitions(log) == m.partitions(log, "u") and len(m.partitions(log)) == 2
            assert max(m.partitions(log)) - min(m.partitions(log)) == 1   # contiguous
    run(log, body)


def test_the_group_refuses_members_past_its_maximum_size(log):
    async def body(c):
        Member(c).join()
        r = Member(c).join()
        assert r.error == E.GROUP_MAX_SIZE_REACHED
        assert r.message == "The consumer group has reached its maximum capacity of 1 members."
    run(log, body, consumer_max_size=1)


# --- offsets, and the two kinds of group side by side -------------------------------------------------------


def offsets(n):
    return {(TOPIC, 0): CommittedOffset(n)}


def test_members_commit_at_their_current_epoch(log):
    async def body(c):
        a = Member(c)
        a.join()
        assert await c.commit("g", 1, a.member_id, None, offsets(5)) == {(TOPIC, 0): E.NONE}
        assert await c.commit("g", 0, a.member_id, None, offsets(6)) == {(TOPIC, 0): E.STALE_MEMBER_EPOCH}
        assert await c.commit("g", 1, "stranger", None, offsets(6)) == {(TOPIC, 0): E.UNKNOWN_MEMBER_ID}
        assert await c.commit("g", -1, "", None, offsets(6)) == {(TOPIC, 0): E.UNKNOWN_MEMBER_ID}
        assert await c.commit("g", 1, a.member_id, None, offsets(6), api_version=8) == \
            {(TOPIC, 0): E.UNSUPPORTED_VERSION}
        assert c.fetch_offsets("g", [(TOPIC, 0)], member_id=a.member_id, member_epoch=0)[0] == E.STALE_MEMBER_EPOCH
        error, found = c.fetch_offsets("g", [(TOPIC, 0)], member_id=a.member_id, member_epoch=1)
        assert error == E.NONE and found[(TOPIC, 0)][0].offset == 5
        a.leave()
        assert await c.commit("g", -1, "", None, offsets(7)) == {(TOPIC, 0): E.NONE}   # an admin, group empty
    run(log, body)


def test_groups_of_both_kinds_coexist_and_an_empty_group_changes_kind_with_its_offsets(log):
    async def body(c):
        await c.commit("old", -1, "", None, offsets(42))          # a classic group with offsets only
        a = Member(c, group="old")
        assert a.join().error == E.NONE
        assert isinstance(c.groups["old"], ConsumerGroup)
        assert c.fetch_offsets("old", [(TOPIC, 0)])[1][(TOPIC, 0)][0].offset == 42
        joined = await c.join("old", "", None, "client", "/h", 10000, 10000, "consumer", [("range", b"")],
                              require_known_member_id=False)
        assert joined.error == E.INCONSISTENT_GROUP_PROTOCOL
        assert c.heartbeat("old", 1, a.member_id) == E.UNKNOWN_MEMBER_ID
        error, kinds = c.list_groups()
        assert error == E.NONE and ("old", "consumer", "Stable", "consumer") in kinds
        assert c.list_groups(types=["classic"])[1] == []
        assert c.describe("old").state == "Dead"   # DescribeGroups is for classic groups
        assert (await c.delete_groups(["old"]))["old"] == E.NON_EMPTY_GROUP
        a.leave()
        assert c.groups["old"].state.value == "Empty"
        joined = await c.join("old", "", None, "client", "/h", 10000, 10000, "consumer", [("range", b"")],
                              require_known_member_id=False)
        assert joined.error == E.NONE and not isinstance(c.groups["old"], ConsumerGroup)
        assert c.fetch_offsets("old", [(TOPIC, 0)])[1][(TOPIC, 0)][0].offset == 42
        r = Member(c, group="old").join()
        assert r.error == E.GROUP_ID_NOT_FOUND and "has members" in r.message
    run(log, body)


def test_an_empty_consumer_group_is_deleted_with_its_offsets(log):
    async def body(c):
        a = Member(c)
        a.join()
        await c.commit("g", a.epoch, a.member_id, None, offsets(3))
        a.leave()
        assert (await c.delete_groups(["g"]))["g"] == E.NONE
        assert "g" not in c.groups and c.fetch_offsets("g", [(TOPIC, 0)])[1][(TOPIC, 0)][0] is None
    run(log, body)


def test_an_administrator_removes_a_static_member_with_leave_group(log):
    async def body(c):
        a, b = Member(c, instance="i-a"), Member(c)
        a.join()
        b.join()
        error, results = c.leave("g", [("", "i-a"), ("", "nobody")])
        assert (error, results) == (E.NONE, [E.NONE, E.UNKNOWN_MEMBER_ID])
        assert a.member_id not in group_of(c).members
    run(log, body)


def test_stop_cancels_every_member_timer(log):
    async def body(c):
        a = Member(c)
        a.join()
        member = group_of(c).members[a.member_id]
        c.stop()
        assert member.session_timer is None
        assert group_of(c).is_(GroupState.STABLE)
    run(log, body)
