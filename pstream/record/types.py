"""Pure-Python `Record` and `BatchHeader`: what a decoded record batch looks like.

The compiled core (`pstream._core`) defines classes with the same attributes for the
fast codec; these are the ones the pure-Python reference codec
(`pstream.record.reference`) returns. Code and tests compare them attribute by
attribute, never by type. This module holds no codec logic.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BatchHeader", "Record", "wrap_int64"]

_COMPRESSION_MASK = 0x07
_TIMESTAMP_TYPE_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20


def wrap_int64(value: int) -> int:
    """`value` reduced to a signed 64-bit integer, as C's and Java's int64 sums wrap."""
    return ((value + (1 << 63)) & 0xFFFF_FFFF_FFFF_FFFF) - (1 << 63)


class Record:
    """One decoded record: absolute offset and timestamp, key, value and headers.

    `key` and `value` are bytes or None; `headers` is a list of (str, bytes or None).
    """

    __slots__ = ("offset", "timestamp_ms", "key", "value", "headers")

    def __init__(
        self,
        offset: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
    ) -> None:
        self.offset = offset
        self.timestamp_ms = timestamp_ms
        self.key = key
        self.value = value
        self.headers = headers

    def _fields(self) -> tuple:
        return (self.offset, self.timestamp_ms, self.key, self.value, self.headers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return (
            f"Record(offset={self.offset!r}, timestamp_ms={self.timestamp_ms!r}, "
            f"key={self.key!r}, value={self.value!r}, headers={self.headers!r})"
        )


class BatchHeader(NamedTuple):
    """The 61-byte header of a record batch v2, field by field, in wire order."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def compression(self) -> int:
        """Codec id of the records section (attributes bits 0-2)."""
        return self.attributes & _COMPRESSION_MASK

    @property
    def timestamp_type(self) -> int:
        """0 = CreateTime, 1 = LogAppendTime (attributes bit 3)."""
        return 1 if self.attributes & _TIMESTAMP_TYPE_BIT else 0

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def last_offset(self) -> int:
        """Offset of the batch's last record: base_offset + last_offset_delta.

        The sum wraps to int64, as Java's long arithmetic does.
        """
        return wrap_int64(self.base_offset + self.last_offset_delta)

    @property
    def size(self) -> int:
        """Bytes the whole batch takes: 12 + batch_length."""
        return 12 + self.batch_length
