"""The admin API's endpoints: JSON views of one broker's state, and /metrics.

    GET /v1/status/ready     200 {"status": "ready"} while serving Kafka clients, else 503; 200
                             {"status": "degraded", "storage": {...}} while Produce is refused for
                             lack of free space or a partition's writes failed (fetches go on, so
                             the broker stays in service; pstream_storage_degraded alerts)
    GET /v1/brokers          this node: id, cluster, address, version, uptime, shards, data dir, disk,
                             and Redpanda's Broker fields (num_cores, membership_status, is_alive, ...)
    GET /v1/brokers/ID       the same object alone (404 for another id)
    GET /v1/topics           every topic: partitions, records, bytes, segments
    GET /v1/topics/NAME      one topic's partitions (offsets, sizes, segments) and configs (404 if unknown)
    GET /v1/groups           consumer groups: state, members, committed offsets and lag per partition
    GET /v1/transactions     transactional ids: state, producer id and epoch, timeout, start, partitions
    GET /v1/config           the effective broker settings (as a TOML file would give them)
    GET /v1/debug/memory     RSS, write buffers per shard, tracemalloc's top sites (?top=N);
    POST /v1/debug/memory    ?start=1 / ?stop=1 switch tracemalloc (a GET never changes state)
    GET /metrics             Prometheus text exposition (see pstream.admin.metrics)
    GET /public_metrics      the same (where Redpanda serves its public metrics)

and the parts of Redpanda's admin API that rpk calls (pstream.admin.redpanda).

Handlers run on the broker's event loop and read the node through a narrow interface
(`pstream.admin.view.NodeView`), never the Broker object; the only blocking work (walking
the data directory for its size) goes to a thread. Only POST changes anything.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

import pstream
from pstream.admin import memory
from pstream.admin.http import HttpError, Request, Response, Router
from pstream.admin.metrics import CONTENT_TYPE
from pstream.admin.redpanda import RedpandaApi, broker_fields
from pstream.admin.view import NodeView
from pstream.protocol.consumer_protocol import decode_assignment

CONSUMER_PROTOCOL = "consumer"


def directory_bytes(path: str) -> int:
    """Bytes of the regular files under `path` (what du would count, by st_blocks)."""
    total = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:   # removed meanwhile (retention, a deleted topic)
                        continue
        except OSError:
            continue
    return total


def admin_url(address: tuple[str, int]) -> str:
    host, port = address
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class AdminApi:
    def __init__(self, node: NodeView):
        self.node = node

    def router(self) -> Router:
        r = Router()
        r.get("/v1/status/ready", self.ready)
        r.get("/v1/brokers", self.brokers)
        r.get("/v1/brokers/{node_id}", self.broker)
        r.get("/v1/topics", self.topics)
        r.get("/v1/topics/{name}", self.topic)
        r.get("/v1/groups", self.groups)
        r.get("/v1/transactions", self.transactions)
        r.get("/v1/config", self.config)
        r.get("/v1/debug/memory", self.memory)
        r.post("/v1/debug/memory", self.memory)   # ?start=1 / ?stop=1 switch tracemalloc
        r.get("/metrics", self.metrics)
        r.get("/public_metrics", self.metrics)
        RedpandaApi(self.node).add_routes(r)
        return r

    def _need_log(self):
        if not self.node.log_readable:
            raise HttpError(503, f"the broker is {self.node.state}")
        return self.node.log

    # --- endpoints ------------------------------------------------------------------------

    def ready(self, request: Request) -> Response:
        state = self.node.state
        if state != "serving":
            return Response.json({"status": state}, 503)
        storage = self.node.storage_status()
        if storage["degraded"] or storage["failed_partitions"]:
            return Response.json({"status": "degraded", "storage": storage})
        return Response.json({"status": "ready"})

    async def brokers(self, request: Request) -> Response:
        return Response.json([await self._this_broker()])

    async def broker(self, request: Request, node_id: str) -> Response:
        if node_id != str(self.node.node_id):
            raise HttpError(404, f"no such broker: {node_id} (this is node {self.node.node_id})")
        return Response.json(await self._this_broker())

    async def _this_broker(self) -> dict:
        """pstream's description of this node with rpadmin.Broker's fields (which rpk reads) added."""
        b = self.node
        log = self._need_log()
        data_dir = os.path.abspath(b.data_dir)
        used = await asyncio.get_running_loop().run_in_executor(None, directory_bytes, data_dir)
        disk = shutil.disk_usage(data_dir)
        admin = b.admin_address
        return {
            "node_id": b.node_id, "cluster_id": b.cluster_id, "host": b.host, "port": b.port,
            "admin_url": admin_url(admin) if admin else None,
            "version": pstream.__version__, "state": b.state,
            "started_at_ms": int(b.started_at * 1000), "uptime_seconds": round(time.time() - b.started_at, 3),
            "shards": log.shards, "data_dir": data_dir,
            "disk": {"data_bytes": used, "free_bytes": disk.free, "total_bytes": disk.total},
            "storage": b.storage_status(),
            "connections": b.connection_count, "topics": len(log.topics()),
            **broker_fields(b, log.shards, data_dir, disk.free, disk.total),
        }

    async def topics(self, request: Request) -> Response:
        log = self._need_log()
        stats = await self.node.partition_stats()
        out = []
        for name in log.topics():
            parts = stats.get(name, [])
            out.append({"name": name, "internal": self.node.is_internal(name),
                        "partitions": log.get_topic(name).partitions, "records": sum(p["records"] for p in parts),
                        "size_bytes": sum(p["size_bytes"] for p in parts),
                        "segments": sum(p["segments"] for p in parts)})
        return Response.json(out)

    async def topic(self, request: Request, name: str) -> Response:
        log = self._need_log()
        if name not in log:
            raise HttpError(404, f"no such topic: {name}")
        topic = log.get_topic(name)
        configs = self.node.topic_configs(name)
        parts = (await self.node.partition_stats(name)).get(name, [])
        return Response.json({"name": name, "topic_id": str(topic.topic_id),
                              "internal": self.node.is_internal(name),
                              "records": sum(p["records"] for p in parts),
                              "size_bytes": sum(p["size_bytes"] for p in parts),
                              "partitions": parts, "configs": configs})

    async def groups(self, request: Request) -> Response:
        self._need_log()
        coordinator = self.node.groups
        if coordinator is None or not coordinator.active:
            raise HttpError(503, "the group coordinator is not running")
        watermarks = high_watermarks(await self.node.partition_stats())
        out = []
        for shard in coordinator.coordinators():   # one alone; in a cluster, one per offsets partition led here
            out += self._groups_of(shard, watermarks)
        return Response.json(sorted(out, key=lambda g: g["group_id"]))

    @staticmethod
    def _groups_of(coordinator, watermarks) -> list[dict]:
        committed_all = coordinator.store.state.offsets
        out = []
        for group_id in sorted(set(coordinator.groups) | set(committed_all)):
            group = coordinator.groups.get(group_id)
            members = []
            if group is not None:
                for m in group.members.values():
                    member = {"member_id": m.member_id, "instance_id": m.instance_id, "client_id": m.client_id,
                              "client_host": m.client_host}
                    if group.protocol_type == CONSUMER_PROTOCOL and m.assignment:
                        try:
                            member["assignment"] = decode_assignment(m.assignment)
                        except ValueError:   # not what the consumer protocol writes: shown as unknown
                            member["assignment"] = None
                    members.append(member)
            offsets = []
            for (topic, partition), c in sorted(committed_all.get(group_id, {}).items()):
                entry = {"topic": topic, "partition": partition, "committed_offset": c.offset,
                         "high_watermark": None, "lag": None}
                hw = watermarks.get((topic, partition))   # every core's, with --cores
                if hw is not None:
                    entry.update(high_watermark=hw, lag=hw - c.offset)
                offsets.append(entry)
            out.append({"group_id": group_id, "state": group.state.value if group else "Empty",
                        "protocol_type": (group.protocol_type if group else None) or "",
                        "protocol": (group.protocol_name if group else None) or "",
                        "generation": group.generation if group else 0,
                        "members": members, "offsets": offsets,
                        "lag": sum(o["lag"] for o in offsets if o["lag"] is not None)})
        return out

    def transactions(self, request: Request) -> Response:
        coordinator = self.node.transactions
        if coordinator is None or not coordinator.active:
            raise HttpError(503, "the transaction coordinator is not running")
        return Response.json([{"transactional_id": m.transactional_id, "state": m.state.kafka_name,
                               "producer_id": m.producer_id, "producer_epoch": m.producer_epoch,
                               "timeout_ms": m.timeout_ms, "start_ms": m.start_ms,
                               "last_update_ms": m.last_update_ms,
                               "partitions": [{"topic": t, "partition": p} for t, p in sorted(m.partitions)]}
                              for m in sorted(coordinator.list(), key=lambda m: m.transactional_id)])

    def config(self, request: Request) -> Response:
        b = self.node
        settings = b.settings()
        # What was chosen at start where the settings left it open.
        effective = {"advertise": f"{b.host}:{b.port}", "cluster_id": b.cluster_id,
                     "shards": b.log.shards if b.log is not None else None}
        if b.admin_address is not None:
            effective["admin_listen"] = f"{b.admin_address[0]}:{b.admin_address[1]}"
        if b.bound_address is not None:
            effective["listen"] = f"{b.bound_address[0]}:{b.bound_address[1]}"
        return Response.json({"settings": settings, "effective": {**settings, **effective}})

    def memory(self, request: Request) -> Response:
        return Response.json(memory.report(self.node, request.query, change=request.method == "POST"))

    async def metrics(self, request: Request) -> Response:
        return Response(200, await self.node.metrics_text(), CONTENT_TYPE)


def high_watermarks(stats: dict[str, list[dict]]) -> dict[tuple[str, int], int]:
    """{(topic, partition): high watermark} of partition_stats' answer."""
    return {(name, p["partition"]): p["high_watermark"] for name, parts in stats.items() for p in parts}


def partition_stats(log, topic: str | None = None) -> dict[str, list[dict]]:
    """{topic: [each partition's offsets and size]} of the partitions this Log's core holds (all
    topics', or one's)."""
    out = {}
    for name in [topic] if topic is not None else log.topics():
        out[name] = []
        for part in log.get_topic(name) if name in log else ():
            size, segments, _buffers, _indexes = part.stats()
            hw = part.high_watermark
            out[name].append({"partition": part.number, "log_start_offset": part.log_start_offset,
                              "high_watermark": hw, "log_end_offset": part.log_end_offset,
                              "records": hw - part.log_start_offset, "size_bytes": size, "segments": segments})
    return out
