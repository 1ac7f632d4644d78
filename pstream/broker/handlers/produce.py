"""Produce: record batches go to their partition's shard as memoryviews of the request.

Per partition the records field must frame exactly one v2 batch (Kafka's rule from
Produce v3 on, checked by its length fields with `_core.cut_batches`, never per record; more
than one is INVALID_RECORD, so no request is ever half appended); its header is read once
(`_core.peek_batch`); its records are checked as
Kafka's LogValidator checks them (`_core.check_batch`: record count, every record's lengths
and varints, offset deltas 0..n-1, timestamps, after a bounded decompression for compressed
batches), then against the idempotent producer's sequence, and handed to the shard
(submit_batch), which validates the CRC, assigns offsets, copies and writes it with the GIL
released. A refused batch stores nothing; from v8 the answer names the record at fault
(record_errors) and says why (error_message). On a compacted topic (cleanup.policy with
compact) every record needs a key: keyless records are refused as Kafka 3.9 refuses them,
INVALID_RECORD with every keyless record in record_errors and Kafka's messages, found by the
same check_batch walk (no Python object per record). Every partition of
the request is submitted before any is awaited, so their writes and fdatasyncs overlap; the
shards are woken once per loop turn (wake_later), and completions call the request back
(_ProduceAnswer: no coroutine or task unless a batch waits for more than its append).
On a LogAppendTime topic the response carries the time the shard wrote into the batch.

acks=0 gets no response; acks=1 is answered once the batch is in the log (readable, not
yet synced); acks=-1 once the partition's flush policy is met (with the default policy,
after the fdatasync that covers the batch).
Versions 0-2 (message formats v0/v1) are advertised, as Kafka does, but refused.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref

from pstream import _core
from pstream.broker.dispatch import api
from pstream.broker.handlers.common import find_partition, internal_topic_error
from pstream.protocol.error_codes import ErrorCode, error_for
from pstream.protocol.messages.produce import ProduceResponse
from pstream.security.acls import Operation, ResourceType
from pstream.storage.producer_state import SequenceCheck

PartitionResponse = ProduceResponse.PartitionProduceResponse
TopicResponse = ProduceResponse.TopicProduceResponse
BatchIndexError = ProduceResponse.BatchIndexAndErrorMessage

MIN_PRODUCE_VERSION = 3
BATCH_HEADER_BYTES = _core.BATCH_HEADER_SIZE
ZSTD = 4
MIN_ZSTD_VERSION = 7
# A compressed batch expanding past this is refused (MESSAGE_TOO_LARGE, which makes the Java
# producer split the batch) once its output passes it, never held whole: the limit pstream's
# own decoder (consume, log dump) reads, 64x the default max.message.bytes.
MAX_DECOMPRESSED_BATCH_BYTES = _core.MAX_DECOMPRESSED_BYTES
NO_LIMIT = (1 << 63) - 1

_SEQUENCE_ERRORS = {
    SequenceCheck.OUT_OF_ORDER: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
    SequenceCheck.INVALID_EPOCH: ErrorCode.INVALID_PRODUCER_EPOCH,
    SequenceCheck.UNKNOWN_PRODUCER: ErrorCode.UNKNOWN_PRODUCER_ID,
}


class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str | None = None, record_index: int = -1,
                 record_errors: list[tuple[int, str]] | None = None, log_start_offset: int = -1):
        self.code = code
        self.message = message
        self.record_index = record_index   # the record at fault (Produce v8+ record_errors), -1: none
        self.record_errors = record_errors  # [(record index, message)] where Kafka lists several
        self.log_start_offset = log_start_offset


def _keyless_refusal(part, keyless: tuple) -> _Refused:
    """Kafka's answer to records without a key on a compacted topic (LogValidator.validateKey,
    then processRecordErrors: the first three in the message, every one in record_errors)."""
    why = f"Compacted topic cannot accept message without key in topic partition {part.topic}-{part.number}"
    shown = ", ".join(f"RecordError(batchIndex={i}, message='{why}')" for i in keyless[:3])
    return _Refused(ErrorCode.INVALID_RECORD, f"One or more records have been rejected due to {len(keyless)} record "
                                              f"errors in total, and only showing the first three errors at most: "
                                              f"[{shown}]", keyless[0], [(i, why) for i in keyless],
                    part.log_start_offset)   # Kafka fills it in for a RecordValidationException


def split_batches(records: memoryview, version: int = MIN_PRODUCE_VERSION) -> list[tuple[memoryview, object]]:
    """The one v2 batch of a records field and its header, as a list; _Refused if lengths do
    not frame it exactly or frame more than one batch (Kafka's ProduceRequest.validateRecords).
    The refusal is the one for the first bad position: magic other than 2 is INVALID_RECORD,
    bytes that are not a whole batch CORRUPT_MESSAGE."""
    cut = _core.cut_batches(records)
    if cut.count == 1 and cut.stop == _core.CUT_END:   # the one answer a well-behaved client gets
        header = _core.peek_batch(records)
        _check_magic(header)
        return [(records, header)]
    for start, _end in cut:
        _check_magic(_core.peek_batch(records, start))
    end = len(records)
    if cut.stop != _core.CUT_END:
        if end - cut.end < BATCH_HEADER_BYTES:
            raise _Refused(ErrorCode.CORRUPT_MESSAGE, f"{end - cut.end} trailing bytes are not a record batch")
        header = _core.peek_batch(records, cut.end)
        _check_magic(header)
        raise _Refused(ErrorCode.CORRUPT_MESSAGE, f"batch length {header.batch_length} at byte {cut.end} does not "
                                                  f"fit the {end} bytes of records")
    if cut.count == 0:
        raise _Refused(ErrorCode.CORRUPT_MESSAGE, "no record batch")
    raise _Refused(ErrorCode.INVALID_RECORD, f"Produce requests with version {version} are only "
                                             f"allowed to contain exactly one record batch per partition")


def _check_magic(header) -> None:
    if header.magic != 2:
        raise _Refused(ErrorCode.INVALID_RECORD, f"record batches must have magic 2, got {header.magic}")


def check_records(config, part, batch: memoryview, check_crc: bool = False) -> None:
    """_Refused unless the batch's records are valid (Kafka's LogValidator), nothing stored yet.

    A batch over max.message.bytes is left to the shard, which refuses it as too large
    (MESSAGE_TOO_LARGE, as Kafka checks the size first); the CRC too, since the shard computes
    it as it appends, unless the caller is about to recompress the batch (check_crc)."""
    if len(batch) > config.max_message_bytes and not check_crc:
        return
    before, after = config.message_timestamp_before_max_ms, config.message_timestamp_after_max_ms
    create_time = part.timestamp_type == 0
    limits = {}
    if before < NO_LIMIT or after < NO_LIMIT:   # Kafka's defaults set no limit: no clock read
        now = int(time.time() * 1000)
        limits = {"min_timestamp": max(now - before, -NO_LIMIT - 1), "max_timestamp": min(now + after, NO_LIMIT)}
    fault = _core.check_batch(batch, check_crc=check_crc, check_timestamps=True, create_time=create_time,
                              max_decompressed=MAX_DECOMPRESSED_BATCH_BYTES, require_key=config.compacted, **limits)
    if fault is not None:
        if fault.keyless:
            raise _keyless_refusal(part, fault.keyless)
        raise _Refused(fault.kafka_error, fault.message, fault.record_index)


def _submit(broker, part, batches: list[tuple[memoryview, object]], version: int,
            leader_only: bool, txn: str | None = None) -> tuple[list, int]:
    """Checks and submits every batch now, in order (so pipelined requests keep their order);
    returns one wait per batch, each an _Append or an awaitable, resolving to (base offset, max
    timestamp as stored), and the batches' record count.

    Every batch goes through the partition's shard queue, so appends keep request order even
    when acks differ; leader_only (acks=0 and acks=1) completes once appended, acks=all once
    the flush policy is met."""
    waits, records = [], 0
    config = broker.log.get_topic(part.topic).config
    for batch, header in batches:
        records += header.record_count
        if header.is_control:
            raise _Refused(ErrorCode.INVALID_RECORD, "Clients are not allowed to write control records")
        verdict = _check_transactional(broker, part, header, txn) if header.is_transactional else None
        if header.compression == ZSTD and version < MIN_ZSTD_VERSION:
            raise _Refused(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, f"zstd batches need Produce v{MIN_ZSTD_VERSION} "
                                                                   f"or later (KIP-110), got v{version}")
        codec = config.compression_codec
        recompress = codec is not None and header.compression != codec
        check_records(config, part, batch, check_crc=recompress)
        if recompress:
            # The topic's compression.type: stored in its codec, as Kafka's broker does.
            batch = _core.recompress_batch(batch, codec, level=config.compression_level(codec),
                                           max_decompressed=MAX_DECOMPRESSED_BATCH_BYTES)
        if header.is_transactional:   # may wait for its coordinator's verification
            waits.append(_in_turn(broker, part, header, txn, verdict, functools.partial(
                _submit_idempotent, broker, part, batch, header.producer_id, header.producer_epoch,
                header.base_sequence, header.record_count, leader_only, True)))
        elif header.producer_id >= 0:   # no closure on the idempotent produce path
            waits.append(_submit_idempotent(broker, part, batch, header.producer_id, header.producer_epoch,
                                            header.base_sequence, header.record_count, leader_only, False))
        else:
            waits.append(_Append(part.submit_batch(batch, wait=not leader_only, wake=False), _stored))
            wake_later(part)
    return waits, records


class _ShardWakes:
    """Partitions whose shards were handed batches without being woken: each is woken once,
    when the loop turns, so the requests read together (from one socket or several) share one
    wake-up of a sleeping shard thread, the costly part of a hand-off on this kind of VM."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.parts: dict = {}

    def add(self, part) -> None:
        if not self.parts:
            self.loop.call_soon(self.wake)
        self.parts[part] = None

    def wake(self) -> None:
        parts, self.parts = self.parts, {}
        for part in parts:
            part.wake_shard()


