"""Consumer groups of the new protocol (KIP-848): ConsumerGroupHeartbeat and ConsumerGroupDescribe.

The coordinator, not a group leader, assigns partitions. Each heartbeat of a member:

  1. creates or updates the member (subscribed names or regex, assignor, rebalance timeout); a
     changed subscription, or a change in the subscribed topics (created, deleted, more
     partitions), bumps the group epoch;
  2. when the group epoch is past the assignment epoch, the group's server assignor ("uniform",
     "range") computes a new target assignment for every member;
  3. reconciles this member towards its target, as Kafka's CurrentAssignmentBuilder does: a member
     first revokes what it must give up (it stays at its epoch, UNREVOKED_PARTITIONS), then moves to
     the target epoch and gets what is free; a partition another member has not yet revoked is
     held back (UNRELEASED_PARTITIONS) until it has.

A member that misses its session timeout, or does not revoke within its rebalance timeout, is
fenced (removed). A static member (instance id) that leaves with epoch -2 keeps its assignment for
its session timeout, and a member that joins with the same instance id takes it over.

Offsets are the classic groups' (GroupCoordinator.commit/fetch_offsets with this module's member
and epoch rules), so classic and consumer groups share one offsets store and either kind can
read the other's commits after a group changes kind while empty. Membership lives in memory: after
a restart a member's heartbeat gets UNKNOWN_MEMBER_ID and it rejoins (its committed offsets stay).
"""

from __future__ import annotations

import enum
import logging
import re
import types
import uuid

from pstream.coordinator import INTERNAL_TOPICS
from pstream.coordinator.assignors import ASSIGNORS, DEFAULT_ASSIGNOR
from pstream.coordinator.offsets import now_ms
from pstream.protocol.error_codes import ErrorCode

_log = logging.getLogger("pstream.groups")

LEAVE_EPOCH = -1          # a member leaves the group
LEAVE_STATIC_EPOCH = -2   # a static member leaves for now and will come back
Assignment = dict[uuid.UUID, set[int]]


