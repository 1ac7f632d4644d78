"""Fetch: whole batches from the fetch offset on, long-polling for min_bytes/max_wait_ms.

Consumers see records up to the partition's high watermark (storage decides it: with the
durable flush policy it is the durable offset, so a consumer never reads a record that a
crash could take back); read-committed ones (isolation_level 1) up to its last stable offset,
below every open transaction, with the list of aborted transactions in the range so they
drop those records (Partition.aborted_transactions, from the aborted-transaction index), and
their long-poll also wakes when a transaction ends. Batches go out as the bytes the log
returned (one copy, from the segment), never joined: the response is a list of buffers; a
consumer far behind is read on a reader thread, not the event loop. Sizes follow KIP-74 as
Kafka's ReplicaManager applies it: the records of the response total at most max_bytes, and
each partition's at most its partition_max_bytes, except that the first batch of the first partition with data is sent
whole even when it is larger than either (so a consumer always progresses); no later
partition gets more than fits. Fetch sessions (KIP-227, v7+): broker/fetch_sessions.py; an
incremental answer carries only the partitions with something new.
"""

from __future__ import annotations

import asyncio
import time

from pstream import _core
from pstream.broker.connection import charged_read, charged_read_now
from pstream.broker.dispatch import api
from pstream.broker.fetch_sessions import FINAL_EPOCH, INITIAL_EPOCH
from pstream.broker.handlers.common import find_partition, leader_epoch_error
from pstream.protocol.error_codes import ErrorCode, error_for
from pstream.protocol.messages.fetch import FetchRequest, FetchResponse
from pstream.protocol.primitives import ZERO_UUID
from pstream.security.acls import Operation, ResourceType

PartitionData = FetchResponse.PartitionData
AbortedTransaction = FetchResponse.AbortedTransaction
TopicResponse = FetchResponse.FetchableTopicResponse
READ_COMMITTED = 1
_NO_REPLICA = FetchRequest.ReplicaState()   # v15+ without replica state: a consumer


def cut_at(data, end_offset: int, max_bytes: int = 0x7FFFFFFF, first_whole: bool = True):
    """(the leading whole batches of `data` whose base offset is below end_offset and that fit in
    max_bytes, their record count); with first_whole the first batch is kept even when it alone
    exceeds max_bytes (KIP-74). One header read per batch, in the core (`_core.cut_batches`)."""
    cut = _core.cut_batches(data, below_offset=end_offset, max_bytes=max_bytes, first_whole=first_whole)
    return (data if cut.end >= len(data) else memoryview(data)[:cut.end]), cut.records


class _PartitionFetch:
    __slots__ = ("committed", "end", "part", "records", "response", "seen_end", "topic", "topic_id", "wanted")

    def __init__(self, topic, topic_id, wanted, part, response, committed):
        self.topic, self.topic_id, self.wanted, self.part, self.response = topic, topic_id, wanted, part, response
        self.committed = committed            # read_committed: read up to the last stable offset
        self.seen_end = wanted.fetch_offset   # the high watermark the last read saw: wait for data past it
        self.end = -1                         # where this read stops: the high watermark or the LSO
        self.records = 0                      # records in response.records


def _wanted(request) -> list:
    """[(topic, topic_id, FetchPartition)] that a sessionless or full fetch names."""
    return [(t.topic, t.topic_id, p) for t in request.topics for p in t.partitions]


def _plan(ctx, request, wanted) -> list[_PartitionFetch]:
    plan = []
    use_ids = ctx.version >= 13
    for topic, topic_id, p in wanted:
        part, error = find_partition(ctx.broker, None if use_ids else topic,
                                     p.partition, topic_id if use_ids else None)
        name = part.topic if part is not None else None if use_ids else topic
        if name is not None and not ctx.allowed(Operation.READ, ResourceType.TOPIC, name):
            part, error = None, ErrorCode.TOPIC_AUTHORIZATION_FAILED
        response = PartitionData(partition_index=p.partition, error_code=error, high_watermark=-1,
                                 last_stable_offset=-1, log_start_offset=-1, preferred_read_replica=-1,
                                 aborted_transactions=[] if request.isolation_level == READ_COMMITTED else None,
                                 records=None)
        if part is not None:
            response.error_code = leader_epoch_error(part, p.current_leader_epoch)
        plan.append(_PartitionFetch(topic, topic_id, p, part if not response.error_code else None, response,
                                    request.isolation_level == READ_COMMITTED))
    return plan


