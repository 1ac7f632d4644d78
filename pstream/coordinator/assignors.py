"""Server-side assignors of the consumer group protocol (KIP-848): "uniform" and "range".

An assignor maps every partition of the subscribed topics to one member subscribed to its topic.
Input: the members' subscriptions ({member id: set of topic ids}), the topics' partition counts
({topic id: count}) and the current target ({member id: {topic id: set of partitions}}), which the
uniform assignor keeps where it can (stickiness: a rebalance moves only what balance needs).
Output: the new target, with an entry (possibly empty) for every member. Pure functions: the
coordinator calls them when the group epoch moves past the assignment epoch.
"""

from __future__ import annotations

import uuid

Assignment = dict[uuid.UUID, set[int]]


def uniform(subscriptions: dict[str, set[uuid.UUID]], partitions: dict[uuid.UUID, int],
            current: dict[str, Assignment], order: dict[uuid.UUID, str] | None = None) -> dict[str, Assignment]:
    """Balanced and sticky, for any mix of subscriptions (Kafka's UniformAssignor): every member
    keeps the partitions it had that it may still own, unowned partitions go to the least loaded
    eligible member, then partitions move from a member to an eligible one holding at least two
    fewer until no such move is left, so that members with the same subscription differ by at most
    one partition. `order` (topic id -> name) makes ties fall the same way on every run."""
    members = sorted(subscriptions)
    rank = {m: i for i, m in enumerate(members)}
    eligible: dict[uuid.UUID, list[str]] = {}
    for topic in partitions:
        eligible[topic] = [m for m in members if topic in subscriptions[m]]
    owner: dict[tuple[uuid.UUID, int], str] = {}
    load = dict.fromkeys(members, 0)
    for member in members:   # keep what may be kept
        for topic, held in current.get(member, {}).items():
            if topic in subscriptions[member] and topic in partitions:
                for p in sorted(held):
                    if p < partitions[topic] and (topic, p) not in owner:
                        owner[(topic, p)] = member
                        load[member] += 1
    names = order or {}
    topics = sorted(partitions, key=lambda t: (names.get(t, ""), t))
    for topic in topics:   # hand out the rest, least loaded first
        candidates = eligible[topic]
        if not candidates:
            continue
        for p in range(partitions[topic]):
            if (topic, p) not in owner:
                member = min(candidates, key=lambda m: (load[m], rank[m]))
                owner[(topic, p)] = member
                load[member] += 1
    _balance(owner, load, eligible, rank)
    out: dict[str, Assignment] = {m: {} for m in members}
    for (topic, p), member in owner.items():
        out[member].setdefault(topic, set()).add(p)
    return out


def _balance(owner: dict, load: dict[str, int], eligible: dict, rank: dict[str, int]) -> None:
    """Moves one partition at a time from a member to an eligible one holding two or more fewer.
    Every move lowers the sum of squared loads, so this ends; the bound only guards the loop."""
    members = list(rank)
    by_member: dict[str, list] = {m: [] for m in members}
    for tp, member in sorted(owner.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        by_member[member].append(tp)
    for _ in range(len(owner) * max(len(members), 1) + 1):
        moved = False
        for giver in sorted(members, key=lambda m: (-load[m], rank[m])):
            for tp in reversed(by_member[giver]):
                taker = min(eligible[tp[0]], key=lambda m: (load[m], rank[m]))
                if load[taker] <= load[giver] - 2:
                    by_member[giver].remove(tp)
                    by_member[taker].append(tp)
                    owner[tp] = taker
                    load[giver] -= 1
                    load[taker] += 1
                    moved = True
                    break
            if moved:
                break
        if not moved:
            return


def range_(subscriptions: dict[str, set[uuid.UUID]], partitions: dict[uuid.UUID, int],
           current: dict[str, Assignment], order: dict[uuid.UUID, str] | None = None,
           sort_keys: dict[str, str] | None = None) -> dict[str, Assignment]:
    """Kafka's RangeAssignor: per topic, its subscribers in a fixed order each take a contiguous
    range, the first `count % members` one partition more, so that members subscribed to
    co-partitioned topics get the same partition numbers of each. Members sort by instance id when
    they have one (a static member keeps its place across restarts), else by member id."""
    keys = sort_keys or {}
    members = sorted(subscriptions, key=lambda m: (keys.get(m, m), m))
    out: dict[str, Assignment] = {m: {} for m in members}
    for topic, count in partitions.items():
        subscribers = [m for m in members if topic in subscriptions[m]]
        if not subscribers:
            continue
        for member, part in zip(subscribers, split_range(count, len(subscribers))):
            if part:
                out[member][topic] = set(part)
    return out


def split_range(count: int, ways: int) -> list[range]:
    """0..count-1 in `ways` consecutive ranges, the first count % ways one longer (Kafka's range rule)."""
    share, extra = divmod(count, ways)
    out, start = [], 0
    for i in range(ways):
        size = share + (1 if i < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


ASSIGNORS = {"uniform": uniform, "range": range_}
DEFAULT_ASSIGNOR = "uniform"   # the first of Kafka's group.consumer.assignors
