"""ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the first offset at or
after a timestamp. Latest is the high watermark consumers see (see fetch.high_watermark)."""

from __future__ import annotations

from pstream.broker.dispatch import api
from pstream.broker.handlers.common import find_partition, leader_epoch_error
from pstream.broker.handlers.fetch import high_watermark
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.list_offsets import ListOffsetsResponse

LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3
PartitionResponse = ListOffsetsResponse.ListOffsetsPartitionResponse


def _lookup(part, timestamp: int) -> tuple[int, int]:
    """(timestamp, offset) answering one query; (-1, -1) when no record qualifies."""
    if timestamp == LATEST:
        return -1, high_watermark(part)
    if timestamp == EARLIEST:
        return -1, part.log_start_offset
    if timestamp == MAX_TIMESTAMP:
        return part.max_timestamp()
    offset = part.offset_for_timestamp(timestamp)
    if offset is None or offset >= high_watermark(part):
        return -1, -1
    return timestamp, offset


@api("ListOffsets", 0, 9)
def handle_list_offsets(ctx, request):
    topics = []
    for t in request.topics:
        results = []
        for p in t.partitions:
            out = PartitionResponse(partition_index=p.partition_index, timestamp=-1, offset=-1, leader_epoch=-1)
            part, error = find_partition(ctx.broker, t.name, p.partition_index)
            if part is not None:
                error = leader_epoch_error(part, p.current_leader_epoch)
            if part is not None and not error:
                if p.timestamp < MAX_TIMESTAMP:
                    error = ErrorCode.INVALID_REQUEST if ctx.version < 9 else ErrorCode.UNSUPPORTED_VERSION
                else:
                    out.timestamp, out.offset = _lookup(part, p.timestamp)
                    out.leader_epoch = part.leader_epoch
                    if ctx.version == 0:
                        out.old_style_offsets = [out.offset] if out.offset >= 0 else []
            out.error_code = error
            results.append(out)
        topics.append(ListOffsetsResponse.ListOffsetsTopicResponse(name=t.name, partitions=results))
    return ListOffsetsResponse(throttle_time_ms=0, topics=topics)