async def _read_all(plan: list[_PartitionFetch], max_bytes: int) -> int:
    """Fills every partition's response; returns the bytes of records gathered.

    The partitions are read at once: each reserves its partition_max_bytes (capped by what
    max_bytes leaves), so their reads (far behind the end: O_DIRECT from disk, on reader
    threads, off the event loop) overlap instead of queueing one behind the other. Those the
    reservations crowded out are read after, from what the others really used.
    """
    reads, later, reserved = [], [], 0
    for item in plan:
        if item.committed and item.part is not None and item.part.producer_state_ready is None \
                and item.part.has_transactions:
            await item.part.load_producer_state()   # the LSO needs it: replayed on the disk pool
        if not _prepare(item):
            continue
        room = min(item.wanted.partition_max_bytes, max_bytes - reserved)
        if room <= 0 and reserved > 0:
            later.append(item)
            continue
        reserved += max(room, 0)
        reads.append(_read_into(item, max(room, 1)))
    total = sum(await asyncio.gather(*reads)) if reads else 0
    for item in later:
        room = min(item.wanted.partition_max_bytes, max_bytes - total)
        if room <= 0:
            item.response.records = b""
            continue
        total += await _read_into(item, room)
    return _keep_to_max_bytes(plan, max_bytes)


def _keep_to_max_bytes(plan: list[_PartitionFetch], max_bytes: int) -> int:
    """Cuts what the concurrent reads gathered (each may have returned one oversized first
    batch) to Kafka's budget, in request order; returns the bytes kept."""
    total, first_whole = 0, True
    for item in plan:
        data = item.response.records
        if not data:
            continue
        room = min(item.wanted.partition_max_bytes, max_bytes - total)
        data, item.records = cut_at(data, item.end, room, first_whole)
        item.response.records = data
        total += len(data)
        first_whole = first_whole and not data
    return total


def _prepare(item: _PartitionFetch) -> bool:
    """Fills the partition's watermarks and offset errors; True when it has records to read."""
    part, response, offset = item.part, item.response, item.wanted.fetch_offset
    if part is None:
        return False
    hw = part.high_watermark
    state = part.producer_state_ready
    item.seen_end = max(hw, offset)
    response.high_watermark = hw
    response.last_stable_offset = hw if state is None else part.stable_offset_of(state)
    item.end = response.last_stable_offset if item.committed else hw
    response.log_start_offset = part.log_start_offset
    if offset < part.log_start_offset or offset > part.log_end_offset:
        response.error_code = ErrorCode.OFFSET_OUT_OF_RANGE
        return False
    if offset >= item.end:
        response.records = b""
        return False
    return True


async def _read_into(item: _PartitionFetch, room: int) -> int:
    try:
        data = await charged_read(room, item.part.read_batches_async, item.wanted.fetch_offset, room)
    except Exception as exc:   # out of range (retention moved the start meanwhile), storage failures
        item.response.error_code = error_for(exc)
        return 0
    return _store(item, data)


def _store(item: _PartitionFetch, data) -> int:
    data, item.records = cut_at(data, item.end)
    item.response.records = data
    return len(data)


def _read_all_now(plan: list[_PartitionFetch], max_bytes: int) -> int | None:
    """_read_all without waiting, for a fetch that asks only for what is in memory (consumers
    near the end of their partitions, the common case): the bytes gathered, or None when a
    partition needs what only _read_all does (a read on a reader thread, the producer state's
    replay, memory the budget cannot give now): then _read_all reads again (anything read by
    then stays charged to the request until it is answered)."""
    for item in plan:
        part = item.part
        if part is None:
            continue
        if item.committed and part.producer_state_ready is None and part.has_transactions:
            return None
        if not part.reads_inline(item.wanted.fetch_offset):
            return None
    total = 0
    for item in plan:
        if not _prepare(item):
            continue
        room = min(item.wanted.partition_max_bytes, max_bytes - total)
        if room <= 0:
            item.response.records = b""
            continue
        try:
            data = charged_read_now(room, item.part.read_batches, item.wanted.fetch_offset, room)
        except Exception as exc:   # as _read_into
            item.response.error_code = error_for(exc)
            continue
        if data is None:
            return None
        total += _store(item, data)
    return _keep_to_max_bytes(plan, max_bytes)


