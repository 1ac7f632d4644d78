"""`pstream topic create|list|describe|delete|alter-config|add-partitions`."""

from __future__ import annotations

import argparse

from pstream.cli.common import connect
from pstream.cli.output import CliError, add_format, bold, emit, human_bytes, key_values, records, table
from pstream.client import EARLIEST, LATEST, KafkaError


def register(sub, common) -> None:
    topic = sub.add_parser("topic", parents=[common], help="create, list, describe, alter and delete topics")
    cmds = topic.add_subparsers(dest="topic_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("create", parents=[common], help="create a topic")
    p.add_argument("name")
    p.add_argument("-p", "--partitions", type=int, default=1, help="number of partitions (default 1)")
    p.add_argument("-r", "--replicas", type=int, default=-1,
                   help="replication factor (default: the broker's default.replication.factor)")
    p.add_argument("-c", "--config", action="append", default=[], metavar="KEY=VALUE",
                   help="a topic config, e.g. -c retention.ms=3600000 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="validate only: the broker checks but creates nothing")
    p.set_defaults(func=cmd_create)

    p = cmds.add_parser("list", parents=[common], help="list topics")
    p.add_argument("-i", "--internal", action="store_true", help="include internal topics (__consumer_offsets)")
    p.set_defaults(func=cmd_list)
    add_format(p)

    p = cmds.add_parser("describe", parents=[common],
                        help="partitions (log start, high watermark, size) and configs with their sources")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_describe)
    add_format(p)

    p = cmds.add_parser("delete", parents=[common], help="delete topics and their data")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_delete)

    p = cmds.add_parser("alter-config", parents=[common], help="set or delete topic configs")
    p.add_argument("name")
    p.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE", help="set a config (repeatable)")
    p.add_argument("-d", "--delete", action="append", default=[], metavar="KEY",
                   help="delete a config: back to the broker default (repeatable)")
    p.set_defaults(func=cmd_alter_config)

    p = cmds.add_parser("trim", parents=[common],
                        help="delete a topic's records below an offset (Kafka's DeleteRecords)")
    p.add_argument("name", metavar="TOPIC")
    p.add_argument("--before", required=True, metavar="OFFSET|end",
                   help="delete the records below this offset; end: everything up to the high watermark")
    p.add_argument("-p", "--partition", type=int, action="append", metavar="N",
                   help="only this partition (repeatable; default: every partition)")
    p.set_defaults(func=cmd_trim)

    p = cmds.add_parser("add-partitions", parents=[common], help="add partitions to a topic")
    p.add_argument("name")
    p.add_argument("-n", "--num", type=int, required=True, help="how many partitions to add")
    p.set_defaults(func=cmd_add_partitions)


def cmd_create(args: argparse.Namespace) -> int:
    if args.partitions < 1:
        raise CliError(f"--partitions must be at least 1, not {args.partitions}")
    configs = key_values(args.config, "config")
    with connect(args) as client:
        client.create_topic(args.name, args.partitions, args.replicas, configs, validate_only=args.dry_run)
    verb = "would create" if args.dry_run else "created"
    print(f"{verb} topic {args.name} ({args.partitions} partition{'s' if args.partitions != 1 else ''})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        topics = client.metadata(None).topics
    shown = [t for t in sorted(topics.values(), key=lambda t: t.name) if args.internal or not t.internal]
    emit(args, [{"name": t.name, "partitions": len(t.partitions), "internal": t.internal} for t in shown],
         lambda: table(["NAME", "PARTITIONS", "INTERNAL"],
                       [[t.name, len(t.partitions), "yes" if t.internal else "no"] for t in shown]))
    return 0


PARTITION_HEADERS = ["PARTITION", "LEADER", "REPLICAS", "LOG-START", "HIGH-WATERMARK", "RECORDS", "SIZE"]
CONFIG_HEADERS = ["CONFIG", "VALUE", "SOURCE"]


def cmd_describe(args: argparse.Namespace) -> int:
    described = []
    with connect(args) as client:
        for name in args.names:
            info = client.topic(name)
            numbers = [p.partition for p in info.partitions]
            starts = client.list_offsets(name, numbers, EARLIEST)
            ends = client.list_offsets(name, numbers, LATEST)
            try:
                sizes = client.partition_sizes(name)
            except KafkaError:   # a broker without DescribeLogDirs: sizes are unknown, the rest stands
                sizes = {}
            partitions = [[p.partition, p.leader, ",".join(map(str, p.replicas)), starts[p.partition][0],
                           ends[p.partition][0], ends[p.partition][0] - starts[p.partition][0],
                           sizes.get(p.partition)] for p in info.partitions]
            configs = [[c.name, None if c.sensitive else c.value, c.source]
                       for c in sorted(client.describe_configs(name), key=lambda c: c.name)]
            described.append({"name": name, "topic_id": str(info.topic_id),
                              "records": sum(row[5] for row in partitions),
                              "size_bytes": sum(sizes.values()) if sizes else None,
                              "partitions": records(PARTITION_HEADERS, partitions),
                              "configs": records(CONFIG_HEADERS, configs)})

    def text():
        for i, topic in enumerate(described):
            if i:
                print()
            print(bold(f"topic {topic['name']}") + f"  id {topic['topic_id']}  partitions {len(topic['partitions'])}"
                  f"  records {topic['records']}  size {human_bytes(topic['size_bytes'])}")
            print()
            table(PARTITION_HEADERS, [list(row.values()) for row in topic["partitions"]])
            print()
            table(CONFIG_HEADERS, [[c["config"], "(sensitive)" if c["value"] is None else c["value"], c["source"]]
                                   for c in topic["configs"]])
    emit(args, described, text)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        for name in args.names:
            client.delete_topic(name)
            print(f"deleted topic {name}")
    return 0


def cmd_trim(args: argparse.Namespace) -> int:
    if args.before == "end":
        before = -1   # Kafka's DeleteRecords: the high watermark
    else:
        try:
            before = int(args.before)
        except ValueError:
            raise CliError(f"--before takes an offset or end, not {args.before!r}") from None
        if before < 0:
            raise CliError(f"--before must not be negative, got {before}")
    with connect(args) as client:
        partitions = args.partition or [p.partition for p in client.topic(args.name).partitions]
        starts = client.delete_records(args.name, {p: before for p in partitions})
    for partition, start in sorted(starts.items()):
        print(f"{args.name}-{partition}: records below {start} deleted")
    return 0


def cmd_alter_config(args: argparse.Namespace) -> int:
    changes = key_values(args.set, "--set")
    if not changes and not args.delete:
        raise CliError("nothing to change: give --set KEY=VALUE or --delete KEY")
    with connect(args) as client:
        client.alter_configs(args.name, changes, args.delete)
    for key, value in changes.items():
        print(f"{args.name}: {key}={value}")
    for key in args.delete:
        print(f"{args.name}: {key} back to the default")
    return 0


def cmd_add_partitions(args: argparse.Namespace) -> int:
    if args.num < 1:
        raise CliError(f"--num must be at least 1, not {args.num}")
    with connect(args) as client:
        total = len(client.topic(args.name).partitions) + args.num
        client.create_partitions(args.name, total)
    print(f"topic {args.name} now has {total} partitions")
    return 0
