"""InitProducerId and DescribeProducers.

As in Kafka, a producer without a transactional id gets a fresh producer id at epoch 0 on
every InitProducerId; ids are never reused, across restarts too. One with a transactional id
gets its id's producer id and the next epoch from the transaction coordinator.
"""

from __future__ import annotations

from pstream.broker.dispatch import api
from pstream.broker.handlers.common import find_partition
from pstream.broker.handlers.transactions import fenced_for
from pstream.protocol.messages.describe_producers import DescribeProducersResponse
from pstream.protocol.messages.init_producer_id import InitProducerIdResponse


@api("InitProducerId", 0, 5)
def handle_init_producer_id(ctx, request):
    if request.transactional_id is not None:
        return _init_transactional(ctx, request)
    producer_id = ctx.broker.producer_ids.allocate_reserved()
    if producer_id is None:   # one call in ID_BLOCK reserves the next block: its fsync on the disk pool
        return _allocate_on_disk_pool(ctx.broker)
    return InitProducerIdResponse(throttle_time_ms=0, error_code=0, producer_id=producer_id, producer_epoch=0)


async def _init_transactional(ctx, request) -> InitProducerIdResponse:
    error, producer_id, epoch = await ctx.broker.transactions.init_producer_id(
        request.transactional_id, request.transaction_timeout_ms,
        request.producer_id if ctx.version >= 3 else -1, request.producer_epoch if ctx.version >= 3 else -1)
    ctx.failed = bool(error)
    return InitProducerIdResponse(throttle_time_ms=0, error_code=fenced_for(ctx.version, 4, error),
                                  producer_id=producer_id, producer_epoch=epoch)


async def _allocate_on_disk_pool(broker) -> InitProducerIdResponse:
    producer_id = await broker.allocate_producer_id()
    return InitProducerIdResponse(throttle_time_ms=0, error_code=0, producer_id=producer_id, producer_epoch=0)


@api("DescribeProducers", 0, 0)
async def handle_describe_producers(ctx, request):
    topics = []
    for t in request.topics:
        partitions = []
        for index in t.partition_indexes:
            out = DescribeProducersResponse.PartitionResponse(partition_index=index, active_producers=[])
            part, out.error_code = find_partition(ctx.broker, t.name, index)
            if part is not None:
                state = await part.load_producer_state()   # a replay runs on the Log's disk pool
                out.active_producers = [DescribeProducersResponse.ProducerState(**p) for p in state.producers()]
            partitions.append(out)
        topics.append(DescribeProducersResponse.TopicResponse(name=t.name, partitions=partitions))
    return DescribeProducersResponse(throttle_time_ms=0, topics=topics)
