"""The parts of Redpanda's admin API that rpk calls, answered for one pstream node.

Shapes follow rpk's admin client (github.com/redpanda-data/common-go/rpadmin, formerly
src/go/rpk/pkg/adminapi), field names from its structs' JSON tags:

    GET /v1/cluster/health_overview        ClusterHealthOverview  (rpk cluster health)
    GET /v1/brokers, /v1/brokers/ID        Broker (rpk redpanda admin brokers list, cluster maintenance
                                           status); api.py's /v1/brokers adds these to pstream's fields
    GET /v1/cluster_config                 Config: {name: value}; ?include_defaults=false leaves out
                                           what is at its default, ?key=NAME one setting (rpk cluster config)
    GET /v1/cluster_config/schema          ConfigSchemaResponse: {"properties": {name: ConfigPropertyMetadata}}
    GET /v1/cluster_config/status          ConfigStatusResponse: [ConfigStatus]
    GET /v1/node_config                    NodeConfig / RawNodeConfig: node_id, data_directory, listeners
    GET /v1/cluster/partitions             [ClusterPartition] (?with_internal=, ?disabled=; rpk cluster
    GET /v1/cluster/partitions/NS/TOPIC     partitions list)
    GET /v1/partitions                     this node's partitions: ns, topic, partition_id, core, leader
    GET /v1/partitions/NS/TOPIC[/N]        [Partition] / Partition (rpk's fallback of partitions list)

pstream is one node: it is the controller and every partition's leader and only replica, so the
lists of nodes down, leaderless and under-replicated partitions are empty by construction. A
replica's "core" is the shard that owns the partition. Only namespace "kafka" exists. Settings are
named as Redpanda names the same setting where it has one (REDPANDA_NAMES), else as pstream does;
only pstream's settings are listed, node-level ones (addresses, data directory, node id) in
/v1/node_config, the rest in /v1/cluster_config. Reads the node through NodeView only.
"""

from __future__ import annotations

import os

from pstream.admin.http import HttpError, Request, Response, Router
from pstream.admin.view import NodeView

NAMESPACE = "kafka"

# pstream setting -> the Redpanda cluster property for the same thing.
REDPANDA_NAMES = {
    "auto_create_topics": "auto_create_topics_enabled",
    "default_partitions": "default_topic_partitions",
    "default_replication_factor": "default_topic_replications",
    "message_max_bytes": "kafka_batch_max_bytes",
    "retention_ms": "log_retention_ms",
    "retention_bytes": "retention_bytes",
    "segment_bytes": "log_segment_size",
    "segment_ms": "log_segment_ms",
    "cleanup_policy": "log_cleanup_policy",
    "max_connections": "kafka_connections_max",
    "socket_request_max_bytes": "kafka_request_max_bytes",
    "group_initial_rebalance_delay_ms": "group_initial_rebalance_delay",
    "delete_retention_ms": "tombstone_retention_ms",
}
# Settings of the node, not the cluster: /v1/node_config shows them.
NODE_SETTINGS = frozenset({"listen", "advertise", "data_dir", "node_id", "admin_listen", "shards"})


