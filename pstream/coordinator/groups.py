"""The classic consumer-group coordinator, as Kafka's GroupCoordinator (not KIP-848) runs it.

Owns every group's membership and rebalance state machine:

    Empty --join--> PreparingRebalance --all joined / rebalance timeout--> CompletingRebalance
    CompletingRebalance --leader's SyncGroup, stored--> Stable --join, leave, expiry--> PreparingRebalance
    PreparingRebalance --nobody left--> Empty;   Empty --deleted or expired--> Dead

and the offset-commit rules (which generation and member may commit). Members carry their
member id, group.instance.id, client id and host, session and rebalance timeouts, protocols
(name -> metadata) and assignment. Every timer (session expiry, the join and sync deadlines,
the initial rebalance delay) is a `loop.call_later` on the event loop: no threads. What must
survive a restart (offsets, group metadata) goes through `OffsetStore` (offsets.py); this
module never touches the log otherwise, except to check that topics exist and to compute lag.

Requests are coroutines returning result objects with Kafka error codes; the wire handlers
(pstream/broker/handlers/groups.py) translate them. A request that must wait for other
members (JoinGroup, SyncGroup) awaits a future the state machine resolves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import uuid

from pstream.coordinator.consumer_groups import ConsumerGroup, ConsumerProtocol
from pstream.coordinator.offsets import (
    CommittedOffset,
    OffsetStore,
    TopicPartition,
    b64,
    group_key,
    group_value,
    now_ms,
    offset_key,
    offset_value,
    unb64,
)
from pstream.errors import PStreamError
from pstream.protocol.consumer_protocol import decode_subscription
from pstream.protocol.error_codes import ErrorCode

_log = logging.getLogger("pstream.groups")

CONSUMER_PROTOCOL = "consumer"
NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000   # Kafka's GroupCoordinator.NewMemberJoinTimeoutMs
OFFSET_METADATA_MAX_BYTES = 4096             # Kafka's offset.metadata.max.bytes
RETENTION_CHECK_INTERVAL_S = 600.0           # Kafka's offsets.retention.check.interval.ms


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclasses.dataclass
class JoinResult:
    error: int
    member_id: str = ""
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    skip_assignment: bool = False
    members: list = dataclasses.field(default_factory=list)   # [(member id, instance id, metadata)]: the leader's


@dataclasses.dataclass
class SyncResult:
    error: int
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclasses.dataclass
class MemberSummary:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclasses.dataclass
class GroupSummary:
    error: int
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: list[MemberSummary]


def subscribed_topics(metadata: bytes) -> set[str]:
    """The topics of a ConsumerProtocolSubscription (any version); ValueError if unreadable."""
    return set(decode_subscription(metadata))


class Member:
    """One group member: who it is, what it supports, what it was given, what it waits for."""

    __slots__ = ("assignment", "client_host", "client_id", "expiry", "instance_id", "is_new",
                 "join_future", "member_id", "protocol_type", "protocols", "rebalance_timeout_ms",
                 "session_timeout_ms", "sync_future")

    def __init__(self, member_id: str, instance_id: str | None, client_id: str, client_host: str,
                 session_timeout_ms: int, rebalance_timeout_ms: int, protocol_type: str,
                 protocols: list[tuple[str, bytes]]):
        self.member_id = member_id
        self.instance_id = instance_id
        self.client_id = client_id
        self.client_host = client_host
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.protocol_type = protocol_type
        self.protocols = protocols
        self.assignment = b""
        self.join_future: asyncio.Future | None = None
        self.sync_future: asyncio.Future | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.is_new = False

    def metadata(self, protocol: str | None) -> bytes:
        for name, data in self.protocols:
            if name == protocol:
                return data
        return b""

    def vote(self, candidates: set[str]) -> str:
        return next(name for name, _ in self.protocols if name in candidates)

    def summary(self, protocol: str | None) -> MemberSummary:
        """With the chosen protocol's metadata and the assignment (Stable), else with neither (protocol None)."""
        return MemberSummary(self.member_id, self.instance_id, self.client_id, self.client_host,
                             self.metadata(protocol) if protocol else b"", self.assignment if protocol else b"")


