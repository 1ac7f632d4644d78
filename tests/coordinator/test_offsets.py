"""Committed offsets and group metadata in __consumer_offsets: durable before answered, in Kafka's
record formats, rebuilt by replay after a restart (also from an older pstream's JSON records),
kept bounded by the log cleaner (the topic is compacted), expired as Kafka expires them
(KIP-211), and removed with deleted topics and groups."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pstream
from pstream.coordinator.groups import GroupCoordinator, GroupState
from pstream.coordinator.offsets import (
    OFFSETS_TOPIC,
    CommittedOffset,
    OffsetState,
    OffsetStore,
    decode_group_value,
    group_key,
    group_value,
    offset_key,
    offset_value,
)
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


def session(data, body, store_options=None, log_options=None, **settings):
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
    with pstream.Log(data, shards=1, retention_check_ms=None, **(log_options or {})) as log:
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
                          (b"\x00\x07some newer record type", b"\x00\x00"),   # a key version pstream does not read
                          (group_key("g"), b"\x00\x03\x00"),                       # cut short
                          (offset_key("g", TOPIC, 0), offset_value(CommittedOffset(4)))])

    async def body(c):
        return c.fetch_offsets("g", [(TOPIC, 0)])[1][(TOPIC, 0)][0].offset

    with caplog.at_level(logging.WARNING, logger="pstream.offsets"):
        assert session(data, body) == 4
    assert "skipped 4 records" in caplog.text


# --- Kafka's record formats --------------------------------------------------------------------------

# Written by Apache Kafka 3.9.2 for group "g-probe" (kafka-python 3.0.12 consuming topic "c9"): an
# offset commit (key v1, value v3), the group's metadata with its member, and once it left (value v3).
KAFKA_OFFSET_KEY = bytes.fromhex("00010007672d70726f62650002633900000000")
KAFKA_OFFSET_VALUE = bytes.fromhex("00030000000000000001ffffffff00046d657461000001a246228d75")
KAFKA_GROUP_KEY = bytes.fromhex("00020007672d70726f6265")
KAFKA_MEMBER = "kafka-python-3.0.12-da3996e1-7130-485d-9ea2-485416492622"
KAFKA_GROUP_VALUE = bytes.fromhex(
    "00030008636f6e73756d657200000001000572616e67650038" + KAFKA_MEMBER.encode().hex() + "000001a246228d17"
    "000000010038" + KAFKA_MEMBER.encode().hex() + "ffff00136b61666b612d707974686f6e2d332e302e3132000a2f3132"
    "372e302e302e31000493e00000afc80000000e000000000001000263390000000000000016000000000001000263390000000100"
    "00000000000000")
KAFKA_EMPTY_GROUP_VALUE = bytes.fromhex("00030008636f6e73756d657200000002ffffffff000001a246228da500000000")


def test_records_are_byte_for_byte_those_kafka_writes():
    state = OffsetState()
    state.apply(KAFKA_OFFSET_KEY, KAFKA_OFFSET_VALUE)
    committed = state.offsets["g-probe"][("c9", 0)]
    assert committed == CommittedOffset(1, -1, "meta", 1796472999285)
    assert offset_key("g-probe", "c9", 0) == KAFKA_OFFSET_KEY and offset_value(committed) == KAFKA_OFFSET_VALUE

    state.apply(KAFKA_GROUP_KEY, KAFKA_GROUP_VALUE)
    meta = state.groups["g-probe"]
    assert (meta["protocol_type"], meta["generation"], meta["protocol"], meta["leader"]) == \
        ("consumer", 1, "range", KAFKA_MEMBER)
    [member] = meta["members"]
    assert (member["client_id"], member["client_host"], member["session_timeout_ms"],
            member["rebalance_timeout_ms"], member["instance_id"]) == \
        ("kafka-python-3.0.12", "/127.0.0.1", 45000, 300000, None)
    assert group_key("g-probe") == KAFKA_GROUP_KEY and group_value(meta) == KAFKA_GROUP_VALUE
    assert group_value(decode_group_value(KAFKA_EMPTY_GROUP_VALUE)) == KAFKA_EMPTY_GROUP_VALUE

    state.apply(KAFKA_GROUP_KEY, None)
    state.apply(KAFKA_OFFSET_KEY, None)
    assert state.groups == {} and state.offsets == {}


def test_a_commit_with_a_retention_time_is_written_as_value_v1():
    value = offset_value(CommittedOffset(5, leader_epoch=3, metadata="m", commit_ms=10, expire_ms=99))
    assert value[:2] == b"\x00\x01"   # v1: offset, metadata, commit time, expire time (no leader epoch)
    state = OffsetState()
    state.apply(offset_key("g", "t", 0), value)
    assert state.offsets["g"][("t", 0)] == CommittedOffset(5, -1, "m", 10, 99)


@given(st.integers(-(1 << 63), (1 << 63) - 1), st.integers(-(1 << 31), (1 << 31) - 1), st.text(max_size=40),
       st.integers(-(1 << 63), (1 << 63) - 1), st.none() | st.integers(0, (1 << 63) - 1))
def test_offset_values_round_trip(offset, epoch, metadata, commit_ms, expire_ms):
    committed = CommittedOffset(offset, -1 if expire_ms is not None else epoch, metadata, commit_ms, expire_ms)
    state = OffsetState()
    state.apply(offset_key("g\u00e9", "t", 7), offset_value(committed))
    assert state.offsets["g\u00e9"][("t", 7)] == committed


_text = st.text(max_size=20)
_member = st.fixed_dictionaries({
    "member_id": _text, "instance_id": st.none() | _text, "client_id": _text, "client_host": _text,
    "session_timeout_ms": st.integers(0, (1 << 31) - 1), "rebalance_timeout_ms": st.integers(0, (1 << 31) - 1),
    "subscription": st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()),
    "assignment": st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode())})


@given(st.fixed_dictionaries({
    "protocol_type": st.none() | st.text(min_size=1, max_size=10), "generation": st.integers(-(1 << 31), (1 << 31) - 1),
    "protocol": st.none() | _text, "leader": st.none() | _text, "state_ms": st.none() | st.integers(0, 1 << 62),
    "members": st.lists(_member, max_size=3)}))
def test_group_metadata_round_trips(meta):
    state = OffsetState()
    state.apply(group_key("g"), group_value(meta))
    assert state.groups["g"] == meta


# --- an older pstream's data directory ---------------------------------------------------------------

def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def test_an_older_pstreams_offsets_are_found_and_rewritten_in_kafkas_format(data):
    """Before compaction, pstream wrote JSON records and moved the log start past old snapshots."""
    with pstream.Log(data, shards=1, retention_check_ms=None) as log:
        part = log.topic(OFFSETS_TOPIC, partitions=1, retention_ms=None).partition(0)
        part.append_many([(_json(["offset", "old", TOPIC, 0]), _json({"offset": 1}))])
        part.delete_records(1)   # a snapshot's delete_records
        part.append_many([
            (_json(["offset", "old", TOPIC, 0]), _json({"offset": 3, "leader_epoch": 2, "metadata": "m",
                                                        "commit_ms": 5, "expire_ms": None})),
            (_json(["offset", "old", TOPIC, 1]), _json({"offset": 4})),
            (_json(["offset", "gone", TOPIC, 0]), _json({"offset": 9})),
            (_json(["offset", "gone", TOPIC, 0]), None),
            (_json(["group", "old"]), _json({"protocol_type": "consumer", "generation": 4, "protocol": "range",
                                             "leader": None, "state_ms": 7, "members": []}))])

    def committed(c, group):
        return {tp: found.offset for tp, (found, _) in c.fetch_offsets(group, None)[1].items()}

    async def first(c):
        assert c.store.replayed["legacy"] == 3   # live JSON keys, each now deleted by a tombstone
        keys = [(rec.key, rec.value) for rec in c.store.part.read(offset=6)]
        assert sorted(k for k, v in keys if v is None) == sorted([_json(["offset", "old", TOPIC, 0]),
                                                                  _json(["offset", "old", TOPIC, 1]),
                                                                  _json(["group", "old"])])
        assert all(k[:1] == b"\x00" for k, v in keys if v is not None)   # Kafka's keys
        return committed(c, "old"), c.groups["old"].generation, sorted(c.groups)

    async def second(c):
        assert c.store.replayed["legacy"] == 0   # migrated once
        return committed(c, "old"), c.groups["old"].generation, sorted(c.groups)

    expected = ({(TOPIC, 0): 3, (TOPIC, 1): 4}, 4, ["old"])
    assert session(data, first) == expected
    assert session(data, second) == expected


def test_a_crash_during_the_migration_replays_to_the_same_state(data):
    """The Kafka-format records were written, the JSON tombstones were not."""
    with pstream.Log(data, shards=1, retention_check_ms=None) as log:
        part = log.topic(OFFSETS_TOPIC, partitions=1).partition(0)
        part.append_many([(_json(["offset", "g", TOPIC, 0]), _json({"offset": 3})),
                          (offset_key("g", TOPIC, 0), offset_value(CommittedOffset(3)))])

    async def body(c):
        return c.store.replayed["legacy"], c.fetch_offsets("g", None)[1][(TOPIC, 0)][0].offset

    assert session(data, body) == (1, 3)
    assert session(data, body) == (0, 3)


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


# --- compaction by the log cleaner ---------------------------------------------------------------------

# Small segments and no delay, so that a few commits make closed segments the cleaner may clean.
COMPACTING_STORE = {"segment_bytes": 4096}
COMPACTING_LOG = {"delete_retention_ms": 0, "min_cleanable_dirty_ratio": 0.0}


async def clean(c, group: str = "filler") -> None:
    """Two passes: the first drops overwritten records and stamps the tombstones with their
    delete horizon (now: delete.retention.ms is 0 here), the second, once more commits made
    its segments dirty, drops them."""
    for round_ in range(2):
        c.store.part.clean(delete_retention_ms=0)
        await asyncio.sleep(0.005)
        for i in range(60):   # closes the segments holding what came before
            await c.commit(group, -1, "", None, {(TOPIC, 2): CommittedOffset(round_ * 100 + i, metadata="f" * 30)})
    c.store.part.clean(delete_retention_ms=0)


def test_the_offsets_topic_is_compacted(data):
    async def body(c):
        await c.commit("g", -1, "", None, {(TOPIC, 0): CommittedOffset(1)})
        return c.log.get_topic(OFFSETS_TOPIC).config

    config = session(data, body, COMPACTING_STORE, COMPACTING_LOG)
    assert (config.cleanup_policy, config.retention_ms, config.retention_bytes) == ("compact", None, None)


def test_offsets_survive_compaction_and_a_restart(data):
    async def first(c):
        for round_ in range(200):
            offsets = {(TOPIC, p): CommittedOffset(round_ * 10 + p, metadata="x" * 20) for p in range(3)}
            await c.commit(f"g{round_ % 5}", -1, "", None, offsets)
        part = c.store.part
        written = part.high_watermark
        await clean(c)
        kept = sum(1 for _ in part.read(offset=part.log_start_offset))
        assert kept < written / 4   # 15 live keys (+ the active segment's records) of 200 x 3 commits
        return {g: c.fetch_offsets(g, None)[1] for g in sorted(c.groups)}

    async def second(c):
        return {g: c.fetch_offsets(g, None)[1] for g in sorted(c.groups)}

    before = session(data, first, COMPACTING_STORE, COMPACTING_LOG)
    assert len(before) == 6 and session(data, second, COMPACTING_STORE, COMPACTING_LOG) == before


def test_deleted_groups_stay_deleted_after_compaction_and_a_restart(data):
    async def first(c):
        r = await stable_member(c, "members")
        await c.commit("members", 1, r.member_id, None, {(TOPIC, 0): CommittedOffset(4)})
        await c.commit("doomed", -1, "", None, {(TOPIC, 0): CommittedOffset(1), (TOPIC, 1): CommittedOffset(2)})
        await c.commit("kept", -1, "", None, {(TOPIC, 0): CommittedOffset(3)})
        c.leave("members", [(r.member_id, None)])
        await asyncio.sleep(0.02)
        assert await c.delete_groups(["doomed", "members"]) == {"doomed": E.NONE, "members": E.NONE}
        await clean(c)
        keys = {rec.key for rec in c.store.part.read(offset=c.store.part.log_start_offset)}
        assert not {offset_key("doomed", TOPIC, 0), offset_key("doomed", TOPIC, 1), group_key("members"),
                    offset_key("members", TOPIC, 0)} & keys   # records and tombstones both gone

    async def second(c):
        return sorted(c.groups), c.fetch_offsets("doomed", None), c.fetch_offsets("members", None), \
            c.fetch_offsets("kept", None)[1][(TOPIC, 0)][0].offset

    session(data, first, COMPACTING_STORE, COMPACTING_LOG)
    assert session(data, second, COMPACTING_STORE, COMPACTING_LOG) == (["filler", "kept"], (E.NONE, {}), (E.NONE, {}),
                                                                        3)
