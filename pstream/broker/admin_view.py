"""The broker as the admin package sees it (pstream/admin/view.py's NodeView, and the
MetricsView within it): a narrow adapter, so the admin API and the metrics collector read
what they need without importing the broker or holding it."""

from __future__ import annotations

import time

from pstream.admin.api import high_watermarks, partition_stats
from pstream.admin.metrics import merge_by_core
from pstream.admin.view import MemoryBudgetUse
from pstream.broker.config import settings_of, settings_schema
from pstream.broker.handlers.common import internal_topic_error
from pstream.broker.topic_configs import TOPIC_CONFIG_NAMES, ConfigSource, describe_topic_config
from pstream.log import shard_for

class BrokerAdminView:
    """Reads through to one Broker; every attribute is read when asked (never cached)."""

    __slots__ = ("_broker",)

    def __init__(self, broker):
        self._broker = broker

    node_id = property(lambda self: self._broker.node_id)
    cluster_id = property(lambda self: self._broker.cluster_id)
    host = property(lambda self: self._broker.host)
    port = property(lambda self: self._broker.port)
    state = property(lambda self: self._broker.state)
    started_at = property(lambda self: self._broker.started_at)
    data_dir = property(lambda self: self._broker.config.data_dir)
    admin_address = property(lambda self: self._broker.admin_address)
    bound_address = property(lambda self: self._broker.bound_address)
    log = property(lambda self: self._broker.log)
    log_readable = property(lambda self: self._broker.log_readable)
    groups = property(lambda self: self._broker.groups)
    transactions = property(lambda self: self._broker.transactions)
    connection_count = property(lambda self: len(self._broker.connections))
    fetch_session_stats = property(lambda self: {"open": len(self._broker.fetch_sessions.sessions),
                                                 **self._broker.fetch_sessions.counters})
    muted_connection_count = property(lambda self: sum(1 for c in self._broker.connections if c.muted))

    def cluster_status(self) -> dict | None:
        cluster = self._broker.cluster
        return cluster.status() if cluster is not None else None

    def memory_budget(self) -> MemoryBudgetUse:
        budget = self._broker.memory
        return MemoryBudgetUse(budget.limit, budget.used, budget.waits, budget.waiting)

    def frame_pool_stats(self) -> dict:
        return self._broker.frame_pool.stats()

    def last_storage_check(self) -> dict:
        return self._broker.storage.status()

    def storage_status(self) -> dict:
        return self._broker.storage.status(self._broker.log)

    def is_internal(self, topic: str) -> bool:
        return internal_topic_error(topic) is not None

    def topic_configs(self, topic: str) -> dict:
        t = self._broker.log.get_topic(topic)
        out = {}
        for name in TOPIC_CONFIG_NAMES:
            value, source, _synonyms = describe_topic_config(name, t, self._broker)
            out[name] = {"value": value, "source": ConfigSource(source).name}
        return out

    def settings(self) -> dict:
        return settings_of(self._broker.config)

    def settings_schema(self) -> dict:
        return settings_schema()

    def partition_core(self, topic: str, partition: int) -> int:
        return shard_for(topic, partition, self._broker.log.shards, self._broker.log.cores)

    def partition_leader(self, topic: str, partition: int) -> int:
        return self._broker.core_map.leader(topic, partition)

    def partition_replica(self, topic: str, partition: int) -> int:
        return self._broker.core_map.replica(topic, partition)

    async def alter_cluster_configs(self, changes: list[tuple[str, str | None]], validate_only: bool = False) -> None:
        """rpk's cluster config set/import: cluster-wide dynamic broker configs, by Kafka name."""
        def change():
            return self._broker.alter_dynamic_configs("", changes, validate_only=validate_only)
        await (change() if self._broker.cluster is None else self._broker.cluster.shared.serialized(change))

    def quota_usage(self) -> list:
        """[(kind, user, client id, ip, rate, throttled ms in all)] of the quota entities clients used."""
        return list(self._broker.quota_enforcer.metrics(time.monotonic()))

    async def partition_stats(self, topic: str | None = None) -> dict[str, list[dict]]:
        """{topic: [partition offsets and size, by partition]}; with --cores, every core's partitions."""
        own = partition_stats(self._broker.log, topic)
        supervisor = self._broker.supervisor
        if supervisor is None:
            return own
        for other in (await supervisor.ask_live({"op": "partition_stats", "topic": topic})).values():
            for name, parts in other.items():
                own.setdefault(name, []).extend(parts)
        for parts in own.values():
            parts.sort(key=lambda p: p["partition"])
        return own

    async def metrics_text(self) -> bytes:
        """This broker's exposition; with --cores, every core's, each sample labelled with its core
        (and the lag of groups on the other cores' partitions in core 0's)."""
        supervisor = self._broker.supervisor
        if supervisor is None:
            return self._broker.metrics.exposition()
        others = await supervisor.ask_live({"op": "metrics"})
        watermarks = {}
        for stats in (await supervisor.ask_live({"op": "partition_stats", "topic": None})).values():
            watermarks.update(high_watermarks(stats))
        return merge_by_core({0: self._broker.metrics.exposition(watermarks), **others})
