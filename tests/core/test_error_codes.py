"""Each pstream exception class carries the Kafka error code a broker answers it with, the core
raises statuses through one mapper, and a refused batch names its exception class."""

from __future__ import annotations

import inspect

import pytest

import pstream
from pstream import _core, errors
from pstream.protocol.error_codes import ErrorCode, error_for
from pstream.record import reference

# Kafka's answer for each class (Errors.java), written out so a changed code is caught here.
EXPECTED = {
    errors.PStreamError: ErrorCode.UNKNOWN_SERVER_ERROR,
    errors.CorruptBatchError: ErrorCode.CORRUPT_MESSAGE,
    errors.ShortBufferError: ErrorCode.CORRUPT_MESSAGE,
    errors.BadMagicError: ErrorCode.CORRUPT_MESSAGE,
    errors.LengthMismatchError: ErrorCode.CORRUPT_MESSAGE,
    errors.CrcMismatchError: ErrorCode.CORRUPT_MESSAGE,
    errors.BadVarintError: ErrorCode.CORRUPT_MESSAGE,
    errors.RecordCountMismatchError: ErrorCode.CORRUPT_MESSAGE,
    errors.CompressionError: ErrorCode.CORRUPT_MESSAGE,
    errors.BadRecordError: ErrorCode.CORRUPT_MESSAGE,
    errors.BatchTooLargeError: ErrorCode.MESSAGE_TOO_LARGE,
    errors.InvalidRecordError: ErrorCode.INVALID_RECORD,
    errors.InvalidTimestampError: ErrorCode.INVALID_TIMESTAMP,
    errors.CorruptSegmentError: ErrorCode.KAFKA_STORAGE_ERROR,
    errors.OffsetOutOfRangeError: ErrorCode.OFFSET_OUT_OF_RANGE,
    errors.UnknownTopicError: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    errors.UnknownPartitionError: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    errors.NotLocalPartitionError: ErrorCode.NOT_LEADER_OR_FOLLOWER,
    errors.ReplicaOffsetError: ErrorCode.OFFSET_OUT_OF_RANGE,
    errors.InvalidTopicError: ErrorCode.INVALID_TOPIC_EXCEPTION,
    errors.ConfigError: ErrorCode.INVALID_CONFIG,
    errors.LogClosedError: ErrorCode.NOT_LEADER_OR_FOLLOWER,
    errors.DirectoryInUseError: ErrorCode.KAFKA_STORAGE_ERROR,
    errors.ClusterUnavailableError: ErrorCode.REQUEST_TIMED_OUT,   # etcd down: as a request waiting for a controller
    errors.TransactionError: ErrorCode.INVALID_TXN_STATE,
    errors.CoordinatorFencedError: ErrorCode.TRANSACTION_COORDINATOR_FENCED,
    errors.CommitFailedError: ErrorCode.UNKNOWN_MEMBER_ID,
    errors.StorageIOError: ErrorCode.KAFKA_STORAGE_ERROR,
}


def test_every_pstream_exception_class_is_listed_with_its_code() -> None:
    classes = {obj for _, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, errors.PStreamError)}
    assert classes == set(EXPECTED)


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_each_class_carries_its_kafka_error_code(cls) -> None:
    assert cls.kafka_error is EXPECTED[cls]
    assert error_for(cls("boom")) is EXPECTED[cls]


def test_anything_else_is_an_unknown_server_error() -> None:
    assert error_for(ValueError("a bug")) is ErrorCode.UNKNOWN_SERVER_ERROR
    assert error_for(MemoryError()) is ErrorCode.UNKNOWN_SERVER_ERROR


@pytest.mark.parametrize("damage, cls, position", [
    (lambda b: b[:40], errors.ShortBufferError, 40),
    (lambda b: b[:8] + (1).to_bytes(4, "big") + b[12:], errors.LengthMismatchError, 8),
    (lambda b: b[:16] + b"\x01" + b[17:], errors.BadMagicError, 16),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), errors.CrcMismatchError, 17),
])
def test_the_core_raises_a_status_as_its_class(damage, cls, position) -> None:
    batch = reference.encode_batch([(b"k", b"v", [], 1)])
    with pytest.raises(cls) as caught:
        _core.validate_batch(damage(batch))
    assert type(caught.value) is cls and caught.value.position == position
    assert error_for(caught.value) is cls.kafka_error


def test_an_append_to_a_closed_log_is_not_leader_or_follower(tmp_path) -> None:
    log = pstream.Log(tmp_path, shards=1)
    part = log.topic("t").partition(0)
    log.close()
    with pytest.raises(errors.LogClosedError) as caught:
        part.append(b"v")
    assert error_for(caught.value) is ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_a_batch_over_max_message_bytes_is_message_too_large(tmp_path) -> None:
    with pstream.Log(tmp_path, shards=1) as log:
        part = log.topic("t", max_message_bytes=1000).partition(0)
        with pytest.raises(errors.BatchTooLargeError, match="exceeds max_message_bytes 1000") as caught:
            part.append_batch(_core.encode_batch([(None, b"x" * 2000, [], 1)]))
        assert (caught.value.topic, caught.value.partition) == ("t", 0)
        assert error_for(caught.value) is ErrorCode.MESSAGE_TOO_LARGE


def test_a_failed_fdatasync_is_a_storage_error_naming_errno_and_file(tmp_path) -> None:
    with pstream.Log(tmp_path, shards=1, flush="always") as log:
        part = log.topic("t").partition(0)
        _core.arm_fault("fdatasync", "EIO", topic="t", count=None)
        try:
            with pytest.raises(errors.StorageIOError) as caught:
                part.append(b"v")
        finally:
            _core.disarm_faults()
        assert "errno 5" in str(caught.value) and caught.value.topic == "t"
        assert error_for(caught.value) is ErrorCode.KAFKA_STORAGE_ERROR


@pytest.mark.parametrize("records, options, kind, cls", [
    ([(b"k", b"v", [], 1)], {"producer_id": 7, "base_sequence": -1}, _core.FAULT_INVALID_RECORD,
     errors.InvalidRecordError),
    ([(b"k", b"v", [], 10**13)], {}, _core.FAULT_INVALID_TIMESTAMP, errors.InvalidTimestampError),
])
def test_a_refused_batch_names_its_exception_class(records, options, kind, cls) -> None:
    batch = reference.encode_batch(records, **options)
    fault = _core.check_batch(batch, check_timestamps=True, min_timestamp=0, max_timestamp=10**12)
    assert fault.kind == kind and fault.error is cls and fault.kafka_error is cls.kafka_error
    exc = fault.exception()
    assert type(exc) is cls and exc.position == fault.position


def test_a_corrupt_batch_fault_is_corrupt_message() -> None:
    batch = bytearray(reference.encode_batch([(b"k", b"v", [], 1)]))
    batch[-1] ^= 1
    fault = _core.check_batch(bytes(batch))
    assert fault.error is errors.CorruptBatchError and fault.kafka_error is ErrorCode.CORRUPT_MESSAGE