_wakes: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ShardWakes]" = weakref.WeakKeyDictionary()


def wake_later(part) -> None:
    """Wakes part's shard when the loop turns (after submit_batch(..., wake=False))."""
    loop = asyncio.get_running_loop()
    wakes = _wakes.get(loop)
    if wakes is None:
        wakes = _wakes[loop] = _ShardWakes(loop)
    wakes.add(part)


class _Append:
    """A batch handed to its partition's shard, answered without a coroutine: once its
    PendingAppend is done, finish(pending, error) gives (base offset, max timestamp) or raises."""

    __slots__ = ("finish", "pending")

    def __init__(self, pending, finish):
        self.pending = pending
        self.finish = finish

    def future(self, part) -> asyncio.Future:
        """The outcome as a future, for a request that awaits other things too."""
        fut = asyncio.get_running_loop().create_future()

        def done(pending, error):
            try:
                fut.set_result(self.finish(pending, error))
            except Exception as exc:
                fut.set_exception(exc)

        part.when_appended(self.pending, done)
        return fut


def _stored(pending, error) -> tuple[int, int]:
    if error is not None:
        raise error
    return pending.result(), pending.max_timestamp


def stored_max_timestamp(part, base_offset: int) -> int:
    """The max timestamp of the batch stored at base_offset, as the shard wrote it (on a
    LogAppendTime topic: the append time); -1 if it cannot be read back. Only for the
    answer to a duplicate: a new append reports its timestamp itself."""
    try:
        data = part.read_batches(base_offset, 1)   # the whole first batch (KIP-74), nothing more
    except Exception:
        return -1
    if len(data) < BATCH_HEADER_BYTES:
        return -1
    header = _core.peek_batch(data)
    return header.max_timestamp if header.base_offset == base_offset else -1