async def _wait_for_data(plan: list[_PartitionFetch], timeout: float) -> None:
    """Returns when any fetched partition has a record past what the last read saw (not just
    past its fetch offset: a fetch whose min_bytes is not met yet would spin), or at the timeout."""
    waits = []
    for item in plan:
        part = item.part
        if part is None or item.response.error_code:
            continue
        waits.append(asyncio.ensure_future(part.wait_visible(item.seen_end)))
        if item.committed and item.end < item.seen_end:   # records wait for their transaction to end
            waits.append(asyncio.ensure_future(part.wait_txn_end()))
    if not waits:
        await asyncio.sleep(timeout)
        return
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            if not w.done():
                w.cancel()
            elif not w.cancelled():
                w.exception()


def _session(ctx, request):
    """(session or None, whether this fetch is incremental, error) of a fetch's session fields
    (Kafka's FetchManager.newContext). v0-6 have no sessions; epoch -1 closes one (or asks for
    none), epoch 0 opens one, a later epoch continues one."""
    if ctx.version < 7:
        return None, False, ErrorCode.NONE
    cache = ctx.broker.fetch_sessions
    if request.session_epoch == FINAL_EPOCH:
        cache.close(request.session_id)
        return None, False, ErrorCode.NONE
    if request.session_epoch == INITIAL_EPOCH:
        cache.close(request.session_id)
        session = cache.open()
        session.update(request, ctx.version >= 13)
        return session, False, ErrorCode.NONE
    session, error = cache.find(request.session_id, request.session_epoch)
    if session is not None:
        session.update(request, ctx.version >= 13)
        session.epoch += 1
    return session, True, error


@api("Fetch", 0, 17)
def handle_fetch(ctx, request):
    """Answered at once (no coroutine) when the data is in memory and enough of it is there, or
    nothing is worth waiting for; a consumer at the end waits in a _LongPoll (no coroutine
    either); the rest (reads on reader threads, transactions still open) in _fetch_waiting.
    A follower's fetch (replica id set, cluster mode) goes to the replication layer."""
    replica = request.replica_id if ctx.version < 15 else (request.replica_state or _NO_REPLICA).replica_id
    if replica >= 0 and ctx.broker.cluster is not None:
        if not ctx.allowed_on_cluster(Operation.CLUSTER_ACTION):
            return FetchResponse(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                                 session_id=0, responses=[])
        return ctx.broker.cluster.replicas.serve_replica_fetch(request, replica)
    session, incremental, error = _session(ctx, request)
    if error:
        return FetchResponse(throttle_time_ms=0, error_code=error, session_id=0, responses=[])
    plan = _plan(ctx, request, list(session.partitions.values()) if session is not None else _wanted(request))
    max_bytes = request.max_bytes if ctx.version >= 3 else 0x7FFFFFFF
    deadline = time.monotonic() + max(request.max_wait_ms, 0) / 1000
    total = _read_all_now(plan, max_bytes)
    if total is not None and (total >= max(request.min_bytes, 1) or request.max_wait_ms <= 0
                              or any(i.response.error_code for i in plan)):
        return _answer(ctx, plan, session, incremental)
    if total is not None and not any(i.committed and i.end < i.seen_end for i in plan):
        return _LongPoll(ctx, request, plan, session, incremental, max_bytes, deadline).future
    return _fetch_waiting(ctx, request, plan, session, incremental, max_bytes, deadline, total)


