"""The cluster's pure parts: replica placement, the controller's election rules, the metadata
view built from etcd events, and the leader-epoch cache (hypothesis where a property says it)."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pstream
from pstream.errors import ClusterUnavailableError
from pstream.protocol.error_codes import ErrorCode
from pstream.cluster.election import (elect_preferred, elect_unclean, imbalanced, isr_with, may_lead,
                                      presumed_live, reconcile)
from pstream.cluster.epochs import UNDEFINED, LeaderEpochCache
from pstream.cluster import reassignment
from pstream.cluster.etcd_store import grpc_target, parse_cluster_url
from pstream.cluster.coordinator_shards import java_hash, partition_for
from pstream.cluster.placement import assign_replicas
from pstream.cluster.state import NO_LEADER, BrokerRecord, ClusterView, PartitionRecord, TopicRecord


# --- placement ---------------------------------------------------------------------------------

@given(st.integers(1, 64), st.integers(1, 7), st.lists(st.integers(0, 100), min_size=1, max_size=7, unique=True),
       st.integers(0, 2**32))
def test_replicas_are_distinct_live_brokers_and_leaders_spread(partitions, factor, brokers, seed):
    if factor > len(brokers):
        with pytest.raises(ValueError, match="live brokers"):
            assign_replicas(partitions, factor, brokers, rng=random.Random(seed))
        return
    out = assign_replicas(partitions, factor, brokers, rng=random.Random(seed))
    assert len(out) == partitions
    for replicas in out:
        assert len(replicas) == factor and len(set(replicas)) == factor and set(replicas) <= set(brokers)
    leads = [sum(1 for r in out if r[0] == b) for b in brokers]
    assert max(leads) - min(leads) <= 1   # preferred leaders round-robin


# --- election ----------------------------------------------------------------------------------

def record(replicas=(1, 2, 3), leader=1, epoch=0, isr=(1, 2, 3)):
    return PartitionRecord(tuple(replicas), leader, epoch, tuple(isr))


def test_a_live_leader_and_isr_need_nothing():
    assert reconcile(record(), {1, 2, 3}) is None


def test_a_dead_leader_is_replaced_by_the_first_live_isr_member_with_a_new_epoch():
    new = reconcile(record(epoch=4), {2, 3})
    assert (new.leader, new.leader_epoch, new.isr, new.partition_epoch) == (2, 5, (2, 3), 1)


def test_a_dead_follower_leaves_the_isr_without_a_new_leader_epoch():
    new = reconcile(record(epoch=4), {1, 3})
    assert (new.leader, new.leader_epoch, new.isr) == (1, 4, (1, 3))


def test_without_a_live_isr_member_there_is_no_leader_and_the_last_member_stays():
    new = reconcile(record(isr=(1,)), {2, 3})
    assert (new.leader, new.isr, new.leader_epoch) == (NO_LEADER, (1,), 1)
    back = reconcile(new, {1, 2})   # it returns: it leads again (it holds every acknowledged record)
    assert (back.leader, back.leader_epoch) == (1, 2)


@given(st.lists(st.integers(1, 5), min_size=1, max_size=5, unique=True), st.data())
def test_elections_only_pick_isr_members_and_epochs_only_grow(replicas, data):
    rec = PartitionRecord(tuple(replicas), replicas[0], 0, tuple(replicas))
    for _ in range(10):
        live = set(data.draw(st.lists(st.sampled_from(range(1, 6)), max_size=5)))
        new = reconcile(rec, live)
        if new is None:
            continue
        assert new.isr and set(new.isr) <= set(rec.isr)   # reconcile never adds members: leaders do
        assert new.leader == NO_LEADER or (new.leader in new.isr and new.leader in live)
        assert new.leader_epoch >= rec.leader_epoch and new.partition_epoch == rec.partition_epoch + 1
        assert (new.leader != rec.leader) == (new.leader_epoch != rec.leader_epoch)
        rec = new


# --- the view ------------------------------------------------------------------------------------

def test_the_view_follows_puts_and_deletes():
    view = ClusterView("/c")
    broker = BrokerRecord(2, {"PLAINTEXT": ("127.0.0.1", 9093)})
    topic = TopicRecord("t", uuid.uuid4(), 2, {"cleanup.policy": "compact"})
    assert view.apply(view.broker_key(2), broker.encode(), 5) == ("broker", 2)
    assert view.apply(view.key("controller"), b'{"node_id": 2}', 6) == ("controller", 2)
    assert view.apply(view.topic_key("t"), topic.encode(), 7) == ("topic", "t")
    assert view.apply(view.partition_key("t", 1), record().encode(), 8) == ("partition", ("t", 1))
    assert view.brokers[2] == broker and view.topics["t"] == replace(topic, revision=7) and view.controller == 2
    assert view.partitions[("t", 1)].revision == 8 and view.revision == 8
    assert view.apply(view.key("controller"), None, 9) == ("controller", NO_LEADER)
    assert view.apply(view.broker_key(2), None, 10) == ("broker", 2) and view.live() == set()
    assert view.apply(b"/other/brokers/1", b"{}", 11) is None
    assert view.apply(view.key("shared", "acls"), b'{"acls": []}', 12) == ("shared", "acls")
    assert view.shared == {"acls": (b'{"acls": []}', 12)}
    assert view.apply(view.key("locks", "shared"), b'{"node_id": 2}', 13) is None   # held, not metadata


def test_cluster_urls():
    assert parse_cluster_url("etcd://127.0.0.1:2379") == ([("127.0.0.1", 2379)], "/pstream")
    assert parse_cluster_url("etcd://a:1,b:2/prod") == ([("a", 1), ("b", 2)], "/prod")
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_cluster_url("etcd://nohost")


def test_every_etcd_endpoint_is_in_the_grpc_target():
    """aetcd connects to f"{host}:{port}": several endpoints become one gRPC target listing
    their addresses, the last one's port given apart; names are resolved, one endpoint is kept."""
    assert grpc_target([("etcd.example", 2379)]) == ("etcd.example", 2379)
    assert grpc_target([("127.0.0.1", 2379), ("127.0.0.2", 2380), ("localhost", 2381)]) == \
        ("ipv4:127.0.0.1:2379,127.0.0.2:2380,127.0.0.1", 2381)
    assert grpc_target([("::1", 2379), ("::1", 2380)]) == ("ipv6:[::1]:2379,[::1]", 2380)
    with pytest.raises(ClusterUnavailableError, match="share no address family"):
        grpc_target([("127.0.0.1", 2379), ("::1", 2380)])