async def _duplicate(part, original: int) -> tuple[int, int]:
    return original, stored_max_timestamp(part, original) if part.timestamp_type == 1 else -1


def _check_transactional(broker, part, header, txn: str | None):
    """A transactional batch needs its producer's ongoing transaction to hold the partition
    (Kafka 3.9 verifies it: transaction.partition.verification.enable). None if it does, or
    (in a cluster, its coordinator elsewhere) a task giving the coordinator's answer."""
    if header.producer_id < 0:
        raise _Refused(ErrorCode.INVALID_RECORD, "a transactional batch needs a producer id")
    if broker.cluster is None:
        verdict = broker.transactions.produce_error(header.producer_id, header.producer_epoch, part.topic,
                                                    part.number)
    else:
        verdict = broker.transactions.verify(txn, header.producer_id, header.producer_epoch, part)
        if asyncio.isfuture(verdict):
            return verdict
    _raise_txn_error(verdict)
    part.note_transactions()   # done by AddPartitionsToTxn already: a no-op
    return None


def _raise_txn_error(error: ErrorCode) -> None:
    if error == ErrorCode.INVALID_TXN_STATE:
        raise _Refused(error, "Partition was not added to the transaction")
    if error:
        raise _Refused(error)


def _in_turn(broker, part, header, txn, verdict, submit):
    """A producer's transactional batches go into a partition in the order they came, also when
    one waits for its coordinator's verification: those behind it wait their turn (a gate per
    partition and producer), then are checked again and submitted."""
    key = (part.topic, part.number, header.producer_id)
    gate = broker.txn_gates.get(key)
    if verdict is None and gate is None:
        return submit()
    turn = asyncio.get_running_loop().create_future()
    broker.txn_gates[key] = turn

    async def when_due():
        nonlocal verdict
        try:
            if gate is not None:
                await gate
                verdict = _check_transactional(broker, part, header, txn)   # the batch before may have verified it
            if verdict is not None:
                _raise_txn_error(await verdict)
                if not part.has_transactions:   # its AddPartitionsToTxn went to the coordinator's broker
                    await broker.log.run_blocking(part.note_transactions)
            wait = submit()
        finally:
            turn.set_result(None)
            if broker.txn_gates.get(key) is turn:
                del broker.txn_gates[key]
        return await (wait.future(part) if isinstance(wait, _Append) else wait)
    task = asyncio.ensure_future(when_due())
    task.add_done_callback(_retrieved)   # answered through the request, which may stop at an earlier refusal
    return task


