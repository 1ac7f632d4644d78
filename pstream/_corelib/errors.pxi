# The one place that turns a C status code into a pstream.errors exception: every raise of
# a status, in the core and in the storage engine, goes through status_error. (Which Kafka
# error code a client gets is the exception class's `kafka_error`: pstream/errors.py.)

from pstream import errors as _errors

_STATUS_CLASSES = {
    PS_ERR_SHORT_BUFFER: (_errors.ShortBufferError, "batch is shorter than its header or declared length"),
    PS_ERR_BAD_MAGIC: (_errors.BadMagicError, "unsupported magic byte (only record batch v2 is supported)"),
    PS_ERR_LENGTH_MISMATCH: (_errors.LengthMismatchError, "batch length is smaller than a v2 batch header"),
    PS_ERR_CRC_MISMATCH: (_errors.CrcMismatchError, "CRC-32C mismatch"),
    PS_ERR_BAD_VARINT: (_errors.BadVarintError, "truncated or overlong varint"),
    PS_ERR_RECORD_COUNT: (_errors.RecordCountMismatchError, "record count does not match the records present"),
    PS_ERR_COMPRESSION: (_errors.CompressionError, "compressed records cannot be decoded"),
    PS_ERR_BAD_RECORD: (_errors.BadRecordError, "record fields are inconsistent with its length"),
    PS_ERR_TOO_LARGE: (_errors.BatchTooLargeError, "batch is larger than the maximum"),
    PS_ERR_CLOSED: (_errors.LogClosedError, "the log is closed"),
    PS_ERR_OFFSET_GAP: (_errors.ReplicaOffsetError, "a replica's batch must start at the log end offset"),
}


cdef object status_error(int status, object position=None, str detail=None, str topic=None, object partition=None,
                         int err=0, str file=None):
    """Builds (does not raise) the exception for a status code: the class from the table above,
    the message with `detail` after it; PS_ERR_IO names the errno and the file, PS_ERR_NO_MEMORY
    is Python's MemoryError."""
    if status == PS_ERR_NO_MEMORY:
        return MemoryError(detail or "out of memory")
    if status == PS_ERR_IO:
        import os
        message = detail or "a system call failed"
        if err:
            message = f"{message}: {os.strerror(err)} (errno {err})"
        return _errors.StorageIOError(message, topic=topic, partition=partition, file=file, position=position)
    cls, message = _STATUS_CLASSES.get(status, (_errors.PStreamError, f"internal error status {status}"))
    if detail:
        message = f"{message}: {detail}"
    return cls(message, position=position, topic=topic, partition=partition, file=file)


cdef int raise_status(int status, object position=None, str detail=None) except -1:
    raise status_error(status, position, detail)


cdef int raise_os_error(int err, str what, str path=None) except -1:
    raise status_error(PS_ERR_IO, None, what, None, None, err, path)
