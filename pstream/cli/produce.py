"""`pstream produce TOPIC [-f FILE]`: each input line becomes one record's value.

Lines are batched per partition (up to --batch-bytes, or at once when typing on a
terminal) and sent as Kafka record batches. Keyed lines (--key-separator) go to the
partition Kafka's default partitioner picks (murmur2 of the key), so they land where a
Java or librdkafka (murmur2_random) producer would put them; unkeyed lines go round-robin
by batch. A progress line (records, MB, MB/s) is shown when a file is read on a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from pstream import _core
from pstream.cli.common import connect
from pstream.cli.output import CliError, key_values
from pstream.partitioner import key_partition

COMPRESSION = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
ACKS = {"all": -1, "-1": -1, "1": 1, "0": 0}


def register(sub, common) -> None:
    p = sub.add_parser("produce", parents=[common], help="produce lines from stdin or a file as records")
    p.add_argument("topic")
    p.add_argument("-f", "--file", help="read lines from FILE instead of stdin")
    p.add_argument("-k", "--key-separator", metavar="SEP",
                   help="split each line at the first SEP into key and value")
    p.add_argument("-H", "--header", action="append", default=[], metavar="KEY=VALUE",
                   help="add this header to every record (repeatable)")
    p.add_argument("-p", "--partition", type=int, help="send every record to this partition")
    p.add_argument("-z", "--compression", choices=list(COMPRESSION), default="none")
    p.add_argument("--acks", choices=list(ACKS), default="all", help="all (default), 1 or 0")
    p.add_argument("--batch-bytes", type=int, default=1 << 20, metavar="BYTES",
                   help="largest batch to send (default 1 MiB)")
    p.add_argument("--no-progress", action="store_true", help="no progress line even on a terminal")
    p.set_defaults(func=cmd_produce)


class Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.start = self.shown = time.monotonic()
        self.records = self.bytes = 0

    def add(self, records: int, nbytes: int) -> None:
        self.records += records
        self.bytes += nbytes
        now = time.monotonic()
        if self.enabled and now - self.shown >= 0.2:
            self.shown = now
            self.show(now)

    def show(self, now: float) -> None:
        mb = self.bytes / 1e6
        rate = mb / max(now - self.start, 1e-9)
        sys.stderr.write(f"\r{self.records:,} records  {mb:,.1f} MB  {rate:,.1f} MB/s ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            self.show(time.monotonic())
            sys.stderr.write("\n")


class BatchingProducer:
    """Collects records per partition and sends each partition's batch when it is full."""

    def __init__(self, client, topic: str, compression: int, acks: int, batch_bytes: int, progress: Progress):
        self.client, self.topic = client, topic
        self.compression, self.acks, self.batch_bytes = compression, acks, batch_bytes
        self.progress = progress
        self.pending: dict[int, list] = {}
        self.pending_bytes: dict[int, int] = {}
        self.sent = 0

    def add(self, partition: int, record: tuple, size: int) -> None:
        self.pending.setdefault(partition, []).append(record)
        self.pending_bytes[partition] = self.pending_bytes.get(partition, 0) + size

    def would_overflow(self, partition: int, size: int) -> bool:
        return self.pending_bytes.get(partition, 0) + size > self.batch_bytes

    def send(self, partition: int) -> None:
        records = self.pending.pop(partition, None)
        size = self.pending_bytes.pop(partition, 0)
        if records:
            batch = _core.encode_batch(records, compression=self.compression)
            self.client.produce(self.topic, partition, batch, acks=self.acks)
            self.sent += len(records)
            self.progress.add(len(records), size)

    def send_all(self) -> None:
        for partition in list(self.pending):
            self.send(partition)


def split_line(line: bytes, sep: bytes | None) -> tuple[bytes | None, bytes]:
    line = line[:-1] if line.endswith(b"\n") else line
    line = line[:-1] if line.endswith(b"\r") else line
    if sep is not None:
        key, found, value = line.partition(sep)
        if found:
            return key, value
    return None, line


def cmd_produce(args: argparse.Namespace) -> int:
    headers = [(k, v.encode()) for k, v in key_values(args.header, "header").items()]
    if args.batch_bytes < 1:
        raise CliError(f"--batch-bytes must be positive, not {args.batch_bytes}")
    sep = args.key_separator.encode() if args.key_separator else None
    progress = Progress(bool(args.file) and sys.stderr.isatty() and not args.no_progress)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open(args.file, "rb")) if args.file else sys.stdin.buffer
        interactive = source.isatty()   # typing: send each line at once
        client = stack.enter_context(connect(args))
        count = len(client.topic(args.topic).partitions)
        if args.partition is not None and not 0 <= args.partition < count:
            raise CliError(f"topic {args.topic!r} has no partition {args.partition} (it has {count})")
        producer = BatchingProducer(client, args.topic, COMPRESSION[args.compression], ACKS[args.acks],
                                    args.batch_bytes, progress)
        round_robin = 0
        for line in source:
            key, value = split_line(line, sep)
            if args.partition is not None:
                partition = args.partition
            elif key is not None:
                partition = key_partition(key, count)
            else:
                partition = round_robin % count
            size = len(value) + len(key or b"") + 16
            if producer.would_overflow(partition, size):
                producer.send(partition)
                if key is None and args.partition is None:   # unkeyed: the next batch to the next partition
                    round_robin += 1
                    partition = round_robin % count
            producer.add(partition, (key, value, headers, None), size)
            if interactive:
                producer.send(partition)
        producer.send_all()
    progress.done()
    if not interactive:
        print(f"produced {producer.sent} records to {args.topic}", file=sys.stderr)
    return 0
