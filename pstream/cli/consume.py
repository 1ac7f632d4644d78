"""`pstream consume TOPIC`: print records, from an offset or as a member of a group.

Without -g it reads the chosen partitions (all by default) from --offset; with -g GROUP it
joins the group, reads what the group assigns from the committed offsets (or --offset
where none is committed), commits after every batch printed and leaves on exit. It stops
after -n records, at the end of the partitions with -e, or on Ctrl-C.

--format: `value` (default), `json` (one object a line: topic, partition, offset,
timestamp, key, value, headers) or a template such as '{partition}:{offset} {key}={value}'.
Keys and values print as UTF-8 text (bytes that are not UTF-8 as \\x escapes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from pstream.cli.common import connect
from pstream.cli.output import CliError
from pstream.client import EARLIEST, LATEST, KafkaClient
from pstream.client.client import fetched_batches
from pstream.client.connection import KafkaError, check
from pstream.client.group_member import GroupMembership
from pstream.protocol.error_codes import ErrorCode

TEMPLATE_FIELDS = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")


def register(sub, common) -> None:
    p = sub.add_parser("consume", parents=[common], help="print records of a topic")
    p.add_argument("topic")
    p.add_argument("-o", "--offset", default=None, metavar="start|end|N|-N|@TIMESTAMP_MS",
                   help="where to start: start (default), end, offset N, N before the end (-N), or the first "
                        "record at or after a timestamp; with -g only where the group has no committed offset")
    p.add_argument("-n", "--count", type=int, help="stop after this many records")
    p.add_argument("-e", "--exit", action="store_true", help="stop at the end of the partitions")
    p.add_argument("-p", "--partition", type=int, action="append", help="read only this partition (repeatable)")
    p.add_argument("-g", "--group", help="consume as a member of this consumer group, committing offsets")
    p.add_argument("-f", "--format", default="value", help="value, json, or a template with {topic} {partition} "
                                                           "{offset} {timestamp} {key} {value} {headers}")
    p.add_argument("--max-wait-ms", type=int, default=500, help="how long a fetch waits for new records")
    p.set_defaults(func=cmd_consume)


def _text(data) -> str | None:
    return None if data is None else bytes(data).decode("utf-8", "backslashreplace")


def formatter(spec: str):
    if spec == "value":
        return lambda topic, partition, rec: _text(rec.value) or ""
    if spec == "json":
        def as_json(topic, partition, rec):
            return json.dumps({"topic": topic, "partition": partition, "offset": rec.offset,
                               "timestamp": rec.timestamp_ms, "key": _text(rec.key), "value": _text(rec.value),
                               "headers": [{"key": k, "value": _text(v)} for k, v in rec.headers]},
                              ensure_ascii=False)
        return as_json
    try:
        spec.format(**{f: "" for f in TEMPLATE_FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        raise CliError(f"--format {spec!r}: not value, json or a template of {', '.join(TEMPLATE_FIELDS)} ({exc})")
    template = spec.encode().decode("unicode_escape")   # '\t' and '\n' as typed on a shell

    def as_template(topic, partition, rec):
        return template.format(topic=topic, partition=partition, offset=rec.offset, timestamp=rec.timestamp_ms,
                               key=_text(rec.key) or "", value=_text(rec.value) or "",
                               headers=",".join(f"{k}={_text(v)}" for k, v in rec.headers))
    return as_template


def resolve_offsets(client: KafkaClient, topic: str, partitions: list[int], spec: str | None) -> dict[int, int]:
    """partition -> first offset to read, per --offset."""
    spec = spec or "start"
    if not partitions:
        return {}
    if spec in ("start", "beginning", "earliest"):
        return {p: o for p, (o, _) in client.list_offsets(topic, partitions, EARLIEST).items()}
    if spec in ("end", "latest"):
        return {p: o for p, (o, _) in client.list_offsets(topic, partitions, LATEST).items()}
    if spec.startswith("@"):
        try:
            ts = int(spec[1:])
        except ValueError:
            raise CliError(f"--offset {spec!r}: @ is followed by a timestamp in milliseconds") from None
        found = client.list_offsets(topic, partitions, ts)
        ends = client.list_offsets(topic, partitions, LATEST)
        return {p: o if o >= 0 else ends[p][0] for p, (o, _) in found.items()}
    try:
        n = int(spec)
    except ValueError:
        raise CliError(f"--offset {spec!r} is not start, end, N, -N or @TIMESTAMP_MS") from None
    starts = client.list_offsets(topic, partitions, EARLIEST)
    ends = client.list_offsets(topic, partitions, LATEST)
    # Clamped to the log, as kafka-consumer-groups --reset-offsets --to-offset does.
    return {p: min(max(starts[p][0], n if n >= 0 else ends[p][0] + n), ends[p][0]) for p in partitions}


class Reader:
    """Fetches every partition in each poll, printing records and tracking the next offsets."""

    def __init__(self, client: KafkaClient, args: argparse.Namespace, positions: dict[int, int],
                 remaining: int | None):
        self.client = client
        self.topic = args.topic
        self.positions = positions
        self.format = formatter(args.format)
        self.remaining = remaining
        self.stop_at_end = args.exit
        self.max_wait_ms = args.max_wait_ms
        self.at_end: set[int] = set()
        self.out = sys.stdout

    @property
    def done(self) -> bool:
        return (self.remaining is not None and self.remaining <= 0) or (
            self.stop_at_end and self.at_end >= set(self.positions))

    def poll(self) -> bool:
        """One fetch of every partition (a request per leader); True when something was printed."""
        printed = False
        fetched = self.client.fetch_many(self.topic, self.positions, max_wait_ms=self.max_wait_ms)
        for partition in sorted(fetched):
            if self.done:
                break
            part, offset = fetched[partition], self.positions[partition]
            if part.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                # Retention or DeleteRecords removed it meanwhile: go on from the log start, as
                # auto.offset.reset=earliest does, and say so.
                (start, _), = self.client.list_offsets(self.topic, [partition], EARLIEST).values()
                print(f"pstream: {self.topic}-{partition} offset {offset} is gone; "
                      f"continuing from the log start {start}", file=sys.stderr)
                self.positions[partition] = start
                continue
            check(part.error_code, f"fetch {self.topic}-{partition} at offset {offset}")
            for _, records in fetched_batches(part.records):
                for rec in records:
                    if rec.offset < offset:
                        continue
                    self.out.write(self.format(self.topic, partition, rec) + "\n")
                    printed = True
                    offset = rec.offset + 1
                    if self.remaining is not None:
                        self.remaining -= 1
                        if self.remaining <= 0:
                            break
                if self.remaining is not None and self.remaining <= 0:
                    break
            self.positions[partition] = offset
            if offset >= part.high_watermark:
                self.at_end.add(partition)
            else:
                self.at_end.discard(partition)
        self.out.flush()
        return printed


def cmd_consume(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 0:
        raise CliError(f"--count must be at least 0, not {args.count}")
    with connect(args) as client:
        info = client.topic(args.topic)
        numbers = [p.partition for p in info.partitions]
        if args.group:
            if args.partition:
                raise CliError("-p and -g do not go together: the group assigns the partitions")
            return consume_in_group(client, args)
        for p in args.partition or ():
            if p not in numbers:
                raise CliError(f"topic {args.topic!r} has no partition {p} (it has {len(numbers)})")
        positions = resolve_offsets(client, args.topic, args.partition or numbers, args.offset)
        reader = Reader(client, args, positions, args.count)
        while not reader.done:
            reader.poll()
    return 0


def consume_in_group(client: KafkaClient, args: argparse.Namespace) -> int:
    member = GroupMembership(client, args.group, [args.topic])
    remaining = args.count
    try:
        while True:
            assigned = member.join().get(args.topic, [])
            committed = client.committed_offsets(args.group, {args.topic: assigned}) if assigned else {}
            positions = {p: committed[(args.topic, p)] for p in assigned if (args.topic, p) in committed}
            positions.update(resolve_offsets(client, args.topic, [p for p in assigned if p not in positions],
                                             args.offset))
            reader = Reader(client, args, positions, remaining)
            while not reader.done:
                before = dict(reader.positions)
                if not reader.positions:
                    time.sleep(args.max_wait_ms / 1000)   # nothing assigned: wait for a rebalance
                reader.poll()
                moved = {(args.topic, p): o for p, o in reader.positions.items() if before[p] != o}
                if not member.commit(moved) or (member.heartbeat_due() and not member.heartbeat()):
                    break   # the group is rebalancing: rejoin and read what it assigns now
            else:
                return 0
            remaining = reader.remaining
    finally:
        try:
            member.leave()
        except KafkaError:   # leaving is a courtesy: the session timeout removes the member anyway
            pass
