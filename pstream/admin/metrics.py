"""The broker's Prometheus metrics, on a registry of its own (never prometheus-client's global one).

Two kinds of source, neither of which costs the produce or fetch path more than a few
additions per request:

- counted on the hot path, by the event loop thread only: per-API request counts, errors
  and latency (`ApiStats`, one per Kafka API, found by api key in one dict look-up), and
  produce/fetch bytes and records per topic (`TopicTraffic`; record counts come from the
  batch headers the handlers already read, never from records). These are plain Python
  numbers without locks: prometheus-client's own Histogram.observe plus Counter.inc take a
  lock each and cost ~2.6 us here, this ~0.25 us. They are exported as counter and
  histogram families when scraped, and scrapes run on the same loop (the admin server), so
  a scrape never sees a half-made update;
- read when scraped (`BrokerCollector`): per-partition log start, high watermark and size,
  per-shard fsync count and latency histogram, queue depth and busy time (kept in the C
  shard struct, see ShardPool.stats), open connections, consumer group lag and members.
  The collector reads the node through pstream.admin.view.MetricsView, never the broker.

prometheus-client's ProcessCollector adds process_resident_memory_bytes,
process_cpu_seconds_total and the rest of the process_* family; PlatformCollector python_info.

Metric names (all pstream_ ones have the labels shown):
  pstream_requests_total{api}, pstream_request_errors_total{api},
  pstream_request_duration_seconds{api} (histogram);
  pstream_produce_bytes_total{topic}, pstream_produce_records_total{topic},
  pstream_fetch_bytes_total{topic}, pstream_fetch_records_total{topic};
  pstream_partition_log_start_offset, pstream_partition_high_watermark,
  pstream_partition_log_end_offset, pstream_partition_size_bytes,
  pstream_partition_segments {topic, partition};
  pstream_fsync_total{shard}, pstream_fsync_duration_seconds{shard} (histogram),
  pstream_shard_writes_total{shard}, pstream_shard_queue_depth{shard},
  pstream_shard_busy_seconds_total{shard};
  pstream_connections; pstream_group_lag{group, topic, partition}, pstream_group_members{group};
  pstream_uptime_seconds;
  pstream_storage_free_bytes, pstream_storage_min_free_bytes, pstream_storage_degraded,
  pstream_storage_failed_partitions (broker/storage_health.py, as of its last check).
  log cleaner (Log.cleaner_stats(), kept by pstream.storage.cleaner; Kafka's kafka.log:type=LogCleaner
  and Redpanda's compaction probes in spirit): pstream_cleaner_runs_total,
  pstream_cleaner_bytes_read_total, pstream_cleaner_bytes_written_total,
  pstream_cleaner_records_removed_total, pstream_cleaner_errors_total,
  pstream_cleaner_last_clean_timestamp_seconds, pstream_cleaner_max_dirty_ratio,
  pstream_cleaner_last_clean_duration_seconds, pstream_cleaner_max_clean_duration_seconds; per
  partition of a compacted topic {topic, partition}: pstream_cleaner_dirty_ratio,
  pstream_cleaner_dirty_bytes, pstream_cleaner_partition_runs_total,
  pstream_cleaner_partition_last_clean_timestamp_seconds.
  memory bounds against misbehaving clients (pstream.broker.connection): pstream_memory_budget_bytes,
  pstream_memory_budget_used_bytes, pstream_memory_budget_waits_total, pstream_memory_budget_waiting,
  pstream_connections_closed_total{reason}, pstream_sasl_authentications_total{mechanism,outcome},
  pstream_connections_muted,
  pstream_connection_mutes_total.
  memory by owner and descriptors, from counters (pstream/admin/memory.py): pstream_memory_bytes{owner}
  (write_pool, indexes, frames, requests; python while tracemalloc runs), pstream_write_pool_bytes{shard},
  pstream_write_pool_in_use_bytes{shard}, pstream_write_pool_peak_bytes{shard},
  pstream_write_pool_waits_total{shard}, pstream_write_pool_releases_total{shard},
  pstream_write_pool_holders{shard}, pstream_index_cache_bytes{shard},
  pstream_index_cache_loads_total{shard}, pstream_index_cache_evictions_total{shard},
  pstream_open_files, pstream_max_open_files,
  pstream_python_allocated_blocks.
"""

