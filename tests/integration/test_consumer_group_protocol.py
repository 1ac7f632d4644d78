"""KIP-848 consumer groups against the real broker with librdkafka's `group.protocol=consumer`:
partitions split and move back as members come and go, offsets carry over between the classic and
the new protocol in one group, regex subscriptions pick up new topics, static members come back to
their partitions, the range assignor, and what ConsumerGroupDescribe, ListGroups and the CLI show."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
import raw_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from pstream.client import KafkaClient
from pstream.testing import BrokerProcess, stop_broker

codecs = raw_kafka.codecs
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """This module's broker: heartbeats every 200 ms, so that rebalances take well under a second."""
    b = BrokerProcess(str(tmp_path_factory.mktemp("kip848") / "data"), group_consumer_heartbeat_interval_ms=200,
                      group_consumer_session_timeout_ms=6000).start()
    yield b
    stop_broker(b)


def committed(broker, group: str, topic: str) -> dict[int, int]:
    with KafkaClient(broker.bootstrap) as client:
        return {p: o for (t, p), o in client.committed_offsets(group).items() if t == topic}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def produce(broker, topic: str, count: int, partitions: int) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, key=b"%d" % i, value=b"value-%d" % i, partition=i % partitions)
    assert producer.flush(10) == 0


OPEN: list[Consumer] = []


@pytest.fixture(autouse=True)
def close_consumers():
    """Closes what a failed test left open (its sockets and pipes would count as leaked)."""
    yield
    while OPEN:
        try:
            OPEN.pop().close()
        except RuntimeError:   # closed by the test already
            pass


def consumer(broker, group: str, topics: list[str], **conf) -> Consumer:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "group.protocol": "consumer",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    c.subscribe(topics)
    OPEN.append(c)
    return c


