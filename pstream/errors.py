"""Exceptions raised by pstream.

Every error that pstream raises is a `PStreamError`. Each carries the numbers a
person needs to find the problem: `topic`, `partition`, `offset`, `file` and
`position` (a byte position in a buffer or file), set where they apply and None
elsewhere.

Batch validation errors all derive from `CorruptBatchError`, one class per
thing that can be wrong, so callers can tell a short buffer from a bad CRC.
The compiled core maps its status codes to these classes in one place
(`pstream/_corelib/errors.pxi`).

Each class carries the Kafka error code a broker answers it with (`kafka_error`, as
asyncpg's exception classes carry their SQLSTATE): the broker maps an exception to
its error code through it (`pstream.protocol.error_codes.error_for`) and keeps no
table of its own. A subclass inherits its parent's code unless it names another.
"""

from __future__ import annotations

from typing import ClassVar

from pstream.protocol.error_codes import ErrorCode


class PStreamError(Exception):
    """Base class of every pstream error."""

    kafka_error: ClassVar[ErrorCode] = ErrorCode.UNKNOWN_SERVER_ERROR

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        file: str | None = None,
        position: int | None = None,
    ) -> None:
        self.message = message
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.file = file
        self.position = position
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = []
        if self.topic is not None:
            where.append(f"topic={self.topic}")
        if self.partition is not None:
            where.append(f"partition={self.partition}")
        if self.offset is not None:
            where.append(f"offset={self.offset}")
        if self.file is not None:
            where.append(f"file={self.file}")
        if self.position is not None:
            where.append(f"position={self.position}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


# --- record batch validation -------------------------------------------------


class CorruptBatchError(PStreamError):
    """A record batch failed validation; `position` is where the fault was found."""

    kafka_error = ErrorCode.CORRUPT_MESSAGE


class ShortBufferError(CorruptBatchError):
    """Fewer bytes than the batch header or its declared length needs."""


class BadMagicError(CorruptBatchError):
    """The magic byte is not 2 (only record batch v2 is supported)."""


class LengthMismatchError(CorruptBatchError):
    """batch_length disagrees with the bytes the batch actually holds."""


class CrcMismatchError(CorruptBatchError):
    """The stored CRC-32C does not match the bytes it covers."""


class BadVarintError(CorruptBatchError):
    """A varint is truncated or longer than its type allows."""


class RecordCountMismatchError(CorruptBatchError):
    """The header's record count disagrees with the records present."""


class CompressionError(CorruptBatchError):
    """The compressed records payload cannot be decoded (or the codec is unknown)."""


class BadRecordError(CorruptBatchError):
    """A record's own lengths or fields are inconsistent."""


class BatchTooLargeError(PStreamError):
    """A batch is larger than the configured maximum (`max_message_bytes`)."""

    kafka_error = ErrorCode.MESSAGE_TOO_LARGE


class InvalidRecordError(PStreamError):
    """An intact batch (its CRC matches) that breaks a rule Kafka's LogValidator enforces:
    record count, offset deltas, a header key that is not UTF-8, an unknown codec."""

    kafka_error = ErrorCode.INVALID_RECORD


class InvalidTimestampError(InvalidRecordError):
    """A record's timestamp is outside the topic's allowed range, or a producer set
    LogAppendTime on its own batch."""

    kafka_error = ErrorCode.INVALID_TIMESTAMP


# --- storage -----------------------------------------------------------------


class CorruptSegmentError(CorruptBatchError):
    """Data read back from a segment file failed its CRC or length check.

    Raised instead of returning corrupt records; `file` and `position` say where. To a
    client it is the broker's storage failing, not its request.
    """

    kafka_error = ErrorCode.KAFKA_STORAGE_ERROR


class OffsetOutOfRangeError(PStreamError):
    """The requested offset is below the log start offset or past the end."""

    kafka_error = ErrorCode.OFFSET_OUT_OF_RANGE


class ReplicaOffsetError(PStreamError):
    """A follower's copy of a leader's batch does not start at the follower's log end offset:
    the replica must truncate or fetch from its own end (cluster mode)."""

    kafka_error = ErrorCode.OFFSET_OUT_OF_RANGE


class UnknownTopicError(PStreamError):
    """The topic does not exist."""

    kafka_error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


class UnknownPartitionError(PStreamError):
    """The partition number is outside the topic's partitions."""

    kafka_error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


class NotLocalPartitionError(PStreamError):
    """The partition is another core's (`pstream serve --cores N`): its leader is that core's broker."""

    kafka_error = ErrorCode.NOT_LEADER_OR_FOLLOWER


class InvalidTopicError(PStreamError):
    """The topic name is not a legal Kafka topic name."""

    kafka_error = ErrorCode.INVALID_TOPIC_EXCEPTION


class ConfigError(PStreamError, ValueError):
    """A setting is unknown or has an invalid value; the message names it."""

    kafka_error = ErrorCode.INVALID_CONFIG


class LogClosedError(PStreamError):
    """The log was closed (to a client: this broker no longer serves the partition)."""

    kafka_error = ErrorCode.NOT_LEADER_OR_FOLLOWER


class TransactionError(PStreamError):
    """An embedded transaction cannot go on: it was committed or aborted already (an append
    that failed aborts it)."""

    kafka_error = ErrorCode.INVALID_TXN_STATE


class CoordinatorFencedError(TransactionError):
    """A transaction marker from a coordinator older than the one that last wrote this
    producer's marker here (Kafka's TransactionCoordinatorFencedException): a zombie's."""

    kafka_error = ErrorCode.TRANSACTION_COORDINATOR_FENCED


class CommitFailedError(PStreamError):
    """The group coordinator refused an embedded consumer's offset commit (the group has Kafka
    members, say); the message names each partition's error."""

    kafka_error = ErrorCode.UNKNOWN_MEMBER_ID


class ClusterUnavailableError(PStreamError):
    """Cluster mode: the cluster's metadata store (etcd) cannot be reached, or refused a change;
    a request that needed it times out, as one waiting for Kafka's controller does."""

    kafka_error = ErrorCode.REQUEST_TIMED_OUT


class DirectoryInUseError(PStreamError):
    """Another open Log (in this or another process) holds the data directory's lock."""

    kafka_error = ErrorCode.KAFKA_STORAGE_ERROR


class StorageIOError(PStreamError, OSError):
    """A system call on a segment or index file failed."""

    kafka_error = ErrorCode.KAFKA_STORAGE_ERROR


__all__ = [name for name, obj in globals().items() if isinstance(obj, type) and issubclass(obj, Exception)]


def kafka_error_of(exc: BaseException) -> ErrorCode:
    """The Kafka error code a broker answers `exc` with: its class's `kafka_error` for a
    pstream error, UNKNOWN_SERVER_ERROR (a bug, not a refusal) for anything else."""
    return exc.kafka_error if isinstance(exc, PStreamError) else ErrorCode.UNKNOWN_SERVER_ERROR