def _flag(query: dict[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise HttpError(400, f"query parameter {name} must be true or false, got {value!r}")


def _units(name: str) -> str | None:
    if name.endswith("_ms"):
        return "ms"
    if name.endswith("_bytes"):
        return "bytes"
    return None


def broker_fields(node: NodeView, cores: int, data_dir: str, free: int, total: int) -> dict:
    """rpadmin.Broker's fields for this node. No internal_rpc_address/port and no rack: pstream
    has no internal RPC listener and no rack setting."""
    return {"num_cores": cores, "membership_status": "active", "is_alive": node.state == "serving",
            "maintenance_status": {"draining": False},
            "disk_space": [{"path": data_dir, "free": free, "total": total}]}


class RedpandaApi:
    def __init__(self, node: NodeView):
        self.node = node

    def add_routes(self, r: Router) -> None:
        r.get("/v1/cluster/health_overview", self.health_overview)
        r.get("/v1/cluster_config", self.cluster_config)
        r.get("/v1/cluster_config/schema", self.cluster_config_schema)
        r.get("/v1/cluster_config/status", self.cluster_config_status)
        r.get("/v1/node_config", self.node_config)
        r.get("/v1/cluster/partitions", self.cluster_partitions)
        r.get("/v1/cluster/partitions/{ns}/{topic}", self.cluster_topic_partitions)
        r.get("/v1/partitions", self.node_partitions)
        r.get("/v1/partitions/{ns}/{topic}", self.topic_partitions)
        r.get("/v1/partitions/{ns}/{topic}/{partition}", self.partition)

    def _log(self):
        if not self.node.log_readable:
            raise HttpError(503, f"the broker is {self.node.state}")
        return self.node.log

    def _topic(self, ns: str, topic: str):
        log = self._log()
        if ns != NAMESPACE or topic not in log:
            raise HttpError(404, f"no such topic: {ns}/{topic}")
        return log.get_topic(topic)

    # --- cluster health ---------------------------------------------------------------------

    def health_overview(self, request: Request) -> Response:
        node = self.node
        serving = node.state == "serving"
        return Response.json({
            "is_healthy": serving, "unhealthy_reasons": [] if serving else [f"node {node.state}"],
            "controller_id": node.node_id, "all_nodes": [node.node_id],
            "nodes_down": [], "nodes_in_recovery_mode": [],
            "leaderless_partitions": [], "leaderless_count": 0,
            "under_replicated_partitions": [], "under_replicated_count": 0,
        })

    # --- configuration ----------------------------------------------------------------------

    def _cluster_settings(self) -> dict[str, tuple[str, object, dict]]:
        """Redpanda-ish name -> (pstream name, effective value, schema entry) of the cluster-level settings."""
        settings = self.node.settings()
        schema = self.node.settings_schema()
        out = {}
        for name, meta in schema.items():
            if name in NODE_SETTINGS:
                continue
            value = self.node.cluster_id if name == "cluster_id" else settings[name]
            out[REDPANDA_NAMES.get(name, name)] = (name, value, meta)
        return out

    def cluster_config(self, request: Request) -> Response:
        settings = self._cluster_settings()
        key = request.query.get("key")
        if key is not None:
            for rp_name, (name, value, meta) in settings.items():
                if key in (rp_name, name, meta["kafka"]):
                    return Response.json({rp_name: value})
            raise HttpError(400, f"unknown property: {key}")
        include_defaults = _flag(request.query, "include_defaults", True)
        return Response.json({rp_name: value for rp_name, (name, value, meta) in settings.items()
                              if include_defaults or value != meta["default"]})

    def cluster_config_schema(self, request: Request) -> Response:
        properties = {}
        for rp_name, (name, _value, meta) in self._cluster_settings().items():
            description = meta["description"] + (" (-1: unlimited)" if meta["unlimited"] else "")
            prop = {"type": meta["type"], "description": description,
                    "nullable": meta["default"] is None, "needs_restart": not meta["dynamic"],
                    "is_secret": False, "visibility": "user"}
            if _units(name):
                prop["units"] = _units(name)
            if meta["enum"]:
                prop["enum_values"] = meta["enum"]
            aliases = [a for a in (name, meta["kafka"]) if a and a != rp_name]
            if aliases:
                prop["aliases"] = aliases
            prop["default"] = meta["default"]
            properties[rp_name] = prop
        return Response.json({"properties": properties})

    def cluster_config_status(self, request: Request) -> Response:
        # Settings change through Kafka's AlterConfigs and apply at once: none waits for a restart,
        # and there are no versions of the configuration.
        return Response.json([{"node_id": self.node.node_id, "restart": False, "config_version": 0,
                               "invalid": [], "unknown": []}])

    def node_config(self, request: Request) -> Response:
        node = self.node
        listen = node.bound_address or (None, None)
        admin = node.admin_address
        return Response.json({
            "node_id": node.node_id, "data_directory": os.path.abspath(node.data_dir),
            "kafka_api": [{"address": listen[0], "port": listen[1]}],
            "advertised_kafka_api": [{"address": node.host, "port": node.port}],
            "admin": [{"address": admin[0], "port": admin[1]}] if admin else [],
            "shards": node.log.shards if node.log is not None else None,
        })

    # --- partitions ---------------------------------------------------------------------------

    def _replicas(self, topic: str, number: int) -> list[dict]:
        return [{"node_id": self.node.node_id, "core": self.node.partition_core(topic, number)}]

    def _cluster_partitions(self, topic) -> list[dict]:
        return [{"ns": NAMESPACE, "topic": topic.name, "partition_id": p.number, "leader_id": self.node.node_id,
                 "replicas": self._replicas(topic.name, p.number), "disabled": False} for p in topic]

    def cluster_partitions(self, request: Request) -> Response:
        log = self._log()
        with_internal = _flag(request.query, "with_internal", False)
        if _flag(request.query, "disabled", False):
            return Response.json([])   # pstream cannot disable a partition
        out = []
        for name in log.topics():
            if with_internal or not self.node.is_internal(name):
                out.extend(self._cluster_partitions(log.get_topic(name)))
        return Response.json(out)

    def cluster_topic_partitions(self, request: Request, ns: str, topic: str) -> Response:
        t = self._topic(ns, topic)
        if _flag(request.query, "disabled", False):
            return Response.json([])
        return Response.json(self._cluster_partitions(t))

    def node_partitions(self, request: Request) -> Response:
        log = self._log()
        node_id = self.node.node_id
        return Response.json([{"ns": NAMESPACE, "topic": name, "partition_id": p.number,
                               "core": self.node.partition_core(name, p.number), "materialized": False,
                               "leader": node_id}
                              for name in log.topics() for p in log.get_topic(name)])

    def _partition(self, topic: str, number: int) -> dict:
        # No raft_group_id: pstream has no Raft groups.
        return {"ns": NAMESPACE, "topic": topic, "partition_id": number, "status": "done",
                "leader_id": self.node.node_id, "replicas": self._replicas(topic, number)}

    def topic_partitions(self, request: Request, ns: str, topic: str) -> Response:
        t = self._topic(ns, topic)
        return Response.json([self._partition(topic, p.number) for p in t])

    def partition(self, request: Request, ns: str, topic: str, partition: str) -> Response:
        t = self._topic(ns, topic)
        if not partition.isdigit() or int(partition) >= t.partitions:
            raise HttpError(404, f"no such partition: {ns}/{topic}/{partition}")
        return Response.json(self._partition(topic, int(partition)))
