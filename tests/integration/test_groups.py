"""Consumer groups with real clients against the real broker: librdkafka (confluent-kafka),
kafka-python and aiokafka consumers sharing a 6-partition topic (each partition owned by exactly
one member; members leave and join, partitions move; every message is consumed, duplicates only
within the at-least-once bound), a group mixing two clients, librdkafka's cooperative-sticky
assignor, broker restarts (SIGTERM and SIGKILL) mid-consumption, the clients' admin APIs, the
default initial rebalance delay, and bad input over raw sockets.

Every consumer here commits synchronously after each batch it processed (at most MAX_BATCH
records), so a rebalance or a broker restart can repeat at most one batch per consumer: the
duplicate bound asserted is (rebalances + restarts) x consumers x MAX_BATCH.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import aiokafka
import kafka
import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

import pstream
from pstream.protocol.error_codes import ErrorCode

import raw_kafka  # noqa: E402  (tests/integration is on sys.path: see conftest.py)

codecs = raw_kafka.codecs
PARTITIONS = 6
MAX_BATCH = 10
FAST = ("--group-initial-rebalance-delay-ms", "100", "--group-min-session-timeout-ms", "1000")
SESSION_MS = 6000
HEARTBEAT_MS = 200


def create_topic(broker, name: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(15)


def produce(broker, topic: str, start: int, count: int) -> None:
    """Values str(i) for i in [start, start + count), keyed so they spread over the partitions."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for i in range(start, start + count):
        p.produce(topic, key=str(i).encode(), value=str(i).encode())
    assert p.flush(30) == 0


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- one consumer per thread, whatever the client --------------------------------------------------------

_running: list = []


@pytest.fixture(autouse=True)
def _stop_leftover_consumers():
    """A failed test leaves its consumers running: stop them, so they do not outlive their broker."""
    yield
    while _running:
        consumer = _running.pop()
        consumer.stopping.set()
        consumer.join(10)