# --- the leader-epoch cache ----------------------------------------------------------------------

def test_epoch_end_offsets_as_kafka_answers_them(tmp_path):
    cache = LeaderEpochCache(str(tmp_path))
    cache.assign(0, 0)
    cache.assign(3, 100)
    cache.assign(2, 90)      # older than the latest: ignored
    cache.assign(5, 150)
    assert cache.entries == [(0, 0), (3, 100), (5, 150)]
    assert cache.end_offset_for(0, 200) == (0, 100)
    assert cache.end_offset_for(4, 200) == (3, 150)   # KIP-279: the largest epoch at or below
    assert cache.end_offset_for(7, 200) == (5, 200)   # the latest epoch ends at the log end
    cache.truncate_from(120)
    assert cache.entries == [(0, 0), (3, 100)]
    again = LeaderEpochCache(str(tmp_path))
    assert again.end_offset_for(-1, 10) == (UNDEFINED, UNDEFINED)
    with open(cache.path) as f:
        assert f.read() == "0\n2\n0 0\n3 100\n"   # Kafka's checkpoint format


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=12))
def test_an_epoch_cache_is_rebuilt_from_the_batches(tmp_path_factory, epochs):
    log = pstream.Log(str(tmp_path_factory.mktemp("epochs")))
    try:
        part = log.topic("t").partition(0)
        expected, latest = [], -1
        for epoch in sorted(epochs):
            part.leader_epoch = epoch
            offset = part.append(b"x")
            if epoch > latest:
                expected.append((epoch, offset))
                latest = epoch
        assert LeaderEpochCache.load(part).entries == expected
    finally:
        log.close()


