"""The consumer protocol's subscription and assignment codecs (pstream.protocol.consumer_protocol),
and the range assignor."""

import struct

from hypothesis import given
from hypothesis import strategies as st

from pstream.client.group_member import range_assign
from pstream.coordinator.groups import subscribed_topics
from pstream.protocol.consumer_protocol import (
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)

topic_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20)


@given(st.lists(topic_names, unique=True, max_size=10))
def test_subscription_round_trips_and_the_broker_reads_it(topics):
    data = encode_subscription(topics)
    assert decode_subscription(data) == topics
    assert subscribed_topics(data) == set(topics)   # what the coordinator makes of it


@given(st.dictionaries(topic_names, st.lists(st.integers(0, 2**31 - 1), max_size=20), max_size=8))
def test_assignment_round_trips(assignment):
    assert decode_assignment(encode_assignment(assignment)) == assignment


def test_assignment_reads_a_later_version_with_user_data():
    # ConsumerProtocolAssignment v1 as the Java client writes it: version, topics, user data.
    data = struct.pack(">hih", 1, 1, 1) + b"t" + struct.pack(">iii", 2, 0, 3) + struct.pack(">i", 2) + b"ud"
    assert decode_assignment(data) == {"t": [0, 3]}
    assert decode_assignment(b"") == {}


def test_range_assign_gives_consecutive_ranges_extra_partitions_first():
    members = {"m2": ["a", "b"], "m1": ["a"], "m3": ["b"]}
    out = range_assign(members, {"a": 5, "b": 2})
    assert out == {"m1": {"a": [0, 1, 2]}, "m2": {"a": [3, 4], "b": [0]}, "m3": {"b": [1]}}


def test_range_assign_with_more_members_than_partitions_leaves_some_idle():
    out = range_assign({"x": ["t"], "y": ["t"], "z": ["t"]}, {"t": 2})
    assert out == {"x": {"t": [0]}, "y": {"t": [1]}, "z": {}}
