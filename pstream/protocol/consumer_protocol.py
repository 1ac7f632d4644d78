"""The "consumer" protocol's embedded messages: ConsumerProtocolSubscription (a member's
JoinGroup metadata) and ConsumerProtocolAssignment (what SyncGroup hands it). No I/O.

To the group protocol they are opaque bytes; the coordinator reads subscriptions (which
topics a group consumes), the admin API and the CLI read assignments, the CLI writes both.
Written at v0; read at any version: the version comes first and the topics next in every
version, and later fields (user data, owned partitions, rack) are ignored. Unreadable bytes
raise ProtocolError (a ValueError).
"""

from __future__ import annotations

from pstream.protocol.primitives import ProtocolError, Reader, Writer


def _version(r: Reader) -> int:
    version = r.int16()
    if version < 0:
        raise ProtocolError(f"negative consumer protocol version {version}")
    return version


def encode_subscription(topics: list[str]) -> bytes:
    w = Writer()
    w.int16(0)
    w.int32(len(topics))
    for t in topics:
        w.string(t)
    w.nbytes(None)   # user data
    return w.getvalue()


def decode_subscription(data) -> list[str]:
    r = Reader(memoryview(data))
    _version(r)
    return [r.string() for _ in r.count(r.int32())]


def encode_assignment(assignment: dict[str, list[int]]) -> bytes:
    w = Writer()
    w.int16(0)
    w.int32(len(assignment))
    for topic, partitions in sorted(assignment.items()):
        w.string(topic)
        w.int32(len(partitions))
        for p in partitions:
            w.int32(p)
    w.nbytes(None)   # user data
    return w.getvalue()


def decode_assignment(data) -> dict[str, list[int]]:
    """topic -> partitions; {} for empty bytes (a member given nothing)."""
    if not data:
        return {}
    r = Reader(memoryview(data))
    _version(r)
    out = {}
    for _ in r.count(r.int32()):
        topic = r.string()
        out[topic] = [r.int32() for _ in r.count(r.int32())]
    return out
