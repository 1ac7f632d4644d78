"""Log compaction, pass by pass: what Partition.clean keeps and drops (Kafka's Cleaner rules),
that offsets never change, tombstones and their delete horizon (KIP-534), compressed and
producer batches, the lag rules, the bounded key map, the scheduler and the embedded API."""

from __future__ import annotations

import threading
import time

import pytest

import pstream
from pstream import _core, errors

from segment_files import flip_byte, log_files

DAY_MS = 24 * 3600 * 1000
SMALL = dict(segment_bytes=2048, retention_ms=None, cleaner=False, retention_check_ms=None)


def records(part, offset=0):
    return [(r.offset, r.key, r.value) for r in part.read(offset)]


def batches(part, offset=0):
    out = []
    while offset < part.high_watermark:
        data = part.read_batches(offset)
        if not data:
            break
        for header, recs in _core.iter_batches(data):
            out.append((header, recs))
            offset = header.last_offset + 1
    return out


def fill(part, n_keys, rounds, *, tombstone_every=0, start=0):
    """Appends `rounds` values for each of n_keys keys; returns (model, offsets of each key's latest)."""
    model, latest = {}, {}
    seq = start
    for _ in range(rounds):
        for k in range(n_keys):
            key = b"key-%d" % k
            value = None if tombstone_every and seq % tombstone_every == 0 else b"value-%d" % seq
            latest[key] = part.append(value, key=key)
            model[key] = value
            seq += 1
    return model, latest


def sealed(part):
    """Rolls and syncs, so everything appended so far is in closed, durable segments."""
    part.roll()
    part.flush()


