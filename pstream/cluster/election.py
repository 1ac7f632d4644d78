"""What the controller decides when brokers come and go: a pure function of a partition's record
and the live brokers, so the simulator checks the very code the broker runs.

- A broker that is gone leaves every ISR (KRaft fences it), but the ISR never becomes empty: its
  last member stays, so that only a replica with every acknowledged record can lead again.
- A partition whose leader is gone (or has none) gets the first live ISR member in replica order,
  and a new leader epoch. No live ISR member: no leader (unclean election is off).
- An ISR member counts only with the data directory it joined with (its directory id, KIP-858): a
  broker back on an empty disk leaves the ISR and rejoins by catching up. If it was the last member,
  the partition stays offline (no leader) rather than serve a log that lost what was acknowledged.
- Elections an operator asks for (ElectLeaders) and the controller's automatic leader rebalance:
  the preferred (first) replica takes the leadership back once it is alive and in sync.
"""

from __future__ import annotations

from pstream.cluster.state import NO_LEADER, PartitionRecord
from pstream.protocol.error_codes import ErrorCode


def presumed_live(live: set[int], ever_seen: set[int], replicas, since_start_ms: float, lease_ms: float) -> set[int]:
    """The brokers a controller treats as alive: the registered ones, and for one lease after the
    controller started, also those it has not yet seen at all (at a cold start their
    registrations may still be on the way; fencing them would shrink every ISR to one member).
    A broker seen registered and then gone had its lease expire: it is gone."""
    if since_start_ms >= lease_ms:
        return live
    return live | {r for r in replicas if r not in ever_seen}


def reconcile(record: PartitionRecord, live: set[int], directories: dict[int, str] | None = None
              ) -> PartitionRecord | None:
    """The record the controller should write, or None if nothing needs to change. directories:
    each registered broker's data directory id (a live broker missing from it, presumed live, is
    taken as unchanged)."""
    directories = directories or {}

    def in_sync(r: int) -> bool:
        return r in live and (r not in directories or record.incarnation_of(r) in ("", directories[r]))
    isr = tuple(r for r in record.isr if in_sync(r)) or record.isr[-1:]
    leader = record.leader
    if not (leader in isr and in_sync(leader)):
        leader = next((r for r in record.replicas if r in isr and in_sync(r)), NO_LEADER)
    if leader == record.leader and isr == record.isr:
        return None
    epoch = record.leader_epoch + 1 if leader != record.leader else record.leader_epoch
    return record.changed(leader=leader, leader_epoch=epoch, isr=isr,
                          isr_incarnations=tuple(record.incarnation_of(r) for r in isr))


def isr_with(record: PartitionRecord, isr, directories: dict[int, str]) -> PartitionRecord:
    """A leader's ISR change: members that stay keep their recorded directory id, new ones come in
    with the one they are registered with now; one not registered (its lease lapsed) does not
    come in, since an unrecorded id would let it lead even back on an empty disk."""
    members = tuple(r for r in record.replicas if r in isr and (r in record.isr or directories.get(r)))
    return record.changed(isr=members, isr_incarnations=tuple(
        record.incarnation_of(r) if r in record.isr else directories[r] for r in members))


def may_lead(record: PartitionRecord, node: int, directory: str) -> bool:
    """Whether `node`, with the data directory it has now, is the record's leader (one back on an
    empty disk is not, whatever the record says, until the controller has moved it out)."""
    return record.leader == node and record.incarnation_of(node) in ("", directory)


def elect_preferred(record: PartitionRecord, live: set[int], directories: dict[int, str]
                    ) -> tuple[PartitionRecord | None, ErrorCode]:
    """Kafka's PREFERRED election: the first replica leads, with a new leader epoch, if it is alive
    and in sync. (record to write, NONE), or (None, why not)."""
    first = record.replicas[0]
    if record.leader == first:
        return None, ErrorCode.ELECTION_NOT_NEEDED
    if first not in live or first not in record.isr or record.incarnation_of(first) not in ("", directories.get(first, "")):
        return None, ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
    return record.changed(leader=first, leader_epoch=record.leader_epoch + 1), ErrorCode.NONE


def elect_unclean(record: PartitionRecord, live: set[int], directories: dict[int, str]
                  ) -> tuple[PartitionRecord | None, ErrorCode]:
    """Kafka's UNCLEAN election, for a partition without a live leader: an in-sync replica if one
    is alive (a clean election), else the first live replica, which becomes the whole ISR and loses
    whatever it lacks (an operator's explicit choice: unclean.leader.election.enable stays off)."""
    if record.leader in live and may_lead(record, record.leader, directories.get(record.leader, "")):
        return None, ErrorCode.ELECTION_NOT_NEEDED
    clean = reconcile(record, live, directories)
    if clean is not None and clean.leader != NO_LEADER:
        return clean, ErrorCode.NONE
    leader = next((r for r in record.replicas if r in live), NO_LEADER)
    if leader == NO_LEADER:
        return None, ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE
    return record.changed(leader=leader, leader_epoch=record.leader_epoch + 1, isr=(leader,),
                          isr_incarnations=(directories.get(leader, ""),)), ErrorCode.NONE


def imbalanced(records, live: set[int], directories: dict[int, str], percentage: int) -> list:
    """Kafka's automatic leader rebalance: for each broker whose share of the partitions it is
    the preferred leader of but does not lead exceeds `percentage`, those partitions whose
    preferred election can run now. [(key, record to write)]."""
    preferred: dict[int, list] = {}
    for key, record in records:
        if record.replicas:
            preferred.setdefault(record.replicas[0], []).append((key, record))
    out = []
    for node, owned in preferred.items():
        elsewhere = [(key, record) for key, record in owned if record.leader != node]
        if node in live and len(elsewhere) * 100 > percentage * len(owned):
            for key, record in elsewhere:
                wanted, _ = elect_preferred(record, live, directories)
                if wanted is not None:
                    out.append((key, record, wanted))
    return out
