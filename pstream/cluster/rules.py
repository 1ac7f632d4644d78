"""The replica protocol's decisions as pure functions: the broker (replication.py) and the
deterministic simulator (tests/cluster/simulation.py) run these same lines.

- the high watermark: what every ISR member holds (the leader's own durable end included),
  over Kafka's "maximal ISR": the committed ISR plus any replica an ISR change is adding whose
  outcome the leader has not seen yet (a change applied in etcd with its answer lost must not let
  the high watermark pass what that replica lacks);
- a follower is caught up when it holds what the leader held at its previous fetch (Kafka's
  lastCaughtUpTime rule), and may join the ISR once it holds the high watermark;
- a follower whose log may have diverged cuts it where its latest epoch ended on the leader
  (KIP-101), or where the leader's answer for an older epoch says (KIP-279).
"""

from __future__ import annotations

UNDEFINED = -1


def high_watermark(own_end: int, me: int, isr, follower_end: dict[int, int]) -> int:
    """The least of what the ISR holds: the leader's own end and each other member's fetch offset."""
    hw = own_end
    for replica in isr:
        if replica != me:
            hw = min(hw, follower_end.get(replica, 0))
    return hw


def caught_up(fetch_offset: int, leader_end: int, previous_leader_end: int | None) -> bool:
    """Whether a follower's fetch shows it caught up: it holds the leader's end now, or what the
    leader held when it answered the follower's previous fetch."""
    return fetch_offset >= leader_end or (previous_leader_end is not None and fetch_offset >= previous_leader_end)


def may_join_isr(fetch_offset: int, high_watermark: int) -> bool:
    return fetch_offset >= high_watermark


def truncation_point(answer_epoch: int, answer_end: int, my_latest_epoch: int, my_end_for_answer_epoch: int,
                     my_high_watermark: int, my_log_start: int) -> int:
    """Where a follower cuts its log given the leader's OffsetForLeaderEpoch answer for the
    follower's latest epoch: (answer_epoch, answer_end). my_end_for_answer_epoch: where that
    epoch ends in the follower's own log. A leader that knows no such epoch (UNDEFINED) leaves
    the follower its high watermark, which the ISR held."""
    if answer_end == UNDEFINED:
        return max(my_high_watermark, my_log_start)
    if answer_epoch < my_latest_epoch:
        return min(answer_end, my_end_for_answer_epoch)
    return answer_end
