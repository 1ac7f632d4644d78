"""Transaction coordinators in cluster mode: one for each partition of __transaction_state this
broker leads (coordinator_shards.py says how they load, write and move). A transactional id's
coordinator is the leader of partition abs(hash(id)) % transaction.state.log.num.partitions.

Its second phase writes the COMMIT/ABORT markers through `markers.TxnMarkers`: on the partitions
this broker leads directly, on the others with WriteTxnMarkers to their leaders, each marker
counting once the partition's in-sync replicas hold it.

A partition's leader checks a transactional batch against its producer's transaction only when
that transaction's coordinator is on the same broker (KIP-890's verification); elsewhere it
takes the batch as Kafka did before 3.6 (transaction.partition.verification.enable=false):
sequence and epoch checks still apply, but a batch sent after its transaction ended opens a new
one that only the producer's next transaction or its timeout closes.
"""

from __future__ import annotations

from collections import Counter

from pstream.cluster.coordinator_shards import CoordinatorShards
from pstream.coordinator.transactions import TransactionCoordinator
from pstream.coordinator.txn_log import TXN_TOPIC, TransactionLog, TxnMetadata
from pstream.protocol.error_codes import ErrorCode


class TxnShards(CoordinatorShards):
    topic = TXN_TOPIC
    partitions_setting = "transaction_state_log_num_partitions"
    factor_setting = "transaction_state_log_replication_factor"

    def _store(self, index: int | None) -> TransactionLog:
        if index is None:
            return TransactionLog(self.broker.log)
        return TransactionLog(self.broker.log, partition=index, committed=self.committed(index))

    def _open(self, coordinator: TransactionCoordinator) -> None:
        coordinator.open()

    def for_txn(self, transactional_id: str) -> TransactionCoordinator:
        return self.for_key(transactional_id)

    # --- what the partitions' leaders and the admin ask -----------------------------------------

    def produce_error(self, producer_id: int, producer_epoch: int, topic: str, partition: int) -> ErrorCode:
        """KIP-890's check where this broker coordinates the producer's transaction, else none
        (see the module doc)."""
        for coordinator in self.coordinators():
            if coordinator.knows_producer(producer_id):
                return coordinator.produce_error(producer_id, producer_epoch, topic, partition)
        return ErrorCode.NONE

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
