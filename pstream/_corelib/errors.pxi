# The one place that turns a C status code into a pstream.errors exception.

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
}


cdef object status_error(int status, object position=None, str detail=None, str topic=None, object partition=None):
    """Builds (does not raise) the exception for a status code."""
    cls, message = _STATUS_CLASSES.get(status, (_errors.PStreamError, f"internal error status {status}"))
    if detail:
        message = f"{message}: {detail}"
    return cls(message, position=position, topic=topic, partition=partition)


cdef int raise_status(int status, object position=None, str detail=None) except -1:
    raise status_error(status, position, detail)


cdef int raise_os_error(int err, str what, str path=None) except -1:
    import os
    raise _errors.StorageIOError(f"{what}: {os.strerror(err)} (errno {err})", file=path)
