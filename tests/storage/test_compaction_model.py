"""Compaction against a model: a list of every record ever appended (offset, key, value,
timestamp) and, per offset, when a cleaning pass first processed it. Hypothesis interleaves
appends (plain, compressed, keyless, tombstones), rolls, cleaning passes at moving clocks
with varying key-map sizes, lags and delete retention, and reopens; after each step the log
must hold exactly what Kafka's rules allow:

- every record read is the model's record at that offset (offsets never change);
- the offsets read are exactly those no pass had to remove: a pass removes, from the
  segments it processes (those below the end of its key map), keyless records, records
  with a later record of their key below that end, and tombstones it meets again at or
  past their delete horizon (the clock of the first pass that kept them +
  delete_retention_ms, KIP-534); so each key's latest value is always there;
- `latest()` is the dict of every key's latest non-null value;
- a pass never cleans past the first dirty segment holding a record newer than the lag.
"""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import pstream

SETTINGS = dict(shards=1, segment_bytes=1024, retention_ms=None, cleaner=False, retention_check_ms=None,
                flush="interval", flush_ms=1, preallocate_bytes=0)
KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"])
DAY = 24 * 3600 * 1000
T0 = 10**12


class CompactionModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="pstream-compaction-model-")
        self.log = pstream.Log(self.dir, **SETTINGS)
        self.part = self.log.topic("t", cleanup_policy="compact").partition(0)
        self.records: list[tuple[int, bytes | None, bytes | None, int]] = []
        # offset -> (pass number, clock, delete retention) of the first pass that processed it
        self.processed_at: dict[int, tuple[int, int, int]] = {}
        self.now = T0
        self.seq = 0
        self.gone: set[int] = set()              # offsets a pass must have removed
        self.passes = 0

    def teardown(self):
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- steps ---------------------------------------------------------------------------

    def _value(self):
        self.seq += 1
        return b"v%d" % self.seq

    @rule(key=KEYS, tombstone=st.booleans())
    def append(self, key, tombstone):
        value = None if tombstone else self._value()
        offset = self.part.append(value, key=key, timestamp_ms=self.now)
        assert offset == len(self.records)
        self.records.append((offset, key, value, self.now))

    @rule(keys=st.lists(st.one_of(KEYS, st.none()), min_size=1, max_size=5),
          codec=st.sampled_from(["none", "gzip", "lz4", "zstd", "snappy"]))
    def append_batch(self, keys, codec):
        batch = [(k, self._value(), None, self.now) for k in keys]
        base = self.part.append_many(batch, compression=codec)
        assert base == len(self.records)
        for i, (k, v, _, ts) in enumerate(batch):
            self.records.append((base + i, k, v, ts))

    @rule()
    def roll(self):
        self.part.roll()

    @rule(ms=st.sampled_from([1, 1000, DAY // 2, DAY, 3 * DAY]))
    def advance_clock(self, ms):
        self.now += ms

    @rule(buffer=st.sampled_from([1024, 4096, 1 << 20]), lag=st.sampled_from([0, 0, DAY]),
          retention=st.sampled_from([0, DAY]))
    def clean(self, buffer, lag, retention):
        self.part.flush()
        before = self.part.cleaner_state(min_compaction_lag_ms=lag, now_ms=self.now)
        segments = self.part.segments()
        present = {r.offset: r.timestamp_ms for r in self.part.read(0)}
        try:
            result = self.part.clean(dedupe_buffer_bytes=buffer, delete_retention_ms=retention,
                                     min_compaction_lag_ms=lag, now_ms=self.now)
        except pstream.errors.ConfigError:
            assert buffer == 1024   # a batch with more keys than the map holds: nothing changes
            return
        end = result["end_offset"]
        if not result["segments_cleaned"]:
            return
        # The lag rule: nothing at or past the first dirty segment with a record newer than the lag.
        first_dirty = before["first_dirty_offset"]
        for base, nxt, _, _ in segments[:-1]:
            if nxt > first_dirty and lag and max((ts for o, ts in present.items() if base <= o < nxt),
                                                 default=-1) > self.now - lag:
                assert end <= base
                break
        # Every offset in a segment whose base is below the end was processed by this pass, which
        # removed: keyless records, records with a later one of their key below the end (those
        # were in the key map), and tombstones it met again at or past their delete horizon.
        self.passes += 1
        latest_below_end = {}
        for offset, key, _, _ in self.records[:end]:
            latest_below_end[key] = offset
        for base, nxt, _, _ in segments:
            if base >= end:
                continue
            for offset in range(base, nxt):
                _, key, value, _ = self.records[offset]
                first = self.processed_at.setdefault(offset, (self.passes, self.now, retention))
                if key is None or offset < latest_below_end[key]:
                    self.gone.add(offset)
                elif value is None and first[0] < self.passes and self.now >= first[1] + first[2]:
                    self.gone.add(offset)

    @rule()
    def reopen(self):
        self.log.close()
        self.log = pstream.Log(self.dir, **SETTINGS)
        self.part = self.log.topic("t").partition(0)

    # --- what must hold ------------------------------------------------------------------

    @invariant()
    def log_matches_the_model(self):
        got = [(r.offset, r.key, r.value) for r in self.part.read(0)]
        for offset, key, value in got:
            assert self.records[offset][:3] == (offset, key, value)
        offsets = [o for o, _, _ in got]
        expected = [o for o, _, _, _ in self.records if o not in self.gone]
        assert offsets == expected, (f"missing {sorted(set(expected) - set(offsets))}, "
                                     f"should be gone {sorted(set(offsets) - set(expected))}")

    @invariant()
    def latest_is_the_dict_of_latest_values(self):
        expected = {}
        for _, key, value, _ in self.records:
            if key is not None:
                expected[key] = value
        assert self.part.latest() == {k: v for k, v in expected.items() if v is not None}


CompactionModel.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
test_compaction_matches_the_model = CompactionModel.TestCase