def poll_until(consumers: list[Consumer], done, what: str, sink: list | None = None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        for c in consumers:
            m = c.poll(0.1)
            if m is not None:
                assert m.error() is None, m.error()
                if sink is not None:
                    sink.append((m.topic(), m.partition(), m.offset()))
        if done():
            return
    raise AssertionError(f"timed out waiting for {what}")


def commit(c: Consumer) -> None:
    """Commits what the consumer read; one that read nothing since its last commit has nothing to send."""
    try:
        c.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise


def assigned(c: Consumer) -> set[tuple[str, int]]:
    return {(tp.topic, tp.partition) for tp in c.assignment()}


def describe(broker, group: str):
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        [g] = conn.call("ConsumerGroupDescribe", 0, codecs("ConsumerGroupDescribe")[0](group_ids=[group])).groups
    return g


def test_partitions_split_between_members_and_return_when_one_leaves(broker):
    topic, group = unique("split"), unique("g")
    broker.create_topic(topic, partitions=4)
    produce(broker, topic, 200, 4)
    seen: list = []
    first = consumer(broker, group, [topic])
    poll_until([first], lambda: len(seen) >= 100 and len(assigned(first)) == 4, "the first member's 4 partitions",
               seen)
    commit(first)
    second = consumer(broker, group, [topic])
    poll_until([first, second], lambda: len(assigned(first)) == 2 and len(assigned(second)) == 2,
               "a 2 + 2 split", seen)
    assert assigned(first) | assigned(second) == {(topic, p) for p in range(4)}
    poll_until([first, second], lambda: len(set(seen)) == 200, "every record", seen)
    for c in (first, second):
        commit(c)
    g = describe(broker, group)
    assert (g.error_code, g.group_state, g.assignor_name, len(g.members)) == (0, "Stable", "uniform", 2)
    assert {m.member_epoch for m in g.members} == {g.assignment_epoch}
    second.close()   # leaves with epoch -1
    poll_until([first], lambda: len(assigned(first)) == 4, "the partitions back with the first member")
    first.close()
    assert set(seen) == {(topic, p, o) for p in range(4) for o in range(50)}
    assert committed(broker, group, topic) == {p: 50 for p in range(4)}
    assert describe(broker, group).group_state == "Empty"


def test_offsets_carry_over_between_the_classic_and_the_new_protocol(broker):
    topic, group = unique("carry"), unique("g")
    broker.create_topic(topic, partitions=1)
    produce(broker, topic, 30, 1)
    old = consumer(broker, group, [topic], **{"group.protocol": "classic", "session.timeout.ms": 6000})
    got: list = []
    poll_until([old], lambda: len(got) >= 10, "10 records over the classic protocol", got)
    old.commit(offsets=[TopicPartition(topic, 0, 10)], asynchronous=False)
    old.close()
    new = consumer(broker, group, [topic])
    resumed: list = []
    poll_until([new], lambda: len(resumed) >= 20, "the rest over the new protocol", resumed)
    assert resumed[0] == (topic, 0, 10)
    new.commit(offsets=[TopicPartition(topic, 0, 25)], asynchronous=False)
    new.close()
    back = consumer(broker, group, [topic], **{"group.protocol": "classic", "session.timeout.ms": 6000})
    again: list = []
    poll_until([back], lambda: len(again) >= 5, "the last records over the classic protocol again", again)
    assert again[0] == (topic, 0, 25)
    back.close()


def test_a_regex_subscription_is_resolved_by_the_broker_and_follows_new_topics(broker):
    prefix, group = unique("rx"), unique("g")
    broker.create_topic(f"{prefix}-a", partitions=2)
    broker.create_topic(unique("other"), partitions=1)
    produce(broker, f"{prefix}-a", 10, 2)
    c = consumer(broker, group, [f"^{prefix}-.*"])
    seen: list = []
    poll_until([c], lambda: len(seen) >= 10, f"records of {prefix}-a", seen)
    assert {t for t, _ in assigned(c)} == {f"{prefix}-a"}
    broker.create_topic(f"{prefix}-b", partitions=3)
    produce(broker, f"{prefix}-b", 6, 3)
    poll_until([c], lambda: len(seen) >= 16, f"records of {prefix}-b, created after the subscription", seen)
    assert {t for t, _ in assigned(c)} == {f"{prefix}-a", f"{prefix}-b"}
    [member] = describe(broker, group).members
    assert member.subscribed_topic_regex == f"(^{prefix}-.*)"   # librdkafka: "(re1)|(re2)|..."
    c.close()


def test_a_static_member_comes_back_to_its_partitions_without_a_rebalance(broker):
    topic, group = unique("static"), unique("g")
    broker.create_topic(topic, partitions=4)
    a = consumer(broker, group, [topic], **{"group.instance.id": "instance-a"})
    b = consumer(broker, group, [topic], **{"group.instance.id": "instance-b"})
    poll_until([a, b], lambda: len(assigned(a)) == 2 and len(assigned(b)) == 2, "a 2 + 2 split")
    kept, epoch = assigned(a), describe(broker, group).group_epoch
    a.close()   # a static member leaves with epoch -2: its partitions wait for it
    g = describe(broker, group)
    assert {m.instance_id: m.member_epoch for m in g.members}["instance-a"] == -2
    a2 = consumer(broker, group, [topic], **{"group.instance.id": "instance-a"})
    poll_until([a2, b], lambda: assigned(a2) == kept, "the returning instance's old partitions")
    g = describe(broker, group)
    assert g.group_epoch == epoch and len(g.members) == 2
    a2.close()
    b.close()


def test_the_range_assignor_when_members_ask_for_it(broker):
    topic, group = unique("range"), unique("g")
    broker.create_topic(topic, partitions=4)
    members = [consumer(broker, group, [topic], **{"group.remote.assignor": "range"}) for _ in range(2)]
    poll_until(members, lambda: all(len(assigned(c)) == 2 for c in members), "a 2 + 2 range split")
    for c in members:
        parts = sorted(p for _, p in assigned(c))
        assert parts in ([0, 1], [2, 3])
    assert describe(broker, group).assignor_name == "range"
    for c in members:
        c.close()


def test_describe_and_list_show_the_group_as_a_consumer_group(broker):
    topic, group = unique("show"), unique("g")
    broker.create_topic(topic, partitions=2)
    produce(broker, topic, 4, 2)
    c = consumer(broker, group, [topic], **{"client.id": "shown"})
    poll_until([c], lambda: len(assigned(c)) == 2, "an assignment")
    c.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 1)], asynchronous=False)
    with raw_kafka.RawConnection(broker.bootstrap) as conn:
        listed = conn.call("ListGroups", 5, codecs("ListGroups")[0](types_filter=["consumer"])).groups
        assert (group, "consumer", "Stable", "consumer") in \
            [(g.group_id, g.protocol_type, g.group_state, g.group_type) for g in listed]
        classic = conn.call("DescribeGroups", 5, codecs("DescribeGroups")[0](groups=[group])).groups[0]
        assert (classic.error_code, classic.group_state) == (0, "Dead")
    [member] = describe(broker, group).members
    assert (member.client_id, member.client_host, member.subscribed_topic_names) == ("shown", "/127.0.0.1", [topic])
    cli = [sys.executable, "-P", "-m", "pstream", "group", "--brokers", broker.bootstrap]   # -P: not the checkout
    shown = json.loads(subprocess.run([*cli, "describe", group, "--format", "json"], capture_output=True, text=True,
                                      check=True, timeout=60).stdout)
    [g] = shown
    assert (g["state"], g["protocol_type"], g["protocol"], g["total_lag"]) == ("Stable", "consumer", "uniform", 1)
    assert g["members"][0]["assignment"] == f"{topic}:0,1"
    listed = json.loads(subprocess.run([*cli, "list", "--format", "json"], capture_output=True, text=True,
                                       check=True, timeout=60).stdout)
    assert {"group": group, "state": "Stable", "protocol_type": "consumer", "type": "consumer"} in listed
    c.close()


def test_members_rejoin_after_the_broker_restarts_and_resume_from_their_commits(tmp_path):
    """Membership is not persisted: after a restart a member's heartbeat gets UNKNOWN_MEMBER_ID,
    it rejoins at epoch 0 and goes on from the group's committed offsets."""
    b = BrokerProcess(str(tmp_path / "data"), group_consumer_heartbeat_interval_ms=200).start()
    try:
        topic, group = unique("restart"), unique("g")
        b.create_topic(topic, partitions=2)
        produce(b, topic, 20, 2)
        c = consumer(b, group, [topic], **{"reconnect.backoff.max.ms": 200})
        seen: list = []
        poll_until([c], lambda: len(seen) >= 20, "the first 20 records", seen)
        commit(c)
        b.kill()   # crash: nothing of the group but its committed offsets survives
        b.start()
        produce(b, topic, 20, 2)
        poll_until([c], lambda: len(set(seen)) >= 40, "the next 20 records after the restart", seen)
        assert set(seen) == {(topic, p, o) for p in range(2) for o in range(20)}
        assert len(seen) == 40   # nothing read twice: it resumed from its commit
        g = describe(b, group)
        assert (g.group_state, len(g.members)) == ("Stable", 1)
        c.close()
    finally:
        stop_broker(b)