def test_a_broker_back_on_an_empty_disk_is_not_in_sync():
    rec = PartitionRecord((1, 2, 3), 1, 4, (1, 2, 3), isr_incarnations=("d1", "d2", "d3"))
    assert reconcile(rec, {1, 2, 3}, {1: "d1", 2: "d2", 3: "d3"}) is None   # restarted with its data: in sync
    out = reconcile(rec, {1, 2, 3}, {1: "d1", 2: "new", 3: "d3"})
    assert (out.leader, out.isr, out.isr_incarnations) == (1, (1, 3), ("d1", "d3"))
    moved = reconcile(rec, {1, 2, 3}, {1: "new", 2: "d2", 3: "d3"})   # the leader lost its disk
    assert (moved.leader, moved.leader_epoch, moved.isr) == (2, 5, (2, 3))
    assert not may_lead(rec, 1, "new") and may_lead(rec, 1, "d1")
    last = PartitionRecord((1, 2, 3), NO_LEADER, 6, (1,), isr_incarnations=("d1",))
    assert reconcile(last, {1, 2, 3}, {1: "new", 2: "d2", 3: "d3"}) is None   # stays offline: its data is gone
    back = reconcile(last, {1, 2, 3}, {1: "d1", 2: "d2", 3: "d3"})
    assert (back.leader, back.leader_epoch) == (1, 7)
    grown = isr_with(out, {1, 2, 3}, {1: "d1", 2: "new", 3: "d3"})
    assert grown.isr == (1, 2, 3) and grown.isr_incarnations == ("d1", "new", "d3")


def test_a_new_controller_gives_unseen_brokers_one_lease_to_register():
    # At a cold start, brokers 2 and 3 may not have registered yet: not fenced for one lease.
    assert presumed_live({1}, {1}, (1, 2, 3), since_start_ms=500, lease_ms=2000) == {1, 2, 3}
    assert presumed_live({1}, {1}, (1, 2, 3), since_start_ms=2500, lease_ms=2000) == {1}
    # One seen registered and then gone had its lease expire: gone at once.
    assert presumed_live({1}, {1, 2}, (1, 2, 3), since_start_ms=500, lease_ms=2000) == {1, 3}


def test_groups_map_to_offsets_partitions_as_kafka_maps_them():
    # Java's String.hashCode, including a code point outside the BMP (two UTF-16 units)
    assert [java_hash(s) for s in ("", "hello", "console-consumer-1", "é", "\U0001F600")] == \
        [0, 99162322, 35782224, 233, 1772899]   # what Java answers
    assert java_hash("polygenelubricants") == -(1 << 31)   # Kafka's Utils.abs makes it 0
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("hello", 50) == 99162322 % 50


@given(st.text(max_size=40), st.integers(1, 1000))
def test_every_group_has_one_offsets_partition(group, partitions):
    assert 0 <= partition_for(group, partitions) < partitions


def test_a_preferred_election_needs_the_first_replica_alive_and_in_sync():
    assert elect_preferred(record(), {1, 2, 3}, {}) == (None, ErrorCode.ELECTION_NOT_NEEDED)
    moved = record(leader=2, epoch=3)
    new, error = elect_preferred(moved, {1, 2, 3}, {})
    assert error == ErrorCode.NONE and (new.leader, new.leader_epoch, new.isr) == (1, 4, (1, 2, 3))
    assert elect_preferred(record(leader=2, isr=(2, 3)), {1, 2, 3}, {})[1] == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
    assert elect_preferred(moved, {2, 3}, {})[1] == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
    on_new_disk = PartitionRecord((1, 2, 3), 2, 3, (1, 2, 3), isr_incarnations=("a", "b", "c"))
    assert elect_preferred(on_new_disk, {1, 2, 3}, {1: "z"})[1] == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE


def test_an_unclean_election_prefers_an_in_sync_replica_then_any_live_one():
    assert elect_unclean(record(), {1, 2, 3}, {})[1] == ErrorCode.ELECTION_NOT_NEEDED
    offline = record(leader=NO_LEADER, isr=(1,), epoch=2)
    new, error = elect_unclean(offline, {2, 3}, {2: "d2"})
    assert error == ErrorCode.NONE and (new.leader, new.isr, new.isr_incarnations, new.leader_epoch) == \
        (2, (2,), ("d2",), 3)
    clean, _ = elect_unclean(offline, {1, 3}, {})
    assert (clean.leader, clean.isr) == (1, (1,))
    assert elect_unclean(offline, set(), {}) == (None, ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE)


