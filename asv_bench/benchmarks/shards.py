"""Does a durable append release the GIL, and do two shards sync in parallel?

pandas' gil.py pattern: the same work, done by 1 and by 2 Python threads, on logs of 1
and 2 shards. The work is always `appends` appends of 1 KiB to each of two partitions,
chosen so that a 2-shard log puts them on different shards (pstream.log.shard_for). One
thread appends to both partitions in turn; two threads append to one partition each.
flush='always': every append returns only after its fdatasync, so the wait for the disk
is where the GIL must be released.

What to expect if the engine does its job: threads=2 on shards=2 close to half the time
of threads=1 (two fdatasyncs in flight); threads=2 on shards=1 in between (one shard
thread syncs both files, one after the other, but can group the waits); threads=1 the
same on 1 and 2 shards.
"""

import threading

import pstream

from .common import partitions_on_shards, remove, temp_dir, values

_TOPIC = "bench"


class DurableAppend:
    params = ([1, 2], [1, 2])
    param_names = ["shards", "threads"]
    timeout = 300
    appends = 500  # per partition, so 1000 fdatasync'ed appends per timed call

    def setup(self, shards, threads):
        self.numbers = partitions_on_shards(_TOPIC, 2, 2)
        self.value = values(1, 1024)[0]
        self.folder = temp_dir("shards")
        self.log = pstream.Log(self.folder, shards=shards, flush="always")
        topic = self.log.topic(_TOPIC, partitions=max(self.numbers) + 1)
        self.parts = [topic.partition(n) for n in self.numbers]
        for part in self.parts:  # create and preallocate the segments outside the timing
            part.append(self.value)

    def teardown(self, shards, threads):
        self.log.close()
        remove(self.folder)

    def time_durable_appends(self, shards, threads):
        value, count = self.value, self.appends
        if threads == 1:
            first, second = self.parts[0].append, self.parts[1].append
            for _ in range(count):
                first(value)
                second(value)
            return
        start = threading.Barrier(len(self.parts))

        def work(part):
            append = part.append
            start.wait()
            for _ in range(count):
                append(value)

        workers = [threading.Thread(target=work, args=(part,)) for part in self.parts]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def track_shard_of_each_partition(self, shards, threads):
        """The number of distinct shards the two partitions use (1 or 2): proves the split."""
        return len({pstream.log.shard_for(_TOPIC, n, shards) for n in self.numbers})

    track_shard_of_each_partition.unit = "shards used"