class Group:
    """One group's state; the coordinator drives every transition."""

    def __init__(self, group_id: str):
        self.group_id = group_id
        self.state = GroupState.EMPTY
        self.state_ms = now_ms()
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}             # instance id -> member id
        self.pending_members: dict[str, asyncio.TimerHandle] = {}   # ids handed out, not yet joined
        self.pending_sync: set[str] = set()
        self.new_member_added = False
        self.join_timer: asyncio.TimerHandle | None = None
        self.initial_delay: tuple[int, int] | None = None     # (delay, remaining) while the initial delay runs
        self.sync_timer: asyncio.TimerHandle | None = None
        self.subscribed: set[str] | None = None              # None: unknown

    def transition(self, state: GroupState) -> None:
        self.state = state
        self.state_ms = now_ms()

    def is_(self, *states: GroupState) -> bool:
        return self.state in states

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def candidate_protocols(self) -> set[str]:
        sets = [{name for name, _ in m.protocols} for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def supports_protocols(self, protocol_type: str, names: list[str]) -> bool:
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(names)
        return self.protocol_type == protocol_type and any(n in self.candidate_protocols() for n in names)

    def select_protocol(self) -> str:
        """Kafka's vote: each member votes for its most preferred protocol that all support."""
        candidates = self.candidate_protocols()
        votes: dict[str, int] = {}
        for member in self.members.values():
            choice = member.vote(candidates)
            votes[choice] = votes.get(choice, 0) + 1
        return max(votes, key=votes.get)   # ties: the first voted for (dicts keep order)

    def all_joined(self) -> bool:
        return not self.pending_members and all(m.join_future is not None for m in self.members.values())

    def add(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        self.pending_members.pop(member.member_id, None)

    def remove(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is not None:
            # Requests it still has waiting are answered now, else their connections would stall.
            _resolve(member.join_future, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, ""))
            _resolve(member.sync_future, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
            member.join_future = member.sync_future = None
            if member.instance_id is not None and self.static_members.get(member.instance_id) == member_id:
                del self.static_members[member.instance_id]
            if member.expiry is not None:
                member.expiry.cancel()
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        handle = self.pending_members.pop(member_id, None)
        if handle is not None:
            handle.cancel()
        self.pending_sync.discard(member_id)

    def compute_subscribed(self) -> None:
        self.subscribed = None
        if self.protocol_type == CONSUMER_PROTOCOL and self.protocol_name is not None:
            try:
                self.subscribed = set().union(*(subscribed_topics(m.metadata(self.protocol_name))
                                                for m in self.members.values()))
            except ValueError:
                self.subscribed = None
        elif not self.members:
            self.subscribed = set()

    def is_subscribed_to(self, topic: str) -> bool:
        return True if self.subscribed is None else topic in self.subscribed

    def summary(self) -> GroupSummary:
        protocol = self.protocol_name if self.state is GroupState.STABLE else None
        return GroupSummary(ErrorCode.NONE, self.group_id, self.state.value, self.protocol_type or "",
                            protocol or "", [m.summary(protocol) for m in self.members.values()])


def _resolve(future: asyncio.Future | None, result) -> bool:
    if future is not None and not future.done():
        future.set_result(result)
        return True
    return False


class GroupCoordinator:
    """Every group on this node; call `start()` inside the event loop (it replays the offsets
    topic), `stop()` before the Log closes."""

    def __init__(self, log, *, initial_rebalance_delay_ms: int = 3000, min_session_timeout_ms: int = 6000,
                 max_session_timeout_ms: int = 1800000, max_size: int | None = None,
                 offsets_retention_ms: int = 7 * 24 * 3600 * 1000,
                 retention_check_interval_s: float = RETENTION_CHECK_INTERVAL_S,
                 metadata_max_bytes: int = OFFSET_METADATA_MAX_BYTES,
                 new_member_join_timeout_ms: int = NEW_MEMBER_JOIN_TIMEOUT_MS,
                 store: OffsetStore | None = None, consumer_session_timeout_ms: int = 45000,
                 consumer_heartbeat_interval_ms: int = 5000, consumer_max_size: int = 2**31 - 1):
        self.log = log
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.max_size = max_size
        self.offsets_retention_ms = offsets_retention_ms
        self.retention_check_interval_s = retention_check_interval_s
        self.metadata_max_bytes = metadata_max_bytes
        self.new_member_join_timeout_ms = new_member_join_timeout_ms
        self.store = store or OffsetStore(log)
        self.groups: dict[str, Group | ConsumerGroup] = {}
        self.consumer = ConsumerProtocol(self, session_timeout_ms=consumer_session_timeout_ms,
                                         heartbeat_interval_ms=consumer_heartbeat_interval_ms,
                                         max_size=consumer_max_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future] = set()
        self._expirer: asyncio.Task | None = None
        self.active = False
        # What a request gets while this coordinator is not active: cluster mode tells the
        # groups of a shard still loading, or led elsewhere, to look again (groups_cluster.py).
        self.inactive_error = ErrorCode.COORDINATOR_NOT_AVAILABLE

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Replays the offsets topic and restores every group; members restored with a group get
        a session timeout to heartbeat in, as when Kafka loads a group."""
        self._loop = asyncio.get_running_loop()
        state = self.store.open()
        for group_id in list(state.offsets) + list(state.groups):
            if group_id not in self.groups:
                self.groups[group_id] = self._restore(group_id, state.groups.get(group_id))
        self._expirer = asyncio.ensure_future(self._expire_periodically())
        self.active = True
        gone = {t for per in state.offsets.values() for t, _ in per if t not in self.log}
        for topic in gone:   # deleted while the broker was down, or before their tombstones were written
            self.on_topic_deleted(topic)

    def _restore(self, group_id: str, meta: dict | None) -> Group:
        try:
            return self._restore_from(group_id, meta)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            _log.warning("group %s: its stored metadata is unreadable (%r); restored without members", group_id, exc)
            return Group(group_id)

    def _restore_from(self, group_id: str, meta: dict | None) -> Group:
        group = Group(group_id)
        if not meta:
            return group
        group.protocol_type = meta.get("protocol_type")
        group.generation = int(meta.get("generation", 0))
        group.protocol_name = meta.get("protocol")
        group.state_ms = meta.get("state_ms") or group.state_ms
        for m in meta.get("members", ()):
            member = Member(m["member_id"], m.get("instance_id"), m.get("client_id", ""), m.get("client_host", ""),
                            int(m["session_timeout_ms"]), int(m["rebalance_timeout_ms"]), group.protocol_type or "",
                            [(group.protocol_name or "", unb64(m.get("subscription", "")))])
            member.assignment = unb64(m.get("assignment", ""))
            group.add(member)
        if group.members:
            group.leader_id = meta.get("leader") if meta.get("leader") in group.members else group.leader_id
            group.state = GroupState.STABLE
            group.compute_subscribed()
            for member in group.members.values():
                self._schedule_expiry(group, member, member.session_timeout_ms)
        return group

    def stop(self) -> None:
        """Answers waiting JoinGroup/SyncGroup requests with NOT_COORDINATOR and cancels every timer."""
        self.active = False
        for task in [self._expirer, *self._tasks]:
            if task is not None:
                task.cancel()
        self.consumer.stop()
        for group in self.classic_groups():
            for member in group.members.values():
                _resolve(member.join_future, JoinResult(ErrorCode.NOT_COORDINATOR, member.member_id))
                _resolve(member.sync_future, SyncResult(ErrorCode.NOT_COORDINATOR))
                member.join_future = member.sync_future = None
                if member.expiry is not None:
                    member.expiry.cancel()
            for handle in [group.join_timer, group.sync_timer, *group.pending_members.values()]:
                if handle is not None:
                    handle.cancel()

    def for_group(self, group_id: str) -> GroupCoordinator:
        """The coordinator of that group: this one (cluster mode has one per offsets partition)."""
        return self

    def coordinators(self) -> list[GroupCoordinator]:
        """Every coordinator active on this broker."""
        return [self] if self.active else []

    def classic_groups(self) -> list[Group]:
        return [g for g in self.groups.values() if isinstance(g, Group)]

    def _classic(self, group_id: str) -> Group | None:
        """The classic group of that id; None also when the id is a consumer group's, which has no
        classic members (so a classic request for it gets UNKNOWN_MEMBER_ID, as from Kafka)."""
        group = self.groups.get(group_id)
        return group if isinstance(group, Group) else None

    def _spawn(self, coro) -> asyncio.Future:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- timers ---------------------------------------------------------------------------------

    def _later(self, ms: int, callback, *args) -> asyncio.TimerHandle:
        return self._loop.call_later(max(ms, 0) / 1000, callback, *args)

    def _schedule_expiry(self, group: Group, member: Member, timeout_ms: int) -> None:
        """Kafka's completeAndScheduleNextExpiration: the member must be heard from within timeout_ms."""
        if member.expiry is not None:
            member.expiry.cancel()
        member.expiry = self._later(timeout_ms, self._on_member_expired, group, member)

    def _on_member_expired(self, group: Group, member: Member) -> None:
        if group.is_(GroupState.DEAD) or group.members.get(member.member_id) is not member:
            return
        if not member.is_new and (member.join_future is not None or member.sync_future is not None):
            return   # Kafka: waiting for a rebalance counts as heard from; its end reschedules the expiry
        _log.info("member %s of group %s has failed (no heartbeat within %d ms); removing it",
                  member.member_id, group.group_id, member.session_timeout_ms)
        self._remove_member_and_update(group, member)

    def _on_pending_member_expired(self, group: Group, member_id: str) -> None:
        if member_id in group.pending_members:
            _log.info("pending member %s of group %s did not rejoin in time; removed", member_id, group.group_id)
            self._remove_pending_member(group, member_id)

    # --- validation -----------------------------------------------------------------------------

    @staticmethod
    def _validate_member(group: Group, member_id: str, instance_id: str | None) -> int | None:
        """Kafka's validateCurrentMember: a given instance id must map to member_id; member_id must exist."""
        if instance_id is not None:
            current = group.static_members.get(instance_id)
            if current is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if current != member_id:
                _log.info("group %s: instance %s is fenced: member %s is not the current %s", group.group_id,
                          instance_id, member_id, current)
                return ErrorCode.FENCED_INSTANCE_ID
            return None
        return None if member_id in group.members else ErrorCode.UNKNOWN_MEMBER_ID

    def _group_error(self, group_id: str | None, allow_empty: bool = False) -> int | None:
        if group_id is None or (not group_id and not allow_empty):
            return ErrorCode.INVALID_GROUP_ID
        if not self.active:
            return self.inactive_error
        return None

    # --- JoinGroup ------------------------------------------------------------------------------

    async def join(self, group_id: str, member_id: str, instance_id: str | None, client_id: str, client_host: str,
                   session_timeout_ms: int, rebalance_timeout_ms: int, protocol_type: str,
                   protocols: list[tuple[str, bytes]], require_known_member_id: bool = True,
                   supports_skip_assignment: bool = False, reason: str | None = None) -> JoinResult:
        error = self._group_error(group_id)
        if error is None and not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms:
            error = ErrorCode.INVALID_SESSION_TIMEOUT
        if error is not None:
            return JoinResult(error, member_id)
        group = self.groups.get(group_id)
        if isinstance(group, ConsumerGroup):
            if not group.is_(GroupState.EMPTY, GroupState.DEAD):
                return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id)
            _log.info("converting the empty consumer group %s to a classic group", group_id)
            group = self.groups[group_id] = Group(group_id)
        unknown = member_id == ""
        if group is None:
            if not unknown:
                return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id)
            group = self.groups[group_id] = Group(group_id)
        if not self._accepts_joining_member(group, member_id):
            group.remove(member_id)
            return JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED, "")
        member_args = (client_id, client_host, session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols)
        if group.is_(GroupState.DEAD):
            outcome = JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id)
        elif not group.supports_protocols(protocol_type, [name for name, _ in protocols]):
            outcome = JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id)
        elif unknown:
            outcome = await self._join_new_member(group, instance_id, require_known_member_id,
                                                  supports_skip_assignment, reason, *member_args)
        else:
            outcome = self._join_current_member(group, member_id, instance_id, reason, *member_args)
        if group.is_(GroupState.PREPARING_REBALANCE):
            self._try_complete_join(group)
        if isinstance(outcome, asyncio.Future):
            return await outcome
        return outcome

    def _accepts_joining_member(self, group: Group, member_id: str) -> bool:
        if self.max_size is None or group.is_(GroupState.EMPTY, GroupState.DEAD):
            return True
        if group.is_(GroupState.PREPARING_REBALANCE):
            member = group.members.get(member_id)
            awaiting = sum(m.join_future is not None for m in group.members.values())
            return (member is not None and member.join_future is not None) or awaiting < self.max_size
        return member_id in group.members or len(group.members) < self.max_size

    async def _join_new_member(self, group: Group, instance_id, require_known_member_id, supports_skip_assignment,
                               reason, client_id, client_host, session_timeout_ms, rebalance_timeout_ms,
                               protocol_type, protocols):
        new_id = f"{instance_id if instance_id is not None else client_id}-{uuid.uuid4()}"
        if instance_id is not None:
            old_id = group.static_members.get(instance_id)
            if old_id is not None:
                _log.info("group %s: static member %s rejoins with an unknown member id; %s replaces %s",
                          group.group_id, instance_id, new_id, old_id)
                return await self._replace_static_member(group, old_id, new_id, instance_id, protocols,
                                                         rebalance_timeout_ms, session_timeout_ms,
                                                         supports_skip_assignment)
            return self._add_member_and_rebalance(group, new_id, instance_id, client_id, client_host,
                                                  session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols)
        if require_known_member_id:
            group.pending_members[new_id] = self._later(session_timeout_ms, self._on_pending_member_expired,
                                                        group, new_id)
            return JoinResult(ErrorCode.MEMBER_ID_REQUIRED, new_id)
        return self._add_member_and_rebalance(group, new_id, None, client_id, client_host, session_timeout_ms,
                                              rebalance_timeout_ms, protocol_type, protocols)

    def _join_current_member(self, group: Group, member_id, instance_id, reason, client_id, client_host,
                             session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols):
        if member_id in group.pending_members:
            return self._add_member_and_rebalance(group, member_id, None, client_id, client_host,
                                                  session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols)
        error = self._validate_member(group, member_id, instance_id)
        if error is not None:
            return JoinResult(error, member_id)
        member = group.members[member_id]
        state = group.state
        if state is GroupState.PREPARING_REBALANCE:
            return self._update_member_and_rebalance(group, member, protocols, rebalance_timeout_ms,
                                                     session_timeout_ms)
        if state is GroupState.COMPLETING_REBALANCE:
            if member.protocols == protocols:   # it missed the JoinGroup answer: the same again
                return self._join_answer(group, member)
            return self._update_member_and_rebalance(group, member, protocols, rebalance_timeout_ms,
                                                     session_timeout_ms)
        if state is GroupState.STABLE:
            if group.leader_id == member_id or member.protocols != protocols:
                # The leader rejoining forces a rebalance (a topic's metadata changed, say).
                return self._update_member_and_rebalance(group, member, protocols, rebalance_timeout_ms,
                                                         session_timeout_ms)
            return JoinResult(ErrorCode.NONE, member_id, group.generation, group.protocol_type,
                              group.protocol_name, group.leader_id or "")
        _log.warning("group %s: member %s rejoins in the unexpected state %s", group.group_id, member_id,
                     state.value)
        return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id)

    def _join_answer(self, group: Group, member: Member) -> JoinResult:
        leader = group.leader_id == member.member_id
        members = [(m.member_id, m.instance_id, m.metadata(group.protocol_name))
                   for m in group.members.values()] if leader else []
        return JoinResult(ErrorCode.NONE, member.member_id, group.generation, group.protocol_type,
                          group.protocol_name, group.leader_id or "", False, members)

    def _add_member_and_rebalance(self, group: Group, member_id, instance_id, client_id, client_host,
                                  session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols) -> asyncio.Future:
        member = Member(member_id, instance_id, client_id, client_host, session_timeout_ms, rebalance_timeout_ms,
                        protocol_type, protocols)
        member.is_new = True
        if group.is_(GroupState.PREPARING_REBALANCE) and group.generation == 0:
            group.new_member_added = True
        future = member.join_future = self._loop.create_future()
        group.add(member)
        # Until it has joined, a new member cannot heartbeat: it gets the longer new-member timeout.
        self._schedule_expiry(group, member, self.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance(group, f"adding member {member_id} (instance {instance_id})")
        return future   # not member.join_future: a join that completes at once has cleared it

    def _update_member_and_rebalance(self, group: Group, member: Member, protocols, rebalance_timeout_ms,
                                     session_timeout_ms) -> asyncio.Future:
        self._update_member(member, protocols, rebalance_timeout_ms, session_timeout_ms)
        future = member.join_future
        # With every member already joined (a lone leader rejoining) the join completes here
        # and clears member.join_future: answer from the future taken before.
        self._maybe_prepare_rebalance(group, f"member {member.member_id} rejoins")
        return future

    def _update_member(self, member: Member, protocols, rebalance_timeout_ms, session_timeout_ms) -> None:
        member.protocols = protocols
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        if member.join_future is None:   # a second JoinGroup while one waits shares its answer
            member.join_future = self._loop.create_future()

    async def _replace_static_member(self, group: Group, old_id: str, new_id: str, instance_id: str, protocols,
                                     rebalance_timeout_ms, session_timeout_ms, supports_skip_assignment):
        current_leader = group.leader_id
        member = group.members.pop(old_id)
        # The old incarnation's waiting requests are fenced at once.
        _resolve(member.join_future, JoinResult(ErrorCode.FENCED_INSTANCE_ID, old_id))
        _resolve(member.sync_future, SyncResult(ErrorCode.FENCED_INSTANCE_ID))
        member.join_future = member.sync_future = None
        member.member_id = new_id
        group.members[new_id] = member
        if group.leader_id == old_id:
            group.leader_id = new_id
        group.static_members[instance_id] = new_id
        group.pending_sync.discard(old_id)
        self._schedule_expiry(group, member, session_timeout_ms)
        old = (member.protocols, member.rebalance_timeout_ms, member.session_timeout_ms)
        self._update_member(member, protocols, rebalance_timeout_ms, session_timeout_ms)
        future = member.join_future
        if group.is_(GroupState.STABLE):
            if group.select_protocol() != group.protocol_name:
                self._maybe_prepare_rebalance(group, f"static member {instance_id} rejoins with other protocols")
                return future
            # Same protocols: no rebalance; the new member id is stored, then the member takes over.
            error = await self._store_group(group)
            if member.join_future is future:
                member.join_future = None
            if future.done():   # a rebalance (or a newer incarnation) answered meanwhile
                return future.result()
            if error != ErrorCode.NONE:
                member.protocols, member.rebalance_timeout_ms, member.session_timeout_ms = old
                group.members.pop(new_id, None)
                member.member_id = old_id
                group.members[old_id] = member
                group.static_members[instance_id] = old_id
                if group.leader_id == new_id:
                    group.leader_id = old_id
                self._schedule_expiry(group, member, member.session_timeout_ms)
                result = JoinResult(error, "", group.generation, group.protocol_type, group.protocol_name,
                                    current_leader or "")
            elif supports_skip_assignment and group.leader_id == new_id:
                # JoinGroup v9+: the static leader learns it leads but must not run the assignor.
                result = self._join_answer(group, member)
                result.skip_assignment = True
            else:
                # Older versions get the old leader id, so a returning leader does not reassign.
                result = JoinResult(ErrorCode.NONE, new_id, group.generation, group.protocol_type,
                                    group.protocol_name, current_leader or "")
            _resolve(future, result)
            return result
        if group.is_(GroupState.COMPLETING_REBALANCE):
            # The leader may already be assigning to the old member id: start over.
            self._prepare_rebalance(group, f"static member {instance_id} rejoins during CompletingRebalance")
        return future

    # --- rebalance ------------------------------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.is_(GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY):
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.is_(GroupState.COMPLETING_REBALANCE):
            self._reset_and_propagate_assignment_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        self._cancel_sync_expiration(group)
        was_empty = group.is_(GroupState.EMPTY)
        group.transition(GroupState.PREPARING_REBALANCE)
        _log.info("group %s: preparing to rebalance (generation %d): %s", group.group_id, group.generation, reason)
        if was_empty:
            delay = self.initial_rebalance_delay_ms
            self._start_initial_delay(group, delay, max(group.rebalance_timeout_ms - delay, 0))
        else:
            self._start_join_deadline(group)
            self._try_complete_join(group)

    def _cancel_join_timer(self, group: Group) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
        group.join_timer = None
        group.initial_delay = None

    def _start_initial_delay(self, group: Group, delay_ms: int, remaining_ms: int) -> None:
        """Kafka's InitialDelayedJoin: a new group waits `delay_ms` whatever happens; members joining
        meanwhile extend it by up to the configured delay, never past the rebalance timeout."""
        self._cancel_join_timer(group)
        group.initial_delay = (delay_ms, remaining_ms)
        group.join_timer = self._later(delay_ms, self._on_initial_delay_done, group)

    def _on_initial_delay_done(self, group: Group) -> None:
        delay_ms, remaining_ms = group.initial_delay
        group.join_timer = group.initial_delay = None
        if not group.is_(GroupState.PREPARING_REBALANCE):
            return
        if group.new_member_added and remaining_ms != 0:
            group.new_member_added = False
            self._start_initial_delay(group, min(self.initial_rebalance_delay_ms, remaining_ms),
                                      max(remaining_ms - delay_ms, 0))
        else:
            self._complete_join(group)

    def _start_join_deadline(self, group: Group) -> None:
        self._cancel_join_timer(group)
        group.join_timer = self._later(group.rebalance_timeout_ms, self._on_join_deadline, group)

    def _on_join_deadline(self, group: Group) -> None:
        group.join_timer = None
        if group.is_(GroupState.PREPARING_REBALANCE):
            self._complete_join(group)

    def _try_complete_join(self, group: Group) -> None:
        """Kafka's checkAndComplete on the join: done early once every known member has rejoined
        (never during the initial delay)."""
        if (group.is_(GroupState.PREPARING_REBALANCE) and group.join_timer is not None
                and group.initial_delay is None and group.all_joined()):
            self._cancel_join_timer(group)
            self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        """Kafka's onCompleteJoin: drop dynamic members that did not rejoin, start the next generation."""
        for member in [m for m in group.members.values() if m.join_future is None and m.instance_id is None]:
            _log.info("group %s: member %s did not rejoin in time; removed", group.group_id, member.member_id)
            group.remove(member.member_id)
        if group.is_(GroupState.DEAD):
            return
        if not self._elect_joined_leader(group) and group.members:
            _log.error("group %s could not complete the rebalance: no member rejoined", group.group_id)
            self._start_join_deadline(group)
            self._try_complete_join(group)
            return
        group.generation += 1
        group.pending_sync.clear()
        if group.members:
            group.protocol_name = group.select_protocol()
            group.compute_subscribed()
            group.transition(GroupState.COMPLETING_REBALANCE)
            _log.info("group %s: generation %d with %d members, protocol %s, leader %s", group.group_id,
                      group.generation, len(group.members), group.protocol_name, group.leader_id)
            for member in group.members.values():
                future, member.join_future = member.join_future, None
                _resolve(future, self._join_answer(group, member))
                self._schedule_expiry(group, member, member.session_timeout_ms)
                member.is_new = False
                group.pending_sync.add(member.member_id)
            generation = group.generation
            group.sync_timer = self._later(group.rebalance_timeout_ms, self._on_sync_deadline, group, generation)
        else:
            group.protocol_name = None
            group.compute_subscribed()
            group.transition(GroupState.EMPTY)
            _log.info("group %s: generation %d is empty", group.group_id, group.generation)
            self._spawn(self._store_group(group))

    @staticmethod
    def _elect_joined_leader(group: Group) -> bool:
        leader = group.members.get(group.leader_id) if group.leader_id is not None else None
        if leader is None:
            return False
        if leader.join_future is not None:
            return True
        joined = next((m for m in group.members.values() if m.join_future is not None), None)
        if joined is None:
            return False
        group.leader_id = joined.member_id
        return True

    def _cancel_sync_expiration(self, group: Group) -> None:
        group.pending_sync.clear()
        if group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    def _synced(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync and group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    def _on_sync_deadline(self, group: Group, generation: int) -> None:
        group.sync_timer = None
        if generation != group.generation or not group.is_(GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            return
        if group.pending_sync:
            late = sorted(group.pending_sync)
            for member_id in late:
                group.remove(member_id)
            self._prepare_rebalance(group, f"members {late} sent no SyncGroup in time")

    def _reset_and_propagate_assignment_error(self, group: Group, error: int) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error)

    def _propagate_assignment(self, group: Group, error: int) -> None:
        ok = error == ErrorCode.NONE
        for member in group.members.values():
            future, member.sync_future = member.sync_future, None
            result = SyncResult(error, group.protocol_type if ok else None, group.protocol_name if ok else None,
                                member.assignment if ok else b"")
            if _resolve(future, result):
                self._schedule_expiry(group, member, member.session_timeout_ms)

    def _remove_member_and_update(self, group: Group, member: Member) -> None:
        group.remove(member.member_id)   # a JoinGroup it has waiting gets UNKNOWN_MEMBER_ID
        if group.is_(GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, f"member {member.member_id} left")
        elif group.is_(GroupState.PREPARING_REBALANCE):
            self._try_complete_join(group)

    def _remove_pending_member(self, group: Group, member_id: str) -> None:
        group.remove(member_id)
        if group.is_(GroupState.PREPARING_REBALANCE):
            self._try_complete_join(group)

    # --- SyncGroup ------------------------------------------------------------------------------

    async def sync(self, group_id: str, generation: int, member_id: str, instance_id: str | None,
                   protocol_type: str | None, protocol_name: str | None,
                   assignments: dict[str, bytes]) -> SyncResult:
        error = self._group_error(group_id)
        if error is not None:
            return SyncResult(error)
        group = self._classic(group_id)
        if group is None:
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_(GroupState.DEAD):
            return SyncResult(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        error = self._validate_member(group, member_id, instance_id)
        if error is None:
            if generation != group.generation:
                error = ErrorCode.ILLEGAL_GENERATION
            elif (protocol_type is not None and protocol_type != group.protocol_type) or \
                    (protocol_name is not None and protocol_name != group.protocol_name):
                error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        if error is not None:
            return SyncResult(error)
        if group.is_(GroupState.EMPTY):
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_(GroupState.PREPARING_REBALANCE):
            return SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        member = group.members[member_id]
        if group.is_(GroupState.STABLE):
            self._synced(group, member_id)
            self._schedule_expiry(group, member, member.session_timeout_ms)
            return SyncResult(ErrorCode.NONE, group.protocol_type, group.protocol_name, member.assignment)
        # CompletingRebalance: wait for the leader's assignment.
        if member.sync_future is None:
            member.sync_future = self._loop.create_future()
        future = member.sync_future
        self._synced(group, member_id)
        if group.leader_id == member_id:
            missing = [m for m in group.members if m not in assignments]
            if missing:
                _log.warning("group %s generation %d: no assignment for members %s; they get an empty one",
                             group.group_id, group.generation, missing)
            assignment = {m: assignments.get(m, b"") for m in group.members}
            self._spawn(self._store_assignment(group, generation, assignment))
        return await future

    async def _store_assignment(self, group: Group, generation: int, assignment: dict[str, bytes]) -> None:
        error = await self._store_group(group, assignment)
        if not (group.is_(GroupState.COMPLETING_REBALANCE) and generation == group.generation):
            return   # someone joined or left meanwhile: that rebalance answers everyone
        if error != ErrorCode.NONE:
            self._reset_and_propagate_assignment_error(group, error)
            self._maybe_prepare_rebalance(group, f"storing the assignment failed ({ErrorCode(error).name})")
            return
        for member in group.members.values():
            member.assignment = assignment.get(member.member_id, b"")
        self._propagate_assignment(group, ErrorCode.NONE)
        group.transition(GroupState.STABLE)

    # --- Heartbeat and LeaveGroup ---------------------------------------------------------------

    def heartbeat(self, group_id: str, generation: int, member_id: str, instance_id: str | None = None) -> int:
        error = self._group_error(group_id)
        if error is not None:
            return error
        group = self._classic(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = self._validate_member(group, member_id, instance_id)
        if error is not None:
            return error
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        if group.is_(GroupState.EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        member = group.members[member_id]
        self._schedule_expiry(group, member, member.session_timeout_ms)
        return ErrorCode.REBALANCE_IN_PROGRESS if group.is_(GroupState.PREPARING_REBALANCE) else ErrorCode.NONE

    def leave(self, group_id: str, members: list[tuple[str, str | None]]) -> tuple[int, list[int]]:
        """members: [(member id, instance id)]; returns (group error, an error per member)."""
        error = self._group_error(group_id)
        if error is not None:
            return error, []
        group = self.groups.get(group_id)
        if isinstance(group, ConsumerGroup):
            return ErrorCode.NONE, [self.consumer.remove(group, m, i) for m, i in members]
        if group is None:
            return ErrorCode.NONE, [ErrorCode.UNKNOWN_MEMBER_ID] * len(members)
        if group.is_(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        errors = []
        for member_id, instance_id in members:
            if member_id == "":   # an administrator removing a static member by instance id
                current = group.static_members.get(instance_id) if instance_id is not None else None
                if current is None:
                    errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                    continue
                member_id = current
            elif member_id in group.pending_members:
                self._remove_pending_member(group, member_id)
                errors.append(ErrorCode.NONE)
                continue
            else:
                error = self._validate_member(group, member_id, instance_id)
                if error is not None:
                    errors.append(error)
                    continue
            _log.info("member %s left group %s (LeaveGroup)", member_id, group_id)
            self._remove_member_and_update(group, group.members[member_id])
            errors.append(ErrorCode.NONE)
        return ErrorCode.NONE, errors

    # --- offsets --------------------------------------------------------------------------------

    def _partition_exists(self, topic: str, partition: int) -> bool:
        return topic in self.log and 0 <= partition < self.log.get_topic(topic).partitions

    async def commit(self, group_id: str, generation: int, member_id: str, instance_id: str | None,
                     offsets: dict[TopicPartition, CommittedOffset],
                     producer: tuple[int, int] | None = None, api_version: int = 9) -> dict[TopicPartition, int]:
        """Stores offsets once they are durable; returns an error code per partition. With a
        producer (id, epoch): inside its transaction (TxnOffsetCommit), counted once it commits.
        api_version: the OffsetCommit's (a consumer group's members must use v9+)."""
        error = self._group_error(group_id, allow_empty=True)
        group = self.groups.get(group_id) if error is None else None
        if error is None and group is None:
            if generation >= 0:   # an old generation of a group that no longer exists
                error = ErrorCode.ILLEGAL_GENERATION
            else:
                _log.info("creating simple consumer group %s through a manual offset commit", group_id)
                group = self.groups[group_id] = Group(group_id)
        if error is None and isinstance(group, ConsumerGroup):
            error = self._consumer_commit_error(group, generation, member_id, instance_id, producer is not None,
                                                api_version)
        elif error is None:
            error = self._commit_error(group, generation, member_id, instance_id)
        if error is not None:
            return {tp: error for tp in offsets}
        results, records = {}, []
        for (topic, partition), committed in offsets.items():
            if not self._partition_exists(topic, partition):
                results[(topic, partition)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif len(committed.metadata.encode()) > self.metadata_max_bytes:
                results[(topic, partition)] = ErrorCode.OFFSET_METADATA_TOO_LARGE
            else:
                results[(topic, partition)] = ErrorCode.NONE
                records.append((offset_key(group_id, topic, partition), offset_value(committed)))
        if records:
            error = await self._write(records, producer)
            if error != ErrorCode.NONE:
                for tp, code in results.items():
                    if code == ErrorCode.NONE:
                        results[tp] = error
        return results

    def _commit_error(self, group: Group, generation: int, member_id: str, instance_id: str | None) -> int | None:
        """Kafka's validateOffsetCommit, then the state rules of doCommitOffsets."""
        if group.is_(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and group.is_(GroupState.EMPTY):
            return None   # an admin client, or a consumer that assigns itself partitions
        if generation >= 0 or member_id or instance_id is not None:
            error = self._validate_member(group, member_id, instance_id)
            if error is None and generation != group.generation:
                error = ErrorCode.ILLEGAL_GENERATION
            if error is not None:
                return error
        elif not group.is_(GroupState.EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID   # only members may commit for a group that has some
        if group.is_(GroupState.COMPLETING_REBALANCE):
            return ErrorCode.REBALANCE_IN_PROGRESS
        if group.is_(GroupState.STABLE, GroupState.PREPARING_REBALANCE):
            member = group.members[member_id]
            self._schedule_expiry(group, member, member.session_timeout_ms)
        return None

    def _consumer_commit_error(self, group: ConsumerGroup, epoch: int, member_id: str, instance_id: str | None,
                               transactional: bool, api_version: int) -> int | None:
        """Kafka's ConsumerGroup.validateOffsetCommit: the member's current epoch, or nobody's in an
        empty group; a transactional commit may name no member at all."""
        if group.is_(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if epoch < 0 and not group.members:
            return None
        if transactional and epoch < 0 and not member_id and instance_id is None:
            return None
        if member_id in group.members and not transactional and api_version < 9:
            return ErrorCode.UNSUPPORTED_VERSION
        return self.consumer.member_error(group, member_id, epoch, classic_error=transactional)

    async def _write(self, records, producer: tuple[int, int] | None = None) -> int:
        """Appends and awaits durability; Kafka's error mapping for a failed offsets append."""
        try:
            if producer is None:
                await self.store.write(records)
            else:
                await self.store.write_transactional(records, *producer)
        except PStreamError as exc:
            _log.error("cannot store group records in %s: %s", "__consumer_offsets", exc)
            return ErrorCode.NOT_COORDINATOR
        return ErrorCode.NONE

    async def _store_group(self, group: Group, assignment: dict[str, bytes] | None = None) -> int:
        return await self._write([(group_key(group.group_id), group_value(_group_record(group, assignment)))])

    def fetch_offsets(self, group_id: str, partitions: list[TopicPartition] | None, require_stable: bool = False,
                      member_id: str | None = None, member_epoch: int = -1):
        """(group error, {tp: (CommittedOffset or None, error)}); partitions None: every committed one.
        A member of a consumer group that names itself (OffsetFetch v9) must be at its current epoch."""
        error = self._group_error(group_id, allow_empty=True)
        group = self.groups.get(group_id)
        if error is None and isinstance(group, ConsumerGroup) and (member_id is not None or member_epoch >= 0):
            error = self.consumer.member_error(group, member_id or "", member_epoch, classic_error=False)
        if error is not None:
            return error, {}
        committed = self.store.state.offsets.get(group_id, {})
        wanted = sorted(committed) if partitions is None else partitions
        out = {}
        for tp in wanted:
            if require_stable and self.store.is_pending(offset_key(group_id, *tp)):
                out[tp] = (None, ErrorCode.UNSTABLE_OFFSET_COMMIT)
            else:
                out[tp] = (committed.get(tp), ErrorCode.NONE)
        return ErrorCode.NONE, out

    def lag(self, group_id: str, other_watermarks: dict[TopicPartition, int] | None = None) -> dict[TopicPartition, int]:
        """{(topic, partition): end offset consumers may read - committed offset} for the group's commits,
        on this core's partitions and (with --cores) those of `other_watermarks` (high watermarks
        the other cores told)."""
        out = {}
        for (topic, partition), committed in self.store.state.offsets.get(group_id, {}).items():
            if not self._partition_exists(topic, partition):
                continue
            if self.log.get_topic(topic).owns(partition):
                out[(topic, partition)] = self.log.get_topic(topic).partition(partition).high_watermark \
                    - committed.offset
            elif other_watermarks and (topic, partition) in other_watermarks:
                out[(topic, partition)] = other_watermarks[(topic, partition)] - committed.offset
        return out

    # --- admin ----------------------------------------------------------------------------------

    def describe(self, group_id: str) -> GroupSummary:
        error = self._group_error(group_id, allow_empty=True)
        if error is not None:
            return GroupSummary(error, group_id, "", "", "", [])
        group = self.groups.get(group_id)
        if group is None or isinstance(group, ConsumerGroup):
            # Kafka (DescribeGroups v0-v5) describes a consumer group as it does a missing one:
            # clients describe those with ConsumerGroupDescribe.
            return GroupSummary(ErrorCode.NONE, group_id, GroupState.DEAD.value, "", "", [])
        return group.summary()

    def list_groups(self, states: list[str] | None = None, types: list[str] | None = None):
        """[(group id, protocol type, state, type)], filtered by states and types (case-insensitive)."""
        if not self.active:
            return self.inactive_error, []
        wanted_states = {s.lower() for s in states or ()}
        wanted_types = {t.lower() for t in types or ()}
        out = []
        for g in self.groups.values():
            kind = "consumer" if isinstance(g, ConsumerGroup) else "classic"
            if (not wanted_types or kind in wanted_types) and \
                    (not wanted_states or g.state.value.lower() in wanted_states):
                out.append((g.group_id, g.protocol_type or "", g.state.value, kind))
        return ErrorCode.NONE, out

    async def delete_groups(self, group_ids: list[str]) -> dict[str, int]:
        results, doomed = {}, []
        for group_id in group_ids:
            error = self._group_error(group_id, allow_empty=True)
            group = self.groups.get(group_id) if error is None else None
            if error is None and (group is None or group.is_(GroupState.DEAD)):
                error = ErrorCode.GROUP_ID_NOT_FOUND
            elif error is None and not group.is_(GroupState.EMPTY):
                error = ErrorCode.NON_EMPTY_GROUP
            if error is not None:
                results[group_id] = error
            else:
                group.transition(GroupState.DEAD)
                doomed.append(group)
        if doomed:
            error = await self._remove_groups_and_offsets({g.group_id: None for g in doomed}, dead=doomed)
            for group in doomed:
                results[group.group_id] = error
            _log.info("deleted groups %s", [g.group_id for g in doomed])
        return results

    async def delete_offsets(self, group_id: str, partitions: list[TopicPartition]):
        """OffsetDelete: (group error, {tp: error})."""
        error = self._group_error(group_id)
        if error is not None:
            return error, {}
        group = self.groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            return ErrorCode.GROUP_ID_NOT_FOUND, {}
        results, eligible = {}, []
        for tp in partitions:
            if not self._partition_exists(*tp):
                results[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif group.is_(GroupState.EMPTY) or not group.is_subscribed_to(tp[0]):
                eligible.append(tp)
            else:
                results[tp] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
        if not group.is_(GroupState.EMPTY) and group.protocol_type != CONSUMER_PROTOCOL:
            return ErrorCode.NON_EMPTY_GROUP, {}
        if eligible:
            error = await self._remove_groups_and_offsets({group_id: set(eligible)})
            results.update({tp: error for tp in eligible})
        return ErrorCode.NONE, results

    async def _remove_groups_and_offsets(self, selection: dict[str, set | None], dead: list[Group] = ()) -> int:
        """Tombstones the selected offsets ({group: set of tps, or None for all}); groups in `dead` lose
        their metadata record too, and so does (Kafka's cleanup rule) an Empty group left with no offsets."""
        records, dead = [], list(dead)
        for group_id, tps in selection.items():
            committed = self.store.state.offsets.get(group_id, {})
            doomed = set(committed) if tps is None else tps
            records += [(offset_key(group_id, *tp), None) for tp in doomed
                        if tp in committed or self.store.is_pending(offset_key(group_id, *tp))]
            group = self.groups.get(group_id)
            if (group is not None and group not in dead and group.is_(GroupState.EMPTY)
                    and not group.pending_members and not set(committed) - doomed):
                group.transition(GroupState.DEAD)
                dead.append(group)
        for group in dead:
            records.append((group_key(group.group_id), None))
            if self.groups.get(group.group_id) is group:
                del self.groups[group.group_id]
        return await self._write(records) if records else ErrorCode.NONE

    def on_topic_deleted(self, topic: str) -> None:
        """Removes every group's offsets of a deleted topic (written in the background)."""
        selection = {g: {tp for tp in per if tp[0] == topic} for g, per in self.store.state.offsets.items()}
        selection = {g: tps for g, tps in selection.items() if tps}
        if selection:
            _log.info("topic %s was deleted: removing its offsets from groups %s", topic, sorted(selection))
            self._spawn(self._remove_groups_and_offsets(selection))

    # --- expiration -----------------------------------------------------------------------------

    async def _expire_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.retention_check_interval_s)
            try:
                await self.expire_offsets()
            except Exception:
                _log.exception("offset expiration failed")

    def _expired(self, group: Group, now: int) -> set[TopicPartition]:
        """Kafka's GroupMetadata.removeExpiredOffsets rules (KIP-211)."""
        committed = self.store.state.offsets.get(group.group_id, {})
        if group.protocol_type is not None and group.is_(GroupState.EMPTY):
            base, keep = (lambda c: group.state_ms), set()   # retention counts from when it became empty
        elif group.protocol_type == CONSUMER_PROTOCOL and group.subscribed is not None and \
                (group.is_(GroupState.STABLE) or isinstance(group, ConsumerGroup)):
            base, keep = (lambda c: c.commit_ms), group.subscribed   # only topics it no longer reads
        elif group.protocol_type is None:
            base, keep = (lambda c: c.commit_ms), set()   # a stand-alone group: from each commit
        else:
            return set()
        out = set()
        for tp, c in committed.items():
            if tp[0] in keep or self.store.is_pending(offset_key(group.group_id, *tp)):
                continue
            if (now >= c.expire_ms) if c.expire_ms is not None else (now - base(c) >= self.offsets_retention_ms):
                out.add(tp)
        return out

    async def expire_offsets(self, now: int | None = None) -> int:
        """Removes expired offsets, and Empty groups left with none; returns how many offsets went."""
        now = now_ms() if now is None else now
        selection = {}
        for group in list(self.groups.values()):
            expired = self._expired(group, now)
            if expired or (group.is_(GroupState.EMPTY) and not self.store.state.offsets.get(group.group_id)):
                selection[group.group_id] = expired
        if selection:
            count = sum(len(s) for s in selection.values())
            await self._remove_groups_and_offsets(selection)
            if count:
                _log.info("expired %d offsets of groups %s", count, sorted(g for g, s in selection.items() if s))
            return count
        return 0


def _group_record(group: Group, assignment: dict[str, bytes] | None = None) -> dict:
    return {"protocol_type": group.protocol_type, "generation": group.generation, "protocol": group.protocol_name,
            "leader": group.leader_id, "state_ms": group.state_ms,
            "members": [{"member_id": m.member_id, "instance_id": m.instance_id, "client_id": m.client_id,
                         "client_host": m.client_host, "session_timeout_ms": m.session_timeout_ms,
                         "rebalance_timeout_ms": m.rebalance_timeout_ms,
                         "subscription": b64(m.metadata(group.protocol_name)),
                         "assignment": b64(m.assignment if assignment is None else assignment.get(m.member_id, b""))}
                        for m in group.members.values()]}
