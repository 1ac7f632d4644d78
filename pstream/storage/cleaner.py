"""The log cleaner's scheduler (Kafka's LogCleaner / LogCleanerManager).

Owns the cleaner threads of one Log and the counters the broker's metrics read. It picks
which partition to compact and when; the pass itself (`Partition.clean`, in
pstream/storage/cleaner.pxi) runs in the compiled core with the GIL released. It never
touches segment files itself.

A partition of a topic whose cleanup policy includes `compact` is due when:
- its dirty ratio (dirty bytes / (clean + dirty), over the cleanable segments) is at least
  the topic's `min_cleanable_dirty_ratio`, or
- the first dirty record is older than `max_compaction_lag_ms` (KIP-354), or
- a tombstone kept by an earlier pass has reached its delete horizon (KIP-534).
Each thread takes the dirtiest due partition (overdue ones first), cleans it, and looks
again; when none is due it sleeps `cleaner_backoff_ms` (Kafka's log.cleaner.backoff.ms,
15 s). `dedupe_buffer_bytes` (Kafka's log.cleaner.dedupe.buffer.size; 32 MiB here, 128 MiB
in Kafka) is the total key-map memory, split between the threads: 24 bytes per key, filled
to 75%, so 32 MiB maps about a million keys per pass. A pass that fails (a corrupt
segment, a full disk) is logged and counted, and that partition is left alone for a
backoff period.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pstream.log import Log, Partition, Topic

_log = logging.getLogger("pstream.cleaner")

DEFAULT_DEDUPE_BUFFER_BYTES = 32 << 20
DEFAULT_BACKOFF_MS = 15_000
MIN_DEDUPE_BUFFER_BYTES = 1 << 16
NO_MAX_LAG = (1 << 63) - 1      # max_compaction_lag_ms's default: no deadline


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class LogCleaner:
    """Compacts the compacted topics of one Log: `threads` background threads (0: only when
    asked, through `clean`), and the counters `stats()` reports."""

    def __init__(self, log: "Log", *, threads: int = 1, dedupe_buffer_bytes: int = DEFAULT_DEDUPE_BUFFER_BYTES,
                 backoff_ms: int = DEFAULT_BACKOFF_MS):
        from pstream.errors import ConfigError
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ConfigError(f"setting cleaner_threads must be an integer >= 0, got {threads!r}")
        if isinstance(dedupe_buffer_bytes, bool) or not isinstance(dedupe_buffer_bytes, int) \
                or dedupe_buffer_bytes < MIN_DEDUPE_BUFFER_BYTES:
            raise ConfigError(f"setting dedupe_buffer_bytes must be an integer >= {MIN_DEDUPE_BUFFER_BYTES}, "
                              f"got {dedupe_buffer_bytes!r}")
        if isinstance(backoff_ms, bool) or not isinstance(backoff_ms, int) or backoff_ms < 1:
            raise ConfigError(f"setting cleaner_backoff_ms must be a positive integer, got {backoff_ms!r}")
        self._log_ref = weakref.ref(log)
        self.threads = threads
        self.dedupe_buffer_bytes = dedupe_buffer_bytes
        self.backoff_ms = backoff_ms
        self._lock = threading.Lock()
        self._busy: set[tuple[str, int]] = set()       # partitions a thread is cleaning
        self._failed: dict[tuple[str, int], float] = {}  # partition -> monotonic time it may be tried again
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.counters = {"runs": 0, "bytes_read": 0, "bytes_written": 0, "records_removed": 0,
                         "segments_cleaned": 0, "errors": 0, "last_clean_ms": -1,
                         "last_clean_duration_s": 0.0, "max_clean_duration_s": 0.0}

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=_cleaner_loop, args=(weakref.ref(self), self._stop, self._wake),
                                      name=f"pstream-cleaner-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stops the threads; a pass in progress finishes first."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        self._threads.clear()

    def reconfigure(self, *, threads: int, dedupe_buffer_bytes: int, backoff_ms: int) -> None:
        """New settings at run time (Kafka's dynamic log.cleaner.*): the threads stop, a pass in
        progress finishing first, and start again with them."""
        self.stop()
        self.threads, self.dedupe_buffer_bytes, self.backoff_ms = threads, dedupe_buffer_bytes, backoff_ms
        self._stop = threading.Event()
        self.start()

    def wake(self) -> None:
        """Looks for due partitions now instead of at the end of the backoff."""
        self._wake.set()

    # --- cleaning ----------------------------------------------------------------------

    def _buffer_per_pass(self) -> int:
        return max(MIN_DEDUPE_BUFFER_BYTES, self.dedupe_buffer_bytes // max(1, self.threads))

    def clean_partition(self, topic: "Topic", part: "Partition", now_ms: int | None = None) -> dict:
        """One pass over one partition with the topic's settings; counted in stats()."""
        config = topic.config
        started = time.monotonic()
        try:
            stable_offset, aborted = part.transaction_bounds()
            result = part.clean(dedupe_buffer_bytes=self._buffer_per_pass(),
                                delete_retention_ms=config.delete_retention_ms,
                                min_compaction_lag_ms=config.min_compaction_lag_ms, now_ms=now_ms,
                                stable_offset=stable_offset, aborted=aborted)
        except Exception:
            with self._lock:
                self.counters["errors"] += 1
            raise
        elapsed = time.monotonic() - started
        with self._lock:
            c = self.counters
            c["runs"] += 1
            c["bytes_read"] += result["bytes_read"]
            c["bytes_written"] += result["bytes_written"]
            c["records_removed"] += result["records_removed"]
            c["segments_cleaned"] += result["segments_cleaned"]
            c["last_clean_ms"] = _now_ms()
            c["last_clean_duration_s"] = elapsed
            c["max_clean_duration_s"] = max(c["max_clean_duration_s"], elapsed)
        return result

    def _due(self, now_ms: int) -> list[tuple[int, float, "Topic", "Partition"]]:
        """(overdue, dirty ratio, topic, partition) of every due partition nobody is cleaning."""
        log = self._log_ref()
        if log is None:
            return []
        due = []
        now_mono = time.monotonic()
        for topic in log._compacted_topics():
            config = topic.config
            for part in topic:
                key = (topic.name, part.number)
                if key in self._busy or self._failed.get(key, 0) > now_mono:
                    continue
                try:
                    state = part.cleaner_state(min_compaction_lag_ms=config.min_compaction_lag_ms,
                                               first_timestamp=config.max_compaction_lag_ms < NO_MAX_LAG,
                                               now_ms=now_ms)
                except Exception:   # closed meanwhile (topic deleted)
                    continue
                if state["dirty_bytes"] <= 0 and not (0 <= state["next_tombstone_expiry_ms"] <= now_ms):
                    continue
                first_ts = state["first_dirty_timestamp"]
                overdue = state["dirty_bytes"] > 0 and first_ts >= 0 and \
                    now_ms - first_ts > config.max_compaction_lag_ms
                expired = 0 <= state["next_tombstone_expiry_ms"] <= now_ms
                if overdue or expired or state["dirty_ratio"] >= config.min_cleanable_dirty_ratio:
                    due.append((1 if overdue or expired else 0, state["dirty_ratio"], topic, part))
        return due

    def clean_once(self) -> dict | None:
        """Cleans the filthiest due partition, if any; returns its result (None: nothing due)."""
        now_ms = _now_ms()
        with self._lock:
            due = self._due(now_ms)
            if not due:
                return None
            _, _, topic, part = max(due, key=lambda d: (d[0], d[1]))
            key = (topic.name, part.number)
            self._busy.add(key)
        try:
            return self.clean_partition(topic, part)
        except Exception:
            _log.exception("cleaning %s-%d failed; retrying it in %d ms", topic.name, part.number,
                           self.backoff_ms)
            with self._lock:
                self._failed[key] = time.monotonic() + self.backoff_ms / 1000
            return {}
        finally:
            with self._lock:
                self._busy.discard(key)

    # --- metrics -----------------------------------------------------------------------

    def stats(self) -> dict:
        """Counters of every pass so far (runs, bytes_read, bytes_written, records_removed,
        segments_cleaned, errors, last_clean_ms, last/max_clean_duration_s) and, per partition of
        a compacted topic, its dirty ratio and first dirty offset ("partitions": {"topic-N": {...}})."""
        with self._lock:
            out = dict(self.counters)
        out["threads"] = self.threads
        out["dedupe_buffer_bytes"] = self.dedupe_buffer_bytes
        partitions = {}
        log = self._log_ref()
        max_ratio = 0.0
        if log is not None:
            now_ms = _now_ms()
            for topic in log._compacted_topics():
                for part in topic:
                    try:
                        state = part.cleaner_state(min_compaction_lag_ms=topic.config.min_compaction_lag_ms,
                                                   now_ms=now_ms)
                    except Exception:
                        continue
                    partitions[f"{topic.name}-{part.number}"] = {
                        "dirty_ratio": state["dirty_ratio"], "dirty_bytes": state["dirty_bytes"],
                        "clean_bytes": state["clean_bytes"],
                        "first_dirty_offset": state["first_dirty_offset"], "runs": state["runs"],
                        "last_clean_ms": state["last_clean_ms"]}
                    max_ratio = max(max_ratio, state["dirty_ratio"])
        out["max_dirty_ratio"] = max_ratio
        out["partitions"] = partitions
        return out


def _cleaner_loop(cleaner_ref: "weakref.ref[LogCleaner]", stop: threading.Event,
                  wake: threading.Event) -> None:
    """One cleaner thread: clean while something is due, else sleep the backoff. Holds the
    cleaner only weakly between rounds, so an unclosed Log can still be collected."""
    while not stop.is_set():
        cleaner = cleaner_ref()
        if cleaner is None:
            return
        try:
            result = cleaner.clean_once()
        except Exception:   # keep the thread alive; the next round may succeed
            _log.exception("log cleaner round failed")
            result = None
        backoff = cleaner.backoff_ms / 1000
        del cleaner
        if result is None:
            wake.wait(backoff)
            wake.clear()
