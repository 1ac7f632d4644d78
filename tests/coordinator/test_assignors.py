"""The server-side assignors of KIP-848 groups, as properties over random groups (hypothesis):
every subscribed partition goes to exactly one member subscribed to its topic, members with the
same subscription differ by at most one partition (uniform), a rerun changes nothing and a new
member takes only what balance needs (uniform's stickiness), and range hands out contiguous,
co-partitioned ranges."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from pstream.coordinator.assignors import range_, uniform

TOPICS = [uuid.UUID(int=i + 1) for i in range(4)]


@st.composite
def groups(draw, homogeneous=False):
    counts = {t: draw(st.integers(0, 12)) for t in TOPICS[:draw(st.integers(1, 4))]}
    members = [f"m{i:02d}" for i in range(draw(st.integers(1, 8)))]
    if homogeneous:
        subscriptions = {m: set(counts) for m in members}
    else:
        subscriptions = {m: set(draw(st.lists(st.sampled_from(list(counts)), unique=True))) for m in members}
    return subscriptions, counts


def check_complete(target, subscriptions, counts):
    owners = {}
    for member, assignment in target.items():
        for topic, parts in assignment.items():
            assert topic in subscriptions[member], f"{member} got {topic} it does not subscribe to"
            for p in parts:
                assert 0 <= p < counts[topic]
                assert (topic, p) not in owners, f"{topic}/{p} given twice"
                owners[(topic, p)] = member
    wanted = {(t, p) for t, n in counts.items() for p in range(n) if any(t in s for s in subscriptions.values())}
    assert set(owners) == wanted
    assert set(target) == set(subscriptions)


def size(assignment):
    return sum(len(p) for p in assignment.values())


@settings(max_examples=200, deadline=None)
@given(groups())
def test_uniform_assigns_every_subscribed_partition_once(group):
    subscriptions, counts = group
    check_complete(uniform(subscriptions, counts, {}), subscriptions, counts)


@settings(max_examples=200, deadline=None)
@given(groups(homogeneous=True))
def test_uniform_balances_members_with_one_subscription_within_one(group):
    subscriptions, counts = group
    sizes = [size(a) for a in uniform(subscriptions, counts, {}).values()]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=200, deadline=None)
@given(groups())
def test_uniform_leaves_no_member_two_short_of_one_it_could_take_from(group):
    subscriptions, counts = group
    target = uniform(subscriptions, counts, {})
    for assignment in target.values():
        for topic in assignment:
            for taker in subscriptions:
                if topic in subscriptions[taker]:
                    assert size(target[taker]) >= size(assignment) - 1


@settings(max_examples=200, deadline=None)
@given(groups())
def test_uniform_reruns_move_nothing(group):
    subscriptions, counts = group
    first = uniform(subscriptions, counts, {})
    assert uniform(subscriptions, counts, first) == first


@settings(max_examples=200, deadline=None)
@given(groups(homogeneous=True))
def test_uniform_moves_partitions_only_to_a_newcomer(group):
    subscriptions, counts = group
    first = uniform(subscriptions, counts, {})
    grown = {**subscriptions, "zz": set(counts)}
    second = uniform(grown, counts, first)
    check_complete(second, grown, counts)
    moved = sum(len(first[m].get(t, set()) - second[m].get(t, set())) for m in first for t in first[m])
    assert moved == size(second["zz"])
    sizes = [size(a) for a in second.values()]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=200, deadline=None)
@given(groups())
def test_range_gives_contiguous_co_partitioned_ranges(group):
    subscriptions, counts = group
    target = range_(subscriptions, counts, {})
    check_complete(target, subscriptions, counts)
    for assignment in target.values():
        for parts in assignment.values():
            assert max(parts) - min(parts) == len(parts) - 1
    same = [t for t in counts if counts[t] == counts[TOPICS[0]] and
            all((t in s) == (TOPICS[0] in s) for s in subscriptions.values())]
    for assignment in target.values():   # topics of one size and subscribers: the same numbers
        assert len({frozenset(assignment.get(t, set())) for t in same}) <= 1


def test_range_orders_static_members_by_instance_id():
    subscriptions = {"b": {TOPICS[0]}, "a": {TOPICS[0]}}
    target = range_(subscriptions, {TOPICS[0]: 4}, {}, sort_keys={"b": "instance-1", "a": "instance-2"})
    assert target["b"][TOPICS[0]] == {0, 1} and target["a"][TOPICS[0]] == {2, 3}