def _retrieved(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


def _submit_idempotent(broker, part, batch, producer_id, epoch, base_seq, count, leader_only, transactional):
    """Checks the batch's sequence against the partition's producer state and submits it. The
    first idempotent batch after a restart waits, without blocking the loop, for the state to
    be replayed from the log on the Log's disk pool; batches queued behind it keep their order."""
    args = (broker, part, batch, producer_id, epoch, base_seq, count, leader_only, transactional)
    state = part.producer_state_ready
    if state is not None:
        return _sequence_and_submit(state, *args)
    return _after_replay(part, part.with_producer_state(lambda state: _sequence_and_submit(state, *args)))


async def _after_replay(part, submitted) -> tuple[int, int]:
    wait = await submitted
    return await (wait.future(part) if isinstance(wait, _Append) else wait)


def _sequence_and_submit(state, broker, part, batch, producer_id, epoch, base_seq, count, leader_only,
                         transactional):
    last_seq = (base_seq + count - 1) & 0x7FFFFFFF
    outcome, original = state.check(producer_id, epoch, base_seq, last_seq)
    if outcome == SequenceCheck.DUPLICATE:
        # Answered with the original offset, without appending again.
        if original is not None:
            return _duplicate(part, original)
        token = state.pending_duplicate(producer_id, base_seq, last_seq)
        waiter = broker.inflight_idempotent.get(token) if token is not None else None
        if waiter is None:
            raise _Refused(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, "duplicate of a batch whose append failed")
        return asyncio.shield(waiter)
    if outcome != SequenceCheck.OK:
        raise _Refused(_SEQUENCE_ERRORS[outcome])
    token = state.begin(producer_id, epoch, base_seq, last_seq, transactional=transactional,
                        log_end_offset=part.log_end_offset)
    try:
        pending = part.submit_batch(batch, wait=not leader_only, wake=False)
    except BaseException:
        state.abort(token)
        raise
    wake_later(part)
    waiter = asyncio.get_running_loop().create_future()   # what a duplicate sent meanwhile awaits
    broker.inflight_idempotent[token] = waiter

    def finish(pending, error) -> tuple[int, int]:
        broker.inflight_idempotent.pop(token, None)
        try:
            result = _stored(pending, error)
        except BaseException as exc:
            state.abort(token)
            waiter.set_exception(exc)
            waiter.exception()  # marked retrieved: only duplicates waiting on it care
            raise
        state.complete(token, result[0], pending.last_offset, result[1])   # as replay from the log will see it
        waiter.set_result(result)
        return result

    return _Append(pending, finish)


def _refuse(response: PartitionResponse, exc: Exception) -> PartitionResponse:
    """Puts the Kafka error of a refusal or a storage error into the response; anything else
    is a bug and propagates (the connection closes with the traceback logged)."""
    if isinstance(exc, _Refused):
        response.error_code, response.error_message = exc.code, exc.message
        response.log_start_offset = exc.log_start_offset
        if exc.record_errors:
            response.record_errors = [BatchIndexError(batch_index=i, batch_index_error_message=why)
                                      for i, why in exc.record_errors]
        elif exc.record_index >= 0:
            response.record_errors = [BatchIndexError(batch_index=exc.record_index,
                                                      batch_index_error_message=exc.message)]
        return response
    response.error_code, response.error_message = error_for(exc), str(exc)
    if response.error_code == ErrorCode.UNKNOWN_SERVER_ERROR:
        raise exc
    return response


class _PartitionJob:
    """One partition's batches, submitted; its response is filled in once they are stored."""

    __slots__ = ("nbytes", "part", "records", "response", "results", "waits")

    def __init__(self, part, response: PartitionResponse, waits: list, nbytes: int, records: int):
        self.part = part
        self.response = response
        self.waits = waits
        self.nbytes = nbytes
        self.records = records
        self.results = [None] * len(waits)   # (base offset, max timestamp) or the exception, per batch

    def answer(self, broker) -> PartitionResponse:
        response, part = self.response, self.part
        for result in self.results:
            if isinstance(result, BaseException):
                return _refuse(response, result)
        broker.metrics.produced(part.topic, self.nbytes, self.records)
        response.base_offset, max_timestamp = self.results[0]
        response.log_start_offset = part.log_start_offset
        if part.timestamp_type == 1:
            response.log_append_time_ms = max_timestamp
        return response

    async def wait(self, broker) -> PartitionResponse:
        for i, w in enumerate(self.waits):
            try:
                self.results[i] = await (w.future(self.part) if isinstance(w, _Append) else w)
            except Exception as exc:
                self.results[i] = exc
                break
        return self.answer(broker)


def _produce_partition(broker, topic: str, index: int, records, version: int, acks: int, txn: str | None):
    """The partition's response if refused at once, else its _PartitionJob."""
    response = PartitionResponse(index=index, base_offset=-1, log_append_time_ms=-1, log_start_offset=-1)
    part, error = find_partition(broker, topic, index)
    try:
        if version < MIN_PRODUCE_VERSION:
            raise _Refused(ErrorCode.UNSUPPORTED_VERSION, f"Produce v{version} (message format v0/v1) is not "
                                                          f"supported; use v{MIN_PRODUCE_VERSION} or later")
        if part is None:
            raise _Refused(error)
        if internal_topic_error(topic):
            raise _Refused(ErrorCode.INVALID_TOPIC_EXCEPTION, internal_topic_error(topic))
        if records is None or len(records) == 0:
            raise _Refused(ErrorCode.CORRUPT_MESSAGE, "no records")
        if broker.storage_refusal:   # free space below storage_min_free_bytes (broker/storage_health.py)
            raise _Refused(ErrorCode.KAFKA_STORAGE_ERROR, broker.storage_refusal)
        if acks == -1 and (min_isr := broker.log.get_topic(topic).config.min_insync_replicas) > 1:
            # One node: the ISR is this broker alone (Kafka's message, Partition.appendRecordsToLeader).
            isr = broker.cluster.replicas.isr(topic, index) if broker.cluster is not None else [broker.node_id]
            if len(isr) < min_isr:
                raise _Refused(ErrorCode.NOT_ENOUGH_REPLICAS, f"The size of the current ISR "
                                                             f"Set({', '.join(map(str, isr))}) is insufficient to "
                                                             f"satisfy the min.isr requirement of {min_isr} for "
                                                             f"partition {topic}-{index}")
        waits, count = _submit(broker, part, split_batches(records, version), version, leader_only=acks != -1,
                               txn=txn)
        return _PartitionJob(part, response, waits, len(records), count)
    except Exception as exc:
        return _refuse(response, exc)


class _ProduceAnswer:
    """A request whose batches all complete by callback (no coroutine, no task: the common
    case): its future resolves to the response once the last batch is stored."""

    __slots__ = ("acks", "broker", "ctx", "future", "jobs", "remaining")

    def __init__(self, ctx, acks: int, jobs: list):
        self.ctx, self.broker, self.acks, self.jobs = ctx, ctx.broker, acks, jobs
        self.future = asyncio.get_running_loop().create_future()
        self.remaining = sum(len(job.waits) for _, job in jobs if isinstance(job, _PartitionJob))
        if not self.remaining:
            self._respond()
            return
        for _, job in jobs:
            if isinstance(job, _PartitionJob):
                for i, w in enumerate(job.waits):
                    job.part.when_appended(w.pending, lambda pending, error, j=job, n=i, f=w.finish:
                                           self._stored(j, n, f, pending, error))

    def _stored(self, job: _PartitionJob, index: int, finish, pending, error) -> None:
        try:
            job.results[index] = finish(pending, error)
        except Exception as exc:
            job.results[index] = exc
        self.remaining -= 1
        if not self.remaining:
            self._respond()

    def _respond(self) -> None:
        if self.future.done():   # settled once only
            return
        try:
            self.future.set_result(_response(self.ctx, self.acks, [(name, job.answer(self.broker)
                                                                     if isinstance(job, _PartitionJob) else job)
                                                                    for name, job in self.jobs]))
        except Exception as exc:
            self.future.set_exception(exc)


async def _answer_awaiting(ctx, acks: int, jobs: list):
    """A request with a batch that waits for more than its append (a duplicate's original, the
    producer state's replay): each partition awaited in turn."""
    answers = [(name, await job.wait(ctx.broker) if isinstance(job, _PartitionJob) else job) for name, job in jobs]
    return _response(ctx, acks, answers)


def _response(ctx, acks: int, answers: list):
    by_topic: dict[str, list] = {}
    for name, answer in answers:
        if answer.error_code:
            ctx.failed = True   # counted in pstream_request_errors_total
        by_topic.setdefault(name, []).append(answer)
    if acks == 0:
        return None
    return ProduceResponse(responses=[TopicResponse(name=name, partition_responses=parts)
                                      for name, parts in by_topic.items()], throttle_time_ms=0)


@api("Produce", 0, 11)   # v0-2 are advertised, as Kafka does, and refused per partition
def handle_produce(ctx, request):
    broker = ctx.broker
    if request.acks not in (0, 1, -1):
        responses = [TopicResponse(name=t.name, partition_responses=[
            PartitionResponse(index=p.index, error_code=ErrorCode.INVALID_REQUIRED_ACKS, base_offset=-1)
            for p in t.partition_data]) for t in request.topic_data]
        return ProduceResponse(responses=responses)
    txn = request.transactional_id if ctx.version >= 3 else None
    if txn is not None and not ctx.allowed(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, txn):
        refused = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        denied = {t.name for t in request.topic_data}
    else:
        refused = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        denied = {t.name for t in request.topic_data if not ctx.allowed(Operation.WRITE, ResourceType.TOPIC, t.name)}
    jobs = [(topic.name, PartitionResponse(index=pd.index, error_code=refused, base_offset=-1, log_append_time_ms=-1,
                                           log_start_offset=-1) if topic.name in denied else
             _produce_partition(broker, topic.name, pd.index, pd.records, ctx.version, request.acks, txn))
            for topic in request.topic_data for pd in topic.partition_data]
    if all(isinstance(w, _Append) for _, job in jobs if isinstance(job, _PartitionJob) for w in job.waits):
        answer = _ProduceAnswer(ctx, request.acks, jobs).future
    else:
        answer = _answer_awaiting(ctx, request.acks, jobs)
    if broker.cluster is not None:
        return _replicated(broker.cluster.replicas, answer, request, jobs)
    return answer


async def _replicated(replicas, answer, request, jobs):
    """Cluster mode: acks=all is answered once the in-sync replicas hold every batch (the high
    watermark passed it); with acks 0 and 1 the high watermark moves on at once where this
    broker is the only in-sync replica."""
    response = await answer
    appended = [(name, job) for name, job in jobs if isinstance(job, _PartitionJob)
                and not job.response.error_code and job.response.base_offset >= 0]
    if request.acks != -1:
        for name, job in appended:
            replicas.advance(name, job.response.index)
        return response

    async def one(name, job):
        try:
            await replicas.wait_replicated(name, job.response.index, job.response.base_offset + job.records - 1,
                                           request.timeout_ms / 1000)
        except Exception as exc:
            _refuse(job.response, exc)
    await asyncio.gather(*(one(name, job) for name, job in appended))
    return response
