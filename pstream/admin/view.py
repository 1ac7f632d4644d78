"""What the admin API reads from the node it serves: the narrow interface, and nothing else.

The admin package never imports the broker: the broker hands its AdminApi an object with
the attributes and methods below (pstream/broker/admin_view.py builds it), so the admin
endpoints see topics, partitions' offsets and sizes (through the Log), shard stats, group
summaries and health, and cannot reach into connections, handlers or settings objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:   # the view's types, never imported at run time
    from pstream.coordinator.groups import GroupCoordinator
    from pstream.log import Log


class NodeView(Protocol):
    """One node as the admin API sees it. Read on the event loop; none of it blocks."""

    node_id: int
    cluster_id: str
    host: str
    port: int
    state: str                                   # starting, serving, stopping, stopped
    started_at: float                            # time.time() at start
    data_dir: str
    admin_address: tuple[str, int] | None
    bound_address: tuple[str, int] | None

    @property
    def log(self) -> Log | None: ...             # topics, partitions (offsets, sizes), shard stats

    @property
    def log_readable(self) -> bool: ...

    @property
    def groups(self) -> GroupCoordinator | None: ...   # group summaries and committed offsets

    @property
    def connection_count(self) -> int: ...

    def storage_status(self) -> dict: ...        # free space, threshold, failed partitions (read now)

    def is_internal(self, topic: str) -> bool: ...

    def topic_configs(self, topic: str) -> dict[str, dict[str, Any]]: ...   # kafka name -> value, source

    def settings(self) -> dict: ...              # the effective settings, as a TOML file would give them

    @property
    def frame_pool(self) -> Any: ...             # receive buffers kept for reuse: .stats()

    @property
    def memory(self) -> Any: ...                 # the request/response memory budget: .limit, .used

    def metrics_text(self) -> bytes: ...         # the Prometheus exposition