from __future__ import annotations

import bisect
import sys
import time

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from pstream.admin import memory
from pstream.admin.view import MetricsView

# Upper bounds of the request latency histogram, in seconds: produce with acks=all waits for an
# fdatasync (~0.2-1 ms here), fetch long-polls up to max_wait_ms, JoinGroup for a rebalance.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)
UNKNOWN_API = -1     # requests with an API key pstream does not serve
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Per shard, from Log.memory_stats()["write_pool"]: (family, name, key, help).
WRITE_POOL_FAMILIES = (
    (GaugeMetricFamily, "pstream_write_pool_bytes", "capacity_bytes",
     "the shard's write buffer budget (write_pool_bytes)"),
    (GaugeMetricFamily, "pstream_write_pool_in_use_bytes", "in_use_bytes",
     "write buffer bytes the shard's partitions hold"),
    (GaugeMetricFamily, "pstream_write_pool_peak_bytes", "peak_bytes",
     "most write buffer bytes held at once"),
    (CounterMetricFamily, "pstream_write_pool_waits", "waits",
     "appends that waited for the write budget or the descriptor budget"),
    (CounterMetricFamily, "pstream_write_pool_releases", "released",
     "times an idle partition gave back its buffers and descriptors"),
    (CounterMetricFamily, "pstream_write_pool_chained", "chained",
     "batches that did not fit in a write buffer and went on into a chained one"),
    (GaugeMetricFamily, "pstream_write_pool_holders", "holders",
     "partitions holding write buffers or descriptors"),
    (GaugeMetricFamily, "pstream_index_cache_bytes", "index_cache_bytes",
     "index bytes of finalized segments the shard holds (within index_cache_bytes)"),
    (CounterMetricFamily, "pstream_index_cache_loads", "index_loads",
     "finalized segments' indexes read back from their files by a look-up"),
    (CounterMetricFamily, "pstream_index_cache_evictions", "index_evictions",
     "finalized segments' indexes dropped to stay within index_cache_bytes"))


class ApiStats:
    """Requests of one Kafka API: a latency histogram (counts per bucket, not cumulative, the
    last one past every bound), the sum of latencies, and how many failed."""

    __slots__ = ("counts", "errors", "name", "total_seconds")

    def __init__(self, name: str):
        self.name = name
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total_seconds = 0.0
        self.errors = 0

    def observe(self, seconds: float, failed) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total_seconds += seconds
        if failed:
            self.errors += 1

    @property
    def requests(self) -> int:
        return sum(self.counts)


class TopicTraffic:
    """Bytes and records of one topic produced (appended) and fetched (sent to consumers)."""

    __slots__ = ("fetch_bytes", "fetch_records", "produce_bytes", "produce_records")

    def __init__(self):
        self.produce_bytes = self.produce_records = self.fetch_bytes = self.fetch_records = 0


