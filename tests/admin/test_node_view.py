"""The admin package reads a narrow view of the node (pstream/admin/view.py), never the broker:
it imports nothing from pstream.broker, the broker's adapter offers every member of the view,
and the metrics collector scrapes an object that has MetricsView's members and nothing else."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

import pstream
from pstream.admin.metrics import BrokerMetrics
from pstream.admin.view import MemoryBudgetUse, MetricsView, NodeView
from pstream.broker.admin_view import BrokerAdminView


def test_the_admin_package_imports_nothing_of_the_broker() -> None:
    code = ("import sys, pstream.admin.api, pstream.admin.http, pstream.admin.memory, pstream.admin.metrics, "
            "pstream.admin.view; print(sorted(m for m in sys.modules if m.startswith('pstream.broker')))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def members(view: type) -> set[str]:
    """The view's attributes (annotated, its bases' too) and methods and properties."""
    annotated = {name for cls in view.__mro__ for name in vars(cls).get("__annotations__", {})}
    return annotated | {name for name, _ in inspect.getmembers(view) if not name.startswith("_")}


def test_the_broker_adapter_offers_every_member_of_the_view() -> None:
    wanted = members(NodeView)
    offered = {name for name, _ in inspect.getmembers(BrokerAdminView) if not name.startswith("_")}
    assert members(MetricsView) <= wanted   # the metrics view is part of the node view
    assert wanted <= offered, wanted - offered


class MetricsOnlyView:
    """Exactly MetricsView's members, over a real Log: no broker behind it."""

    def __init__(self, log):
        self.started_at = time.time() - 5
        self.log = log
        self.log_readable = True
        self.groups = None
        self.transactions = None
        self.connection_count = 3
        self.muted_connection_count = 1
        self.fetch_session_stats = {"open": 2, "created": 5, "incremental_fetches": 40, "evicted": 1, "not_found": 0}

    def cluster_status(self) -> None:
        return None   # one broker alone: no cluster metrics

    def memory_budget(self) -> MemoryBudgetUse:
        return MemoryBudgetUse(limit=1000, used=200, waits=7, waiting=2)

    def frame_pool_stats(self) -> dict:
        return {"pooled_buffers": 1, "pooled_bytes": 4096, "by_class": {"4096": 1}}

    def quota_usage(self) -> list:
        return [("produce", "alice", "", "", 1500.0, 250.0)]

    def last_storage_check(self) -> dict:
        return {"free_bytes": 10, "total_bytes": 100, "min_free_bytes": 20, "degraded": True,
                "failed_partitions": [{"topic": "t", "partition": 0, "errno": 28, "error": "", "file": "x"}]}


def test_the_metrics_need_nothing_beyond_the_metrics_view(tmp_path) -> None:
    methods = {name for name in vars(MetricsOnlyView) if not name.startswith("_")}
    offered = methods | set(vars(MetricsOnlyView(None)))
    assert offered == members(MetricsView)
    log = pstream.Log(str(tmp_path), shards=2)
    try:
        log.create_topic("t", 2)
        text = BrokerMetrics(MetricsOnlyView(log), {0: "Produce"}).exposition().decode()
    finally:
        log.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("pstream_connections", ())] == 3
    assert samples[("pstream_connections_muted", ())] == 1
    assert samples[("pstream_fetch_sessions", ())] == 2
    assert samples[("pstream_fetch_sessions_incremental_fetches_total", ())] == 40
    assert samples[("pstream_memory_budget_used_bytes", ())] == 200
    assert samples[("pstream_memory_budget_waiting", ())] == 2
    assert samples[("pstream_memory_bytes", (("owner", "frames"),))] == 4096
    assert samples[("pstream_storage_degraded", ())] == 1
    assert samples[("pstream_storage_failed_partitions", ())] == 1
    assert samples[("pstream_partition_high_watermark", (("partition", "1"), ("topic", "t")))] == 0
    assert {labels for name, labels in samples if name == "pstream_write_pool_holders"} \
        == {(("shard", "0"),), (("shard", "1"),)}
    assert samples[("pstream_uptime_seconds", ())] >= 5
    alice = (("client_id", ""), ("ip", ""), ("kind", "produce"), ("user", "alice"))
    assert samples[("pstream_quota_rate", alice)] == 1500 and samples[("pstream_quota_throttle_seconds_total", alice)] == 0.25