def test_clean_keeps_each_keys_latest_record_at_its_own_offset(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    model, latest = fill(part, 20, 10)
    sealed(part)
    end = part.high_watermark
    result = part.clean()
    assert result["segments_cleaned"] > 1 and result["records_removed"] == 180
    got = records(part)
    assert [(o, k) for o, k, _ in got] == sorted((o, k) for k, o in latest.items())
    assert {k: v for _, k, v in got} == model
    assert part.high_watermark == end and part.log_start_offset == 0
    assert result["end_offset"] == end and part.cleaner_state()["first_dirty_offset"] == end


def test_every_offset_reads_the_next_surviving_record(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    fill(part, 5, 20)
    sealed(part)
    part.clean()
    survivors = [o for o, _, _ in records(part)]
    for offset in range(part.high_watermark):
        first = next(o for o in survivors if o >= offset)
        assert records(part, offset)[0][0] == first


def test_the_active_segment_is_never_cleaned(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    fill(part, 3, 30)
    sealed(part)
    active_base = part.segments()[-1][0]
    for i in range(5):
        part.append(b"same-%d" % i, key=b"active")
    part.clean()
    assert [v for o, k, v in records(part) if k == b"active"] == [b"same-%d" % i for i in range(5)]
    assert part.segments()[-1][0] == active_base


def test_keyless_records_are_dropped_as_kafka_does(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    part.append(b"no key")
    part.append(b"kept", key=b"k")
    part.append_many([(None, b"no key either"), (b"k2", b"kept too")])
    sealed(part)
    part.clean()
    assert [(k, v) for _, k, v in records(part)] == [(b"k", b"kept"), (b"k2", b"kept too")]


def test_null_value_is_written_as_a_kafka_null(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    part.append(None, key=b"gone")
    part.append_many([(b"gone2", None)])
    (_, [rec]), (_, [rec2]) = batches(part)
    assert rec.value is None and rec2.value is None
    raw = part.read_batches(0)
    # record: length, attributes, ts delta, offset delta, key len 4 (varint 8) + key, value len -1 (varint 1)
    assert raw[61 + 4:61 + 4 + 1 + 4 + 1] == b"\x08gone\x01"


def test_tombstones_stay_until_delete_retention_then_go(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    fill(part, 4, 3)
    stone = part.append(None, key=b"key-1", timestamp_ms=1_000)
    sealed(part)
    now = 10**12
    first = part.clean(now_ms=now, delete_retention_ms=DAY_MS)
    assert (stone, b"key-1", None) in records(part)
    assert first["tombstones_removed"] == 0
    assert part.cleaner_state()["next_tombstone_expiry_ms"] == now + DAY_MS
    # the horizon moved the base timestamp, not the record's own timestamp
    [rec] = [r for r in part.read(stone) if r.offset == stone]
    assert rec.timestamp_ms == 1_000
    [header] = [h for h, recs in batches(part) if any(r.offset == stone for r in recs)]
    assert header.attributes & 0x40 and header.base_timestamp == now + DAY_MS
    # a pass before the horizon keeps it; one after removes it
    part.clean(now_ms=now + DAY_MS - 1, delete_retention_ms=DAY_MS)
    assert (stone, b"key-1", None) in records(part)
    part.append(b"x", key=b"other")
    sealed(part)
    part.clean(now_ms=now + DAY_MS, delete_retention_ms=DAY_MS)
    assert all(k != b"key-1" for _, k, _ in records(part))


def test_a_tombstone_already_superseded_goes_on_the_first_pass(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    part.append(b"a", key=b"k")
    part.append(None, key=b"k")
    part.append(b"b", key=b"k")
    sealed(part)
    part.clean()
    assert [(k, v) for _, k, v in records(part)] == [(b"k", b"b")]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_are_recompressed_with_their_codec(open_log, codec):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    model = {}
    for r in range(6):
        batch = [(b"k%d" % k, b"v%d-%d" % (r, k)) for k in range(r % 3, 8, 2)]
        part.append_many(batch, compression=codec)
        model.update(batch)
    untouched = part.append_many([(b"solo-%d" % i, b"x") for i in range(3)], compression=codec)
    sealed(part)
    part.clean()
    assert {k: v for _, k, v in records(part)} == {**model, **{b"solo-%d" % i: b"x" for i in range(3)}}
    for header, recs in batches(part):
        assert header.compression == pstream.record.compression.codec_id(codec)
        assert header.last_offset_delta >= len(recs) - 1
    assert [h.base_offset for h, _ in batches(part)][-1] == untouched


def test_batches_keep_base_offset_and_last_offset_delta(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    base = part.append_many([(b"a", b"1"), (b"b", b"1"), (b"c", b"1")])
    part.append(b"2", key=b"a")
    part.append(b"2", key=b"c")
    sealed(part)
    part.clean()
    header, recs = batches(part)[0]
    assert (header.base_offset, header.last_offset_delta, header.record_count) == (base, 2, 1)
    assert [(r.offset, r.key) for r in recs] == [(base + 1, b"b")]


def test_an_idempotent_producers_last_batch_stays_as_an_empty_batch(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    older = part.append_batch(_core.encode_batch([(b"k", b"p1", None, None)], producer_id=7, producer_epoch=0,
                                                 base_sequence=0))
    last = part.append_batch(_core.encode_batch([(b"k", b"p2", None, None), (b"j", b"p2", None, None)],
                                                producer_id=7, producer_epoch=0, base_sequence=1))
    part.append_many([(b"k", b"new"), (b"j", b"new")])
    sealed(part)
    result = part.clean()
    assert result["empty_batches_kept"] == 1
    kept = [(h, recs) for h, recs in batches(part) if h.producer_id == 7]
    assert [(h.base_offset, h.last_offset_delta, h.record_count, h.base_sequence) for h, _ in kept] == \
        [(last, 1, 0, 1)]
    assert all(h.base_offset != older for h, _ in batches(part))
    assert {k: v for _, k, v in records(part)} == {b"k": b"new", b"j": b"new"}


def test_control_batches_are_kept(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    part.append(b"1", key=b"k")
    commit = (b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00", None, None)   # a COMMIT marker
    marker = part.append_batch(_core.encode_batch([commit], producer_id=3, producer_epoch=0, base_sequence=0,
                                                  is_transactional=True, is_control=True))
    part.append(b"2", key=b"k")
    sealed(part)
    part.clean()
    assert [h.base_offset for h, _ in batches(part) if h.is_control] == [marker]


def test_min_compaction_lag_leaves_recent_segments_dirty(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    now = 10**12
    for i in range(40):
        part.append(b"old-%d" % i, key=b"k%d" % (i % 4), timestamp_ms=now - 10 * DAY_MS)
    sealed(part)
    boundary = part.high_watermark
    for i in range(40):
        part.append(b"new-%d" % i, key=b"k%d" % (i % 4), timestamp_ms=now)
    sealed(part)
    result = part.clean(min_compaction_lag_ms=DAY_MS, now_ms=now)
    assert result["end_offset"] == boundary
    assert sum(1 for o, _, _ in records(part) if o >= boundary) == 40     # the recent ones all stay
    assert sum(1 for o, _, _ in records(part) if o < boundary) == 4


def test_a_small_key_map_cleans_in_several_passes_and_gets_there(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    model, _ = fill(part, 300, 3)
    sealed(part)
    ends = []
    while part.cleaner_state()["dirty_bytes"] and len(ends) < 100:
        ends.append(part.clean(dedupe_buffer_bytes=1024)["end_offset"])
    assert len(ends) > 2 and ends == sorted(ends)
    assert {k: v for _, k, v in records(part)} == model
    assert len(records(part)) == 300


def test_a_key_map_too_small_for_one_batch_is_a_config_error(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    part.append_many([(b"k%d" % i, b"v") for i in range(200)])
    sealed(part)
    with pytest.raises(errors.ConfigError, match="dedupe_buffer_bytes"):
        part.clean(dedupe_buffer_bytes=1024)
    assert len(records(part)) == 200


def test_small_cleaned_segments_are_grouped_into_one(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    model, _ = fill(part, 3, 60)
    sealed(part)
    before = len(part.segments())
    part.clean()
    part.append(b"more", key=b"key-0")
    sealed(part)
    part.clean()
    model[b"key-0"] = b"more"
    assert len(part.segments()) < before / 2
    assert {k: v for _, k, v in records(part)} == model


def test_cleaned_log_reopens_with_the_same_records_and_checkpoint(open_log, data_dir):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    model, _ = fill(part, 10, 10, tombstone_every=7)
    sealed(part)
    part.clean()
    before = records(part)
    state = part.cleaner_state()
    log.close()
    log = open_log(**SMALL)
    part = log.topic("t").partition(0)
    assert records(part) == before
    assert part.cleaner_state()["first_dirty_offset"] == state["first_dirty_offset"]
    # a kept tombstone's horizon survives the restart, so the scheduler still comes back for it
    assert part.cleaner_state()["next_tombstone_expiry_ms"] == state["next_tombstone_expiry_ms"] > 0
    part.append(b"after", key=b"key-3")
    assert records(part)[-1][2] == b"after"


def test_a_corrupt_batch_is_never_copied_into_a_cleaned_segment(open_log):
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    fill(part, 5, 20)
    sealed(part)
    victim = log_files(part.path)[1]
    flip_byte(victim, 100)
    names = sorted(p.name for p in victim.parent.iterdir())
    with pytest.raises(errors.CorruptSegmentError) as info:
        part.clean()
    assert info.value.file == str(victim)
    assert sorted(p.name for p in victim.parent.iterdir()) == names


def test_retention_deletes_segments_only_when_the_policy_includes_delete(open_log):
    log = open_log(**SMALL)
    compact = log.topic("c", cleanup_policy="compact", retention_ms=1).partition(0)
    both = log.topic("b", cleanup_policy="compact,delete", retention_ms=1).partition(0)
    for part in (compact, both):
        for i in range(60):
            part.append(b"v%d" % i, key=b"k%d" % i, timestamp_ms=1_000)
        sealed(part)
    assert compact.apply_retention() == 0 and len(records(compact)) == 60
    assert both.apply_retention() > 0 and both.log_start_offset > 0


def test_readers_see_every_keys_latest_value_while_cleaning(open_log):
    """A small key map makes many passes, each swapping segments in while a reader reads the
    whole log over and over: every read must give every key's latest value."""
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    model, _ = fill(part, 120, 4)
    sealed(part)
    stop = threading.Event()
    reads, wrong, failures = [0], [], []

    def reader():
        while not stop.is_set():
            try:
                state = {k: v for _, k, v in records(part)}
            except Exception as exc:
                failures.append(exc)
                return
            reads[0] += 1
            if state != model:
                wrong.append(len(set(state.items()) ^ set(model.items())))

    thread = threading.Thread(target=reader)
    thread.start()
    passes = 0
    try:
        while part.cleaner_state()["dirty_bytes"] and passes < 200:
            part.clean(dedupe_buffer_bytes=1024)
            passes += 1
    finally:
        stop.set()
        thread.join()
    assert not failures and not wrong
    assert passes > 3 and reads[0] > 0
    assert len(records(part)) == 120


def test_latest_builds_the_key_value_table(open_log):
    log = open_log(**SMALL)
    topic = log.topic("t", partitions=2, cleanup_policy="compact")
    model = {}
    for i in range(300):
        key = b"k%d" % (i % 37)
        value = None if i % 11 == 0 else b"v%d" % i
        part = topic.partition(i % 37 % 2)
        if i % 5 == 0:
            part.append_many([(key, value)], compression="zstd")
        else:
            part.append(value, key=key)
        model[key] = value
    expected = {k: v for k, v in model.items() if v is not None}
    assert topic.latest() == expected
    topic.partition(0).roll()
    topic.clean()
    assert topic.latest() == expected
    part = topic.partition(1)
    tail = part.high_watermark
    part.append(b"tail", key=b"k1")
    assert part.latest(offset=tail) == {b"k1": b"tail"}


def test_clean_is_refused_for_a_topic_that_is_not_compacted(open_log):
    log = open_log(**SMALL)
    topic = log.topic("t")
    with pytest.raises(errors.ConfigError, match="compact"):
        topic.clean()


def test_the_cleaner_thread_cleans_due_partitions_and_counts(open_log):
    log = open_log(segment_bytes=2048, retention_check_ms=None, cleaner_backoff_ms=20)
    topic = log.topic("t", cleanup_policy="compact", min_cleanable_dirty_ratio=0.3)
    part = topic.partition(0)
    model, _ = fill(part, 10, 30)
    sealed(part)
    deadline = time.monotonic() + 30
    while log.cleaner_stats()["runs"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = log.cleaner_stats()
    assert stats["runs"] >= 1 and stats["bytes_read"] > 0 and stats["bytes_written"] > 0
    assert stats["records_removed"] > 0 and stats["last_clean_ms"] > 0 and stats["errors"] == 0
    assert set(stats["partitions"]) == {"t-0"}
    assert {k: v for _, k, v in records(part)} == model


def test_max_compaction_lag_makes_a_partition_due_whatever_its_ratio(open_log):
    log = open_log(segment_bytes=2048, retention_check_ms=None, cleaner=False)
    lazy = log.topic("lazy", cleanup_policy="compact", min_cleanable_dirty_ratio=1.0)
    eager = log.topic("eager", cleanup_policy="compact", min_cleanable_dirty_ratio=1.0,
                      max_compaction_lag_ms=1)
    for topic in (lazy, eager):
        part = topic.partition(0)
        fill(part, 5, 10)
        sealed(part)
        part.clean()
        fill(part, 5, 1)
        sealed(part)
    due = {topic.name for _, _, topic, _ in log._cleaner._due(int(time.time() * 1000) + 10)}
    assert due == {"eager"}


def test_a_compacted_topics_active_segment_rolls_within_max_compaction_lag():
    config = pstream.storage.config.TopicConfig(cleanup_policy="compact", max_compaction_lag_ms=60_000)
    assert config.partition_kwargs()["segment_ms"] == 60_000
    assert pstream.storage.config.TopicConfig(max_compaction_lag_ms=60_000).partition_kwargs()["segment_ms"] \
        == 7 * DAY_MS


def test_the_horizon_is_set_even_when_it_equals_the_batchs_own_timestamp(open_log):
    """delete_retention_ms=0 and a tombstone stamped `now`: the horizon equals its base timestamp,
    and must still be marked, or the tombstone would never go."""
    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    now = 10**12
    part.append(None, key=b"k", timestamp_ms=now)
    sealed(part)
    part.clean(now_ms=now, delete_retention_ms=0)
    assert [(k, v) for _, k, v in records(part)] == [(b"k", None)]
    [(header, _)] = batches(part)
    assert header.attributes & 0x40
    part.append(b"other", key=b"j")
    sealed(part)
    part.clean(now_ms=now, delete_retention_ms=0)
    assert [(k, v) for _, k, v in records(part)] == [(b"j", b"other")]


def test_a_cleaning_pass_releases_the_gil(open_log):
    """The pace meter of test_gil.py: a Python thread keeps its pace while a pass maps and rewrites
    about 6 MiB of uncompressed batches (only the ratio is asserted, never a speed)."""
    from test_gil import RELEASED, pace_meter

    log = open_log(flush="interval", segment_bytes=8 << 20, retention_ms=None, cleaner=False,
                   retention_check_ms=None)
    parts = [log.topic(f"t{n}", cleanup_policy="compact").partition(0) for n in range(5)]
    for part in parts:
        for start in range(0, 60_000, 200):
            part.append_many([(b"key-%06d" % (i % 3000), b"v" * 80) for i in range(start, start + 200)])
        sealed(part)
    todo = iter(parts)
    with pace_meter() as meter:
        rate = meter.solo_rate()
        share = meter.share_during(lambda: next(todo).clean(), repeat=5, rate=rate)
    assert all(part.cleaner_state()["first_dirty_offset"] == 60_000 for part in parts)
    assert share > RELEASED, f"the counter ran at only {share:.0%} of its pace during a cleaning pass"


def test_producer_state_rebuilt_from_a_cleaned_log_keeps_the_producers_sequence(open_log):
    """The emptied last batch keeps its base sequence and last offset delta, so a producer state
    rebuilt from the log after cleaning still knows the producer's last sequence (Kafka reads it
    from the last offset delta, not the record count)."""
    from pstream.storage.producer_state import ProducerStateManager, SequenceCheck

    log = open_log(**SMALL)
    part = log.topic("t", cleanup_policy="compact").partition(0)
    part.append_batch(_core.encode_batch([(b"k%d" % i, b"p", None, None) for i in range(3)], producer_id=7,
                                         producer_epoch=0, base_sequence=0))
    last = part.append_batch(_core.encode_batch([(b"k%d" % i, b"p", None, None) for i in range(3)],
                                                producer_id=7, producer_epoch=0, base_sequence=3))
    part.append_many([(b"k%d" % i, b"newer") for i in range(3)])
    sealed(part)
    assert part.clean()["empty_batches_kept"] == 1
    state = ProducerStateManager(part.path)
    state.recover(part)
    assert state.check(7, 0, 3, 5) == (SequenceCheck.DUPLICATE, last)
    assert state.check(7, 0, 6, 6) == (SequenceCheck.OK, None)


def test_an_expired_tombstone_goes_in_a_pass_with_nothing_dirty(open_log):
    """Once a kept tombstone's horizon passes, a pass removes it even when no new data came
    (as Kafka cleans the clean section then): it never stays, and the partition is not due again."""
    log = open_log(**SMALL)
    topic = log.topic("t", cleanup_policy="compact", delete_retention_ms=0)
    part = topic.partition(0)
    for i in range(30):
        part.append(b"v%d" % i, key=b"a")
    part.append(None, key=b"dead")
    for i in range(30):
        part.append(b"w%d" % i, key=b"b")
    first = topic.clean()[0]
    assert [r.key for r in part.read(0) if r.key == b"dead"] == [b"dead"]   # kept: its horizon starts now
    time.sleep(0.01)
    second = topic.clean()[0]
    assert second["tombstones_removed"] == 1 and second["first_dirty_offset"] == first["end_offset"]
    assert not [r for r in part.read(0) if r.key == b"dead"]
    assert part.latest() == {b"a": b"v29", b"b": b"w29"}
    assert part.cleaner_state()["next_tombstone_expiry_ms"] == -1
