"""`pstream cluster info|health|status`: who is in the cluster, whether it can serve, and which
partitions lack a leader or in-sync replicas."""

from __future__ import annotations

import argparse

from pstream.cli.common import brokers, connect
from pstream.cli.output import add_format, bold, emit, red, records, table
from pstream.client import KafkaError


def register(sub, common) -> None:
    cluster = sub.add_parser("cluster", parents=[common], help="cluster id, brokers and health")
    cmds = cluster.add_subparsers(dest="cluster_command", required=True, metavar="COMMAND")
    p = cmds.add_parser("info", parents=[common], help="cluster id, controller, brokers, topic count")
    p.set_defaults(func=cmd_info)
    add_format(p)
    p = cmds.add_parser("health", parents=[common],
                        help="reachable brokers and leaderless partitions (exit 1 when unhealthy)")
    p.set_defaults(func=cmd_health)
    add_format(p)
    p = cmds.add_parser("status", parents=[common],
                        help="brokers, controller, and every partition without a leader or with replicas "
                             "out of sync")
    p.set_defaults(func=cmd_status)
    add_format(p)


def cmd_info(args: argparse.Namespace) -> int:
    with connect(args) as client:
        meta = client.metadata(None)
        version = client.any_connection().versions
    headers = ["ID", "HOST", "PORT", "RACK"]
    rows = [[b.node_id, b.host, b.port, b.rack] for b in sorted(meta.brokers.values(), key=lambda b: b.node_id)]
    topics = sum(1 for t in meta.topics.values() if not t.internal)

    def text():
        print(bold("cluster ") + f"{meta.cluster_id}  controller {meta.controller_id}  brokers {len(meta.brokers)}  "
              f"topics {topics}  APIs {len(version)}")
        print()
        table(headers, rows)
    emit(args, {"cluster_id": meta.cluster_id, "controller": meta.controller_id, "topics": topics,
                "apis": len(version), "brokers": records(headers, rows)}, text)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    problems = []
    try:
        with connect(args) as client:
            meta = client.metadata(None)
            down = []
            for b in sorted(meta.brokers.values(), key=lambda b: b.node_id):
                try:
                    client.connection(b.node_id)
                except KafkaError as exc:
                    down.append(b.node_id)
                    problems.append(str(exc))
            leaderless = [f"{t.name}-{p.partition}" for t in meta.topics.values() for p in t.partitions
                          if p.leader < 0 or p.leader in down]
            under = [f"{t.name}-{p.partition}" for t in meta.topics.values() for p in t.partitions
                     if len(p.isr) < len(p.replicas)]
    except KafkaError as exc:
        reason = f"{exc} (brokers {brokers(args)})"
        emit(args, {"healthy": False, "reason": reason}, lambda: print(f"healthy: {red('false')}\nreason: {reason}"))
        return 1
    if leaderless:
        problems.append(f"{len(leaderless)} leaderless partition(s): {', '.join(leaderless[:10])}")
    healthy = not problems

    def text():
        print(f"healthy: {'true' if healthy else red('false')}")
        print(f"controller: {meta.controller_id}")
        print(f"brokers: {', '.join(str(b) for b in sorted(meta.brokers))}")
        print(f"brokers down: {', '.join(map(str, down)) or 'none'}")
        print(f"leaderless partitions: {len(leaderless)}")
        print(f"under-replicated partitions: {len(under)}")
        for p in problems:
            print(f"problem: {p}")
    emit(args, {"healthy": healthy, "controller": meta.controller_id, "brokers": sorted(meta.brokers),
                "brokers_down": down, "leaderless_partitions": leaderless, "under_replicated_partitions": under,
                "problems": problems}, text)
    return 0 if healthy else 1


def cmd_status(args: argparse.Namespace) -> int:
    """What Metadata says of the whole cluster: each broker up or down (named as a replica, not
    registered), the controller, and the partitions that need attention."""
    with connect(args) as client:
        meta = client.metadata(None)
    registered = set(meta.brokers)
    partitions = [(t.name, p) for t in sorted(meta.topics.values(), key=lambda t: t.name) for p in t.partitions]
    named = {r for _, p in partitions for r in p.replicas}
    down = sorted(named - registered)
    leaderless = [(name, p) for name, p in partitions if p.leader < 0]
    under = [(name, p) for name, p in partitions if len(p.isr) < len(p.replicas)]
    headers = ["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR", "OFFLINE"]
    attention = {(name, p.partition): (name, p) for name, p in leaderless + under}
    rows = [[name, p.partition, p.leader, ",".join(map(str, p.replicas)), ",".join(map(str, p.isr)),
             ",".join(map(str, p.offline)) or "-"] for _, (name, p) in sorted(attention.items())]

    def text():
        print(bold("cluster ") + f"{meta.cluster_id}  controller {meta.controller_id}")
        print(f"brokers: {', '.join(map(str, sorted(registered)))}  down: {', '.join(map(str, down)) or 'none'}")
        print(f"partitions: {len(partitions)}  leaderless: {len(leaderless)}  under-replicated: {len(under)}")
        if rows:
            print()
            table(headers, rows)
    emit(args, {"cluster_id": meta.cluster_id, "controller": meta.controller_id, "brokers": sorted(registered),
                "brokers_down": down, "partitions": len(partitions),
                "leaderless_partitions": [f"{n}-{p.partition}" for n, p in leaderless],
                "under_replicated_partitions": [f"{n}-{p.partition}" for n, p in under],
                "attention": records(headers, rows)}, text)
    return 0
