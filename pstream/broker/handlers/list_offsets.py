"""ListOffsets: earliest (-2), latest (-1), max timestamp (-3, clients send it from v7),
earliest local (-4, from v8), latest tiered (-5, from v9), or the first offset at or after a
timestamp; like Kafka's broker, any version may ask any of them. Latest is the high
watermark consumers see (Partition.high_watermark), or for read_committed (isolation level 1,
v2+) the last stable offset, which also bounds the other queries. A time query is answered with the found
record's own timestamp; max timestamp with the offset of the record that has it, not of its
batch's last record (Kafka since KAFKA-16310). No tiered storage: the local log is the whole
log, so earliest local is earliest and latest tiered is "none" (-1), as Kafka answers
without remote storage."""

from __future__ import annotations

from pstream import _core
from pstream.broker.dispatch import api
from pstream.broker.handlers.common import find_partition, leader_epoch_error
from pstream.errors import OffsetOutOfRangeError
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.list_offsets import ListOffsetsResponse
from pstream.security.acls import Operation, ResourceType

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED = -1, -2, -3, -4, -5
READ_COMMITTED = 1
PartitionResponse = ListOffsetsResponse.ListOffsetsPartitionResponse


def _lookup(part, timestamp: int, committed: bool) -> tuple[int, int]:
    """(timestamp, offset) answering one query; (-1, -1) when no record qualifies."""
    state = part.producer_state_ready if committed else None
    end = part.high_watermark if state is None else part.stable_offset_of(state)
    if timestamp == LATEST:
        return -1, end
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return -1, part.log_start_offset
    if timestamp == LATEST_TIERED:
        return -1, -1
    if timestamp == MAX_TIMESTAMP:
        ts, last_offset = part.max_timestamp()
        if last_offset < 0 or last_offset >= end:
            return -1, -1
        return ts, first_offset_with_timestamp(part, last_offset, ts)
    offset = part.offset_for_timestamp(timestamp)
    if offset is None or offset >= end:
        return -1, -1
    return record_timestamp(part, offset), offset


def _batch_records(part, offset: int) -> list:
    """The records of the one batch holding `offset` (decoded; nothing else is read)."""
    try:
        data = part.read_batches(offset, 1)    # always the whole first batch (KIP-74), nothing more
    except OffsetOutOfRangeError:              # retention or DeleteRecords moved the start meanwhile
        return []
    for _header, records in _core.iter_batches(data):
        return records
    return []


def record_timestamp(part, offset: int) -> int:
    """The timestamp of the record at `offset` (Kafka answers a time query with the found
    record's own timestamp, not the one asked for)."""
    for rec in _batch_records(part, offset):
        if rec.offset == offset:
            return rec.timestamp_ms
    return -1


def first_offset_with_timestamp(part, batch_offset: int, timestamp: int) -> int:
    """The offset of the first record with `timestamp` in the batch holding batch_offset (the
    storage layer keeps the max timestamp per batch, with the batch's last offset)."""
    for rec in _batch_records(part, batch_offset):
        if rec.timestamp_ms == timestamp:
            return rec.offset
    return batch_offset


@api("ListOffsets", 0, 9)
def handle_list_offsets(ctx, request):
    if ctx.version >= 2 and request.isolation_level == READ_COMMITTED and _unloaded(ctx, request):
        return _answer_committed(ctx, request)
    if any(p.timestamp >= 0 or p.timestamp == MAX_TIMESTAMP for t in request.topics for p in t.partitions):
        return _answer_on_disk_pool(ctx, request)
    return _answer(ctx, request)


def _unloaded(ctx, request) -> list:
    """The partitions whose producer state (the LSO's source) is not recovered yet."""
    out = []
    for t in request.topics:
        for p in t.partitions:
            part, _ = find_partition(ctx.broker, t.name, p.partition_index)
            if part is not None and part.producer_state_ready is None and part.has_transactions:
                out.append(part)
    return out


async def _answer_committed(ctx, request):
    for part in _unloaded(ctx, request):
        await part.load_producer_state()   # replayed on the disk pool
    return await _answer_on_disk_pool(ctx, request)


async def _answer_on_disk_pool(ctx, request):
    """Time queries read batches, perhaps from disk: answered on the Log's disk pool."""
    return await ctx.broker.log.run_blocking(_answer, ctx, request)


def _answer(ctx, request):
    committed = ctx.version >= 2 and request.isolation_level == READ_COMMITTED
    topics = []
    for t in request.topics:
        results = []
        for p in t.partitions:
            out = PartitionResponse(partition_index=p.partition_index, timestamp=-1, offset=-1, leader_epoch=-1)
            part, error = find_partition(ctx.broker, t.name, p.partition_index)
            if not ctx.allowed(Operation.DESCRIBE, ResourceType.TOPIC, t.name):
                part, error = None, ErrorCode.TOPIC_AUTHORIZATION_FAILED
            if part is not None:
                error = leader_epoch_error(part, p.current_leader_epoch)
            if part is not None and not error:
                if p.timestamp < LATEST_TIERED:
                    error = ErrorCode.INVALID_REQUEST if ctx.version < 9 else ErrorCode.UNSUPPORTED_VERSION
                else:
                    out.timestamp, out.offset = _lookup(part, p.timestamp, committed)
                    out.leader_epoch = part.leader_epoch
                    if ctx.version == 0:
                        out.old_style_offsets = [out.offset] if out.offset >= 0 else []
            out.error_code = error
            results.append(out)
        topics.append(ListOffsetsResponse.ListOffsetsTopicResponse(name=t.name, partitions=results))
    return ListOffsetsResponse(throttle_time_ms=0, topics=topics)
