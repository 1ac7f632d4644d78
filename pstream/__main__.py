"""`python -m pstream` / `pstream`: the command line.

`serve` runs the Kafka broker (127.0.0.1:9092, data in ./pstream-data by default);
`demo` appends and reads records in an embedded log and prints what it measured;
`log dump DIR` lists the batches of a partition directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def cmd_demo(args: argparse.Namespace) -> int:
    import pstream

    with pstream.Log(args.data_dir, flush=args.flush, flush_ms=10) as log:
        part = log.topic("demo", partitions=1).partition(0)
        start = part.high_watermark
        value = b"x" * args.size
        t0 = time.perf_counter()
        for _ in range(args.count):
            part.append(value)
        part.flush()
        elapsed = time.perf_counter() - t0
        read = sum(1 for _ in part.read(start))
        print(f"pstream {pstream.__version__}: CRC-32C kernel {pstream.crc32c_implementation()}, "
              f"O_DIRECT {'on' if part.direct_io else 'off (filesystem refused it)'}")
        print(f"appended {args.count} records of {args.size} B in {elapsed:.3f} s "
              f"({args.count / elapsed:,.0f} records/s, flush={args.flush}); read back {read}")
        print(f"log {args.data_dir}/demo/0: offsets {part.log_start_offset}..{part.high_watermark - 1}")
    return 0


def cmd_log_dump(args: argparse.Namespace) -> int:
    from pstream import _core

    for name in sorted(os.listdir(args.dir)):
        if not name.endswith(".log"):
            continue
        path = os.path.join(args.dir, name)
        with open(path, "rb") as f:
            data = f.read()
        print(f"{path}: {len(data)} bytes")
        pos = 0
        while pos + 61 <= len(data):
            try:
                header = _core.validate_batch(memoryview(data)[pos:])
            except Exception as exc:  # report and stop: the rest cannot be framed
                print(f"  position {pos}: {exc}")
                return 1
            print(f"  position {pos}: offsets {header.base_offset}..{header.last_offset} "
                  f"records {header.record_count} bytes {header.size} max_timestamp {header.max_timestamp}")
            pos += header.size
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pstream.broker.broker import run
    from pstream.broker.config import load_config
    from pstream.errors import ConfigError

    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"pstream serve: {exc}", file=sys.stderr)
        return 2
    return run(config)


def main(argv: list[str] | None = None) -> int:
    from pstream.broker.config import add_arguments

    parser = argparse.ArgumentParser(prog="pstream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the Kafka-compatible broker")
    add_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo", help="append and read records in an embedded log")
    demo.add_argument("--data-dir", default="./pstream-data")
    demo.add_argument("--count", type=int, default=200_000)
    demo.add_argument("--size", type=int, default=100)
    demo.add_argument("--flush", choices=["always", "interval", "bytes"], default="interval")
    demo.set_defaults(func=cmd_demo)
    log = sub.add_parser("log", help="offline tools for a data directory")
    log_sub = log.add_subparsers(dest="log_command", required=True)
    dump = log_sub.add_parser("dump", help="list the batches of every segment in a partition directory")
    dump.add_argument("dir")
    dump.set_defaults(func=cmd_log_dump)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