class _LongPoll:
    """A fetch waiting for data at the end of its partitions, without a coroutine: a watch on
    each partition's next visible offset and a timer; whichever fires first re-reads inline
    and answers, or watches again. The one future resolves to the response. What cannot be
    read inline then (the consumer fell behind meanwhile) continues in _fetch_waiting."""

    __slots__ = ("args", "ctx", "deadline", "future", "max_bytes", "min_bytes", "plan", "timer", "watches")

    def __init__(self, ctx, request, plan: list[_PartitionFetch], session, incremental: bool, max_bytes: int,
                 deadline: float):
        self.ctx, self.plan, self.max_bytes, self.deadline = ctx, plan, max_bytes, deadline
        self.min_bytes = max(request.min_bytes, 1)
        self.args = (request, session, incremental)
        self.future = asyncio.get_running_loop().create_future()
        self.timer = None
        self.watches: list = []
        self._watch()

    def _watch(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self._answer()
            return
        self.watches = [item.part.visible_future(item.seen_end) for item in self.plan
                        if item.part is not None and not item.response.error_code]
        for watch in self.watches:
            watch.add_done_callback(self._woken)
        self.timer = asyncio.get_running_loop().call_later(remaining, self._woken, None)

    def _woken(self, fired) -> None:
        if fired is not None and fired.cancelled():
            return   # cancelled by the one that woke first
        if self.timer is None or self.future.done():
            return   # already woken (or the connection cancelled the answer)
        self.timer.cancel()
        self.timer = None
        for watch in self.watches:
            if watch is not fired and not watch.done():
                watch.cancel()
            elif not watch.cancelled():
                watch.exception()   # a failed storage wait: the re-read reports it
        try:
            total = _read_all_now(self.plan, self.max_bytes)
            if total is None:   # fell behind: reads on a reader thread from here
                request, session, incremental = self.args
                task = asyncio.ensure_future(_fetch_waiting(self.ctx, request, self.plan, session, incremental,
                                                            self.max_bytes, self.deadline, None))
                task.add_done_callback(self._from_task)
                return
            if total >= self.min_bytes or any(i.response.error_code for i in self.plan):
                self._answer()
            else:
                self._watch()
        except Exception as exc:
            self.future.set_exception(exc)

    def _answer(self) -> None:
        request, session, incremental = self.args
        self.future.set_result(_answer(self.ctx, self.plan, session, incremental))

    def _from_task(self, task: asyncio.Task) -> None:
        if self.future.done():
            return
        if task.cancelled():
            self.future.cancel()
        elif task.exception() is not None:
            self.future.set_exception(task.exception())
        else:
            self.future.set_result(task.result())


async def _fetch_waiting(ctx, request, plan, session, incremental: bool, max_bytes: int, deadline: float,
                         total: int | None):
    if total is None:
        total = await _read_all(plan, max_bytes)
    while total < max(request.min_bytes, 1) and not any(i.response.error_code for i in plan):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await _wait_for_data(plan, remaining)
        total = await _read_all(plan, max_bytes)
    return _answer(ctx, plan, session, incremental)


def _answer(ctx, plan: list[_PartitionFetch], session, incremental: bool):
    responses: dict[tuple, TopicResponse] = {}
    metrics = ctx.broker.metrics
    use_ids = ctx.version >= 13
    for item in plan:
        key = (item.topic_id if use_ids else item.topic, item.wanted.partition)
        if session is not None and not session.changed(key, item.response) and incremental:
            continue   # nothing new for this partition: an incremental answer leaves it out
        if item.response.error_code:
            ctx.failed = True   # counted in pstream_request_errors_total
        elif item.response.records:
            metrics.fetched(item.part.topic, len(item.response.records), item.records)
            if item.committed:
                item.response.aborted_transactions = [
                    AbortedTransaction(producer_id=pid, first_offset=first)
                    for pid, first in item.part.aborted_transactions(item.wanted.fetch_offset, item.end)]
        key = (item.topic, item.topic_id)
        topic = responses.get(key)
        if topic is None:
            topic = responses[key] = TopicResponse(topic=item.topic, topic_id=item.topic_id or ZERO_UUID,
                                                   partitions=[])
        if item.response.records is None:
            # Never null, errors included: Kafka always sends an empty record set, and librdkafka
            # rejects a null one ("invalid MessageSetSize -1") and with it the whole response,
            # so a consumer would never see the error (OFFSET_OUT_OF_RANGE: no reset, a spin).
            item.response.records = b""
        topic.partitions.append(item.response)
    return FetchResponse(throttle_time_ms=0, error_code=0, session_id=session.id if session is not None else 0,
                         responses=list(responses.values()))
