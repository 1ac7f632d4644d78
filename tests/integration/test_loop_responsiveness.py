"""The broker's event loop keeps answering while slow disk work runs: ApiVersions round trips
on one connection stay within LOOP_BOUND_S while another client creates and deletes topics
of many partitions, changes their configs, grows them, deletes records, while the first
idempotent produce after a restart replays a long log for its producer state, and while the
retention thread deletes segments. Each of those takes from tens of milliseconds to seconds
of fsyncs, renames and reads; none of it may run on (or make wait) the event loop. Before
the disk pool the same run stalled the loop for 50-520 ms (replay ~250 ms, DeleteRecords
and retention ~170-270 ms, a 64-partition topic's creation ~40-100 ms).
"""

from __future__ import annotations

import statistics
import threading
import time

import pstream
from pstream import _core
from pstream.client.wire import codec_classes

import kafka_wire  # noqa: E402  (tests/integration is on sys.path: see conftest.py)

# A round trip of ApiVersions is about 0.1 ms on an idle loop. The bound leaves room for a
# loaded 2-core CI box (GIL switches every 5 ms, other processes), while every operation
# below holds the disk for far longer when it runs on the loop.
LOOP_BOUND_S = 0.050
REPLAY_BATCHES = 150_000   # the idempotent producer's log the first produce after a restart replays
PRODUCER_ID = 77_000_000   # above any id the broker hands out in this test
TOPIC_ROUNDS = 4
TOPICS_PER_ROUND = 3
PARTITIONS = 64


class ApiVersionsProbe(threading.Thread):
    """ApiVersions back to back on its own connection; keeps every round trip's duration."""

    def __init__(self, bootstrap: str):
        super().__init__(name="api-versions-probe", daemon=True)
        self.wire = kafka_wire.KafkaWire(bootstrap, client_id="loop-probe")
        req_cls, _ = codec_classes("ApiVersions")
        self.request = req_cls(client_software_name="probe", client_software_version="1")
        self.stop = threading.Event()
        self.times: list[float] = []
        self.worst: dict[str, float] = {}   # phase -> its longest round trip
        self.began: dict[str, float] = {}   # phase -> when it began
        self._phase = "start"
        self.error: BaseException | None = None

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, name: str) -> None:
        self.began[name] = time.perf_counter()
        self._phase = name

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                answer = self.wire.request("ApiVersions", 3, self.request)
                took = time.perf_counter() - started
                assert answer.error_code == 0
                self.worst[self.phase] = max(took, self.worst.get(self.phase, 0.0))
                self.times.append(took)
        except BaseException as exc:   # reported by the test
            self.error = exc
        finally:
            self.wire.close()

    def summary(self) -> str:
        ordered = sorted(self.times)
        return (f"{len(ordered)} ApiVersions: median {statistics.median(ordered) * 1000:.2f} ms, "
                f"p99 {ordered[int(len(ordered) * 0.99)] * 1000:.2f} ms, max {ordered[-1] * 1000:.2f} ms; "
                f"worst per phase (and how long it ran): " + ", ".join(
                    f"{p} {t * 1000:.1f} ms ({self._took(p):.2f} s)" for p, t in self.worst.items()))

    def _took(self, phase: str) -> float:
        starts = sorted(self.began.values())
        begin = self.began.get(phase, starts[0] if starts else 0.0)
        later = [t for t in starts if t > begin]
        return (later[0] if later else time.perf_counter()) - begin


def write_idempotent_log(data_dir: str, topic: str, batches: int) -> None:
    """A partition holding `batches` one-record batches of one idempotent producer, written
    through the embedded Log (no producer state snapshot: a restart must replay all of it)."""
    with pstream.Log(data_dir, shards=1, flush="interval", flush_ms=100, retention_check_ms=None) as log:
        part = log.topic(topic, partitions=1).partition(0)
        part.append_batches(_core.encode_batch([(None, b"v%d" % seq, [], None)], producer_id=PRODUCER_ID,
                                               producer_epoch=0, base_sequence=seq) for seq in range(batches))


def create_topics(wire, names: list[str], partitions: int, configs: dict | None = None) -> None:
    req_cls, _ = codec_classes("CreateTopics")
    topics = [req_cls.CreatableTopic(name=n, num_partitions=partitions, replication_factor=1,
                                     configs=[req_cls.CreatableTopicConfig(name=k, value=v)
                                              for k, v in (configs or {}).items()]) for n in names]
    answer = wire.request("CreateTopics", 7, req_cls(topics=topics, timeout_ms=60000))
    assert [(t.name, t.error_code) for t in answer.topics] == [(n, 0) for n in names]