class GroupError(Exception):
    """A Kafka error code and the message Kafka's coordinator gives with it."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ConsumerGroupState(enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


class MemberState(enum.Enum):
    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


class ConsumerMember:
    __slots__ = ("assigned", "client_host", "client_id", "epoch", "instance_id", "may_describe", "member_id",
                 "pending_revocation",
                 "previous_epoch", "rack_id", "rebalance_timeout_ms", "rebalance_timer", "server_assignor",
                 "session_timer", "state", "subscribed_names", "subscribed_regex")

    def __init__(self, member_id: str):
        self.member_id = member_id
        self.instance_id: str | None = None
        self.rack_id: str | None = None
        self.client_id = ""
        self.client_host = ""
        self.subscribed_names: list[str] = []
        self.subscribed_regex: str | None = None
        self.server_assignor: str | None = None
        self.rebalance_timeout_ms = 300000
        self.epoch = 0
        self.previous_epoch = 0
        self.state = MemberState.STABLE
        self.assigned: Assignment = {}
        self.pending_revocation: Assignment = {}
        self.session_timer = None
        self.rebalance_timer = None
        self.may_describe = None   # (topic name) -> bool: what its regex may select (the authorizer's answer)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.previous_epoch, self.epoch = self.epoch, epoch

    def cancel_timers(self) -> None:
        for timer in (self.session_timer, self.rebalance_timer):
            if timer is not None:
                timer.cancel()
        self.session_timer = self.rebalance_timer = None


class ConsumerGroup:
    """One consumer group of the new protocol. It quacks like the classic Group where the
    coordinator's shared code (offsets, expiry, deletion, listing) looks: group_id, state (by
    value: "Empty", "Stable", "Dead"), state_ms, protocol_type, subscribed, pending_members."""

    protocol_type = "consumer"
    pending_members = types.MappingProxyType({})   # none: members join in one heartbeat

    def __init__(self, group_id: str):
        self.group_id = group_id
        self.epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerMember] = {}
        self.static_members: dict[str, str] = {}        # instance id -> member id
        self.target: dict[str, Assignment] = {}         # member id -> its target assignment
        self.owners: dict[tuple[uuid.UUID, int], str] = {}   # partition -> member holding it (assigned or revoking)
        self.metadata: tuple = ()                       # the subscribed topics as last seen: ((name, id, count), ...)
        self.regexes: dict[str, set[str]] = {}          # resolved subscription regexes
        self.regex_topics: frozenset = frozenset()      # the topic names they were resolved against
        self.assignor = DEFAULT_ASSIGNOR
        self.dead = False
        self.state_ms = now_ms()

    # --- what the shared coordinator code reads -------------------------------------------------

    @property
    def state(self) -> ConsumerGroupState:
        if self.dead:
            return ConsumerGroupState.DEAD
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        for member in self.members.values():
            if member.epoch != self.assignment_epoch or member.state is not MemberState.STABLE:
                return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def is_(self, *states) -> bool:
        return self.state.value in {s.value for s in states}

    def transition(self, state) -> None:
        """Only to Dead (deletion); every other state follows from the members."""
        self.dead = state.value == ConsumerGroupState.DEAD.value
        self.state_ms = now_ms()

    @property
    def subscribed(self) -> set[str]:
        names: set[str] = set()
        for member in self.members.values():
            names.update(member.subscribed_names)
            if member.subscribed_regex:
                names |= self.regexes.get(member.subscribed_regex, set())
        return names

    def is_subscribed_to(self, topic: str) -> bool:
        return topic in self.subscribed

    # --- ownership -------------------------------------------------------------------------------

    def set_assignment(self, member: ConsumerMember, assigned: Assignment, pending: Assignment) -> None:
        """Replaces what the member holds, keeping `owners` (who holds each partition) in step."""
        for held in (member.assigned, member.pending_revocation):
            for topic, parts in held.items():
                for p in parts:
                    if self.owners.get((topic, p)) == member.member_id:
                        del self.owners[(topic, p)]
        member.assigned, member.pending_revocation = assigned, pending
        for held in (assigned, pending):
            for topic, parts in held.items():
                for p in parts:
                    self.owners[(topic, p)] = member.member_id

    def remove_member(self, member: ConsumerMember) -> None:
        self.set_assignment(member, {}, {})
        member.cancel_timers()
        self.members.pop(member.member_id, None)
        self.target.pop(member.member_id, None)
        if member.instance_id is not None and self.static_members.get(member.instance_id) == member.member_id:
            del self.static_members[member.instance_id]
        if not self.members:
            self.state_ms = now_ms()

    def choose_assignor(self) -> str:
        """Kafka's preferred server assignor: the one most members ask for, else the default."""
        votes: dict[str, int] = {}
        for member in self.members.values():
            if member.server_assignor:
                votes[member.server_assignor] = votes.get(member.server_assignor, 0) + 1
        return max(sorted(votes), key=votes.get) if votes else DEFAULT_ASSIGNOR


def subscribed_topic_ids(group: ConsumerGroup, member: ConsumerMember, image: dict[str, tuple]) -> set[uuid.UUID]:
    names = set(member.subscribed_names)
    if member.subscribed_regex:
        matched = group.regexes.get(member.subscribed_regex, set())
        if member.may_describe is not None:   # as Kafka 4: a regex selects only topics the member may describe
            matched = {n for n in matched if member.may_describe(n)}
        names |= matched
    return {image[n][0] for n in names if n in image}


def owns_any(owned: list | None, partitions: Assignment) -> bool:
    """Whether the member's reported partitions (None: not reported, assume yes) include any of these."""
    if owned is None:
        return True
    return any(p in partitions.get(topic, ()) for topic, parts in owned for p in parts)


def is_subset(owned: list | None, assigned: Assignment) -> bool:
    if owned is None:
        return False
    return all(p in assigned.get(topic, ()) for topic, parts in owned for p in parts)


def reconcile(group: ConsumerGroup, member: ConsumerMember, target_epoch: int, target: Assignment,
              owned: list | None, subscribed: set[uuid.UUID]) -> None:
    """Kafka's CurrentAssignmentBuilder.build: moves the member one step towards its target."""
    if member.state is MemberState.STABLE and member.epoch == target_epoch:
        return
    if member.state is MemberState.UNREVOKED_PARTITIONS and owns_any(owned, member.pending_revocation):
        return
    assigned: Assignment = {}
    revoking: Assignment = {}
    pending_assignment: Assignment = {}
    unreleased = False
    for topic in set(target) | set(member.assigned):
        wanted = target.get(topic, set()) if topic in subscribed else set()
        current = member.assigned.get(topic, set())
        keep = current & wanted
        if keep:
            assigned[topic] = keep
        if current - keep:
            revoking[topic] = current - keep
        todo = set()
        for p in wanted - keep:
            holder = group.owners.get((topic, p))
            if holder is not None and holder != member.member_id:
                unreleased = True
            else:
                todo.add(p)
        if todo:
            pending_assignment[topic] = todo
    if revoking and owns_any(owned, revoking):
        member.state = MemberState.UNREVOKED_PARTITIONS
        group.set_assignment(member, assigned, revoking)
        return
    for topic, parts in pending_assignment.items():
        assigned.setdefault(topic, set()).update(parts)
    member.state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
    member.set_epoch(target_epoch)
    group.set_assignment(member, assigned, {})


