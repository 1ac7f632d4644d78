"""Named consumers against a model (hypothesis state machine): members join and leave, records
arrive, members poll and commit; every partition always has exactly one owner among the members
subscribed to its topic, and no committed record is delivered to the group again."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import pstream

TOPICS = {"a": 3, "b": 2}


class ConsumerGroupMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="pstream-model-")
        self.log = pstream.Log(self.folder, shards=2, retention_check_ms=None, cleaner=False)
        for name, partitions in TOPICS.items():
            self.log.topic(name, partitions=partitions, flush="interval", flush_ms=1000)
        self.members: list = []
        self.appended = 0
        self.committed: dict[tuple[str, int], int] = {}     # the model of the group's commits
        self.delivered_after_commit: set = set()

    @rule(topics=st.sampled_from([("a",), ("b",), ("a", "b")]))
    def join(self, topics):
        if len(self.members) < 6:
            self.members.append(self.log.consumer("g", topics=list(topics)))

    @precondition(lambda self: self.members)
    @rule(index=st.integers(0, 5))
    def leave(self, index):
        self.members.pop(index % len(self.members)).close()

    @rule(topic=st.sampled_from(sorted(TOPICS)), keys=st.lists(st.binary(max_size=4), min_size=1, max_size=20))
    def produce(self, topic, keys):
        self.log.topic(topic).append_many([(k, b"v") for k in keys])
        self.appended += len(keys)

    @precondition(lambda self: self.members)
    @rule(index=st.integers(0, 5), max_records=st.integers(1, 30), commit=st.booleans())
    def poll(self, index, max_records, commit):
        member = self.members[index % len(self.members)]
        records = member.poll(max_records=max_records)
        for rec in records:
            tp = (rec.topic, rec.partition)
            assert tp in member.assignment()
            assert rec.offset >= self.committed.get(tp, 0), f"{tp}@{rec.offset} was committed already"
        if commit:
            member.commit()
            self.committed.update(member.position())

    @invariant()
    def each_partition_has_one_subscribed_owner(self):
        owners: dict[tuple[str, int], int] = {}
        for i, member in enumerate(self.members):
            for tp in member.assignment():
                assert tp[0] in member.topics
                assert tp not in owners, f"{tp} is owned by members {owners[tp]} and {i}"
                owners[tp] = i
        subscribed = {t for m in self.members for t in m.topics}
        expected = {(t, p) for t in subscribed for p in range(TOPICS[t])}
        assert set(owners) == expected

    @invariant()
    def commits_are_what_the_store_holds(self):
        if self.members:
            stored = self.members[0]._log._group_offsets().fetch("g")
            assert {tp: c.offset for tp, c in stored.items()} == self.committed

    def teardown(self):
        for member in self.members:
            member.close()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


ConsumerGroupMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_consumer_groups_match_the_model = ConsumerGroupMachine.TestCase