def delete_topics(wire, names: list[str]) -> None:
    req_cls, _ = codec_classes("DeleteTopics")
    answer = wire.request("DeleteTopics", 6, req_cls(topics=[req_cls.DeleteTopicState(name=n) for n in names],
                                                      timeout_ms=60000))
    assert [r.error_code for r in answer.responses] == [0] * len(names)


def churn_topics(wire, round_: int) -> None:
    """Create, reconfigure, grow and delete topics of many partitions."""
    names = [f"churn-{round_}-{i}" for i in range(TOPICS_PER_ROUND)]
    create_topics(wire, names, PARTITIONS, {"retention.ms": "3600000"})
    req_cls, _ = codec_classes("IncrementalAlterConfigs")
    answer = wire.request("IncrementalAlterConfigs", 1, req_cls(resources=[
        req_cls.AlterConfigsResource(resource_type=2, resource_name=n, configs=[
            req_cls.AlterableConfig(name="segment.bytes", config_operation=0, value="1048576")])
        for n in names], validate_only=False))
    assert [r.error_code for r in answer.responses] == [0] * len(names)
    req_cls, _ = codec_classes("CreatePartitions")
    answer = wire.request("CreatePartitions", 3, req_cls(topics=[
        req_cls.CreatePartitionsTopic(name=n, count=PARTITIONS + 16, assignments=None) for n in names],
        timeout_ms=60000, validate_only=False))
    assert [r.error_code for r in answer.results] == [0] * len(names)
    delete_topics(wire, names)


def fill_for_retention(wire, topic: str, batches: int) -> None:
    value = b"r" * 4000
    for _ in range(batches):
        batch = _core.encode_batch([(None, value, [], None)] * 8)
        assert wire.produce(topic, 0, batch, acks=1).error_code == 0


def test_the_event_loop_keeps_answering_during_disk_work(broker_factory, tmp_path):
    data_dir = str(tmp_path / "data")
    write_idempotent_log(data_dir, "replayed", REPLAY_BATCHES)
    broker = broker_factory("--retention-check-ms", "200", "--shards", "2", data_dir=data_dir)
    probe = ApiVersionsProbe(broker.bootstrap)
    probe.phase = "start"
    probe.start()
    try:
        with kafka_wire.KafkaWire(broker.bootstrap, timeout=120) as wire:
            # Segments of 64 KiB kept to 256 KiB: the retention thread deletes segments every round.
            create_topics(wire, ["retained"], 1, {"segment.bytes": "65536", "retention.bytes": "262144"})

            probe.phase = "replay"
            resent = wire.produce("replayed", 0, _core.encode_batch(
                [(None, b"v%d" % (REPLAY_BATCHES - 1), [], None)], producer_id=PRODUCER_ID, producer_epoch=0,
                base_sequence=REPLAY_BATCHES - 1))
            assert (resent.error_code, resent.base_offset) == (0, REPLAY_BATCHES - 1), "not answered as a duplicate"
            following = wire.produce("replayed", 0, _core.encode_batch(
                [(None, b"next", [], None)], producer_id=PRODUCER_ID, producer_epoch=0, base_sequence=REPLAY_BATCHES))
            assert (following.error_code, following.base_offset) == (0, REPLAY_BATCHES)
            by_time = wire.list_offsets_entry("replayed", 0, timestamp=0)   # a time query reads the log
            assert (by_time.error_code, by_time.offset) == (0, 0)

            for round_ in range(TOPIC_ROUNDS):
                probe.phase = f"churn{round_}"
                churn_topics(wire, round_)
                probe.phase = f"retention{round_}"
                fill_for_retention(wire, "retained", 40)
                req_cls, _ = codec_classes("DeleteRecords")
                answer = wire.request("DeleteRecords", 2, req_cls(topics=[req_cls.DeleteRecordsTopic(
                    name="retained", partitions=[req_cls.DeleteRecordsPartition(partition_index=0, offset=-1)])],
                    timeout_ms=30000))
                assert answer.topics[0].partitions[0].error_code == 0
            probe.phase = "end"
    finally:
        probe.stop.set()
        probe.join(30)
    if probe.error is not None:
        raise probe.error
    print(probe.summary())
    assert len(probe.times) > 100, probe.summary()
    assert max(probe.times) < LOOP_BOUND_S, f"the event loop stalled: {probe.summary()}"