class GroupConsumer(threading.Thread):
    """Consumes in its own thread, committing synchronously after every batch; records what it
    saw and its assignment after each poll. Subclasses adapt one client."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, pause: float = 0.0, **options):
        super().__init__(daemon=True, name=name)
        self.bootstrap, self.group, self.topic, self.options = bootstrap, group, topic, options
        self.pause = pause   # seconds of "work" per batch: keeps consumption going while the test acts
        self.seen: list[int] = []
        self.assignment: frozenset[int] = frozenset()
        self.history: list[frozenset[int]] = []   # every assignment it had, in order
        self.commit_failures = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        _running.append(self)

    def run(self) -> None:
        try:
            self.consume()
        except BaseException as exc:  # noqa: BLE001 - the test thread re-raises it
            self.error = exc

    def record(self, values, assignment) -> None:
        with self.lock:
            self.seen.extend(values)
            if frozenset(assignment) != self.assignment:
                self.history.append(frozenset(assignment))
            self.assignment = frozenset(assignment)
        if values and self.pause:
            time.sleep(self.pause)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        assert not self.is_alive(), f"{self.name} did not stop"
        if self.error is not None:
            raise self.error


class LibrdkafkaConsumer(GroupConsumer):
    def consume(self) -> None:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "session.timeout.ms": SESSION_MS,
                      "heartbeat.interval.ms": HEARTBEAT_MS, **self.options})
        c.subscribe([self.topic])
        try:
            while not self.stopping.is_set():
                msgs = [m for m in c.consume(MAX_BATCH, 0.1) if not m.error()]
                self.record([int(m.value()) for m in msgs], [tp.partition for tp in c.assignment()])
                if msgs:
                    try:
                        c.commit(asynchronous=False)
                    except KafkaException:
                        self.commit_failures += 1
        finally:
            c.close()


class KafkaPythonConsumer(GroupConsumer):
    def consume(self) -> None:
        c = kafka.KafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=self.group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS,
                                max_poll_records=MAX_BATCH, **self.options)
        try:
            while not self.stopping.is_set():
                batches = c.poll(timeout_ms=100)
                values = [int(r.value) for records in batches.values() for r in records]
                self.record(values, [tp.partition for tp in c.assignment()])
                if values:
                    try:
                        c.commit()
                    except kafka.errors.KafkaError:
                        self.commit_failures += 1
        finally:
            c.close()


class AiokafkaConsumer(GroupConsumer):
    def consume(self) -> None:
        asyncio.run(self._consume())

    async def _consume(self) -> None:
        c = aiokafka.AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=self.group,
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS,
                                      **self.options)
        await c.start()
        try:
            while not self.stopping.is_set():
                batches = await c.getmany(timeout_ms=100, max_records=MAX_BATCH)
                values = [int(r.value) for records in batches.values() for r in records]
                self.record(values, [tp.partition for tp in c.assignment()])
                if values:
                    try:
                        await c.commit()
                    except aiokafka.errors.KafkaError:
                        self.commit_failures += 1
        finally:
            await c.stop()


CLIENTS = {"librdkafka": LibrdkafkaConsumer, "kafka-python": KafkaPythonConsumer, "aiokafka": AiokafkaConsumer}


class Scenario:
    """A group of consumers on one topic, with the checks every test shares."""

    def __init__(self, broker, group: str, topic: str):
        self.broker, self.group, self.topic = broker, group, topic
        self.members: list[GroupConsumer] = []
        self.retired: list[GroupConsumer] = []
        self.produced = 0
        self.rebalances = 0   # membership changes after the first assignment
        self.restarts = 0

    def add(self, client: str, rebalance: bool = True, **options) -> GroupConsumer:
        """Starts a member; `rebalance`: its joining counts as a rebalance (for the duplicate bound)."""
        member = CLIENTS[client](self.broker.bootstrap, self.group, self.topic,
                                 f"{client}-{len(self.members) + len(self.retired)}", **options)
        member.start()
        self.members.append(member)
        self.rebalances += rebalance
        return member

    def remove(self, member: GroupConsumer, rebalance: bool = True) -> None:
        member.stop()
        self.members.remove(member)
        self.retired.append(member)
        self.rebalances += rebalance

    def produce(self, count: int) -> None:
        produce(self.broker, self.topic, self.produced, count)
        self.produced += count

    def owners(self):
        """{member: partitions} once every partition has exactly one owner among the live members."""
        for m in self.members:
            if m.error is not None:
                raise m.error
        owned = {m: m.assignment for m in self.members}
        every = [p for parts in owned.values() for p in parts]
        # 6 partitions over at most 3 members: a member with none has not got its share yet.
        return owned if sorted(every) == list(range(PARTITIONS)) and all(owned.values()) else None

    def wait_owned(self, timeout: float = 30) -> dict:
        return wait_for(self.owners, timeout, f"each of {PARTITIONS} partitions owned by exactly one of "
                                              f"{[m.name for m in self.members]}")

    def all_values(self) -> list[int]:
        out = []
        for m in self.members + self.retired:
            with m.lock:
                out.extend(m.seen)
        return out

    def wait_consumed(self, timeout: float = 60) -> None:
        wait_for(lambda: set(self.all_values()) >= set(range(self.produced)), timeout,
                 f"all {self.produced} messages consumed")

    def finish(self) -> int:
        """Stops everyone; asserts nothing was lost and duplicates stay within the bound."""
        self.wait_consumed()
        for m in list(self.members):
            m.stop()
        values = self.all_values()
        assert set(values) == set(range(self.produced)), "lost messages"
        duplicates = len(values) - self.produced
        consumers = len(self.members) + len(self.retired)
        bound = (self.rebalances + self.restarts) * consumers * MAX_BATCH
        assert 0 <= duplicates <= bound, f"{duplicates} duplicates, the at-least-once bound is {bound}"
        return duplicates

    def committed(self) -> dict[int, int]:
        c = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": self.group})
        try:
            tps = c.committed([TopicPartition(self.topic, p) for p in range(PARTITIONS)], timeout=10)
            return {tp.partition: tp.offset for tp in tps}
        finally:
            c.close()


def membership_changes(client_a: str, client_b: str, broker, topic: str, **options) -> Scenario:
    """Three members, one leaves, another joins; consuming all along."""
    create_topic(broker, topic)
    s = Scenario(broker, f"{topic}-group", topic)
    first = [s.add(client_a, **options), s.add(client_b, **options), s.add(client_a, **options)]
    owned = s.wait_owned()
    assert set(owned) == set(first)
    s.rebalances = 0   # nothing was produced yet: the first joins cannot repeat a message
    s.produce(1200)
    s.remove(first[0])
    after_leave = s.wait_owned()
    assert set(after_leave) == set(first[1:])
    s.produce(600)
    newcomer = s.add(client_b, **options)
    after_join = s.wait_owned()
    assert newcomer in after_join and after_join != after_leave   # partitions moved to the newcomer
    s.produce(600)
    s.finish()
    assert s.committed() == dict(zip(range(PARTITIONS), _end_offsets(broker, topic)))
    return s


def _end_offsets(broker, topic: str) -> list[int]:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "probe"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)]
    finally:
        c.close()


# --- groups of real clients ----------------------------------------------------------------------------

@pytest.mark.parametrize("client", ["librdkafka", "kafka-python", "aiokafka"])
def test_group_spreads_partitions_moves_them_and_loses_nothing(broker_factory, client):
    broker = broker_factory(*FAST)
    membership_changes(client, client, broker, f"spread-{client}")


def test_a_group_mixing_librdkafka_and_kafka_python(broker_factory):
    broker = broker_factory(*FAST)
    membership_changes("librdkafka", "kafka-python", broker, "mixed")


def test_librdkafka_cooperative_sticky_rebalances_incrementally(broker_factory):
    broker = broker_factory(*FAST)
    s = membership_changes("librdkafka", "librdkafka", broker, "coop",
                           **{"partition.assignment.strategy": "cooperative-sticky"})
    assert all(m.commit_failures == 0 for m in s.retired)


def test_a_restarted_static_librdkafka_member_takes_over_without_a_rebalance(broker_factory):
    broker = broker_factory(*FAST)
    create_topic(broker, "static")
    s = Scenario(broker, "static-group", "static")
    first = s.add("librdkafka", **{"group.instance.id": "static-1"})
    other = s.add("librdkafka", **{"group.instance.id": "static-2"})
    before = s.wait_owned()
    s.rebalances = 0   # nothing was produced yet
    s.produce(300)
    s.remove(first, rebalance=False)   # a static member closing sends no LeaveGroup: its place is kept
    again = s.add("librdkafka", rebalance=False, **{"group.instance.id": "static-1"})
    after = s.wait_owned()
    assert after[again] == before[first] and after[other] == before[other]
    assert other.history == [before[other]]   # never revoked: no rebalance happened
    s.produce(300)
    s.finish()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_consumption_resumes_from_committed_offsets_after_a_broker_restart(broker_factory, sig):
    broker = broker_factory(*FAST)
    create_topic(broker, "restart")
    s = Scenario(broker, "restart-group", "restart")
    s.add("librdkafka", pause=0.02)
    s.add("librdkafka", pause=0.02)
    s.wait_owned()
    s.rebalances = 0   # nothing was produced yet
    s.produce(900)
    wait_for(lambda: len(set(s.all_values())) >= 300, 30, "a third consumed")
    broker.stop(sig)
    assert len(set(s.all_values())) < 900   # stopped in the middle
    broker.start()
    s.restarts += 1
    s.produce(300)
    s.finish()


def test_a_new_group_with_the_default_delay_completes_its_first_join_in_about_three_seconds(broker):
    create_topic(broker, "delay", 1)
    req_cls, _ = codecs("JoinGroup")
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        request = req_cls(group_id="delayed", session_timeout_ms=10000, rebalance_timeout_ms=30000, member_id="",
                          protocol_type="consumer", protocols=[req_cls.JoinGroupRequestProtocol(name="range",
                                                                                               metadata=b"")])
        first = conn.call("JoinGroup", 9, request)
        assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
        request.member_id = first.member_id
        started = time.monotonic()
        joined = conn.call("JoinGroup", 9, request, timeout=10)
        elapsed = time.monotonic() - started
    assert joined.error_code == 0 and joined.generation_id == 1 and joined.leader == first.member_id
    assert 2.9 <= elapsed <= 3.6, elapsed


# --- admin through the clients -------------------------------------------------------------------------

def test_admin_lists_describes_and_deletes_groups_and_offsets(broker_factory):
    broker = broker_factory(*FAST)
    create_topic(broker, "adm")
    s = Scenario(broker, "adm-group", "adm")
    s.produce(60)
    member = s.add("librdkafka", **{"client.id": "adm-client"})
    s.wait_owned()
    s.wait_consumed()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    kp = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        # librdkafka's admin API.
        listed = admin.list_consumer_groups().result(15)
        assert [(g.group_id, g.state) for g in listed.valid] == [("adm-group", ConsumerGroupState.STABLE)]
        described = admin.describe_consumer_groups(["adm-group"])["adm-group"].result(15)
        assert described.state == ConsumerGroupState.STABLE and described.partition_assignor == "range"
        [m] = described.members
        assert m.client_id == "adm-client" and m.host == "/127.0.0.1"
        assert sorted(tp.partition for tp in m.assignment.topic_partitions) == list(range(PARTITIONS))
        wait_for(lambda: sum(s.committed().values()) == 60, 10, "the last commit")
        offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("adm-group")])["adm-group"]
        assert sum(tp.offset for tp in offsets.result(15).topic_partitions) == 60
        # kafka-python's admin API.
        assert kp.list_groups() == [{"group_id": "adm-group", "protocol_type": "consumer", "group_state": "Stable",
                                     "group_type": "classic"}]
        [kp_member] = kp.describe_groups(["adm-group"])["adm-group"]["members"]
        assert kp_member["member_metadata"]["topics"] == ["adm"]
        assert kp_member["member_assignment"]["assigned_partitions"] == [{"topic": "adm",
                                                                          "partitions": list(range(PARTITIONS))}]
        assert sum(o.offset for o in kp.list_group_offsets({"adm-group": None})["adm-group"].values()) == 60
        # A group with members can be neither deleted nor have its offsets changed by an admin.
        with pytest.raises(KafkaException) as info:
            admin.delete_consumer_groups(["adm-group"])["adm-group"].result(15)
        assert info.value.args[0].code() == ErrorCode.NON_EMPTY_GROUP
        assert kp.delete_groups(["adm-group"]) == {"adm-group": "NonEmptyGroupError"}
        assert kp.delete_group_offsets("adm-group", [kafka.TopicPartition("adm", 0)]) == {
            kafka.TopicPartition("adm", 0): kafka.errors.GroupSubscribedToTopicError}
        refused = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
            "adm-group", [TopicPartition("adm", 0, 3)])])["adm-group"]
        assert [tp.error.code() for tp in refused.result(15).topic_partitions] == [ErrorCode.UNKNOWN_MEMBER_ID]
        s.finish()
        # Empty now: offsets can be altered and deleted, and the group deleted.
        altered = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
            "adm-group", [TopicPartition("adm", 0, 3)])])["adm-group"].result(15)
        assert [(tp.partition, tp.offset, tp.error) for tp in altered.topic_partitions] == [(0, 3, None)]
        assert kp.list_group_offsets({"adm-group": None})["adm-group"][kafka.TopicPartition("adm", 0)].offset == 3
        assert kp.describe_groups(["adm-group"])["adm-group"]["group_state"] == "Empty"
        assert kp.delete_group_offsets("adm-group", [kafka.TopicPartition("adm", 1)]) == {
            kafka.TopicPartition("adm", 1): kafka.errors.NoError}
        assert s.committed()[1] < 0 and s.committed()[0] == 3
        admin.delete_consumer_groups(["adm-group"])["adm-group"].result(15)
        assert admin.list_consumer_groups().result(15).valid == [] and kp.list_groups() == []
    finally:
        kp.close()
    assert member.commit_failures == 0


# --- raw protocol: Kafka's error codes for bad input, and the broker carries on ---------------------------

def _join(conn, group="raw", member_id="", generation_protocols=(("range", b"\x00\x01garbage"),), version=9,
          instance=None):
    req_cls, _ = codecs("JoinGroup")
    return conn.call("JoinGroup", version, req_cls(
        group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=5000, member_id=member_id,
        group_instance_id=instance, protocol_type="consumer",
        protocols=[req_cls.JoinGroupRequestProtocol(name=n, metadata=m) for n, m in generation_protocols]))


def test_raw_group_protocol_errors_and_garbage(broker_factory):
    broker = broker_factory(*FAST)
    create_topic(broker, "raw-topic", 2)
    hb_cls, _ = codecs("Heartbeat")
    sync_cls, _ = codecs("SyncGroup")
    commit_cls, _ = codecs("OffsetCommit")
    fetch_cls, _ = codecs("OffsetFetch")
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        # Unknown group.
        assert conn.call("Heartbeat", 4, hb_cls(group_id="nope", generation_id=1, member_id="m")).error_code == \
            ErrorCode.UNKNOWN_MEMBER_ID
        # Join with garbage subscription metadata: opaque to the broker, it still works.
        first = _join(conn)
        assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
        joined = _join(conn, member_id=first.member_id)
        assert (joined.error_code, joined.generation_id, joined.leader) == (0, 1, first.member_id)
        assert [m.metadata for m in joined.members] == [b"\x00\x01garbage"]
        me = first.member_id
        # Garbage assignments (and one for a member that does not exist) are stored as given.
        synced = conn.call("SyncGroup", 5, sync_cls(
            group_id="raw", generation_id=1, member_id=me, protocol_type="consumer", protocol_name="range",
            assignments=[sync_cls.SyncGroupRequestAssignment(member_id=me, assignment=b"\xff\x00garbage"),
                         sync_cls.SyncGroupRequestAssignment(member_id="ghost", assignment=b"??")]))
        assert (synced.error_code, synced.assignment) == (0, b"\xff\x00garbage")
        # Wrong generation.
        assert conn.call("Heartbeat", 4, hb_cls(group_id="raw", generation_id=7, member_id=me)).error_code == \
            ErrorCode.ILLEGAL_GENERATION
        assert conn.call("SyncGroup", 5, sync_cls(group_id="raw", generation_id=0, member_id=me)).error_code == \
            ErrorCode.ILLEGAL_GENERATION

        def commit(version, generation, member, metadata="m", topic="raw-topic", partition=0):
            return conn.call("OffsetCommit", version, commit_cls(
                group_id="raw", generation_id_or_member_epoch=generation, member_id=member, topics=[
                    commit_cls.OffsetCommitRequestTopic(name=topic, partitions=[
                        commit_cls.OffsetCommitRequestPartition(partition_index=partition, committed_offset=5,
                                                                committed_metadata=metadata)])])
            ).topics[0].partitions[0].error_code

        assert commit(9, 7, me) == ErrorCode.ILLEGAL_GENERATION
        assert commit(9, 1, "stranger") == ErrorCode.UNKNOWN_MEMBER_ID
        assert commit(9, -1, "") == ErrorCode.UNKNOWN_MEMBER_ID   # stand-alone commits need an empty group
        assert commit(9, 1, me, metadata="x" * 4097) == ErrorCode.OFFSET_METADATA_TOO_LARGE
        assert commit(9, 1, me, topic="no-such-topic") == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert commit(9, 1, me, partition=2) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert commit(2, 1, me, metadata="kept \u2603") == 0
        fetched = conn.call("OffsetFetch", 5, fetch_cls(group_id="raw", topics=None))
        [t] = fetched.topics
        assert (t.name, t.partitions[0].committed_offset, t.partitions[0].metadata) == ("raw-topic", 5, "kept \u2603")
        # v8: several groups at once, one unknown (no offsets, no error), require_stable honoured.
        multi = conn.call("OffsetFetch", 9, fetch_cls(require_stable=True, groups=[
            fetch_cls.OffsetFetchRequestGroup(group_id="raw", topics=None),
            fetch_cls.OffsetFetchRequestGroup(group_id="unknown", topics=[
                fetch_cls.OffsetFetchRequestTopics(name="raw-topic", partition_indexes=[1])])]))
        assert [(g.group_id, g.error_code) for g in multi.groups] == [("raw", 0), ("unknown", 0)]
        assert multi.groups[0].topics[0].partitions[0].committed_offset == 5
        assert multi.groups[1].topics[0].partitions[0].committed_offset == -1
        # An invalid group id.
        assert conn.call("Heartbeat", 0, hb_cls(group_id="", generation_id=1, member_id=me)).error_code == \
            ErrorCode.INVALID_GROUP_ID
        # Batched LeaveGroup: one known member, one unknown.
        leave_cls, _ = codecs("LeaveGroup")
        left = conn.call("LeaveGroup", 5, leave_cls(group_id="raw", members=[
            leave_cls.MemberIdentity(member_id=me), leave_cls.MemberIdentity(member_id="ghost")]))
        assert [(m.member_id, m.error_code) for m in left.members] == [(me, 0), ("ghost", ErrorCode.UNKNOWN_MEMBER_ID)]
        # Garbage bytes as a JoinGroup body close only this connection.
        conn.send_raw(raw_kafka.frame(raw_kafka.request_header(11, 5, 99) + b"\x00\x03abc\xff"))
        assert conn.closed_by_broker()
    with raw_kafka.RawConnection(broker.bootstrap) as conn:   # the broker carries on
        assert _join(conn, group="after").error_code == ErrorCode.MEMBER_ID_REQUIRED
    assert broker.alive()


def test_raw_find_coordinator_list_describe_delete(broker_factory):
    broker = broker_factory(*FAST)
    create_topic(broker, "fc", 1)
    fc_cls, _ = codecs("FindCoordinator")
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        old = conn.call("FindCoordinator", 0, fc_cls(key="g"))
        assert (old.error_code, old.node_id, old.port) == (0, 0, broker.port)
        batched = conn.call("FindCoordinator", 4, fc_cls(key_type=0, coordinator_keys=["a", "b"]))
        assert [(c.key, c.error_code, c.port) for c in batched.coordinators] == [("a", 0, broker.port),
                                                                                ("b", 0, broker.port)]
        txn = conn.call("FindCoordinator", 6, fc_cls(key_type=1, coordinator_keys=["tx"]))
        assert [(c.key, c.error_code, c.port) for c in txn.coordinators] == [("tx", 0, broker.port)]
        unknown = conn.call("FindCoordinator", 6, fc_cls(key_type=2, coordinator_keys=["x"]))
        assert unknown.coordinators[0].error_code == ErrorCode.INVALID_REQUEST
        # A stand-alone commit makes an Empty group with no protocol type.
        commit_cls, _ = codecs("OffsetCommit")
        conn.call("OffsetCommit", 0, commit_cls(group_id="standalone", topics=[commit_cls.OffsetCommitRequestTopic(
            name="fc", partitions=[commit_cls.OffsetCommitRequestPartition(partition_index=0, committed_offset=1)])]))
        first = _join(conn, group="joined")
        _join(conn, group="joined", member_id=first.member_id)
        list_cls, _ = codecs("ListGroups")
        everything = conn.call("ListGroups", 5, list_cls())
        assert sorted((g.group_id, g.protocol_type, g.group_state, g.group_type) for g in everything.groups) == [
            ("joined", "consumer", "CompletingRebalance", "classic"), ("standalone", "", "Empty", "classic")]
        empty_only = conn.call("ListGroups", 4, list_cls(states_filter=["Empty"]))
        assert [g.group_id for g in empty_only.groups] == ["standalone"]
        assert sorted(g.group_id for g in conn.call("ListGroups", 0, list_cls()).groups) == ["joined", "standalone"]
        desc_cls, _ = codecs("DescribeGroups")
        described = conn.call("DescribeGroups", 5, desc_cls(groups=["joined", "missing"]))
        assert [(g.group_id, g.group_state, len(g.members)) for g in described.groups] == [
            ("joined", "CompletingRebalance", 1), ("missing", "Dead", 0)]
        del_cls, _ = codecs("DeleteGroups")
        deleted = conn.call("DeleteGroups", 2, del_cls(groups_names=["joined", "standalone", "missing"]))
        assert [(r.group_id, r.error_code) for r in deleted.results] == [
            ("joined", ErrorCode.NON_EMPTY_GROUP), ("standalone", 0), ("missing", ErrorCode.GROUP_ID_NOT_FOUND)]
        od_cls, _ = codecs("OffsetDelete")
        od = conn.call("OffsetDelete", 0, od_cls(group_id="missing", topics=[]))
        assert od.error_code == ErrorCode.GROUP_ID_NOT_FOUND
        # __consumer_offsets is internal: listed as such (as Kafka does), and clients cannot write,
        # delete, grow or reconfigure it.
        meta = conn.call("Metadata", 12, raw_kafka.metadata_request(None))
        assert [(t.name, t.is_internal) for t in meta.topics if t.name.startswith("__")] == [
            ("__consumer_offsets", True)]
        batch = pstream._core.encode_batch([(None, b"forged", [], None)])
        produced = conn.call("Produce", 9, raw_kafka.produce_request("__consumer_offsets", 0, batch))
        assert produced.responses[0].partition_responses[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
        del_cls, _ = codecs("DeleteTopics")
        refused = conn.call("DeleteTopics", 5, del_cls(topic_names=["__consumer_offsets"], timeout_ms=1000))
        assert refused.responses[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
        cp_cls, _ = codecs("CreatePartitions")
        grown = conn.call("CreatePartitions", 3, cp_cls(topics=[cp_cls.CreatePartitionsTopic(
            name="__consumer_offsets", count=5, assignments=None)], timeout_ms=1000))
        assert grown.results[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
        alter_cls, _ = codecs("IncrementalAlterConfigs")
        altered = conn.call("IncrementalAlterConfigs", 1, alter_cls(resources=[alter_cls.AlterConfigsResource(
            resource_type=2, resource_name="__consumer_offsets", configs=[alter_cls.AlterableConfig(
                name="retention.ms", config_operation=0, value="1")])]))
        assert altered.responses[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
