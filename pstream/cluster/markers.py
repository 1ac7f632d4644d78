"""A transaction's COMMIT/ABORT markers in cluster mode: written by each partition's leader, as
Kafka's coordinator has them written (WriteTxnMarkers to every leader, one request per leader).

`write_here` is what a leader does with the markers it is sent, or that its own coordinator
wants on partitions it leads: append the marker, wait until the in-sync replicas hold it, and
for a partition of __consumer_offsets let its group coordinator count (or drop) the offsets
the transaction committed. `TxnMarkers.write` is the coordinator's side: it raises on any
partition not written (no leader, leadership moved, a storage error), and the coordinator tries
the whole second phase again (a marker written twice ends nothing twice).
"""

from __future__ import annotations

import asyncio

from pstream.broker.handlers.common import find_partition
from pstream.cluster.peers import PeerConnection
from pstream.coordinator.offsets import OFFSETS_TOPIC
from pstream.errors import PStreamError
from pstream.protocol.error_codes import ErrorCode, error_for
from pstream.protocol.messages.write_txn_markers import WriteTxnMarkersRequest

WRITE_TXN_MARKERS_KEY = 27
MARKERS_VERSION = 1
MARKER_TIMEOUT_S = 10.0


async def write_here(broker, producer_id: int, epoch: int, commit: bool, coordinator_epoch: int,
                     partitions) -> dict[tuple[str, int], ErrorCode]:
    """Writes the markers on partitions this broker leads; the error of each."""
    cluster = broker.cluster

    async def one(name: str, index: int) -> ErrorCode:
        part, error = find_partition(broker, name, index)
        if part is None:
            return error
        try:
            offset = await part.write_txn_marker(producer_id, epoch, commit, coordinator_epoch)
            await cluster.replicas.wait_replicated(name, index, offset, MARKER_TIMEOUT_S)
        except Exception as exc:
            return error_for(exc)
        if name == OFFSETS_TOPIC:
            shard = broker.groups.for_partition(index)
            if shard is not None:
                shard.store.end_txn(producer_id, commit)   # its offsets count now, or never
        return ErrorCode.NONE
    keys = list(partitions)
    return dict(zip(keys, await asyncio.gather(*(one(name, index) for name, index in keys))))


class TxnMarkers:
    """The coordinators' marker writer on one broker: its own partitions directly, the others'
    through one connection per leader."""

    def __init__(self, broker):
        self.broker = broker
        self._peers: dict[int, PeerConnection] = {}

    async def write(self, producer_id: int, epoch: int, commit: bool, partitions, coordinator_epoch: int = 0) -> None:
        cluster = self.broker.cluster
        by_leader: dict[int, list[tuple[str, int]]] = {}
        for name, index in partitions:
            if name not in cluster.view.topics:
                continue   # deleted meanwhile: it needs no marker
            by_leader.setdefault(cluster.leader(name, index), []).append((name, index))
        if -1 in by_leader:
            raise PStreamError(f"no leader for {by_leader[-1]} yet")
        results = await asyncio.gather(*(
            write_here(self.broker, producer_id, epoch, commit, coordinator_epoch, parts)
            if leader == cluster.node_id else self._send(leader, producer_id, epoch, commit, coordinator_epoch, parts)
            for leader, parts in by_leader.items()))
        failed = {tp: ErrorCode(code).name for errors in results for tp, code in errors.items() if code}
        if failed:
            raise PStreamError(f"markers not written: {failed}")

    async def _send(self, leader: int, producer_id: int, epoch: int, commit: bool, coordinator_epoch: int,
                    partitions) -> dict[tuple[str, int], ErrorCode]:
        topics: dict[str, list[int]] = {}
        for name, index in partitions:
            topics.setdefault(name, []).append(index)
        request = WriteTxnMarkersRequest(markers=[WriteTxnMarkersRequest.WritableTxnMarker(
            producer_id=producer_id, producer_epoch=epoch, transaction_result=commit,
            coordinator_epoch=coordinator_epoch, topics=[
                WriteTxnMarkersRequest.WritableTxnMarkerTopic(name=name, partition_indexes=indexes)
                for name, indexes in topics.items()])])
        peer = self._peers.get(leader)
        if peer is None:
            peer = self._peers[leader] = PeerConnection(self.broker.cluster, leader,
                                                        f"pstream-txn-{self.broker.node_id}")
        response = await peer.call(WRITE_TXN_MARKERS_KEY, MARKERS_VERSION, request, MARKER_TIMEOUT_S * 2)
        return {(t.name, p.partition_index): ErrorCode(p.error_code)
                for marker in response.markers for t in marker.topics for p in t.partitions}

    def close(self) -> None:
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()
