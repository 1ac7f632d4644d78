"""`pstream group list|describe|delete|seek`: consumer groups, their members and lag."""

from __future__ import annotations

import argparse

from pstream.cli.common import connect
from pstream.cli.consume import resolve_offsets
from pstream.cli.output import CliError, add_format, bold, emit, records, table
from pstream.client import LATEST, KafkaClient
from pstream.protocol.consumer_protocol import decode_assignment


def register(sub, common) -> None:
    group = sub.add_parser("group", parents=[common], help="list, describe, delete and seek consumer groups")
    cmds = group.add_subparsers(dest="group_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("list", parents=[common], help="list groups and their states")
    p.set_defaults(func=cmd_list)
    add_format(p)

    p = cmds.add_parser("describe", parents=[common],
                        help="members, assignments, committed offsets and lag per partition")
    p.add_argument("names", nargs="+", metavar="GROUP")
    p.set_defaults(func=cmd_describe)
    add_format(p)

    p = cmds.add_parser("delete", parents=[common], help="delete empty groups and their committed offsets")
    p.add_argument("names", nargs="+", metavar="GROUP")
    p.set_defaults(func=cmd_delete)

    p = cmds.add_parser("offset-delete", parents=[common],
                        help="forget a group's committed offsets of a topic (Kafka's OffsetDelete)")
    p.add_argument("name", metavar="GROUP")
    p.add_argument("-t", "--topic", required=True, metavar="TOPIC")
    p.add_argument("-p", "--partition", type=int, action="append", metavar="N",
                   help="only this partition (repeatable; default: every partition the group committed on)")
    p.set_defaults(func=cmd_offset_delete)

    p = cmds.add_parser("seek", parents=[common],
                        help="reset a group's committed offsets (the group must have no active members)")
    p.add_argument("name", metavar="GROUP")
    p.add_argument("--to", required=True, metavar="start|end|N|@TIMESTAMP_MS",
                   help="the earliest or latest offset, an offset, or the first at or after a timestamp")
    p.add_argument("-t", "--topic", action="append", metavar="TOPIC",
                   help="only this topic (repeatable; default: every topic the group has committed on)")
    p.set_defaults(func=cmd_seek)


def cmd_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        groups = client.list_groups()
    emit(args, [{"group": g, "state": state, "protocol_type": ptype, "type": kind} for g, ptype, state, kind in groups],
         lambda: table(["GROUP", "STATE", "PROTOCOL-TYPE", "TYPE"],
                       [[g, state or "-", ptype or "-", kind] for g, ptype, state, kind in groups]))
    return 0


def lag_rows(client: KafkaClient, group: str, owners: dict[tuple[str, int], str]) -> list[list]:
    """TOPIC PARTITION COMMITTED LOG-END LAG MEMBER for every partition committed on or assigned."""
    committed = client.committed_offsets(group)
    keys = sorted(set(committed) | set(owners))
    ends: dict[tuple[str, int], int] = {}
    for topic in sorted({t for t, _ in keys}):
        parts = [p for t, p in keys if t == topic]
        for p, (offset, _) in client.list_offsets(topic, parts, LATEST).items():
            ends[(topic, p)] = offset
    rows = []
    for key in keys:
        done, end = committed.get(key), ends.get(key)
        lag = None if end is None else end - (done if done is not None else 0)
        rows.append([key[0], key[1], done, end, lag, owners.get(key)])
    return rows


MEMBER_HEADERS = ["MEMBER", "INSTANCE", "CLIENT-ID", "HOST", "ASSIGNMENT"]
LAG_HEADERS = ["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER"]


def cmd_describe(args: argparse.Namespace) -> int:
    described = []
    with connect(args) as client:
        for name in args.names:
            g = client.describe_group(name)
            if g.state == "Dead":
                raise CliError(f"group {name!r} does not exist")
            owners = {}
            members = []
            for m in g.members:
                if m.assigned is not None:
                    assigned = m.assigned
                else:
                    assigned = decode_assignment(m.assignment) if g.protocol_type == "consumer" else {}
                for topic, parts in assigned.items():
                    for p in parts:
                        owners[(topic, p)] = m.member_id
                members.append([m.member_id, m.instance_id, m.client_id, m.client_host,
                                " ".join(f"{t}:{','.join(map(str, ps))}" for t, ps in sorted(assigned.items()))])
            rows = lag_rows(client, name, owners)
            described.append({"group": name, "state": g.state, "protocol_type": g.protocol_type,
                              "protocol": g.protocol, "total_lag": sum(r[4] or 0 for r in rows),
                              "members": records(MEMBER_HEADERS, members), "offsets": records(LAG_HEADERS, rows)})

    def text():
        for i, g in enumerate(described):
            if i:
                print()
            print(bold(f"group {g['group']}") + f"  state {g['state']}  protocol {g['protocol_type'] or '-'}/"
                  f"{g['protocol'] or '-'}  members {len(g['members'])}  total lag {g['total_lag']}")
            if g["members"]:
                print()
                table(MEMBER_HEADERS, [list(m.values()) for m in g["members"]])
            print()
            table(LAG_HEADERS, [list(r.values()) for r in g["offsets"]])
    emit(args, described, text)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        for name in args.names:
            client.delete_group(name)
            print(f"deleted group {name}")
    return 0


def cmd_seek(args: argparse.Namespace) -> int:
    with connect(args) as client:
        g = client.describe_group(args.name)
        if g.members:
            raise CliError(f"group {args.name!r} has {len(g.members)} active member(s): stop its consumers first")
        committed = client.committed_offsets(args.name)
        topics = args.topic or sorted({t for t, _ in committed})
        if not topics:
            raise CliError(f"group {args.name!r} has no committed offsets: name the topics with --topic")
        new = {}
        for topic in topics:
            partitions = [p.partition for p in client.topic(topic).partitions]
            for p, offset in resolve_offsets(client, topic, partitions, args.to).items():
                new[(topic, p)] = offset
        client.commit_offsets(args.name, new)
    table(["TOPIC", "PARTITION", "FROM", "TO"], [[t, p, committed.get((t, p)), o] for (t, p), o in sorted(new.items())])
    return 0


def cmd_offset_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.partition:
            partitions = [(args.topic, p) for p in args.partition]
        else:
            partitions = sorted(tp for tp in client.committed_offsets(args.name) if tp[0] == args.topic)
            if not partitions:
                raise CliError(f"group {args.name} has no committed offsets on topic {args.topic}")
        client.delete_offsets(args.name, partitions)
    print(f"deleted the committed offsets of group {args.name} on " + ", ".join(f"{t}-{p}" for t, p in partitions))
    return 0
