"""What the admin package reads from the node it serves: the narrow interface, and nothing else.

The admin package never imports the broker and never holds it: the broker hands its AdminApi
and its BrokerMetrics an object with the attributes and methods below
(pstream/broker/admin_view.py builds it). `MetricsView` is what /metrics and
/v1/debug/memory read; `NodeView` adds what the JSON endpoints read. Through them admin
sees topics, partitions' offsets and sizes (through the Log), shard stats, group and transaction
summaries, health and counts, and cannot reach into connections, handlers or settings objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:   # the view's types, never imported at run time
    from pstream.coordinator.groups import GroupCoordinator
    from pstream.coordinator.transactions import TransactionCoordinator
    from pstream.log import Log


class MemoryBudgetUse(NamedTuple):
    """The request/response memory budget (queued_max_request_bytes) as read at one moment."""

    limit: int      # bytes
    used: int       # bytes held by requests and unsent responses
    waits: int      # takers that have had to wait, since start
    waiting: int    # takers waiting now


class MetricsView(Protocol):
    """What the metrics collector and the memory report read. On the event loop; none of it blocks."""

    started_at: float                            # time.time() at start

    @property
    def log(self) -> Log | None: ...             # topics, partitions (offsets, sizes), shard stats

    @property
    def log_readable(self) -> bool: ...

    @property
    def groups(self) -> GroupCoordinator | None: ...   # group summaries, committed offsets and lag

    @property
    def transactions(self) -> TransactionCoordinator | None: ...   # transactional ids, their state, counts

    @property
    def connection_count(self) -> int: ...

    @property
    def fetch_session_stats(self) -> dict: ...

    def quota_usage(self) -> list: ...           # [(kind, user, client id, ip, rate, throttle ms total)]   # open, created, incremental_fetches, evicted, not_found

    @property
    def muted_connection_count(self) -> int: ...   # not read now: too many unsent response bytes

    def cluster_status(self) -> dict | None: ...   # cluster mode's view (ClusterNode.status); None alone

    def memory_budget(self) -> MemoryBudgetUse: ...

    def frame_pool_stats(self) -> dict: ...      # receive buffers kept for reuse: count, bytes, by size

    def last_storage_check(self) -> dict: ...    # as storage_status(), as of the disk watch's last round


class NodeView(MetricsView, Protocol):
    """One node as the admin API sees it. Read on the event loop; none of it blocks."""

    node_id: int
    cluster_id: str
    host: str
    port: int
    state: str                                   # starting, serving, stopping, stopped
    data_dir: str
    admin_address: tuple[str, int] | None
    bound_address: tuple[str, int] | None

    def storage_status(self) -> dict: ...        # free space, threshold, failed partitions (read now)

    def is_internal(self, topic: str) -> bool: ...

    def topic_configs(self, topic: str) -> dict[str, dict[str, Any]]: ...   # kafka name -> value, source

    def settings(self) -> dict: ...              # the effective settings, as a TOML file would give them

    def settings_schema(self) -> dict[str, dict[str, Any]]: ...
    # per setting name (as in settings()): "type" (boolean, integer, number, string), "description",
    # "default" (as settings() gives it), "kafka" (Kafka's broker name or None), "dynamic" (changes
    # at run time through Kafka's AlterConfigs), "unlimited" (-1 allowed), "enum" (the choices or None)

    def partition_core(self, topic: str, partition: int) -> int: ...   # the shard that owns the partition

    def partition_leader(self, topic: str, partition: int) -> int: ...   # its broker's node id (-1: down)

    def partition_replica(self, topic: str, partition: int) -> int: ...  # the node id holding it

    async def partition_stats(self, topic: str | None = None) -> dict[str, list[dict]]: ...   # every core's

    async def metrics_text(self) -> bytes: ...   # with --cores, every core's (a `core` label on each sample)

    async def alter_cluster_configs(self, changes: list[tuple[str, str | None]],
                                    validate_only: bool = False) -> None: ...   # ConfigError names a bad one         # the Prometheus exposition
