"""Moving a partition's replicas (KIP-455), as pure functions of its record, like election.py.

A reassignment to a target replica list starts by writing the union: `replicas` is the target
followed by the replicas leaving (`removing`); those joining (`adding`) follow the leader like
any replica, catch up and enter the ISR through the leader's usual ISR expansion. Once every
joining replica is in the ISR, the controller completes it: `replicas` becomes the target, the
ISR keeps only target members, and a leader that is leaving hands over to the first in-sync
target (a new leader epoch). Until then nothing acknowledged depends on the joining replicas,
and a cancellation returns to the original replicas.
"""

from __future__ import annotations

from pstream.cluster.state import NO_LEADER, PartitionRecord
from pstream.protocol.error_codes import ErrorCode


def original(record: PartitionRecord) -> tuple[int, ...]:
    """The replicas before the reassignment in progress (all of them when there is none)."""
    return tuple(r for r in record.replicas if r not in record.adding)


def check_target(target, registered: set[int]) -> tuple[ErrorCode, str | None]:
    """Kafka's checks of a target list (ReplicationControlManager), in its order."""
    if not target:
        return ErrorCode.INVALID_REPLICA_ASSIGNMENT, "The manual partition assignment includes an empty replica list."
    previous = None
    for broker_id in sorted(target):
        if broker_id not in registered:
            return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"The manual partition assignment includes broker {broker_id}, but no such broker is registered.")
        if broker_id == previous:
            return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"The manual partition assignment includes the broker {broker_id} more than once.")
        previous = broker_id
    return ErrorCode.NONE, None


def _narrowed(record: PartitionRecord, keep: tuple[int, ...], **fields) -> PartitionRecord:
    """The record with its replicas and ISR limited to `keep` (in keep's order) and a leader
    outside them replaced by the first in-sync one, with a new epoch. The callers check first
    that one of `keep` is in sync (revert_refusal, complete): an ISR that would empty, or hold a
    broker outside the replicas, is a bug, refused here rather than written."""
    isr = tuple(r for r in keep if r in record.isr)
    if not isr:
        raise ValueError(f"no replica of {list(keep)} is in sync (ISR {list(record.isr)})")
    leader = record.leader if record.leader in isr else next(iter(isr), NO_LEADER)
    epoch = record.leader_epoch + 1 if leader != record.leader else record.leader_epoch
    return record.changed(replicas=keep, isr=isr, isr_incarnations=tuple(record.incarnation_of(r) for r in isr),
                          leader=leader, leader_epoch=epoch, **fields)


def revert_refusal(record: PartitionRecord, name: str, index: int) -> str | None:
    """Why a reassignment in progress cannot be cancelled or given another target (which goes
    back to the original replicas first), as Kafka refuses it: no original replica is in sync, so
    the joining replicas alone hold what was acknowledged, and going back would need an unclean
    election (and would leave the ISR outside the replicas). None if it can."""
    if (record.adding or record.removing) and not any(r in record.isr for r in original(record)):
        return (f"Unable to revert partition assignment for {name}:{index} because it would require an unclean "
                f"leader election.")
    return None


def start(record: PartitionRecord, target: tuple[int, ...]) -> PartitionRecord | None:
    """The record that starts moving to `target` (checked already); None if it holds it already
    and nothing is in progress. A new target replaces one in progress, from the original list."""
    before = original(record)
    if tuple(target) == before and not record.adding and not record.removing:
        return None
    replicas = tuple(target) + tuple(r for r in before if r not in target)
    adding = tuple(r for r in target if r not in before)
    removing = tuple(r for r in before if r not in target)
    return _narrowed(record, replicas, adding=adding, removing=removing)


def cancel(record: PartitionRecord) -> PartitionRecord | None:
    """Back to the original replicas; None if no reassignment is in progress."""
    if not record.adding and not record.removing:
        return None
    return _narrowed(record, original(record), adding=(), removing=())


def complete(record: PartitionRecord) -> PartitionRecord | None:
    """What the controller writes once every joining replica is in sync (None: not yet)."""
    if not record.adding and not record.removing:
        return None
    if any(r not in record.isr for r in record.adding):
        return None
    target = tuple(r for r in record.replicas if r not in record.removing)
    if not any(r in record.isr for r in target):
        return None
    return _narrowed(record, target, adding=(), removing=())