def check_heartbeat(version: int, group_id: str, member_id: str, epoch: int, instance_id, rack_id,
                    rebalance_timeout_ms: int, names, regex, assignor, owned) -> None:
    """Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid, messages included."""
    if (version >= 1 or epoch > 0 or epoch == LEAVE_EPOCH) and not member_id.strip():
        raise GroupError(ErrorCode.INVALID_REQUEST, "MemberId can't be empty.")
    if not group_id.strip():
        raise GroupError(ErrorCode.INVALID_REQUEST, "GroupId can't be empty.")
    if instance_id is not None and not instance_id.strip():
        raise GroupError(ErrorCode.INVALID_REQUEST, "InstanceId can't be empty.")
    if rack_id is not None and not rack_id.strip():
        raise GroupError(ErrorCode.INVALID_REQUEST, "RackId can't be empty.")
    if epoch == 0:
        if rebalance_timeout_ms == -1:
            raise GroupError(ErrorCode.INVALID_REQUEST, "RebalanceTimeoutMs must be provided in first request.")
        if owned is None or owned:
            raise GroupError(ErrorCode.INVALID_REQUEST, "TopicPartitions must be empty when (re-)joining.")
        if names is None and regex is None:
            raise GroupError(ErrorCode.INVALID_REQUEST,
                             "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.")
    elif epoch == LEAVE_STATIC_EPOCH and instance_id is None:
        raise GroupError(ErrorCode.INVALID_REQUEST, "InstanceId can't be null.")
    elif epoch < LEAVE_STATIC_EPOCH:
        raise GroupError(ErrorCode.INVALID_REQUEST, "MemberEpoch is invalid.")
    if regex:
        try:
            re.compile(regex)
        except re.error as exc:
            raise GroupError(ErrorCode.INVALID_REGULAR_EXPRESSION,
                             f"SubscribedTopicRegex `{regex}` is not a valid regular expression: {exc}.") from None
    if assignor is not None and assignor not in ASSIGNORS:
        raise GroupError(ErrorCode.UNSUPPORTED_ASSIGNOR, f"ServerAssignor {assignor} is not supported. "
                                                         f"Supported assignors: {', '.join(ASSIGNORS)}.")


def check_member_epoch(member: ConsumerMember, epoch: int, owned: list | None) -> None:
    """Kafka's throwIfConsumerGroupMemberEpochIsInvalid: the previous epoch is accepted with a
    subset of the current assignment, as the answer that moved the member on may have been lost."""
    if epoch == 0:
        return
    if epoch > member.epoch:
        raise GroupError(ErrorCode.FENCED_MEMBER_EPOCH,
                         f"The consumer group member has a greater member epoch ({epoch}) than the one known by the "
                         f"group coordinator ({member.epoch}). The member must abandon all its partitions and rejoin.")
    if epoch < member.epoch and (epoch != member.previous_epoch or not is_subset(owned, member.assigned)):
        raise GroupError(ErrorCode.FENCED_MEMBER_EPOCH,
                         f"The consumer group member has a smaller member epoch ({epoch}) than the one known by the "
                         f"group coordinator ({member.epoch}). The member must abandon all its partitions and rejoin.")


def regex_matches(regex: str, topics) -> set[str]:
    """The topics a subscription regex selects: whole-name matches, internal topics excluded (Kafka)."""
    pattern = re.compile(regex)
    return {t for t in topics if t not in INTERNAL_TOPICS and pattern.fullmatch(t)}


class HeartbeatResult:
    __slots__ = ("assignment", "epoch", "error", "interval_ms", "member_id", "message")

    def __init__(self, error: int = ErrorCode.NONE, message: str | None = None, member_id: str | None = None,
                 epoch: int = 0, interval_ms: int = 0, assignment: Assignment | None = None):
        self.error, self.message, self.member_id = error, message, member_id
        self.epoch, self.interval_ms, self.assignment = epoch, interval_ms, assignment


