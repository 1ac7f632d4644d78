"""Membership of a classic Kafka consumer group, for one synchronous consumer.

Join (with the member id the coordinator hands out, as JoinGroup v4+ asks), assign
partitions with the range assignor when this member is the leader, sync, heartbeat
between fetches, commit with the generation, leave on close. The "consumer" protocol's
subscription and assignment are pstream.protocol.consumer_protocol's.
"""

from __future__ import annotations

import time

from pstream.client.client import KafkaClient
from pstream.client.connection import KafkaError, check
from pstream.client.wire import codec_classes
from pstream.coordinator.assignors import split_range
from pstream.protocol.consumer_protocol import (
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from pstream.protocol.error_codes import ErrorCode

PROTOCOL_TYPE = "consumer"
ASSIGNOR = "range"
_REJOIN = {ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID,
           ErrorCode.MEMBER_ID_REQUIRED}


def range_assign(members: dict[str, list[str]], partitions: dict[str, int]) -> dict[str, dict[str, list[int]]]:
    """Kafka's RangeAssignor: per topic, consecutive partition ranges to the sorted subscribers."""
    out: dict[str, dict[str, list[int]]] = {m: {} for m in members}
    for topic in sorted({t for ts in members.values() for t in ts}):
        subscribers = sorted(m for m, ts in members.items() if topic in ts)
        count = partitions.get(topic, 0)
        for m, part in zip(subscribers, split_range(count, len(subscribers))):
            if part:
                out[m][topic] = list(part)
    return out


class GroupMembership:
    def __init__(self, client: KafkaClient, group: str, topics: list[str], session_timeout_ms: int = 45000,
                 rebalance_timeout_ms: int = 60000, heartbeat_interval_s: float = 3.0):
        self.client = client
        self.group = group
        self.topics = topics
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval_s = heartbeat_interval_s
        self.member_id = ""
        self.generation = -1
        self.assignment: dict[str, list[int]] = {}
        self._last_heartbeat = 0.0

    def join(self, deadline_s: float = 120.0) -> dict[str, list[int]]:
        """Joins (or rejoins) the group and returns this member's assignment."""
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                return self._join_once()
            except KafkaError as exc:
                if exc.code not in _REJOIN and exc.code not in (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                                                                ErrorCode.NOT_COORDINATOR):
                    raise
                if exc.code == ErrorCode.UNKNOWN_MEMBER_ID:
                    self.member_id = ""
                if time.monotonic() > deadline:
                    raise

    def _join_once(self) -> dict[str, list[int]]:
        join_cls, _ = codec_classes("JoinGroup")
        sync_cls, _ = codec_classes("SyncGroup")
        conn = self.client.coordinator(self.group)
        wait = self.rebalance_timeout_ms / 1000 + 10
        req = join_cls(group_id=self.group, session_timeout_ms=self.session_timeout_ms,
                       rebalance_timeout_ms=self.rebalance_timeout_ms, member_id=self.member_id,
                       group_instance_id=None, protocol_type=PROTOCOL_TYPE,
                       protocols=[join_cls.JoinGroupRequestProtocol(name=ASSIGNOR,
                                                                    metadata=encode_subscription(self.topics))])
        resp = conn.call("JoinGroup", conn.version("JoinGroup", 9), req, timeout=wait)
        if resp.error_code == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = resp.member_id
        check(resp.error_code, f"join group {self.group!r}")
        self.member_id, self.generation = resp.member_id, resp.generation_id
        assignments = []
        if resp.leader == resp.member_id and not resp.skip_assignment:
            subs = {m.member_id: decode_subscription(bytes(m.metadata)) for m in resp.members}
            wanted = sorted({t for ts in subs.values() for t in ts})
            meta = self.client.metadata(wanted).topics
            counts = {t: len(meta[t].partitions) for t in wanted if t in meta and not meta[t].error_code}
            assignments = [sync_cls.SyncGroupRequestAssignment(member_id=m, assignment=encode_assignment(a))
                           for m, a in range_assign(subs, counts).items()]
        req = sync_cls(group_id=self.group, generation_id=self.generation, member_id=self.member_id,
                       group_instance_id=None, protocol_type=PROTOCOL_TYPE, protocol_name=ASSIGNOR,
                       assignments=assignments)
        resp = conn.call("SyncGroup", conn.version("SyncGroup", 5), req, timeout=wait)
        check(resp.error_code, f"sync group {self.group!r}")
        self.assignment = decode_assignment(bytes(resp.assignment or b""))
        self._last_heartbeat = time.monotonic()
        return self.assignment

    def heartbeat_due(self) -> bool:
        return time.monotonic() - self._last_heartbeat >= self.heartbeat_interval_s

    def heartbeat(self) -> bool:
        """Sends a heartbeat; False when the group is rebalancing and this member must rejoin."""
        req_cls, _ = codec_classes("Heartbeat")
        conn = self.client.coordinator(self.group)
        resp = conn.call("Heartbeat", conn.version("Heartbeat", 4),
                         req_cls(group_id=self.group, generation_id=self.generation, member_id=self.member_id))
        self._last_heartbeat = time.monotonic()
        if resp.error_code in _REJOIN:
            if resp.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
            return False
        check(resp.error_code, f"heartbeat to group {self.group!r}")
        return True

    def commit(self, offsets: dict[tuple[str, int], int]) -> bool:
        """Commits with this member's generation; False when a rebalance refused it (rejoin)."""
        if offsets:
            try:
                self.client.commit_offsets(self.group, offsets, self.generation, self.member_id)
            except KafkaError as exc:
                if exc.code not in _REJOIN:
                    raise
                return False
        return True

    def leave(self) -> None:
        if not self.member_id:
            return
        req_cls, _ = codec_classes("LeaveGroup")
        conn = self.client.coordinator(self.group)
        version = conn.version("LeaveGroup", 5)
        if version >= 3:
            req = req_cls(group_id=self.group, members=[req_cls.MemberIdentity(member_id=self.member_id)])
        else:
            req = req_cls(group_id=self.group, member_id=self.member_id)
        conn.call("LeaveGroup", version, req)
        self.member_id = ""
