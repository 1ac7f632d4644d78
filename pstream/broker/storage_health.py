"""The broker's disk watch: free space against `storage_min_free_bytes`, and failed partitions.

Checked about once a second on the event loop (one statvfs, and one look at each partition):

- free space below the threshold makes the broker *degraded*: Produce is refused with
  KAFKA_STORAGE_ERROR before the disk is full (Redpanda answers the same condition with
  BROKER_NOT_AVAILABLE; Kafka's code for a disk problem says more to a client, and both are
  retriable); `/v1/status/ready` and `/metrics` show it. Fetches and everything else go on.
- a partition whose write or fdatasync failed refuses appends (the core answers at once);
  after ENOSPC or EDQUOT it is revived here once free space is back above the threshold: the
  core writes the failed bytes again from memory and syncs them. EIO and other errors are left
  failed until a restart, as Kafka takes a log directory offline on an I/O error.

Owns no storage: it reads the Log's partitions and asks them to revive; `on_revived` lets the
broker drop state derived from the partition (idempotent producers' sequences) so it is read
again from the log, which now holds the batches whose producers were told they failed.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

_log = logging.getLogger("pstream.broker")

CHECK_INTERVAL_S = 1.0
AUTO_MIN_FREE_BYTES = 1 << 30     # at most 1 GiB ...
AUTO_MIN_FREE_FRACTION = 0.05     # ... and at most 5% of the filesystem
REVIVABLE = (errno.ENOSPC, errno.EDQUOT)


def min_free_bytes(setting: int | None, total_bytes: int) -> int:
    """The threshold in force: the setting, or min(1 GiB, 5% of the filesystem) when unset."""
    if setting is not None:
        return setting
    return min(AUTO_MIN_FREE_BYTES, int(total_bytes * AUTO_MIN_FREE_FRACTION))


class StorageHealth:
    def __init__(self, data_dir: str, setting: int | None, on_revived: Callable[[object], None]):
        self.data_dir = data_dir
        self.setting = setting
        self.on_revived = on_revived
        self.free_bytes = 0
        self.total_bytes = 0
        self.min_free_bytes = 0
        self.degraded = False
        self.failed: dict[tuple[str, int], tuple[int, str]] = {}   # (topic, partition) -> (errno, file)

    @property
    def refusal(self) -> str | None:
        """Why Produce is refused broker-wide now, or None."""
        if not self.degraded:
            return None
        return (f"free space on the data directory's filesystem ({self.free_bytes} bytes) is below "
                f"storage_min_free_bytes ({self.min_free_bytes})")

    def check_space(self) -> None:
        st = os.statvfs(self.data_dir)
        self.free_bytes = st.f_bavail * st.f_frsize
        self.total_bytes = st.f_blocks * st.f_frsize
        self.min_free_bytes = min_free_bytes(self.setting, self.total_bytes)
        degraded = self.free_bytes < self.min_free_bytes
        if degraded != self.degraded:
            if degraded:
                _log.warning("%s; refusing Produce until space is freed", self.refusal)
            else:
                _log.info("free space on %s is back above storage_min_free_bytes (%d bytes free): "
                          "accepting Produce again", self.data_dir, self.free_bytes)
        self.degraded = degraded

    @staticmethod
    def failed_partitions(log) -> dict:
        """{(topic, partition): (partition, (errno, file))} of the partitions refusing appends now
        (each failure is logged once by the core when first seen here or by an append)."""
        failed = {}
        for name in log.topics():
            try:
                topic = log.get_topic(name)
            except Exception:   # deleted meanwhile
                continue
            for part in topic:
                error = part.storage_error
                if error is not None:
                    failed[(name, part.number)] = (part, error)
        return failed

    def check(self, log) -> None:
        """One round: free space, then the failed partitions, the revivable ones retried while
        space allows."""
        try:
            self.check_space()
        except OSError as exc:
            _log.warning("cannot read the free space of %s: %s", self.data_dir, exc)
        failed = self.failed_partitions(log)
        for key, (part, (err, path)) in list(failed.items()):
            if err in REVIVABLE and not self.degraded and part.revive():
                _log.info("%s-%d: writing %s succeeded again: the partition takes appends again",
                          key[0], key[1], path)
                self.on_revived(part)
                del failed[key]
        self.failed = {key: error for key, (_part, error) in failed.items()}

    def status(self, log=None) -> dict:
        """Free space, threshold, and the failed partitions (read now when `log` is given, else
        as of the last check)."""
        failed = self.failed if log is None else {k: e for k, (_p, e) in self.failed_partitions(log).items()}
        return {"free_bytes": self.free_bytes, "total_bytes": self.total_bytes,
                "min_free_bytes": self.min_free_bytes, "degraded": self.degraded,
                "failed_partitions": [{"topic": t, "partition": p, "errno": e, "error": os.strerror(e), "file": f}
                                      for (t, p), (e, f) in sorted(failed.items())]}
