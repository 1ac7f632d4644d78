"""The embedded log as a product: follow latency, named consumers, the test fixture's start.

    FollowLatency   append in one thread -> delivery to a blocked follower in another (p50, p99)
    NamedConsumer   log.consumer(...).poll + commit over 200k records of 100 B
    FixtureStart    pstream.testing's broker: start until a served ApiVersions answer
"""

import threading
import time

import pstream

from .common import remove, temp_dir, values


def _percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class FollowLatency:
    """A writer thread appends 2,000 records, 1 ms apart; the follower (main thread, blocked in
    the core with the GIL released) notes when each arrives. flush "always": delivery after the
    fdatasync; "interval": as soon as appended."""

    params = ["always", "interval"]
    param_names = ["flush"]
    timeout = 120
    count = 2000

    def setup(self, flush):
        self.folder = temp_dir("follow")
        self.log = pstream.Log(self.folder, shards=2, retention_check_ms=None)
        self.part = self.log.topic("t", flush=flush, flush_ms=10).partition(0)
        self.delays = self._run()

    def teardown(self, flush):
        self.log.close()
        remove(self.folder)

    def _run(self):
        sent = {}
        start = self.part.high_watermark

        def write():
            for _ in range(self.count):
                t = time.perf_counter()
                sent[self.part.append(b"x" * 100)] = t
                time.sleep(0.001)
        writer = threading.Thread(target=write)
        writer.start()
        delays = []
        for rec in self.part.follow(start, timeout=5.0):
            delays.append(time.perf_counter() - sent.get(rec.offset, time.perf_counter()))
            if len(delays) == self.count:
                break
        writer.join()
        return sorted(delays)

    def track_p50_us(self, flush):
        return _percentile(self.delays, 0.5) * 1e6

    def track_p99_us(self, flush):
        return _percentile(self.delays, 0.99) * 1e6

    track_p50_us.unit = track_p99_us.unit = "us"


class NamedConsumer:
    """poll(max_records=500) until 200k records of 100 B are read, commit after each poll."""

    timeout = 300
    count = 200_000

    def setup(self):
        self.folder = temp_dir("consumer")
        self.log = pstream.Log(self.folder, shards=2, retention_check_ms=None)
        topic = self.log.topic("t", partitions=4, flush="interval")
        value = values(1, 100)[0]
        for _ in range(self.count // 1000):
            topic.append_many([(None, value)] * 1000)
        for part in topic:
            part.flush()
        self.group = 0

    def teardown(self):
        self.log.close()
        remove(self.folder)

    def _consume(self):
        self.group += 1
        with self.log.consumer(f"g{self.group}", ["t"]) as c:
            seen = 0
            while seen < self.count:
                seen += len(c.poll(max_records=500, timeout=1.0))
                c.commit()

    def time_poll_and_commit_200k(self):
        self._consume()

    def track_records_per_s(self):
        start = time.perf_counter()
        self._consume()
        return self.count / (time.perf_counter() - start)

    track_records_per_s.unit = "records/s"


class FixtureStart:
    """pstream.testing: from nothing to a broker that answered ApiVersions, in this process and
    as a subprocess."""

    params = ["inprocess", "subprocess"]
    param_names = ["mode"]
    timeout = 120
    repeat = 5

    def track_start_ms(self, mode):
        from pstream.client import KafkaClient
        from pstream.testing import start_broker, stop_broker
        folder = temp_dir("fixture")
        try:
            started = time.perf_counter()
            broker = start_broker(mode, folder + "/data", group_initial_rebalance_delay_ms=0)
            with KafkaClient(broker.bootstrap) as client:
                client.metadata([])     # the first request negotiates ApiVersions
            elapsed = time.perf_counter() - started
            stop_broker(broker)
            return elapsed * 1000
        finally:
            remove(folder)

    track_start_ms.unit = "ms"


_WRITER = """
import sys, time, pstream
with pstream.Log(sys.argv[1], shards=2, retention_check_ms=None) as log:
    part = log.topic("t").partition(0)
    print("open", flush=True)
    sys.stdin.readline()
    for _ in range({count}):
        part.append(repr(time.time()).encode())   # flush "always": readable to others once synced
        time.sleep(0.001)
"""


class ReadonlyFollowLatency:
    """A writer process appends 2,000 records 1 ms apart (flush "always"), each carrying its
    append time; a read-only Log in this process follows them (woken through the futex of the
    writer's publish counter) and notes each one's delay."""

    timeout = 120
    count = 2000

    def setup(self):
        import subprocess
        import sys
        self.folder = temp_dir("readonly-follow")
        writer = subprocess.Popen([sys.executable, "-c", _WRITER.format(count=self.count), self.folder],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "open"
        with pstream.Log(self.folder, readonly=True) as log:
            follower = log.topic("t").partition(0).follow(0, timeout=5.0)
            writer.stdin.write("go\n")
            writer.stdin.flush()
            delays = []
            for rec in follower:
                delays.append(time.time() - float(rec.value))
                if len(delays) == self.count:
                    break
        writer.stdin.close()
        writer.stdout.close()
        writer.wait()
        self.delays = sorted(delays)

    def teardown(self):
        remove(self.folder)

    def track_p50_us(self):
        return _percentile(self.delays, 0.5) * 1e6

    def track_p99_us(self):
        return _percentile(self.delays, 0.99) * 1e6

    track_p50_us.unit = track_p99_us.unit = "us"
