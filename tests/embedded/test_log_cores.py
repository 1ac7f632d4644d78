"""A Log as one of several cores over one directory (what `pstream serve --cores N` opens in each
process): each core opens only the partitions owner_core gives it, core 0 alone changes topics,
the others take its changes with refresh_topics, and each core has a lock of its own."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pstream
from pstream import _core
from pstream.errors import ConfigError, DirectoryInUseError, NotLocalPartitionError
from pstream.log import owner_core, shard_for
from pstream.protocol.error_codes import ErrorCode

TOPICS = st.text(min_size=1, max_size=40).filter(lambda t: not t.startswith("__"))


@given(TOPICS, st.integers(1, 16), st.integers(0, 1000))
def test_consecutive_partitions_go_round_robin_over_the_cores(topic, cores, first):
    owners = [owner_core(topic, p, cores) for p in range(first, first + cores)]
    assert sorted(owners) == list(range(cores))


@given(TOPICS, st.integers(2, 8), st.integers(1, 8))
def test_a_cores_partitions_spread_over_all_its_shards(topic, cores, shards):
    mine = [p for p in range(cores * shards) if owner_core(topic, p, cores) == 0]
    assert sorted(shard_for(topic, p, shards, cores) for p in mine) == list(range(shards))


def test_internal_topics_are_core_0s():
    assert {owner_core("__consumer_offsets", p, 4) for p in range(50)} == {0}
    assert {owner_core("__transaction_state", p, 4) for p in range(50)} == {0}


@pytest.fixture
def cores(tmp_path):
    path = str(tmp_path / "data")
    core0 = pstream.Log(path, core=0, cores=2, retention_check_ms=None)
    core1 = pstream.Log(path, core=1, cores=2, retention_check_ms=None)
    yield core0, core1
    core1.close()
    core0.close()


def test_each_core_opens_only_its_partitions(cores):
    core0, core1 = cores
    core0.topic("orders", partitions=4)
    core1.refresh_topics()
    for log in cores:
        topic = log.get_topic("orders")
        assert topic.partitions == 4
        assert [p.number for p in topic] == [p for p in range(4) if owner_core("orders", p, 2) == log.core]
    other = next(p for p in range(4) if owner_core("orders", p, 2) == 1)
    with pytest.raises(NotLocalPartitionError, match="is core 1's") as refused:
        core0.get_topic("orders").partition(other)
    assert refused.value.kafka_error == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert not core0.get_topic("orders").owns(other) and core1.get_topic("orders").owns(other)


def test_records_appended_by_each_core_are_one_log(tmp_path, cores):
    core0, core1 = cores
    core0.topic("events", partitions=4)
    core1.refresh_topics()
    for log in cores:
        for part in log.get_topic("events"):
            part.append(b"from core %d" % log.core)
            part.flush()
    core1.close()
    core0.close()
    with pstream.Log(str(tmp_path / "data"), retention_check_ms=None) as whole:   # one core: every partition
        values = [rec.value for part in whole.get_topic("events") for rec in part.read(0)]
    assert sorted(values) == sorted(b"from core %d" % owner_core("events", p, 2) for p in range(4))


def test_only_core_0_changes_topics(cores):
    core0, core1 = cores
    core0.topic("orders", partitions=2)
    core1.refresh_topics()
    for change in (lambda: core1.topic("new"), lambda: core1.delete_topic("orders"),
                   lambda: core1.get_topic("orders").set_config(retention_ms=1),
                   lambda: core1.get_topic("orders").add_partitions(3)):
        with pytest.raises(ConfigError, match="core 1 cannot create, change or delete topic"):
            change()


def test_refresh_takes_core_0s_changes(cores):
    core0, core1 = cores
    core0.topic("grows", partitions=2)
    core0.topic("goes", partitions=2)
    core0.topic("again", partitions=2)
    core1.refresh_topics()
    old_id = core1.get_topic("again").topic_id
    core0.get_topic("grows").add_partitions(6)
    core0.get_topic("grows").set_config(retention_ms=12345)
    core0.delete_topic("goes")
    core0.delete_topic("again")
    core0.topic("again", partitions=4)
    core1.refresh_topics()
    grows = core1.get_topic("grows")
    assert grows.partitions == 6 and grows.config.retention_ms == 12345
    assert [p.number for p in grows] == [p for p in range(6) if owner_core("grows", p, 2) == 1]
    assert "goes" not in core1
    again = core1.get_topic("again")
    assert again.topic_id != old_id and again.partitions == 4


def test_each_core_locks_the_directory_for_itself(tmp_path, cores):
    path = str(tmp_path / "data")
    with pytest.raises(DirectoryInUseError, match="@lock-core-1"):
        pstream.Log(path, core=1, cores=2)
    with pytest.raises(DirectoryInUseError):
        pstream.Log(path)   # a Log of its own would write core 0's partitions too


def test_every_core_wakes_read_only_followers(tmp_path, cores):
    """Readers in other processes wait on <data>/@readable: a core other than 0 bumps it too."""
    core0, core1 = cores
    core0.topic("tail", partitions=2)
    core1.refresh_topics()
    page = os.path.join(str(tmp_path / "data"), _core.READABLE_SEQ_FILE)

    def seq() -> int:
        with open(page, "rb") as f:
            return struct.unpack("<I", f.read(4))[0]

    before = seq()
    part = next(iter(core1.get_topic("tail")))
    part.append(b"x")
    part.flush()
    assert seq() != before


def test_core_settings_are_checked(tmp_path):
    for core, count in ((1, 1), (-1, 2), (0, 0)):
        with pytest.raises(ConfigError, match="core must be in 0..cores-1"):
            pstream.Log(str(tmp_path / "data"), core=core, cores=count)