def test_the_rebalance_moves_leaderships_of_brokers_past_the_imbalance_threshold():
    records = [(("t", i), record(replicas=(1 + i % 2, 2 - i % 2, 3), leader=2)) for i in range(4)]
    moves = imbalanced(records, {1, 2, 3}, {}, 10)   # broker 1 prefers partitions 0 and 2, leads neither
    assert [(key, new.leader) for key, _, new in moves] == [(("t", 0), 1), (("t", 2), 1)]
    assert imbalanced(records, {1, 2, 3}, {}, 100) == []   # 100%: never imbalanced enough
    assert imbalanced(records, {2, 3}, {}, 10) == []       # broker 1 is gone


def test_a_reassignment_adds_then_completes_once_the_newcomers_are_in_sync():
    moving = reassignment.start(record(replicas=(1, 2), isr=(1, 2)), (3, 1))
    assert (moving.replicas, moving.adding, moving.removing, moving.isr, moving.leader) == ((3, 1, 2), (3,), (2,),
                                                                                             (1, 2), 1)
    assert reassignment.complete(moving) is None   # broker 3 not in sync yet
    caught_up = replace(moving, isr=(1, 2, 3))
    done = reassignment.complete(caught_up)
    assert (done.replicas, done.isr, done.leader, done.adding, done.removing) == ((3, 1), (3, 1), 1, (), ())
    assert reassignment.start(done, (3, 1)) is None
    assert reassignment.cancel(done) is None


def test_a_leaving_leader_hands_over_and_a_cancellation_restores_the_replicas():
    moving = reassignment.start(record(replicas=(1, 2), leader=2, isr=(1, 2), epoch=5), (3, 1))
    done = reassignment.complete(replace(moving, isr=(1, 2, 3)))
    assert (done.leader, done.leader_epoch, done.isr) == (3, 6, (3, 1))   # 2 left: the first in-sync target leads
    back = reassignment.cancel(moving)
    assert (back.replicas, back.isr, back.leader, back.adding, back.removing) == ((1, 2), (1, 2), 2, (), ())


@given(st.lists(st.integers(1, 6), min_size=1, max_size=4, unique=True),
       st.lists(st.integers(1, 6), min_size=1, max_size=4, unique=True))
def test_a_reassignment_keeps_the_isr_inside_the_replicas_and_never_empty(before, target):
    start = record(replicas=tuple(before), leader=before[0], isr=tuple(before))
    moving = reassignment.start(start, tuple(target))
    if moving is None:
        assert tuple(target) == tuple(before)
        return
    assert set(moving.replicas) == set(before) | set(target) and moving.isr and set(moving.isr) <= set(moving.replicas)
    # a new order of the same replicas is done at once; else done once everyone is in sync
    done = reassignment.complete(replace(moving, isr=moving.replicas)) if moving.adding or moving.removing \
        else moving
    assert done.replicas == tuple(target) and set(done.isr) == set(target) and done.leader in target
    assert reassignment.check_target(tuple(target), set(range(1, 7))) == (ErrorCode.NONE, None)


@given(st.lists(st.integers(1, 6), min_size=1, max_size=4, unique=True),
       st.lists(st.integers(1, 6), min_size=1, max_size=4, unique=True),
       st.lists(st.integers(1, 6), min_size=1, max_size=4, unique=True), st.data())
def test_a_reassignment_goes_back_only_while_an_original_replica_is_in_sync(before, target, again, data):
    """A cancellation, or another target over one in progress, returns to the original replicas:
    with none of them in sync (the joining replicas alone hold the acknowledged records) Kafka
    refuses it; otherwise the ISR stays inside the replicas and the leader in the ISR."""
    moving = reassignment.start(record(replicas=tuple(before), leader=before[0], isr=tuple(before)), tuple(target))
    if moving is None or not moving.adding:
        return
    isr = tuple(data.draw(st.lists(st.sampled_from(moving.replicas), min_size=1, unique=True)))
    moving = replace(moving, isr=isr, leader=isr[0])
    refusal = reassignment.revert_refusal(moving, "t", 0)
    assert (refusal is not None) == (not set(isr) & set(before))
    if refusal is None:
        for wanted in (reassignment.cancel(moving), reassignment.start(moving, tuple(again))):
            if wanted is not None:
                assert wanted.isr and set(wanted.isr) <= set(wanted.replicas) and wanted.leader in wanted.isr
