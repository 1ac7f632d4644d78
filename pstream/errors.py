"""Exceptions raised by pstream.

Every error that pstream raises is a `PStreamError`. Each carries the numbers a
person needs to find the problem: `topic`, `partition`, `offset`, `file` and
`position` (a byte position in a buffer or file), set where they apply and None
elsewhere.

Batch validation errors all derive from `CorruptBatchError`, one class per
thing that can be wrong, so callers can tell a short buffer from a bad CRC.
The compiled core maps its status codes to these classes in one place
(`pstream/_corelib/errors.pxi`).
"""

from __future__ import annotations


class PStreamError(Exception):
    """Base class of every pstream error."""

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


# --- storage -----------------------------------------------------------------


class CorruptSegmentError(CorruptBatchError):
    """Data read back from a segment file failed its CRC or length check.

    Raised instead of returning corrupt records; `file` and `position` say where.
    """


class OffsetOutOfRangeError(PStreamError):
    """The requested offset is below the log start offset or past the end."""


class UnknownTopicError(PStreamError):
    """The topic does not exist."""


class UnknownPartitionError(PStreamError):
    """The partition number is outside the topic's partitions."""


class InvalidTopicError(PStreamError):
    """The topic name is not a legal Kafka topic name."""


class ConfigError(PStreamError, ValueError):
    """A setting is unknown or has an invalid value; the message names it."""


class LogClosedError(PStreamError):
    """The log was closed."""


class DirectoryInUseError(PStreamError):
    """Another open Log (in this or another process) holds the data directory's lock."""


class StorageIOError(PStreamError, OSError):
    """A system call on a segment or index file failed."""


__all__ = [name for name, obj in globals().items() if isinstance(obj, type) and issubclass(obj, Exception)]