def _buckets(bounds, counts) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs from per-bucket counts; `bounds` ends before +Inf."""
    out, running = [], 0
    for bound, count in zip((*bounds, float("inf")), counts):
        running += count
        out.append((floatToGoString(bound), running))
    return out


class BrokerMetrics:
    """One broker's metrics: the hot-path counters and a registry that also reads the rest
    from the node's view when scraped."""

    def __init__(self, node: MetricsView, api_names: dict[int, str]):
        self.api: dict[int, ApiStats] = {key: ApiStats(name) for key, name in api_names.items()}
        self.api[UNKNOWN_API] = ApiStats("Unknown")
        self.topics: dict[str, TopicTraffic] = {}
        self.connections_closed: dict[str, int] = {}   # by reason (pstream.broker.connection CLOSE_*)
        self.connections_muted = 0                     # times a connection stopped being read for unsent output
        self.authentications: dict[tuple[str, str], int] = {}   # (mechanism, "success"/"failure") -> count
        self.other_watermarks: dict | None = None   # during a scrape with --cores: the other cores' partitions
        self.registry = CollectorRegistry()
        self.registry.register(BrokerCollector(node, self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def authenticated(self, mechanism: str | None, outcome: str) -> None:
        """Counts a SASL authentication ("success" or "failure")."""
        key = (mechanism or "none", outcome)
        self.authentications[key] = self.authentications.get(key, 0) + 1

    def traffic(self, topic: str) -> TopicTraffic:
        t = self.topics.get(topic)
        if t is None:
            t = self.topics[topic] = TopicTraffic()
        return t

    def produced(self, topic: str, nbytes: int, records: int) -> None:
        t = self.traffic(topic)
        t.produce_bytes += nbytes
        t.produce_records += records

    def fetched(self, topic: str, nbytes: int, records: int) -> None:
        t = self.traffic(topic)
        t.fetch_bytes += nbytes
        t.fetch_records += records

    def forget_topic(self, topic: str) -> None:
        """A deleted topic's series go (a topic created again under its name starts from 0)."""
        self.topics.pop(topic, None)

    def exposition(self, other_watermarks: dict | None = None) -> bytes:
        """The Prometheus text exposition of everything (run on the broker's loop); with --cores,
        core 0 gives the other cores' high watermarks, for the lag of groups on their partitions."""
        self.other_watermarks = other_watermarks
        try:
            return generate_latest(self.registry)
        finally:
            self.other_watermarks = None


class BrokerCollector:
    """Reads the node's state at scrape time; registered on the broker's registry only."""

    def __init__(self, node: MetricsView, metrics: BrokerMetrics):
        self.node = node
        self.metrics = metrics

    def describe(self):
        return []   # names are not known before a scrape (they depend on topics); no checks at registration

    def collect(self):
        yield from self._requests()
        yield from self._traffic()
        yield from self._memory_bounds()
        yield from self._memory_owners()
        node = self.node
        if not node.log_readable:
            return
        yield from self._partitions()
        yield from self._shards()
        yield from self._groups()
        yield from self._cluster()
        yield from self._transactions()
        yield from self._storage()
        yield from self._cleaner()
        connections = GaugeMetricFamily("pstream_connections", "Kafka client connections open")
        connections.add_metric([], node.connection_count)
        yield connections
        yield from self._fetch_sessions()
        uptime = GaugeMetricFamily("pstream_uptime_seconds", "seconds since the broker started")
        uptime.add_metric([], time.time() - node.started_at)
        yield uptime

    def _fetch_sessions(self):
        stats = self.node.fetch_session_stats
        open_ = GaugeMetricFamily("pstream_fetch_sessions", "incremental fetch sessions cached (KIP-227)")
        open_.add_metric([], stats["open"])
        yield open_
        for key, help_text in (("created", "fetch sessions opened"),
                               ("incremental_fetches", "fetches that continued a session (sent only what changed)"),
                               ("evicted", "fetch sessions dropped to make room or for being idle"),
                               ("not_found", "incremental fetches whose session was gone (FETCH_SESSION_ID_NOT_FOUND)")):
            family = CounterMetricFamily(f"pstream_fetch_sessions_{key}", help_text)
            family.add_metric([], stats[key])
            yield family

    def _requests(self):
        requests = CounterMetricFamily("pstream_requests", "Kafka requests answered or refused, by API",
                                       labels=["api"])
        errors = CounterMetricFamily("pstream_request_errors", "Kafka requests that failed: the handler raised, "
                                     "the request was refused (the connection closed), or the answer carries "
                                     "an error code (top-level, or a partition's in Produce and Fetch)",
                                     labels=["api"])
        latency = HistogramMetricFamily("pstream_request_duration_seconds", "time from a request's arrival to "
                                        "its answer being ready", labels=["api"])
        for stats in self.metrics.api.values():
            count = stats.requests
            if not count and not stats.errors:
                continue
            requests.add_metric([stats.name], count)
            errors.add_metric([stats.name], stats.errors)
            latency.add_metric([stats.name], _buckets(LATENCY_BUCKETS, stats.counts), stats.total_seconds)
        yield from (requests, errors, latency)

    def _memory_bounds(self):
        budget = self.node.memory_budget()
        limit = GaugeMetricFamily("pstream_memory_budget_bytes", "memory for requests and unsent responses "
                                  "(queued_max_request_bytes)")
        limit.add_metric([], budget.limit)
        used = GaugeMetricFamily("pstream_memory_budget_used_bytes", "bytes of the memory budget held by requests "
                                 "being received or answered and responses not yet sent")
        used.add_metric([], budget.used)
        waits = CounterMetricFamily("pstream_memory_budget_waits", "times a request or a fetch read waited for "
                                    "the memory budget")
        waits.add_metric([], budget.waits)
        waiting = GaugeMetricFamily("pstream_memory_budget_waiting", "requests and fetch reads waiting for the "
                                    "memory budget now")
        waiting.add_metric([], budget.waiting)
        closed = CounterMetricFamily("pstream_connections_closed", "client connections the broker closed, by rule: "
                                     "receive_timeout, oversize, idle, bad_request, handler_error, max_connections, "
                                     "eof_mid_frame, unauthenticated, authentication_failed", labels=["reason"])
        for reason, count in sorted(self.metrics.connections_closed.items()):
            closed.add_metric([reason], count)
        muted = GaugeMetricFamily("pstream_connections_muted", "connections not read now because their unsent "
                                  "responses exceed connections_max_unsent_bytes")
        muted.add_metric([], self.node.muted_connection_count)
        muted_total = CounterMetricFamily("pstream_connection_mutes", "times a connection stopped being read "
                                          "because of its unsent responses")
        muted_total.add_metric([], self.metrics.connections_muted)
        auth = CounterMetricFamily("pstream_sasl_authentications", "SASL authentications by mechanism and outcome "
                                   "(success, failure)", labels=["mechanism", "outcome"])
        for (mechanism, outcome), count in sorted(self.metrics.authentications.items()):
            auth.add_metric([mechanism, outcome], count)
        labels = ["kind", "user", "client_id", "ip"]
        rate = GaugeMetricFamily("pstream_quota_rate", "a client quota entity's use: produce and fetch bytes/s, "
                                 "request time in percent of a thread, partition mutations/s, connections/s",
                                 labels=labels)
        throttled = CounterMetricFamily("pstream_quota_throttle_seconds", "time clients of a quota entity were "
                                        "told to back off", labels=labels)
        for kind, user, client, ip, value, throttle_ms in self.node.quota_usage():
            rate.add_metric([kind, user, client, ip], value)
            throttled.add_metric([kind, user, client, ip], throttle_ms / 1000)
        yield from (limit, used, waits, waiting, closed, muted, muted_total, auth, rate, throttled)

    def _memory_owners(self):
        node = self.node
        owners = GaugeMetricFamily("pstream_memory_bytes", "bytes held, by owner: write_pool (segment write "
                                   "buffers), indexes (segment index arrays), frames (kept receive buffers), "
                                   "requests (requests and unsent responses), python (while tracemalloc runs)",
                                   labels=["owner"])
        for owner, value in memory.owners(node).items():
            owners.add_metric([owner], value)
        yield owners
        files = GaugeMetricFamily("pstream_open_files", "descriptors the process holds")
        files.add_metric([], memory.open_files())
        yield files
        blocks = GaugeMetricFamily("pstream_python_allocated_blocks", "memory blocks Python's allocator holds "
                                   "(sys.getallocatedblocks)")
        blocks.add_metric([], sys.getallocatedblocks())
        yield blocks
        if not node.log_readable:
            return
        limit = GaugeMetricFamily("pstream_max_open_files", "segment descriptors partitions may keep open "
                                  "between appends (max_open_files)")
        limit.add_metric([], node.log.max_open_files)
        yield limit
        pools = node.log.memory_stats()["write_pool"]
        for kind, name, key, doc in WRITE_POOL_FAMILIES:
            family = kind(name, doc, labels=["shard"])
            for shard, pool in enumerate(pools):
                family.add_metric([str(shard)], pool[key])
            yield family

    def _traffic(self):
        families = [CounterMetricFamily(f"pstream_{what}", doc, labels=["topic"]) for what, doc in (
            ("produce_bytes", "bytes of record batches appended by Produce requests"),
            ("produce_records", "records appended by Produce requests"),
            ("fetch_bytes", "bytes of record batches sent in Fetch responses"),
            ("fetch_records", "records in the batches sent in Fetch responses"))]
        for topic, t in self.metrics.topics.items():
            for family, value in zip(families, (t.produce_bytes, t.produce_records, t.fetch_bytes,
                                                t.fetch_records)):
                family.add_metric([topic], value)
        yield from families

    def _partitions(self):
        labels = ["topic", "partition"]
        start = GaugeMetricFamily("pstream_partition_log_start_offset", "first offset of the partition's log",
                                  labels=labels)
        hw = GaugeMetricFamily("pstream_partition_high_watermark", "offset up to which consumers may read "
                               "(durable records under flush=always)", labels=labels)
        end = GaugeMetricFamily("pstream_partition_log_end_offset", "one past the last appended offset",
                                labels=labels)
        size = GaugeMetricFamily("pstream_partition_size_bytes", "bytes of the partition's segments", labels=labels)
        segments = GaugeMetricFamily("pstream_partition_segments", "segments of the partition's log", labels=labels)
        # storage damage, counted by the engine (Partition.corrupt_reads, Partition.damage)
        corrupt = CounterMetricFamily("pstream_partition_corrupt_reads", "reads that met a corrupt batch (each "
                                      "damaged file position is logged once)", labels=labels)
        damaged = GaugeMetricFamily("pstream_partition_damaged", "1: recovery found damage followed by valid "
                                    "batches; writes refused until `pstream log truncate`", labels=labels)
        log = self.node.log
        for name in log.topics():
            for part in log.get_topic(name):
                values = [name, str(part.number)]
                nbytes, nsegs, _buffers, _indexes = part.stats()
                start.add_metric(values, part.log_start_offset)
                hw.add_metric(values, part.high_watermark)
                end.add_metric(values, part.log_end_offset)
                size.add_metric(values, nbytes)
                segments.add_metric(values, nsegs)
                corrupt.add_metric(values, part.corrupt_reads)
                damaged.add_metric(values, 0 if part.damage is None else 1)
        yield from (start, hw, end, size, segments, corrupt, damaged)

    def _shards(self):
        labels = ["shard"]
        fsyncs = CounterMetricFamily("pstream_fsync", "fdatasyncs of appended data by the shard threads",
                                     labels=labels)
        fsync_time = HistogramMetricFamily("pstream_fsync_duration_seconds", "time of each fdatasync",
                                           labels=labels)
        writes = CounterMetricFamily("pstream_shard_writes", "segment buffer writes by the shard", labels=labels)
        depth = GaugeMetricFamily("pstream_shard_queue_depth", "appends submitted to the shard and not yet done "
                                  "(appended, and durable where they wait for it)", labels=labels)
        busy = CounterMetricFamily("pstream_shard_busy_seconds", "seconds the shard thread spent appending, "
                                   "writing and syncing", labels=labels)
        for i, s in enumerate(self.node.log.shard_stats()):
            shard = [str(i)]
            fsyncs.add_metric(shard, s["syncs"])
            fsync_time.add_metric(shard, [(floatToGoString(bound), count) for bound, count in s["sync_buckets"]],
                                  s["sync_s"])
            writes.add_metric(shard, s["writes"])
            depth.add_metric(shard, s["queue_depth"])
            busy.add_metric(shard, s["busy_s"])
        yield from (fsyncs, fsync_time, writes, depth, busy)

    def _storage(self):
        storage = self.node.last_storage_check()   # no statvfs or partition walk per scrape
        for name, doc, value in (
                ("pstream_storage_free_bytes", "free bytes on the data directory's filesystem",
                 storage["free_bytes"]),
                ("pstream_storage_min_free_bytes", "storage_min_free_bytes in force: below it Produce is refused",
                 storage["min_free_bytes"]),
                ("pstream_storage_degraded", "1 while Produce is refused for lack of free space",
                 int(storage["degraded"])),
                ("pstream_storage_failed_partitions", "partitions whose writes failed (appends refused)",
                 len(storage["failed_partitions"]))):
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            yield family

    def _cleaner(self):
        """From Log.cleaner_stats() (pstream.storage.cleaner.LogCleaner.stats): totals of every
        pass, and per partition of a compacted topic ("topic-N": {...}) what the cleaner sees."""
        stats = self.node.log.cleaner_stats()
        totals = (("runs", "pstream_cleaner_runs", "cleaning passes over a partition that rewrote segments"),
                  ("bytes_read", "pstream_cleaner_bytes_read", "bytes of segments the cleaner read"),
                  ("bytes_written", "pstream_cleaner_bytes_written", "bytes of cleaned segments the cleaner wrote"),
                  ("records_removed", "pstream_cleaner_records_removed",
                   "records the cleaner removed: overwritten keys, expired tombstones, keyless records"),
                  ("errors", "pstream_cleaner_errors", "cleaning passes that failed (logged; retried later)"))
        for key, name, doc in totals:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], stats.get(key, 0))
            yield family
        for key, name, doc in (
                ("last_clean_ms", "pstream_cleaner_last_clean_timestamp_seconds",
                 "Unix time of the cleaner's last pass (0: none yet)"),
                ("max_dirty_ratio", "pstream_cleaner_max_dirty_ratio",
                 "the highest dirty ratio of any compacted partition (Kafka's max-dirty-percent / 100)"),
                ("last_clean_duration_s", "pstream_cleaner_last_clean_duration_seconds", "time of the last pass"),
                ("max_clean_duration_s", "pstream_cleaner_max_clean_duration_seconds",
                 "time of the longest pass (Kafka's max-clean-time-secs)")):
            family = GaugeMetricFamily(name, doc)
            value = stats.get(key) or 0
            family.add_metric([], max(value, 0) / (1000 if key.endswith("_ms") else 1))
            yield family
        labels = ["topic", "partition"]
        ratio = GaugeMetricFamily("pstream_cleaner_dirty_ratio", "share of the partition's cleanable log not yet "
                                  "cleaned; it is cleaned once this passes min.cleanable.dirty.ratio", labels=labels)
        dirty = GaugeMetricFamily("pstream_cleaner_dirty_bytes", "bytes of closed segments not yet cleaned",
                                  labels=labels)
        runs = CounterMetricFamily("pstream_cleaner_partition_runs", "cleaning passes that rewrote segments of the "
                                   "partition", labels=labels)
        when = GaugeMetricFamily("pstream_cleaner_partition_last_clean_timestamp_seconds", "Unix time of the "
                                 "partition's last cleaning pass (0: none yet)", labels=labels)
        for name, part in sorted(stats.get("partitions", {}).items()):
            topic, _, number = name.rpartition("-")
            values = [topic, number]
            ratio.add_metric(values, part.get("dirty_ratio", 0.0))
            dirty.add_metric(values, part.get("dirty_bytes", 0))
            runs.add_metric(values, part.get("runs", 0))
            when.add_metric(values, max(part.get("last_clean_ms") or 0, 0) / 1000)
        yield from (ratio, dirty, runs, when)

    def _groups(self):
        groups = self.node.groups
        lag = GaugeMetricFamily("pstream_group_lag", "high watermark minus the group's committed offset",
                                labels=["group", "topic", "partition"])
        members = GaugeMetricFamily("pstream_group_members", "members of the consumer group", labels=["group"])
        for coordinator in groups.coordinators() if groups is not None else ():   # a cluster's: several
            for group_id in sorted(coordinator.store.state.offsets):
                watermarks = self.metrics.other_watermarks
                for (topic, partition), value in sorted(coordinator.lag(group_id, watermarks).items()):
                    lag.add_metric([group_id, topic, str(partition)], value)
            for group_id, group in coordinator.groups.items():
                members.add_metric([group_id], len(group.members))
        yield from (lag, members)

    def _cluster(self):
        """Cluster mode only: who is alive, what is under-replicated, how far followers lag."""
        status = self.node.cluster_status()
        if status is None:
            return
        me = status["node_id"]
        brokers = GaugeMetricFamily("pstream_cluster_brokers", "brokers of the cluster, alive (registered in "
                                    "etcd) or down (named as a replica, not registered)", labels=["state"])
        for state in ("alive", "down"):
            brokers.add_metric([state], sum(1 for b in status["brokers"] if b["alive"] == (state == "alive")))
        yield brokers
        yield GaugeMetricFamily("pstream_cluster_controller", "1 while this broker is the controller",
                                value=int(status["controller"] == me))
        yield GaugeMetricFamily("pstream_cluster_leader_partitions", "partitions this broker leads",
                                value=status["leaders_here"])
        yield GaugeMetricFamily("pstream_cluster_under_replicated_partitions",
                                "partitions this broker leads with fewer in-sync replicas than replicas (Kafka's "
                                "UnderReplicatedPartitions: summed over brokers, the cluster's count)",
                                value=sum(1 for p in status["under_replicated_partitions"] if p["leader"] == me))
        yield GaugeMetricFamily("pstream_cluster_leaderless_partitions", "partitions of the cluster without a live "
                                "leader, as this broker sees them", value=len(status["leaderless_partitions"]))
        lag = GaugeMetricFamily("pstream_cluster_replica_lag", "offsets a follower has yet to fetch of a partition "
                                "this broker leads", labels=["topic", "partition", "replica"])
        for row in status["replica_lag"]:
            lag.add_metric([row["topic"], str(row["partition"]), str(row["replica"])], row["lag"])
        yield lag
        counters = status["counters"]
        for name, key, doc in (("isr_shrinks", "isr_shrinks", "ISR shrinks of partitions this broker leads"),
                               ("isr_expands", "isr_expands", "ISR expansions of partitions this broker leads"),
                               ("leader_elections", "elections", "leaders this broker elected as the controller"),
                               ("leaderships", "leaderships", "times this broker became a partition's leader")):
            yield CounterMetricFamily(f"pstream_cluster_{name}", f"{doc}, since start", value=counters[key])

    def _transactions(self):
        txns = self.node.transactions
        states = GaugeMetricFamily("pstream_transactions", "transactional ids by state", labels=["state"])
        ended = CounterMetricFamily("pstream_transactions_ended", "transactions ended since start, by outcome: "
                                    "committed, aborted (by the client or after a fence or timeout), timed_out "
                                    "(aborted by the broker), fenced (aborted by a new producer)", labels=["outcome"])
        if txns is not None and txns.active:
            counts: dict[str, int] = {}
            for meta in txns.list():
                counts[meta.state.kafka_name] = counts.get(meta.state.kafka_name, 0) + 1
            for state, count in sorted(counts.items()):
                states.add_metric([state], count)
            for outcome, count in txns.counters.items():
                ended.add_metric([outcome], count)
        yield from (states, ended)


def merge_by_core(texts: dict[int, bytes | str]) -> bytes:
    """One exposition of several cores' (pstream serve --cores): every sample gains a `core`
    label, and each family is written once with the samples of all."""
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    for core, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text.decode() if isinstance(text, bytes) else text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                              family.unit))
            merged.samples.extend(sample._replace(labels={**sample.labels, "core": str(core)})
                                  for sample in family.samples)

    class _Merged:
        def collect(self):
            return families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)
