"""The GIL is released where the partition waits or touches many bytes.

A second Python thread counts loop iterations while the main thread runs one kind of
call over and over. Where the call releases the GIL the counter keeps most of the pace
it has alone; where a call holds the GIL the counter stalls (the control test shows the
measure tells the two apart). Only that ratio is asserted, never a speed.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from contextlib import contextmanager

from pstream import _core

# A thread that holds the GIL gives it up after this long when another thread asks:
# short, so a call that holds the GIL cannot hide behind the switches around it.
SWITCH_INTERVAL = 1e-4
RELEASED = 0.25  # the counter keeps at least this share of its pace while the GIL is free


class PaceMeter:
    """Counts iterations of a spinning thread, and its pace relative to running alone."""

    def __init__(self):
        self.count = 0
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self):
        while self.running:
            self.count += 1

    def solo_rate(self, seconds: float = 0.2) -> float:
        time.sleep(0.05)  # let the thread get going
        start, t0 = self.count, time.perf_counter()
        time.sleep(seconds)
        return (self.count - start) / (time.perf_counter() - t0)

    def share_during(self, call, repeat: int, rate: float) -> float:
        """Runs call() `repeat` times; returns the counter's median pace during a call, as a share of `rate`.

        The median keeps one call that the OS scheduler happened to stretch from deciding.
        """
        shares = []
        for _ in range(repeat):
            start, t0 = self.count, time.perf_counter()
            call()
            elapsed = time.perf_counter() - t0
            shares.append((self.count - start) / (rate * elapsed))
        return statistics.median(shares)


@contextmanager
def pace_meter():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    meter = PaceMeter()
    meter.thread.start()
    try:
        yield meter
    finally:
        meter.running = False
        meter.thread.join()
        sys.setswitchinterval(previous)


def test_counter_stalls_while_a_call_holds_the_gil():
    """The control: bytes.count scans 64 MiB without releasing the GIL.

    The counter still gets the moments around each call (more of them on a busy
    machine, where the main thread waits to be scheduled): the call is long so that
    stays well below the share the other tests require.
    """
    data = b"\x01" * (64 << 20)
    with pace_meter() as meter:
        rate = meter.solo_rate()
        share = meter.share_during(lambda: data.count(b"\x02\x03"), repeat=5, rate=rate)
    assert share < RELEASED, f"the counter ran at {share:.0%} of its pace although the GIL was held"


def test_append_with_flush_always_releases_the_gil_while_waiting_for_fdatasync(open_log):
    part = open_log(flush="always", segment_bytes=64 << 20).topic("t").partition(0)
    value = os.urandom(256 << 10)
    part.append(value)  # the segment file exists and is preallocated before measuring
    with pace_meter() as meter:
        rate = meter.solo_rate()
        share = meter.share_during(lambda: part.append(value), repeat=40, rate=rate)
    assert part.durable_offset == part.log_end_offset == 41
    assert share > RELEASED, f"the counter ran at only {share:.0%} of its pace during append + fdatasync"


def test_append_batch_of_many_mib_releases_the_gil(open_log):
    log = open_log(flush="interval", max_message_bytes=64 << 20, segment_bytes=512 << 20)
    part = log.topic("t").partition(0)
    batch = _core.encode_batch([(None, os.urandom(1 << 20), [], None) for _ in range(32)])  # 32 MiB
    part.append_batch(batch)
    with pace_meter() as meter:
        rate = meter.solo_rate()
        share = meter.share_during(lambda: part.append_batch(batch), repeat=5, rate=rate)
    assert part.log_end_offset == (1 + 5) * 32
    assert share > RELEASED, f"the counter ran at only {share:.0%} of its pace during a 32 MiB append_batch"


def test_read_batches_of_many_mib_releases_the_gil(open_log):
    log = open_log(flush="interval", max_message_bytes=16 << 20, segment_bytes=512 << 20)
    part = log.topic("t").partition(0)
    batch = _core.encode_batch([(None, os.urandom(1 << 20), [], None) for _ in range(8)])  # 8 MiB
    for _ in range(8):
        part.append_batch(batch)
    part.flush()
    everything = 8 * len(batch)
    assert len(part.read_batches(0, everything)) == everything
    with pace_meter() as meter:
        rate = meter.solo_rate()
        share = meter.share_during(lambda: part.read_batches(0, everything), repeat=5, rate=rate)
    assert share > RELEASED, f"the counter ran at only {share:.0%} of its pace during a 64 MiB read_batches"
