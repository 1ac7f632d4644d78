"""Transactions on the wire: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit,
WriteTxnMarkers, DescribeTransactions and ListTransactions (InitProducerId with a transactional id comes
through producers.py).

Each handler turns its request into a call on the broker's TransactionCoordinator
(pstream/coordinator/transactions.py) and the result into the response of that version.
PRODUCER_FENCED (KIP-588) exists only from the versions that added it; older ones get
INVALID_PRODUCER_EPOCH, as Kafka answers them (aiokafka speaks only v0).
WriteTxnMarkers is Kafka's broker-to-broker API; here it writes the markers it names on this
node's partitions, as a partition leader does (Kafka's `kafka-transactions.sh abort`); in a
cluster the transaction coordinators send it to each partition's leader (cluster/markers.py).

Authorization is Kafka's (KafkaApis): WRITE on the transactional id for the client APIs, READ on the
group and the topics for TxnOffsetCommit, WRITE on each topic added (v0-3; the batched v4+ form brokers
send each other needs CLUSTER_ACTION, as does WriteTxnMarkers), DESCRIBE to see a transaction.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from pstream.broker.dispatch import api
from pstream.broker.handlers.common import find_partition, partition_exists
from pstream.coordinator import INTERNAL_TOPICS
from pstream.coordinator.offsets import OFFSETS_TOPIC, CommittedOffset, now_ms
from pstream.protocol.error_codes import ErrorCode, error_for
from pstream.protocol.messages.add_offsets_to_txn import AddOffsetsToTxnResponse
from pstream.protocol.messages.add_partitions_to_txn import AddPartitionsToTxnResponse
from pstream.protocol.messages.describe_transactions import DescribeTransactionsResponse
from pstream.protocol.messages.end_txn import EndTxnResponse
from pstream.protocol.messages.list_transactions import ListTransactionsResponse
from pstream.protocol.messages.txn_offset_commit import TxnOffsetCommitResponse
from pstream.protocol.messages.write_txn_markers import WriteTxnMarkersResponse
from pstream.security.acls import Operation, ResourceType

TopicResult = AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult
PartitionResult = AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult
STATE_NAMES = {"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort",
               "PrepareEpochFence"}


def offsets_partition(broker, group_id: str) -> int:
    """The group's partition of __consumer_offsets: 0 on a broker alone (one partition)."""
    index = broker.groups.partition_of(group_id) if broker.cluster is not None else None
    return index if index is not None else 0


def fenced_for(version: int, first_with_fenced: int, error: ErrorCode) -> ErrorCode:
    """PRODUCER_FENCED as the request's version knows it (KIP-588)."""
    if error == ErrorCode.PRODUCER_FENCED and version < first_with_fenced:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return error


def _topic_results(errors: dict[tuple[str, int], ErrorCode]) -> list:
    by_topic = defaultdict(list)
    for (topic, partition), error in errors.items():
        by_topic[topic].append(PartitionResult(partition_index=partition, partition_error_code=error))
    return [TopicResult(name=name, results_by_partition=parts) for name, parts in by_topic.items()]


