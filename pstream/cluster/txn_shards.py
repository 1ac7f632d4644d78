"""Transaction coordinators in cluster mode: one for each partition of __transaction_state this
broker leads (coordinator_shards.py says how they load, write and move). A transactional id's
coordinator is the leader of partition abs(hash(id)) % transaction.state.log.num.partitions.

Its second phase writes the COMMIT/ABORT markers through `markers.TxnMarkers`: on the partitions
this broker leads directly, on the others with WriteTxnMarkers to their leaders, each marker
counting once the partition's in-sync replicas hold it.

A partition's leader checks a transactional batch against its producer's transaction (KIP-890
part 1, Kafka 3.6+): where the coordinator is on the same broker, every batch against its
state; elsewhere, the first batch of a transaction on the partition is held while the leader
asks the coordinator (AddPartitionsToTxn v4 with verify_only, as Kafka's
AddPartitionsToTxnManager does), and the answer is kept on the partition until the
transaction's marker is written there (Partition.note_txn_verified). So a batch sent after its
transaction ended (a zombie's, a late retry) is refused rather than opening a transaction
nobody will close. A coordinator that cannot be asked gives NOT_ENOUGH_REPLICAS, which
producers retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter

from pstream.cluster.coordinator_shards import CoordinatorShards
from pstream.cluster.peers import PeerConnection
from pstream.coordinator.transactions import TransactionCoordinator
from pstream.coordinator.txn_log import TXN_TOPIC, TransactionLog, TxnMetadata
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.add_partitions_to_txn import AddPartitionsToTxnRequest

_log = logging.getLogger("pstream.cluster")

ADD_PARTITIONS_TO_TXN_KEY = 24
VERIFY_VERSION = 4
VERIFY_TIMEOUT_S = 5.0
# Kafka's AddPartitionsToTxnManager: a coordinator moving or busy is retriable for a producer.
RETRIABLE = {ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
             ErrorCode.CONCURRENT_TRANSACTIONS}


class TxnShards(CoordinatorShards):
    topic = TXN_TOPIC
    partitions_setting = "transaction_state_log_num_partitions"
    factor_setting = "transaction_state_log_replication_factor"

    def __init__(self, broker, make_coordinator):
        super().__init__(broker, make_coordinator)
        self._verifying: dict[tuple, asyncio.Task] = {}   # by (transactional id, producer, epoch, topic, partition)
        self._peers: dict[int, PeerConnection] = {}        # to the coordinators asked

    def _store(self, index: int | None) -> TransactionLog:
        if index is None:
            return TransactionLog(self.broker.log)
        return TransactionLog(self.broker.log, partition=index, committed=self.committed(index))

    def _open(self, coordinator: TransactionCoordinator) -> None:
        coordinator.open()

    def _make(self, index: int | None) -> TransactionCoordinator:
        """A shard's markers carry its coordinator epoch, the leader epoch it leads the partition
        at, so that a leader refuses those of a deposed coordinator (TRANSACTION_COORDINATOR_FENCED)."""
        coordinator = super()._make(index)
        coordinator.coordinator_epoch = self._leader_epoch(index)
        if index is not None:
            coordinator.write_markers = functools.partial(self.broker.txn_markers.write,
                                                          coordinator_epoch=coordinator.coordinator_epoch)
        return coordinator

    def _leader_epoch(self, index: int | None) -> int:
        record = self.broker.cluster.view.partitions.get((TXN_TOPIC, index)) if index is not None else None
        return record.leader_epoch if record is not None else 0

    def _current(self, index: int, coordinator: TransactionCoordinator) -> bool:
        return coordinator.coordinator_epoch == self._leader_epoch(index)

    def for_txn(self, transactional_id: str) -> TransactionCoordinator:
        return self.for_key(transactional_id)

    def stop(self) -> None:
        super().stop()
        for task in list(self._verifying.values()):
            task.cancel()
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()

    # --- what the partitions' leaders and the admin ask -----------------------------------------

    def verify(self, transactional_id: str | None, producer_id: int, producer_epoch: int, part):
        """Whether a transactional batch may go into `part` (see the module doc): an ErrorCode
        now, or a task that gives one once the coordinator answered."""
        coordinator = self.for_txn(transactional_id or "")
        if coordinator.active:
            return coordinator.produce_error(producer_id, producer_epoch, part.topic, part.number)
        if part.txn_verified(producer_id):
            return ErrorCode.NONE
        if not transactional_id:
            return ErrorCode.INVALID_TXN_STATE
        key = (transactional_id, producer_id, producer_epoch, part.topic, part.number)
        task = self._verifying.get(key)
        if task is None:   # batches behind it wait for the same answer
            task = self._verifying[key] = asyncio.get_running_loop().create_task(self._ask(key, part))
        return task

    async def _ask(self, key, part) -> ErrorCode:
        transactional_id, producer_id, producer_epoch, topic, index = key
        try:
            node = self.coordinator_node(transactional_id)
            if node < 0 or node == self.broker.node_id:   # none now, or moving here: the producer retries
                return ErrorCode.NOT_ENOUGH_REPLICAS
            peer = self._peers.get(node)
            if peer is None:
                peer = self._peers[node] = PeerConnection(self.broker.cluster, node,
                                                          f"pstream-txn-verify-{self.broker.node_id}")
            request = AddPartitionsToTxnRequest(transactions=[AddPartitionsToTxnRequest.AddPartitionsToTxnTransaction(
                transactional_id=transactional_id, producer_id=producer_id, producer_epoch=producer_epoch,
                verify_only=True, topics=[AddPartitionsToTxnRequest.AddPartitionsToTxnTopic(name=topic,
                                                                                          partitions=[index])])])
            answer = await peer.call(ADD_PARTITIONS_TO_TXN_KEY, VERIFY_VERSION, request, VERIFY_TIMEOUT_S)
            code = answer.error_code or \
                answer.results_by_transaction[0].topic_results[0].results_by_partition[0].partition_error_code
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.warning("broker %d: cannot verify transaction %r on %s-%d with its coordinator: %s",
                         self.broker.node_id, transactional_id, topic, index, exc)
            return ErrorCode.NOT_ENOUGH_REPLICAS
        finally:
            self._verifying.pop(key, None)
        if code == ErrorCode.NONE:
            part.note_txn_verified(producer_id)
        return ErrorCode.NOT_ENOUGH_REPLICAS if code in RETRIABLE else ErrorCode(code)

    def describe(self, transactional_id: str) -> TxnMetadata | None:
        return self.for_txn(transactional_id).describe(transactional_id)

    def list(self, *filters, **named) -> list[TxnMetadata]:
        return [meta for c in self.coordinators() for meta in c.list(*filters, **named)]

    @property
    def counters(self) -> Counter:
        total: Counter = Counter()
        for coordinator in self.coordinators():
            total.update(coordinator.counters)
        return total
