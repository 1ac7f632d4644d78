"""Rebuilding a partition's idempotent-producer state from its log (the first idempotent
produce after a restart without a snapshot), and what that costs the event loop when it
runs on the Log's disk pool.

setup_cache writes one partition of 200,000 one-record batches of one idempotent producer
(flush='interval', flushed); it is opened again per benchmark, read from the page cache.
"""

import asyncio
import time

import pstream
from pstream import _core
from pstream.storage.producer_state import ProducerStateManager

from .common import cache_dir

_BATCHES = 200_000
_PRODUCER_ID = 4242


class ProducerStateReplay:
    """ProducerStateManager.recover over 200k idempotent batches (no snapshot)."""

    timeout = 600
    number = 1
    repeat = 5

    def setup_cache(self):
        folder = cache_dir("producer-state")
        with pstream.Log(folder, shards=1, flush="interval", flush_ms=100, retention_check_ms=None) as log:
            part = log.topic("replayed").partition(0)
            part.append_batches(_core.encode_batch([(None, b"value %d" % seq, [], None)],
                                                   producer_id=_PRODUCER_ID, producer_epoch=0, base_sequence=seq)
                                for seq in range(_BATCHES))
            part.flush()
        return folder

    def setup(self, folder):
        self.log = pstream.Log(folder, shards=1, retention_check_ms=None)
        self.part = self.log.get_topic("replayed").partition(0)
        ProducerStateManager(self.part.path).recover(self.part)   # warm the page cache

    def teardown(self, folder):
        for name in self.log.topics():
            for part in self.log.get_topic(name):
                part._producer_state = None   # nothing to snapshot: the next run replays again
        self.log.close()

    def time_recover_200k_batches(self, folder):
        ProducerStateManager(self.part.path).recover(self.part)

    def track_recover_batches_per_s(self, folder):
        start = time.perf_counter()
        ProducerStateManager(self.part.path).recover(self.part)
        return _BATCHES / (time.perf_counter() - start)

    track_recover_batches_per_s.unit = "batches/s"

    def track_loop_worst_gap_ms_during_replay(self, folder):
        """The longest the event loop went without running while the replay ran on the disk
        pool (a 0.5 ms sleep in a loop; the GIL is what the two share)."""
        self.part._producer_state = None

        async def main():
            worst, done = 0.0, False

            async def ticker():
                nonlocal worst
                last = time.perf_counter()
                while not done:
                    await asyncio.sleep(0.0005)
                    now = time.perf_counter()
                    worst, last = max(worst, now - last), now

            ticking = asyncio.ensure_future(ticker())
            await self.part.load_producer_state()
            done = True
            await ticking
            return worst * 1000

        return asyncio.run(main())

    track_loop_worst_gap_ms_during_replay.unit = "ms"