async def _add_partitions(ctx, version: int, transactional_id: str, producer_id: int, epoch: int, topics,
                          verify_only: bool = False) -> dict[tuple[str, int], ErrorCode]:
    """Kafka's answer per partition: a client's request (v0-3) needs WRITE on the transactional id
    (else TRANSACTIONAL_ID_AUTHORIZATION_FAILED for all) and on each topic, internal ones never
    (TOPIC_AUTHORIZATION_FAILED); unknown ones UNKNOWN_TOPIC_OR_PARTITION, and when any of these fails
    the rest OPERATION_NOT_ATTEMPTED; else the coordinator's one answer for all."""
    broker = ctx.broker
    wanted = [(t.name, p) for t in topics for p in t.partitions]
    if version < 4 and not ctx.allowed(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id):
        return dict.fromkeys(wanted, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    failed = {}
    for tp in wanted:
        if version < 4 and (tp[0] in INTERNAL_TOPICS or not ctx.allowed(Operation.WRITE, ResourceType.TOPIC, tp[0])):
            failed[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        elif not partition_exists(broker, *tp):
            failed[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if failed:
        return {tp: failed.get(tp, ErrorCode.OPERATION_NOT_ATTEMPTED) for tp in wanted}
    if verify_only:
        return broker.transactions.for_txn(transactional_id).verify_partitions(transactional_id, producer_id, epoch,
                                                                               wanted)
    for tp in wanted:   # once per partition ever: its reads now need the LSO (on the disk pool)
        part = find_partition(broker, *tp)[0]   # None: another core's, which notes it at its first batch
        if part is not None and not part.has_transactions:
            await broker.log.run_blocking(part.note_transactions)
    error = await broker.transactions.for_txn(transactional_id).add_partitions(transactional_id, producer_id, epoch,
                                                                               wanted)
    return dict.fromkeys(wanted, fenced_for(version, 2, error))


@api("AddPartitionsToTxn", 0, 5)
async def handle_add_partitions_to_txn(ctx, request):
    if ctx.version < 4:
        errors = await _add_partitions(ctx, ctx.version, request.v3_and_below_transactional_id,
                                       request.v3_and_below_producer_id, request.v3_and_below_producer_epoch,
                                       request.v3_and_below_topics)
        ctx.failed = any(errors.values())
        return AddPartitionsToTxnResponse(throttle_time_ms=0, results_by_topic_v3_and_below=_topic_results(errors))
    if not ctx.allowed_on_cluster(Operation.CLUSTER_ACTION):   # only brokers send the batched form
        ctx.failed = True
        return AddPartitionsToTxnResponse(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                                          results_by_transaction=[])
    results = []
    for txn in request.transactions:   # the batched form brokers send each other (KIP-890)
        errors = await _add_partitions(ctx, ctx.version, txn.transactional_id, txn.producer_id,
                                       txn.producer_epoch, txn.topics, txn.verify_only)
        ctx.failed = ctx.failed or any(errors.values())
        results.append(AddPartitionsToTxnResponse.AddPartitionsToTxnResult(
            transactional_id=txn.transactional_id, topic_results=_topic_results(errors)))
    return AddPartitionsToTxnResponse(throttle_time_ms=0, error_code=0, results_by_transaction=results)


@api("AddOffsetsToTxn", 0, 4)
async def handle_add_offsets_to_txn(ctx, request):
    """The group's offsets partition joins the transaction: its commit marker makes the
    offsets committed in it (TxnOffsetCommit) visible."""
    if not ctx.allowed(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id):
        error = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    elif not ctx.allowed(Operation.READ, ResourceType.GROUP, request.group_id):
        error = ErrorCode.GROUP_AUTHORIZATION_FAILED
    elif not request.group_id:
        error = ErrorCode.INVALID_GROUP_ID
    else:
        error = await ctx.broker.transactions.for_txn(request.transactional_id).add_partitions(
            request.transactional_id, request.producer_id, request.producer_epoch,
            [(OFFSETS_TOPIC, offsets_partition(ctx.broker, request.group_id))])
    ctx.failed = bool(error)
    return AddOffsetsToTxnResponse(throttle_time_ms=0, error_code=fenced_for(ctx.version, 2, error))


@api("EndTxn", 0, 4)   # v5 (KIP-890 part 2, an epoch bump per transaction) is not in Kafka 3.9
async def handle_end_txn(ctx, request):
    if not ctx.allowed(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id):
        ctx.failed = True
        return EndTxnResponse(throttle_time_ms=0, error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    error = await ctx.broker.transactions.for_txn(request.transactional_id).end_txn(
        request.transactional_id, request.producer_id, request.producer_epoch, request.committed)
    ctx.failed = bool(error)
    return EndTxnResponse(throttle_time_ms=0, error_code=fenced_for(ctx.version, 2, error))


@api("TxnOffsetCommit", 0, 4)
async def handle_txn_offset_commit(ctx, request):
    """Offsets committed inside the transaction (send_offsets_to_transaction): stored at once,
    visible once it commits. The transaction must hold the group's offsets partition
    (AddOffsetsToTxn first; Kafka 3.9 verifies it)."""
    v, broker = ctx.version, ctx.broker
    now = now_ms()
    offsets = {(t.name, p.partition_index): CommittedOffset(
        offset=p.committed_offset, leader_epoch=p.committed_leader_epoch if v >= 2 else -1,
        metadata=p.committed_metadata or "", commit_ms=now) for t in request.topics for p in t.partitions}
    if not ctx.allowed(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id):
        error = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    elif not ctx.allowed(Operation.READ, ResourceType.GROUP, request.group_id):
        error = ErrorCode.GROUP_AUTHORIZATION_FAILED
    elif broker.cluster is not None:
        error = await _verify_offsets_partition(broker, request)
    else:
        error = broker.transactions.produce_error(request.producer_id, request.producer_epoch, OFFSETS_TOPIC,
                                                  offsets_partition(broker, request.group_id))
    denied = {tp: ErrorCode.TOPIC_AUTHORIZATION_FAILED for tp in offsets
              if not ctx.allowed(Operation.READ, ResourceType.TOPIC, tp[0])} if not error else {}
    if error:
        results = dict.fromkeys(offsets, error)
    elif len(denied) == len(offsets):
        results = denied
    else:
        committed = await broker.groups.for_group(request.group_id).commit(
            request.group_id, request.generation_id if v >= 3 else -1, request.member_id if v >= 3 else "",
            request.group_instance_id if v >= 3 else None, {tp: o for tp, o in offsets.items() if tp not in denied},
            producer=(request.producer_id, request.producer_epoch))
        results = {tp: denied[tp] if tp in denied else committed[tp] for tp in offsets}
    ctx.failed = any(results.values())
    by_topic = defaultdict(list)
    for (topic, partition), code in results.items():
        by_topic[topic].append(TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition(
            partition_index=partition, error_code=code))
    return TxnOffsetCommitResponse(throttle_time_ms=0, topics=[
        TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic(name=name, partitions=parts)
        for name, parts in by_topic.items()])


async def _verify_offsets_partition(broker, request) -> ErrorCode:
    """KIP-890 for offsets in a transaction, in a cluster: the group's offsets partition must be
    in the transaction, asked of its coordinator wherever it is (as a partition's leader asks
    for a batch); a coordinator that cannot be asked is COORDINATOR_NOT_AVAILABLE here, as
    Kafka's group coordinator maps NOT_ENOUGH_REPLICAS."""
    part = find_partition(broker, OFFSETS_TOPIC, offsets_partition(broker, request.group_id))[0]
    if part is None:   # not led here: nor is the group coordinated here
        return ErrorCode.NOT_COORDINATOR
    verdict = broker.transactions.verify(request.transactional_id, request.producer_id, request.producer_epoch, part)
    error = await verdict if asyncio.isfuture(verdict) else verdict
    return ErrorCode.COORDINATOR_NOT_AVAILABLE if error == ErrorCode.NOT_ENOUGH_REPLICAS else error


@api("WriteTxnMarkers", 0, 1)
async def handle_write_txn_markers(ctx, request):
    if not ctx.allowed_on_cluster(Operation.CLUSTER_ACTION):   # Kafka's getErrorResponse: every partition
        ctx.failed = True
        return WriteTxnMarkersResponse(markers=[WriteTxnMarkersResponse.WritableTxnMarkerResult(
            producer_id=marker.producer_id, topics=[WriteTxnMarkersResponse.WritableTxnMarkerTopicResult(
                name=t.name, partitions=[WriteTxnMarkersResponse.WritableTxnMarkerPartitionResult(
                    partition_index=index, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
                    for index in t.partition_indexes]) for t in marker.topics]) for marker in request.markers])
    results = []
    for marker in request.markers:
        errors = await _write_markers(ctx.broker, marker)
        ctx.failed = ctx.failed or any(errors.values())
        results.append(WriteTxnMarkersResponse.WritableTxnMarkerResult(producer_id=marker.producer_id, topics=[
            WriteTxnMarkersResponse.WritableTxnMarkerTopicResult(name=t.name, partitions=[
                WriteTxnMarkersResponse.WritableTxnMarkerPartitionResult(partition_index=index,
                                                                         error_code=errors[(t.name, index)])
                for index in t.partition_indexes]) for t in marker.topics]))
    return WriteTxnMarkersResponse(markers=results)


async def _write_markers(broker, marker) -> dict[tuple[str, int], ErrorCode]:
    """One marker on each partition it names that this broker leads; the error of each."""
    wanted = [(t.name, index) for t in marker.topics for index in t.partition_indexes]
    if broker.cluster is not None:   # counted once the in-sync replicas hold it
        from pstream.cluster.markers import write_here
        return await write_here(broker, marker.producer_id, marker.producer_epoch, marker.transaction_result,
                                marker.coordinator_epoch, wanted)
    errors = {}
    for name, index in wanted:
        part, error = find_partition(broker, name, index)
        if part is not None:
            try:
                await part.write_txn_marker(marker.producer_id, marker.producer_epoch, marker.transaction_result,
                                            marker.coordinator_epoch)
            except Exception as exc:
                error = error_for(exc)
        errors[(name, index)] = error
    return errors


@api("DescribeTransactions", 0, 0)
def handle_describe_transactions(ctx, request):
    states = []
    for transactional_id in request.transactional_ids:
        if not ctx.allowed(Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, transactional_id):
            states.append(DescribeTransactionsResponse.TransactionState(   # the schema's defaults, as Kafka
                error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, transactional_id=transactional_id))
            continue
        coordinator = ctx.broker.transactions.for_txn(transactional_id)
        if not coordinator.active:   # a cluster's id coordinated elsewhere, or still loading
            states.append(DescribeTransactionsResponse.TransactionState(
                error_code=coordinator.inactive_error, transactional_id=transactional_id))
            continue
        meta = coordinator.describe(transactional_id)
        if meta is None:
            states.append(DescribeTransactionsResponse.TransactionState(
                error_code=ErrorCode.TRANSACTIONAL_ID_NOT_FOUND, transactional_id=transactional_id,
                transaction_state="", transaction_timeout_ms=0, transaction_start_time_ms=-1, producer_id=-1,
                producer_epoch=-1, topics=[]))
            continue
        by_topic = defaultdict(list)
        for topic, partition in sorted(meta.partitions):
            if ctx.allowed(Operation.DESCRIBE, ResourceType.TOPIC, topic):   # the others left out
                by_topic[topic].append(partition)
        states.append(DescribeTransactionsResponse.TransactionState(
            error_code=0, transactional_id=transactional_id, transaction_state=meta.state.kafka_name,
            transaction_timeout_ms=meta.timeout_ms, transaction_start_time_ms=meta.start_ms,
            producer_id=meta.producer_id, producer_epoch=meta.producer_epoch,
            topics=[DescribeTransactionsResponse.TopicData(topic=t, partitions=p) for t, p in by_topic.items()]))
    return DescribeTransactionsResponse(throttle_time_ms=0, transaction_states=states)


@api("ListTransactions", 0, 1)
def handle_list_transactions(ctx, request):
    unknown = [s for s in request.state_filters if s not in STATE_NAMES]
    found = ctx.broker.transactions.list(request.state_filters, request.producer_id_filters,
                                         request.duration_filter if ctx.version >= 1 else -1)
    return ListTransactionsResponse(
        throttle_time_ms=0, error_code=0, unknown_state_filters=unknown,
        transaction_states=[ListTransactionsResponse.TransactionState(
            transactional_id=m.transactional_id, producer_id=m.producer_id, transaction_state=m.state.kafka_name)
            for m in found if ctx.allowed(Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, m.transactional_id)])
