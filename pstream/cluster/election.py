"""What the controller decides when brokers come and go: a pure function of a partition's record
and the live brokers, so the simulator checks the very code the broker runs.

- A broker that is gone leaves every ISR (KRaft fences it), but the ISR never becomes empty: its
  last member stays, so that only a replica with every acknowledged record can lead again.
- A partition whose leader is gone (or has none) gets the first live ISR member in replica order,
  and a new leader epoch. No live ISR member: no leader (unclean election is off).
"""

from __future__ import annotations

from pstream.cluster.state import NO_LEADER, PartitionRecord


def presumed_live(live: set[int], ever_seen: set[int], replicas, since_start_ms: float, lease_ms: float) -> set[int]:
    """The brokers a controller treats as alive: the registered ones, and for one lease after the
    controller started, also those it has not yet seen at all (at a cold start their
    registrations may still be on the way; fencing them would shrink every ISR to one member).
    A broker seen registered and then gone had its lease expire: it is gone."""
    if since_start_ms >= lease_ms:
        return live
    return live | {r for r in replicas if r not in ever_seen}


def reconcile(record: PartitionRecord, live: set[int]) -> PartitionRecord | None:
    """The record the controller should write, or None if nothing needs to change."""
    isr = tuple(r for r in record.isr if r in live) or record.isr[-1:]
    leader = record.leader
    if leader not in live or leader not in isr:
        leader = next((r for r in record.replicas if r in isr and r in live), NO_LEADER)
    if leader == record.leader and isr == record.isr:
        return None
    epoch = record.leader_epoch + 1 if leader != record.leader else record.leader_epoch
    return record.changed(leader=leader, leader_epoch=epoch, isr=isr)
