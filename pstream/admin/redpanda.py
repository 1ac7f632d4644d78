"""The parts of Redpanda's admin API that rpk calls, answered for one pstream node.

Shapes follow rpk's admin client (github.com/redpanda-data/common-go/rpadmin, formerly
src/go/rpk/pkg/adminapi), field names from its structs' JSON tags:

    GET /v1/cluster/health_overview        ClusterHealthOverview  (rpk cluster health)
    GET /v1/brokers, /v1/brokers/ID        Broker (rpk redpanda admin brokers list, cluster maintenance
                                           status); api.py's /v1/brokers adds these to pstream's fields
    GET /v1/cluster_config                 Config: {name: value}; ?include_defaults=false leaves out
                                           what is at its default, ?key=NAME one setting (rpk cluster config)
    GET /v1/cluster_config/schema          ConfigSchemaResponse: {"properties": {name: ConfigPropertyMetadata}}
    PUT /v1/cluster_config                 {"upsert": {name: value}, "remove": [name]} ->
                                           ClusterConfigWriteResult {"config_version": N} (rpk cluster config
                                           set/import/edit); a 400 answers {name: reason}, which rpk prints
                                           as "Validation errors"
    GET /v1/cluster_config/status          ConfigStatusResponse: [ConfigStatus]
    GET /v1/node_config                    NodeConfig / RawNodeConfig: node_id, data_directory, listeners
    GET /v1/cluster/partitions             [ClusterPartition] (?with_internal=, ?disabled=; rpk cluster
    GET /v1/cluster/partitions/NS/TOPIC     partitions list)
    GET /v1/partitions                     this node's partitions: ns, topic, partition_id, core, leader
    GET /v1/partitions/NS/TOPIC[/N]        [Partition] / Partition (rpk's fallback of partitions list)
    GET /v1/partitions/redpanda/controller/0   the controller's leader: this node (rpadmin's GetLeaderID,
                                           which sendToLeader asks when more than one admin host is given)

pstream is one node: it is the controller and every partition's leader and only replica, so the
lists of nodes down, leaderless and under-replicated partitions are empty by construction. A
replica's "core" is the shard that owns the partition. Only namespace "kafka" exists. Settings are
named as Redpanda names the same setting where it has one (REDPANDA_NAMES), else as pstream does;
only pstream's settings are listed, node-level ones (addresses, data directory, node id) in
/v1/node_config, the rest in /v1/cluster_config. Reads the node through NodeView only.

Writing the cluster configuration: the settings that Kafka's AlterConfigs changes at run time
(schema: needs_restart false) are set as dynamic cluster-wide broker configs, exactly as
IncrementalAlterConfigs on the cluster-default broker resource would set them (persisted in the
data directory, in force at once); "remove" deletes that dynamic config, so the setting goes back
to what the broker was started with. Every other setting needs a restart in pstream and is
refused with a reason naming where to set it. rpk sends scalars as strings ("set KEY VALUE") or
as YAML gave them ("import"); both are taken. The configuration version counts the changes made
since this admin server started (pstream keeps no version history).
"""

from __future__ import annotations

import json
import math
import os

from pstream.admin.http import HttpError, Request, Response, Router
from pstream.admin.view import NodeView
from pstream.errors import ClusterUnavailableError

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
# Kafka's longs go up to 2**63 - 1, which a JSON reader that decodes numbers into float64 (rpk's
# Go, JavaScript) rounds up to 2**63; that is what comes back when such a value is exported and
# imported unchanged (max_compaction_lag_ms's default), so 2**63 is read as 2**63 - 1.
LONG_MAX = (1 << 63) - 1
CONTROLLER = ("redpanda", "controller", "0")


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


class _Invalid(ValueError):
    """A value that does not fit a property: the message is rpk's "Validation errors" line."""


def _kafka_text(value, meta: dict) -> str:
    """The value of a cluster config write (JSON, or the string rpk's `set` passes on) as the
    text Kafka's AlterConfigs takes for the same setting; _Invalid if it is not of its type."""
    kind = meta["type"]
    if value is None:
        if meta["unlimited"]:
            return "-1"
        raise _Invalid("null is not a value of this property")
    if kind == "boolean":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
        if isinstance(value, bool):
            return "true" if value else "false"
        raise _Invalid(f"expected true or false, got {value!r}")
    if kind == "integer":
        number = value
        if isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                raise _Invalid(f"expected an integer, got {value!r}") from None
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int):
            raise _Invalid(f"expected an integer, got {value!r}")
        return str(LONG_MAX if number == LONG_MAX + 1 else number)
    if kind == "number":
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise _Invalid(f"expected a number, got {value!r}") from None
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise _Invalid(f"expected a number, got {value!r}")
        return repr(float(number))
    if isinstance(value, bool):   # a string property that YAML read as a boolean
        value = "true" if value else "false"
    if not isinstance(value, (str, int, float)):
        raise _Invalid(f"expected a string, got {value!r}")
    text = str(value)
    if meta["enum"] and text not in meta["enum"]:
        raise _Invalid(f"expected one of {', '.join(meta['enum'])}, got {text!r}")
    return text


def _restart_reason(name: str, rp_name: str) -> str:
    where = f"set {name} in the broker's settings (TOML file, --{name.replace('_', '-')} or " \
            f"PSTREAM_{name.upper()}) and restart it"
    if name == "cluster_id":
        return "pstream's cluster id is fixed when its data directory is created"
    return f"pstream cannot change {rp_name} at run time: {where}"


