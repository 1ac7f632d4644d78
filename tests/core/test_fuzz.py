"""Fuzzing the batch decoder and validator: random and mutated bytes always end in a
pstream.errors exception or a correct decode, never a crash, a hang or another error."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pstream import _core, errors
from pstream.record import reference

VALID = [
    _core.encode_batch([(b"key", b"value" * 20, [("h", b"v"), ("n", None)], 1000), (None, None, [], 1001)]),
    _core.encode_batch([(b"k", b"v" * 300, [], 5)] * 3, compression="lz4"),
    _core.encode_batch([(b"k", b"v" * 300, [], 5)] * 3, compression="zstd"),
    _core.encode_batch([(b"k", b"v" * 300, [], 5)] * 3, compression="snappy"),
    _core.encode_batch([(b"k", b"v" * 300, [], 5)] * 3, compression="gzip"),
]


def _outcome(fn, data):
    try:
        header, records = fn(data)
        return ("ok", header.base_offset, header.record_count, [(r.offset, r.key, r.value, r.headers) for r in records])
    except errors.CorruptBatchError as exc:
        return ("error", type(exc).__name__)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data):
    for fn in (_core.decode_batch, _core.validate_batch):
        try:
            fn(data)
        except errors.CorruptBatchError:
            pass


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       st.booleans(), st.integers(0, 2000))
def test_mutated_batches_agree_with_the_reference(batch, flips, fix_crc, cut):
    data = bytearray(batch)
    for position, value in flips:
        data[position % len(data)] = value
    if fix_crc and len(data) > 61:
        # Re-seal the CRC so the mutation reaches the record parser instead of stopping at the checksum.
        data = bytearray(reference.reseal(data, fix_length=False))
    if cut % 7 == 0:
        data = data[: cut % (len(data) + 1)]
    data = bytes(data)
    fast = _outcome(_core.decode_batch, data)
    slow = _outcome(reference.decode_batch, data)
    assert fast[0] == slow[0] and fast[1] == slow[1], (fast, slow)
    if fast[0] == "ok":
        assert fast == slow