class ConsumerProtocol:
    """The new protocol's side of the broker's GroupCoordinator (`coordinator.consumer`): its groups
    live in `coordinator.groups` next to the classic ones, so a group id is one group of one kind."""

    def __init__(self, coordinator, *, session_timeout_ms: int = 45000, heartbeat_interval_ms: int = 5000,
                 max_size: int = 2**31 - 1):
        self.coordinator = coordinator
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.max_size = max_size

    @property
    def log(self):
        return self.coordinator.log

    # --- ConsumerGroupHeartbeat ------------------------------------------------------------------

    def heartbeat(self, version: int, group_id: str, member_id: str, epoch: int, instance_id: str | None,
                  rack_id: str | None, rebalance_timeout_ms: int, names: list[str] | None, regex: str | None,
                  assignor: str | None, owned: list | None, client_id: str, client_host: str,
                  may_describe=None) -> HeartbeatResult:
        """One heartbeat; `owned` is [(topic id, [partitions])] or None (unchanged); may_describe:
        (topic name) -> bool, what the member's principal may describe (None: everything)."""
        try:
            if not self.coordinator.active:
                raise GroupError(self.coordinator.inactive_error, "The coordinator is not available.")
            check_heartbeat(version, group_id, member_id, epoch, instance_id, rack_id, rebalance_timeout_ms,
                            names, regex, assignor, owned)
            if epoch in (LEAVE_EPOCH, LEAVE_STATIC_EPOCH):
                return self._leave(group_id, member_id, epoch, instance_id)
            return self._heartbeat(group_id, member_id or str(uuid.uuid4()), epoch, instance_id, rack_id,
                                   rebalance_timeout_ms, names, regex, assignor, owned, client_id, client_host,
                                   may_describe)
        except GroupError as exc:
            return HeartbeatResult(exc.code, exc.message)

    def _group(self, group_id: str, create: bool) -> ConsumerGroup:
        """Kafka's getOrMaybeCreateConsumerGroup; an empty classic group (committed offsets only)
        becomes a consumer group when a member joins it."""
        groups = self.coordinator.groups
        group = groups.get(group_id)
        if isinstance(group, ConsumerGroup) and not group.dead:
            return group
        state = None if group is None else group.state.value   # either kind: compare by Kafka's state name
        if group is None or state == ConsumerGroupState.DEAD.value:
            if not create:
                # Kafka answers GROUP_ID_NOT_FOUND; after a restart of this in-memory coordinator a
                # member of a group it no longer knows must rejoin instead of failing for good.
                raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"Consumer group {group_id} not found.")
        elif create and state == ConsumerGroupState.EMPTY.value and not group.pending_members:
            _log.info("converting the empty classic group %s to a consumer group", group_id)
        elif not create:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"Group {group_id} is not a consumer group.")
        else:
            raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND,
                             f"Cannot upgrade classic group {group_id} to consumer group because it has members.")
        group = groups[group_id] = ConsumerGroup(group_id)
        return group

    def _member(self, group: ConsumerGroup, member_id: str, epoch: int, instance_id: str | None,
                owned: list | None) -> ConsumerMember:
        """The member the request speaks for, new when it joins (Kafka's getOrMaybeSubscribe*Member)."""
        if len(group.members) >= self.max_size and member_id not in group.members:
            raise GroupError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                             f"The consumer group has reached its maximum capacity of {self.max_size} members.")
        if instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                if epoch != 0:
                    raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                                     f"Member {member_id} is not a member of group {group.group_id}.")
                member = group.members[member_id] = ConsumerMember(member_id)
                _log.info("member %s joins consumer group %s", member_id, group.group_id)
            check_member_epoch(member, epoch, owned)
            return member
        current = group.members.get(group.static_members.get(instance_id, ""))
        if epoch == 0:
            if current is None or current.member_id == member_id:
                member = current or ConsumerMember(member_id)
            elif current.epoch != LEAVE_STATIC_EPOCH:
                raise GroupError(ErrorCode.UNRELEASED_INSTANCE_ID,
                                 f"Static member {member_id} with instance id {instance_id} cannot join the group "
                                 f"because the instance id is owned by {current.member_id} member.")
            else:   # the returning instance takes over what its previous member held (Kafka's replaceMember)
                member = ConsumerMember(member_id)
                for field in ("rack_id", "subscribed_names", "subscribed_regex", "server_assignor",
                              "rebalance_timeout_ms", "state"):
                    setattr(member, field, getattr(current, field))
                held, revoking, target = current.assigned, current.pending_revocation, group.target.get(current.member_id)
                group.remove_member(current)
                group.set_assignment(member, held, revoking)
                if target is not None:
                    group.target[member_id] = target
                _log.info("static member %s (instance %s) replaces %s in consumer group %s", member_id, instance_id,
                          current.member_id, group.group_id)
            member.instance_id = instance_id
            group.members[member_id] = member
            group.static_members[instance_id] = member_id
            return member
        if current is None:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
        if current.member_id != member_id:
            raise GroupError(ErrorCode.FENCED_INSTANCE_ID, f"Static member {member_id} with instance id {instance_id} "
                                                           f"was fenced by member {current.member_id}.")
        check_member_epoch(current, epoch, owned)
        return current

    def _heartbeat(self, group_id, member_id, epoch, instance_id, rack_id, rebalance_timeout_ms, names, regex,
                   assignor, owned_ids, client_id, client_host, may_describe=None) -> HeartbeatResult:
        group = self._group(group_id, create=epoch == 0)
        owned = None if owned_ids is None else [(topic, set(parts)) for topic, parts in owned_ids]
        member = self._member(group, member_id, epoch, instance_id, owned)
        before = {t: set(p) for t, p in member.assigned.items()}
        changed = group.epoch == 0
        if rack_id is not None:
            member.rack_id = rack_id
        if rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = rebalance_timeout_ms
        if assignor is not None and assignor != member.server_assignor:
            member.server_assignor = assignor
            changed = True
        if names is not None and sorted(names) != member.subscribed_names:
            member.subscribed_names = sorted(names)
            changed = True
        if regex is not None and (regex or None) != member.subscribed_regex:
            member.subscribed_regex = regex or None
            changed = True
        member.client_id, member.client_host, member.may_describe = client_id, client_host, may_describe
        image = self._refresh_metadata(group, force=changed)
        if changed or image is None:
            group.epoch += 1
            image = image or self._image(group)
        else:
            image = self._image(group)
        if group.epoch > group.assignment_epoch:
            self._assign(group, image)
        subscribed = subscribed_topic_ids(group, member, image)
        reconcile(group, member, group.assignment_epoch, group.target.get(member.member_id, {}), owned, subscribed)
        self._schedule_timeouts(group, member)
        full = rebalance_timeout_ms != -1 and (names is not None or regex is not None) and owned_ids is not None
        send = epoch == 0 or full or member.assigned != before
        return HeartbeatResult(member_id=member.member_id, epoch=member.epoch, interval_ms=self.heartbeat_interval_ms,
                               assignment=member.assigned if send else None)

    # --- subscription metadata and the target assignment -------------------------------------------

    def _image(self, group: ConsumerGroup) -> dict[str, tuple]:
        """{topic name: (topic id, partition count)} of the topics the group subscribes to."""
        out = {}
        for name in group.subscribed:
            if name in self.log:
                topic = self.log.get_topic(name)
                out[name] = (topic.topic_id, topic.partitions)
        return out

    def _refresh_metadata(self, group: ConsumerGroup, force: bool) -> dict | None:
        """Resolves the group's regexes again when the topics changed, then compares the subscribed
        topics with what the target was computed from; None when they differ (the epoch must move)."""
        wanted = {m.subscribed_regex for m in group.members.values() if m.subscribed_regex}
        if wanted:
            topics = frozenset(self.log.topics())
            if force or topics != group.regex_topics or wanted != set(group.regexes):
                group.regexes = {r: regex_matches(r, topics) for r in wanted}
                group.regex_topics = topics
        else:
            group.regexes = {}
        image = self._image(group)
        signature = tuple(sorted((n, str(i), c) for n, (i, c) in image.items()))
        if signature != group.metadata:
            group.metadata = signature
            return None
        return image

    def _assign(self, group: ConsumerGroup, image: dict[str, tuple]) -> None:
        group.assignor = group.choose_assignor()
        subscriptions = {m.member_id: subscribed_topic_ids(group, m, image) for m in group.members.values()}
        counts = {topic_id: count for topic_id, count in image.values()}
        names = {topic_id: name for name, (topic_id, _) in image.items()}
        assign = ASSIGNORS[group.assignor]
        if group.assignor == "range":
            keys = {m.member_id: m.instance_id for m in group.members.values() if m.instance_id}
            group.target = assign(subscriptions, counts, group.target, names, sort_keys=keys)
        else:
            group.target = assign(subscriptions, counts, group.target, names)
        group.assignment_epoch = group.epoch
        _log.info("consumer group %s: epoch %d, %s assignment of %d partitions to %d members", group.group_id,
                  group.epoch, group.assignor, sum(counts.values()), len(group.members))

    # --- leaving and timeouts ----------------------------------------------------------------------

    def _leave(self, group_id: str, member_id: str, epoch: int, instance_id: str | None) -> HeartbeatResult:
        group = self._group(group_id, create=False)
        if instance_id is not None:
            member = group.members.get(group.static_members.get(instance_id, ""))
            if member is None:
                raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
            if member.member_id != member_id:
                raise GroupError(ErrorCode.FENCED_INSTANCE_ID, f"Static member {member_id} with instance id "
                                                               f"{instance_id} was fenced by member {member.member_id}.")
        else:
            member = group.members.get(member_id)
            if member is None:
                raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                                 f"Member {member_id} is not a member of group {group_id}.")
        if epoch == LEAVE_STATIC_EPOCH:
            # It keeps its partitions and target until its session times out or its instance returns.
            _log.info("static member %s (instance %s) of consumer group %s leaves for now", member_id, instance_id,
                      group_id)
            member.set_epoch(LEAVE_STATIC_EPOCH)
            self._schedule_timeouts(group, member)
        else:
            _log.info("member %s leaves consumer group %s", member_id, group_id)
            self._fence(group, member)
        return HeartbeatResult(member_id=member_id, epoch=epoch, interval_ms=0)

    def _fence(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        """Removes the member; its partitions are free and the group epoch moves on."""
        if group.members.get(member.member_id) is not member:
            return
        group.remove_member(member)
        if group.members:
            group.epoch += 1

    def _schedule_timeouts(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        """The session timer restarts with every heartbeat; the rebalance timer runs while the
        member has partitions to revoke (Kafka's scheduleConsumerGroupRebalanceTimeout)."""
        if member.session_timer is not None:
            member.session_timer.cancel()
        member.session_timer = self.coordinator._later(self.session_timeout_ms, self._expired, group, member,
                                                       "session", self.session_timeout_ms)
        if member.state is MemberState.UNREVOKED_PARTITIONS:
            if member.rebalance_timer is None:
                member.rebalance_timer = self.coordinator._later(member.rebalance_timeout_ms, self._expired, group,
                                                                 member, "rebalance", member.rebalance_timeout_ms)
        elif member.rebalance_timer is not None:
            member.rebalance_timer.cancel()
            member.rebalance_timer = None

    def _expired(self, group: ConsumerGroup, member: ConsumerMember, which: str, ms: int) -> None:
        if self.coordinator.groups.get(group.group_id) is not group or group.members.get(member.member_id) is not member:
            return
        _log.info("member %s of consumer group %s is fenced: its %s timeout of %d ms expired", member.member_id,
                  group.group_id, which, ms)
        self._fence(group, member)

    # --- ConsumerGroupDescribe, offsets -------------------------------------------------------------

    def describe(self, group_id: str):
        """(error, message, group or None)."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID, "Group ID can't be empty.", None
        if not self.coordinator.active:
            return self.coordinator.inactive_error, None, None
        group = self.coordinator.groups.get(group_id)
        if group is None or group.state.value == ConsumerGroupState.DEAD.value:
            return ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.", None
        if not isinstance(group, ConsumerGroup):
            return ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.", None
        return ErrorCode.NONE, None, group

    @staticmethod
    def member_error(group: ConsumerGroup, member_id: str, epoch: int, classic_error: bool) -> int | None:
        """Kafka's ConsumerGroup.validateOffsetCommit/validateOffsetFetch for a member's epoch."""
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if epoch != member.epoch:
            return ErrorCode.ILLEGAL_GENERATION if classic_error else ErrorCode.STALE_MEMBER_EPOCH
        return None

    def remove(self, group: ConsumerGroup, member_id: str, instance_id: str | None) -> int:
        """LeaveGroup on a consumer group: an administrator removes a member (a static one by its
        instance id), as Kafka's Admin.removeMembersFromConsumerGroup does."""
        if instance_id is not None:
            member = group.members.get(group.static_members.get(instance_id, ""))
            if member is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if member_id and member.member_id != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
        else:
            member = group.members.get(member_id)
            if member is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
        _log.info("member %s is removed from consumer group %s (LeaveGroup)", member.member_id, group.group_id)
        self._fence(group, member)
        return ErrorCode.NONE

    def stop(self) -> None:
        for group in self.coordinator.groups.values():
            if isinstance(group, ConsumerGroup):
                for member in group.members.values():
                    member.cancel_timers()