class RedpandaApi:
    def __init__(self, node: NodeView):
        self.node = node
        self.config_version = 0   # changes written through PUT /v1/cluster_config since start

    def add_routes(self, r: Router) -> None:
        r.get("/v1/cluster/health_overview", self.health_overview)
        r.get("/v1/cluster_config", self.cluster_config)
        r.put("/v1/cluster_config", self.patch_cluster_config)
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
        cluster = node.cluster_status()
        if cluster is not None:
            down = [b["node_id"] for b in cluster["brokers"] if not b["alive"]]
            leaderless = [f"{NAMESPACE}/{p['topic']}/{p['partition']}" for p in cluster["leaderless_partitions"]]
            under = [f"{NAMESPACE}/{p['topic']}/{p['partition']}" for p in cluster["under_replicated_partitions"]]
            reasons = ([] if serving else [f"node {node.state}"]) + (["nodes_down"] if down else []) \
                + (["leaderless_partitions"] if leaderless else []) + (["under_replicated_partitions"] if under else [])
            return Response.json({
                "is_healthy": not reasons, "unhealthy_reasons": reasons, "controller_id": cluster["controller"],
                "all_nodes": [b["node_id"] for b in cluster["brokers"]], "nodes_down": down,
                "nodes_in_recovery_mode": [], "leaderless_partitions": leaderless, "leaderless_count": len(leaderless),
                "under_replicated_partitions": under, "under_replicated_count": len(under)})
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
        # Settings change at run time (Kafka's AlterConfigs, PUT /v1/cluster_config) and apply at
        # once: none waits for a restart. A change that would need one is refused, not queued.
        return Response.json([{"node_id": self.node.node_id, "restart": False,
                               "config_version": self.config_version, "invalid": [], "unknown": []}])

    def _changes(self, body: dict) -> tuple[list[tuple[str, str, str | None]], dict[str, str]]:
        """([(property, Kafka config, text or None to delete)], {property: reason}) of a write."""
        upsert, remove = body.get("upsert") or {}, body.get("remove") or []
        if not isinstance(upsert, dict) or not isinstance(remove, list) \
                or not all(isinstance(name, str) for name in remove):
            raise HttpError(400, 'expected {"upsert": {property: value}, "remove": [property]}')
        settings = self._cluster_settings()
        by_alias = {alias: rp for rp, (name, _v, meta) in settings.items()
                    for alias in (rp, name, meta["kafka"]) if alias}
        changes, errors = [], {}
        for prop, value in [*upsert.items(), *((name, ...) for name in remove)]:
            rp_name = by_alias.get(prop)
            if rp_name is None:
                errors[prop] = "Unknown property"
                continue
            name, _value, meta = settings[rp_name]
            if not meta["dynamic"] or not meta["kafka"]:
                errors[prop] = _restart_reason(name, rp_name)
                continue
            if value is ...:
                changes.append((prop, meta["kafka"], None))
                continue
            try:
                changes.append((prop, meta["kafka"], _kafka_text(value, meta)))
            except _Invalid as exc:
                errors[prop] = str(exc)
        return changes, errors

    async def patch_cluster_config(self, request: Request) -> Response:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise HttpError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise HttpError(400, 'expected {"upsert": {property: value}, "remove": [property]}')
        if not self.node.log_readable:
            raise HttpError(503, f"the broker is {self.node.state}")
        changes, errors = self._changes(body)
        if errors:   # as Redpanda: nothing is changed, and each property says what is wrong with it
            return Response.json(errors, 400)
        if not changes:
            return Response.json({"config_version": self.config_version})
        kafka_changes = [(config, text) for _prop, config, text in changes]
        try:
            await self.node.alter_cluster_configs(kafka_changes)
        except ValueError as exc:   # ConfigError: Kafka's validation names the config, not the property
            return Response.json(await self._blame(changes, str(exc)), 400)
        except ClusterUnavailableError as exc:   # etcd unreachable, or its lock held too long: try again
            raise HttpError(503, str(exc)) from None
        self.config_version += 1
        return Response.json({"config_version": self.config_version})

    async def _blame(self, changes, message: str) -> dict[str, str]:
        """{property: reason} of a write the node refused with one message for all: each change
        checked alone (validate only) to find the ones at fault."""
        if len(changes) == 1:
            return {changes[0][0]: message}
        errors = {}
        for prop, config, text in changes:
            try:
                await self.node.alter_cluster_configs([(config, text)], validate_only=True)
            except ValueError as exc:
                errors[prop] = str(exc)
        return errors or {prop: message for prop, _config, _text in changes}

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
        return [{"node_id": self.node.partition_replica(topic, number), "core": self.node.partition_core(topic, number)}]

    def _cluster_partitions(self, topic) -> list[dict]:
        return [{"ns": NAMESPACE, "topic": topic.name, "partition_id": n,
                 "leader_id": self.node.partition_leader(topic.name, n),
                 "replicas": self._replicas(topic.name, n), "disabled": False} for n in range(topic.partitions)]

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
                "leader_id": self.node.partition_leader(topic, number), "replicas": self._replicas(topic, number)}

    def topic_partitions(self, request: Request, ns: str, topic: str) -> Response:
        t = self._topic(ns, topic)
        return Response.json([self._partition(topic, n) for n in range(t.partitions)])

    def partition(self, request: Request, ns: str, topic: str, partition: str) -> Response:
        if (ns, topic, partition) == CONTROLLER:   # one node: it leads the controller
            node_id = self.node.node_id
            return Response.json({"ns": ns, "topic": topic, "partition_id": 0, "status": "done",
                                  "leader_id": node_id, "replicas": [{"node_id": node_id, "core": 0}]})
        t = self._topic(ns, topic)
        if not partition.isdigit() or int(partition) >= t.partitions:
            raise HttpError(404, f"no such partition: {ns}/{topic}/{partition}")
        return Response.json(self._partition(topic, int(partition)))
